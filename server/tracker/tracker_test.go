package tracker

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// The tracker on a clock of the test's: leases lapse, other regions and
// tenants are left out, the scale set comes first, a ban ends, and machines
// that stopped announcing are swept.
func TestTracker(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := New(func() time.Time { return now }, time.Minute)
	a := Artifact{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: 1}
	b := a
	b.Version = "2.0.0"
	m := func(name, region, set string) Machine {
		return Machine{Tenant: "t", Name: name, Region: region, ScaleSet: set}
	}
	names := func(ps []Peer) string {
		s := ""
		for _, p := range ps {
			s += fmt.Sprintf("%s(%v) ", p.Name, p.SameScaleSet)
		}
		return s
	}
	tr.Announce(m("web-0", "eastus", "web"), "h0:1", []Artifact{a, b})
	tr.Announce(m("vm-1", "eastus", ""), "h1:1", []Artifact{a})
	tr.Announce(m("vm-w", "westus", ""), "hw:1", []Artifact{a})
	tr.Announce(Machine{Tenant: "u", Name: "vm-u", Region: "eastus"}, "hu:1", []Artifact{a})
	asker := m("web-1", "eastus", "web")
	if got := names(tr.Peers(a, asker, MaxPeers)); got != "web-0(true) vm-1(false) " {
		t.Fatalf("peers: %s", got)
	}
	if got := names(tr.Peers(a, asker, 1)); got != "web-0(true) " {
		t.Fatalf("one peer: %s", got)
	}
	if n := tr.Holders(a, ""); n != 4 {
		t.Fatalf("%d holders of a", n)
	}
	// A new announcement replaces the last: web-0 holds b no more.
	tr.Announce(m("web-0", "eastus", "web"), "h0:1", []Artifact{a})
	if n := tr.Holders(b, ""); n != 0 {
		t.Fatalf("%d holders of b after web-0 announced a alone", n)
	}
	// Reported: not offered until the ban ends.
	tr.Report(a, "t", "web-0")
	if got := names(tr.Peers(a, asker, MaxPeers)); got != "vm-1(false) " {
		t.Fatalf("peers with web-0 reported: %s", got)
	}
	// vm-1 renews its lease; the others lapse.
	now = now.Add(50 * time.Second)
	tr.Announce(m("vm-1", "eastus", ""), "h1:1", []Artifact{a})
	now = now.Add(20 * time.Second)
	if got := names(tr.Peers(a, asker, MaxPeers)); got != "vm-1(false) " || tr.Holders(a, "") != 1 {
		t.Fatalf("peers after the leases lapsed: %s (%d holders)", got, tr.Holders(a, ""))
	}
	// The ban ends; web-0, announcing again, is offered again.
	now = now.Add(BanTime)
	tr.Announce(m("web-0", "eastus", "web"), "h0:1", []Artifact{a})
	if got := names(tr.Peers(a, asker, MaxPeers)); got != "web-0(true) " {
		t.Fatalf("peers after the ban ended: %s", got)
	}
	// The sweep forgot the machines that stopped announcing, and the ban.
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.held) != 1 || len(tr.banned) != 0 {
		t.Fatalf("after a sweep: held %v, banned %v", tr.held, tr.banned)
	}
}

// Askers are spread over the holders: each is offered a holder first, and
// different askers different ones.
func TestSpread(t *testing.T) {
	tr := New(func() time.Time { return time.Unix(0, 0) }, 0)
	a := Artifact{Tenant: "t", Gallery: "g", Application: "a", Version: "1", Kind: 1}
	for i := range 4 {
		tr.Announce(Machine{Tenant: "t", Name: fmt.Sprint("h", i), Region: "r"}, "x:1", []Artifact{a})
	}
	first := map[string]int{}
	for i := range 40 {
		ps := tr.Peers(a, Machine{Tenant: "t", Name: fmt.Sprint("asker", i), Region: "r"}, MaxPeers)
		if len(ps) != 4 {
			t.Fatalf("%d peers", len(ps))
		}
		first[ps[0].Name]++
	}
	if len(first) < 3 {
		t.Fatalf("40 askers were offered first %v", first)
	}
}

// Serving and HolderNames (what preheats choose machines and count
// progress by): a machine serves from its announcement until its lease
// lapses or it withdraws, with or without artifacts; holders are of the
// tenant and region asked.
func TestServingAndHolderNames(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := New(func() time.Time { return now }, time.Minute)
	a := Artifact{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: 1}
	m := func(tenant, name, region string) Machine { return Machine{Tenant: tenant, Name: name, Region: region} }
	tr.Announce(m("t", "vm-2", "eastus"), "h2:1", []Artifact{a})
	tr.Announce(m("t", "vm-1", "eastus"), "h1:1", []Artifact{a})
	tr.Announce(m("t", "vm-0", "eastus"), "h0:1", nil) // serves, holds nothing
	tr.Announce(m("t", "vm-w", "westus"), "hw:1", []Artifact{a})
	tr.Announce(m("u", "vm-u", "eastus"), "hu:1", []Artifact{a})
	if got := fmt.Sprint(tr.HolderNames(a, "t", "eastus")); got != "[vm-1 vm-2]" {
		t.Fatalf("holders in eastus: %s", got)
	}
	for name, want := range map[string]bool{"vm-0": true, "vm-1": true, "vm-3": false} {
		if got := tr.Serving("t", name); got != want {
			t.Errorf("Serving(%s) = %v, want %v", name, got, want)
		}
	}
	if tr.Serving("u", "vm-0") {
		t.Error("vm-0 of another tenant serving")
	}
	tr.Announce(m("t", "vm-1", "eastus"), "", nil) // withdrawn
	if tr.Serving("t", "vm-1") || fmt.Sprint(tr.HolderNames(a, "t", "eastus")) != "[vm-2]" {
		t.Fatalf("after vm-1 withdrew: serving %v, holders %v", tr.Serving("t", "vm-1"), tr.HolderNames(a, "t", "eastus"))
	}
	now = now.Add(time.Minute)
	if tr.Serving("t", "vm-0") || len(tr.HolderNames(a, "t", "eastus")) != 0 {
		t.Fatal("a lapsed lease still serving or holding")
	}
	tr.Announce(m("t", "vm-9", "eastus"), "h9:1", nil) // sweeps
	if len(tr.serving) != 1 {
		t.Fatalf("%d machines kept serving after the sweep, want 1", len(tr.serving))
	}
}

// Pieces of downloads in progress: a partial holder is offered with its
// bitmap but doesn't count as holding the artifact; a machine downloading
// is in a swarm when another of its tenant and region downloads it too or
// holds pieces of it, until swarmTimes SwarmRefresh after that one's last
// plan.
func TestPiecesAndSwarms(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := New(func() time.Time { return now }, time.Minute)
	a := Artifact{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: 1}
	m := func(name, region string) Machine { return Machine{Tenant: "t", Name: name, Region: region} }
	tr.AnnounceHeld(m("vm-p", "eastus"), "hp:1", []Held{{Artifact: a, Pieces: []byte{0b101}}})
	ps := tr.Peers(a, m("vm-x", "eastus"), MaxPeers)
	if len(ps) != 1 || ps[0].Name != "vm-p" || fmt.Sprintf("%b", ps[0].Pieces) != "[101]" {
		t.Fatalf("peers: %+v", ps)
	}
	if tr.Holders(a, "") != 0 || len(tr.HolderNames(a, "t", "eastus")) != 0 {
		t.Fatal("a partial holder counted as holding the artifact")
	}
	// vm-x is in a swarm with vm-p's pieces; vm-w, of another region, alone.
	if !tr.Downloading(a, m("vm-x", "eastus")) || tr.Downloading(a, m("vm-w", "westus")) {
		t.Fatal("swarms: wrong with a partial holder")
	}
	tr.AnnounceHeld(m("vm-p", "eastus"), "hp:1", []Held{{Artifact: a}}) // whole now
	if tr.Holders(a, "eastus") != 1 || tr.Peers(a, m("vm-x", "eastus"), 1)[0].Pieces != nil {
		t.Fatal("a whole holder not counted")
	}
	// vm-y asks: vm-x downloads too.
	if !tr.Downloading(a, m("vm-y", "eastus")) {
		t.Fatal("vm-y alone, though vm-x downloads")
	}
	now = now.Add(swarmTimes * SwarmRefresh)
	if tr.Downloading(a, m("vm-z", "eastus")) {
		t.Fatal("vm-z in a swarm after the others' downloads lapsed")
	}
	now = now.Add(2 * time.Minute)
	tr.Announce(m("vm-q", "eastus"), "hq:1", nil) // sweeps
	if len(tr.downloading) != 0 {
		t.Fatalf("downloads kept after the sweep: %v", tr.downloading)
	}
}

// Claims on the clock of the test's: a machine alone claims every piece, a
// second gets none while they are claimed, the first keeps its share once
// the second came and the second claims its own; claims are renewed by the
// claimant's plans, dropped once a machine of the region holds the piece,
// lapse when the claimant stops asking, are freed when it withdraws, and
// aren't needed once one holds the whole; another region's swarm claims
// on its own.
func TestClaims(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := New(func() time.Time { return now }, time.Minute)
	a := Artifact{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: 1}
	m := func(name, region string) Machine { return Machine{Tenant: "t", Name: name, Region: region} }
	const pieces = 40
	ask := func(name, region string) []int {
		tr.Downloading(a, m(name, region))
		return tr.Claims(a, m(name, region), pieces)
	}
	bitmap := func(ps []int) []byte {
		b := make([]byte, (pieces+7)/8)
		for _, i := range ps {
			b[i/8] |= 1 << (i % 8)
		}
		return b
	}
	// Alone, vm-1 claims every piece: it takes the stores at full speed.
	c1 := ask("vm-1", "eastus")
	if len(c1) != pieces {
		t.Fatalf("vm-1 alone claims %d pieces, want all %d", len(c1), pieces)
	}
	if c2 := ask("vm-2", "eastus"); len(c2) != 0 {
		t.Fatalf("vm-2 claims %v while vm-1 claims every piece", c2)
	}
	// vm-2 came: vm-1 keeps its share (half of StoreWidth, as many as
	// InFlight), its lowest pieces, renewed; the others are free, and
	// vm-2 claims its share.
	now = now.Add(ClaimLease - time.Second)
	c1 = ask("vm-1", "eastus")
	if fmt.Sprint(c1) != fmt.Sprint(seq(0, StoreWidth/2)) {
		t.Fatalf("vm-1's claims with vm-2 in the swarm: %v", c1)
	}
	c2 := ask("vm-2", "eastus")
	if len(c2) != StoreWidth/2 {
		t.Fatalf("vm-2 claims %v", c2)
	}
	for _, i := range c2 {
		if slices.Contains(c1, i) {
			t.Fatalf("vm-2 claims piece %d that vm-1 claims", i)
		}
	}
	// vm-1 verified its pieces: it claims those no one holds or claims.
	tr.AnnounceHeld(m("vm-1", "eastus"), "h1:1", []Held{{Artifact: a, Pieces: bitmap(c1)}})
	again := ask("vm-1", "eastus")
	if len(again) != pieces-StoreWidth || slices.ContainsFunc(again, func(i int) bool { return slices.Contains(c1, i) || slices.Contains(c2, i) }) {
		t.Fatalf("vm-1 claims %v after it held %v (vm-2 claims %v)", again, c1, c2)
	}
	// Both stop asking: their claims lapse, and vm-3, alone, gets every
	// piece no one holds.
	now = now.Add(ClaimLease)
	if c3, want := ask("vm-3", "eastus"), slices.Sorted(slices.Values(append(c2, again...))); fmt.Sprint(c3) != fmt.Sprint(want) {
		t.Fatalf("vm-3 claims %v after vm-2's %v and vm-1's %v lapsed", c3, c2, again)
	}
	// Another region's swarm claims on its own.
	if cw := ask("vm-w", "westus"); len(cw) != pieces {
		t.Fatalf("vm-w claims %d pieces in westus", len(cw))
	}
	// vm-4 joins; vm-3 stops serving (its agent withdraws): it leaves the
	// swarm at once, so vm-4, alone again, claims every piece vm-3 held
	// claims on.
	c4 := ask("vm-4", "eastus")
	tr.Announce(m("vm-3", "eastus"), "", nil)
	if c4 = ask("vm-4", "eastus"); len(c4) != pieces-StoreWidth/2 {
		t.Fatalf("vm-4 claims %d pieces after vm-3 withdrew, want every one not held (%d)", len(c4), pieces-StoreWidth/2)
	}
	// A whole holder: no claims.
	tr.AnnounceHeld(m("vm-1", "eastus"), "h1:1", []Held{{Artifact: a}})
	if c3 := ask("vm-3", "eastus"); len(c3) != 0 {
		t.Fatalf("vm-3 claims %v with a whole holder", c3)
	}
	if tr.Claims(a, m("vm-3", "eastus"), 0) != nil {
		t.Fatal("claims of an artifact of no pieces")
	}
	now = now.Add(2 * time.Minute)
	tr.Announce(m("vm-q", "eastus"), "hq:1", nil) // sweeps
	if len(tr.claims) != 0 {
		t.Fatalf("claims kept after the sweep: %v", tr.claims)
	}
}

// seq is [from, to).
func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// A machine's plan names first the peers holding pieces it lacks: with one
// peer asked for, not the one holding only what the asker holds.
func TestPeersLacked(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := New(func() time.Time { return now }, time.Minute)
	a := Artifact{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: 1}
	m := func(name string) Machine { return Machine{Tenant: "t", Name: name, Region: "eastus", ScaleSet: "web"} }
	tr.AnnounceHeld(m("vm-x"), "hx:1", []Held{{Artifact: a, Pieces: []byte{0b0011}}})
	for _, name := range []string{"vm-a", "vm-b", "vm-c", "vm-d"} {
		tr.AnnounceHeld(m(name), "h:1", []Held{{Artifact: a, Pieces: []byte{0b0001}}}) // nothing vm-x lacks
	}
	tr.AnnounceHeld(m("vm-e"), "he:1", []Held{{Artifact: a, Pieces: []byte{0b0101}}})
	if ps := tr.Peers(a, m("vm-x"), 1); len(ps) != 1 || ps[0].Name != "vm-e" {
		t.Fatalf("vm-x's one peer: %+v", ps)
	}
	if ps := tr.Peers(a, m("vm-x"), MaxPeers); len(ps) != 5 || ps[0].Name != "vm-e" {
		t.Fatalf("vm-x's peers: %+v", ps)
	}
	// An asker that announced nothing lacks every piece: the usual order.
	if ps := tr.Peers(a, m("vm-y"), MaxPeers); len(ps) != 6 {
		t.Fatalf("vm-y's peers: %+v", ps)
	}
}

// TestPeersCoverRarePieces: with more holders than a plan names, the plan
// names a holder of every piece the asker lacks, the rarest too, not only
// the first holders in its order.
func TestPeersCoverRarePieces(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := New(func() time.Time { return now }, time.Minute)
	a := Artifact{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: 1}
	m := func(name string) Machine { return Machine{Tenant: "t", Name: name, Region: "eastus", ScaleSet: "web"} }
	tr.AnnounceHeld(m("vm-x"), "hx:1", []Held{{Artifact: a, Pieces: []byte{0b0001}}})
	for i := range 40 { // piece 1 (and 0) held by many
		tr.AnnounceHeld(m(fmt.Sprintf("vm-%02d", i)), "h:1", []Held{{Artifact: a, Pieces: []byte{0b0011}}})
	}
	tr.AnnounceHeld(m("vm-rare2"), "h2:1", []Held{{Artifact: a, Pieces: []byte{0b0100}}})
	tr.AnnounceHeld(m("vm-rare3"), "h3:1", []Held{{Artifact: a, Pieces: []byte{0b1000}}})
	for _, asker := range []string{"vm-x", "vm-y", "vm-z", "vm-w"} {
		ps := tr.Peers(a, m(asker), 4)
		names := map[string]bool{}
		for _, p := range ps {
			names[p.Name] = true
		}
		if len(ps) != 4 || !names["vm-rare2"] || !names["vm-rare3"] {
			t.Errorf("%s's 4 peers leave out a rare piece's holder: %v", asker, names)
		}
	}
	// A whole holder covers every piece.
	tr.AnnounceHeld(m("vm-whole"), "hw:1", []Held{{Artifact: a}})
	if ps := tr.Peers(a, m("vm-x"), 1); len(ps) != 1 || ps[0].Name != "vm-whole" && ps[0].Name != "vm-rare2" && ps[0].Name != "vm-rare3" {
		t.Errorf("vm-x's one peer: %+v", ps)
	}
	if ps := tr.Peers(a, m("vm-x"), -1); len(ps) != 0 {
		t.Errorf("vm-x's peers, -1 asked for: %+v", ps)
	}
}

// A machine that claimed every piece alone keeps, when a wave comes,
// the pieces its workers may have taken (InFlight, its lowest), not only
// its share of StoreWidth: a piece released while it fetches it would
// come from the stores twice.
func TestClaimsKeepInFlight(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := New(func() time.Time { return now }, time.Minute)
	a := Artifact{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: 1}
	ask := func(name string) []int {
		m := Machine{Tenant: "t", Name: name, Region: "eastus"}
		tr.Downloading(a, m)
		return tr.Claims(a, m, 64)
	}
	if c := ask("vm-0"); len(c) != 64 {
		t.Fatalf("vm-0 alone claims %d pieces", len(c))
	}
	for i := 1; i < 8; i++ { // StoreWidth/8 = 4 each
		ask(fmt.Sprintf("vm-%d", i))
	}
	if c := ask("vm-0"); fmt.Sprint(c) != fmt.Sprint(seq(0, InFlight)) {
		t.Fatalf("vm-0 keeps %v in a wave of 8, want its %d lowest", c, InFlight)
	}
	if c := ask("vm-1"); len(c) != StoreWidth/8 || slices.ContainsFunc(c, func(i int) bool { return i < InFlight }) {
		t.Fatalf("vm-1 claims %v", c)
	}
}
