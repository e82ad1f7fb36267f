// Package tracker is vmappd's peer tracker: which machines hold which
// artifacts, whole and verified or the verified pieces of a download in
// progress, and where their agents serve them, so that a download plan can
// name peers of the downloading machine's region; and which machines are
// downloading an artifact (a swarm), so that their plans tell them to ask
// again for the pieces their peers verify meanwhile, and which pieces each
// may take from the stores (claims: each piece to one machine of the
// swarm at a time).
//
// Announcements are soft state, in memory: an agent renews its lease every
// third of it, so a lost announcement costs one period, and a vmappd that
// restarts knows every live peer again within a lease. Writing them through
// the state (a raft entry each, every few seconds per machine) would cost
// the whole cluster an fsync per machine and period for facts that expire
// by themselves. In a cluster each node knows the agents that announce to
// it.
//
// A peer reported for sending a bad piece is not offered for that artifact
// again for BanTime, even when it announces it.
package tracker

import (
	"cmp"
	"hash/fnv"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults.
const (
	// Lease is how long an announcement lasts.
	Lease = 60 * time.Second
	// BanTime is how long a reported peer isn't offered for the artifact.
	BanTime = 10 * time.Minute
	// MaxPeers is the most peers a plan names.
	MaxPeers = 16
	// SwarmRefresh is how often a machine downloading in a swarm asks for
	// a new plan (DownloadPlan.peer_refresh); a downloader is one of the
	// swarm for swarmTimes of it after its last plan.
	SwarmRefresh = 2 * time.Second
	swarmTimes   = 5
	// StoreWidth is how many pieces of an artifact the machines of a swarm
	// (a tenant's region) hold claims on at once: the pieces they take
	// from the stores. A wave of N machines holds StoreWidth/N each (at
	// least one); a machine alone, every piece.
	StoreWidth = 32
	// InFlight is how many pieces a downloader fetches at once, at most
	// (client/download's adaptiveMax).
	InFlight = 16
	// ClaimLease is how long a claim lasts unless the claimant's next plan
	// renews it: a machine that stops asking loses its claims.
	ClaimLease = swarmTimes * SwarmRefresh
)

// Artifact names an artifact: the gallery's tenant, the gallery, the
// application, the version and the kind (its enum value).
type Artifact struct {
	Tenant, Gallery, Application, Version string
	Kind                                  int32
}

// Machine is an announcing or downloading machine.
type Machine struct {
	Tenant, Name, Region, ScaleSet string
}

// Peer is a machine that serves an artifact.
type Peer struct {
	Name, Address string
	SameScaleSet  bool
	// Pieces are the pieces it holds of a download in progress (bit i is
	// piece i); nil: the whole artifact.
	Pieces []byte
}

// Held is an artifact an announcing machine holds: whole (Pieces nil), or
// the pieces of its download verified so far.
type Held struct {
	Artifact
	Pieces []byte
}

type holder struct {
	m       Machine
	addr    string
	pieces  []byte // nil: whole
	expires time.Time
}

type peerKey struct{ tenant, name string }

// Tracker holds the announcements. Its methods are safe for concurrent use.
type Tracker struct {
	now   func() time.Time
	lease time.Duration
	swept time.Time // when lapsed announcements were last dropped

	mu      sync.Mutex
	holders map[Artifact]map[peerKey]holder
	held    map[peerKey][]Artifact // what each machine announced last
	serving map[peerKey]time.Time  // machines that serve peers: until their lease ends
	banned  map[Artifact]map[peerKey]time.Time
	// downloading: machines that asked for a plan of the artifact and
	// serve peers, until when they count as downloading it.
	downloading map[Artifact]map[peerKey]holder
	// claims: the pieces of an artifact each swarm member may take from
	// the stores, by tenant and region.
	claims map[swarmKey]map[int]claim

	reports prometheus.Counter
	entries prometheus.GaugeFunc
}

// New returns an empty tracker on the clock now (nil: time.Now) with
// announcements lasting lease (0: Lease).
func New(now func() time.Time, lease time.Duration) *Tracker {
	t := &Tracker{now: now, lease: cmp.Or(lease, Lease),
		holders: map[Artifact]map[peerKey]holder{}, held: map[peerKey][]Artifact{}, serving: map[peerKey]time.Time{}, banned: map[Artifact]map[peerKey]time.Time{},
		downloading: map[Artifact]map[peerKey]holder{}, claims: map[swarmKey]map[int]claim{}}
	if now == nil {
		t.now = time.Now
	}
	t.reports = prometheus.NewCounter(prometheus.CounterOpts{Name: "vmapp_peer_reports_total",
		Help: "Peers reported by downloading machines for sending pieces that failed verification."})
	t.entries = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmapp_tracker_announcements",
		Help: "Artifacts held by machines, as announced to this node and not expired."}, func() float64 { return float64(t.count()) })
	return t
}

// Register registers the tracker's metrics.
func (t *Tracker) Register(reg prometheus.Registerer) { reg.MustRegister(t.reports, t.entries) }

// LeaseTime is how long an announcement lasts.
func (t *Tracker) LeaseTime() time.Duration { return t.lease }

// Announce records that m serves arts, whole, at addr until the lease
// ends, replacing what m announced before; an empty addr withdraws m.
func (t *Tracker) Announce(m Machine, addr string, arts []Artifact) {
	held := make([]Held, len(arts))
	for i, a := range arts {
		held[i] = Held{Artifact: a}
	}
	t.AnnounceHeld(m, addr, held)
}

// AnnounceHeld is Announce of artifacts held whole or in part.
func (t *Tracker) AnnounceHeld(m Machine, addr string, held []Held) {
	k := peerKey{m.Tenant, m.Name}
	now := t.now()
	exp := now.Add(t.lease)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	for _, a := range t.held[k] {
		t.drop(a, k)
	}
	delete(t.held, k)
	delete(t.serving, k)
	if addr == "" { // it stops serving: it leaves its swarms, and its claims are free
		t.leaveSwarms(k)
		return
	}
	t.serving[k] = exp
	var arts []Artifact
	for _, h := range held {
		hs := t.holders[h.Artifact]
		if hs == nil {
			hs = map[peerKey]holder{}
			t.holders[h.Artifact] = hs
		}
		hs[k] = holder{m: m, addr: addr, pieces: slices.Clone(h.Pieces), expires: exp}
		arts = append(arts, h.Artifact)
	}
	if len(arts) > 0 {
		t.held[k] = arts
	}
}

// leaveSwarms forgets that k downloads anything and drops its claims,
// with mu held.
func (t *Tracker) leaveSwarms(k peerKey) {
	for _, ds := range t.downloading {
		delete(ds, k)
	}
	for _, cs := range t.claims {
		maps.DeleteFunc(cs, func(_ int, c claim) bool { return c.k == k })
	}
}

// sweep drops, once a lease, the machines whose lease lapsed, the
// downloads, claims and bans that ended, with mu held: machines that
// stopped announcing cost nothing for long.
func (t *Tracker) sweep(now time.Time) {
	if now.Sub(t.swept) < t.lease {
		return
	}
	t.swept = now
	for k, arts := range t.held { // never empty
		if h, ok := t.holders[arts[0]][k]; !ok || !now.Before(h.expires) {
			for _, a := range arts {
				t.drop(a, k)
			}
			delete(t.held, k)
		}
	}
	for k, until := range t.serving {
		if !now.Before(until) {
			delete(t.serving, k)
		}
	}
	sweepNested(t.downloading, func(d holder) time.Time { return d.expires }, now)
	sweepNested(t.claims, func(c claim) time.Time { return c.until }, now)
	sweepNested(t.banned, func(until time.Time) time.Time { return until }, now)
}

// sweepNested drops from m the entries whose end (until) is not after
// now, and the inner maps left empty.
func sweepNested[K, J comparable, V any](m map[K]map[J]V, until func(V) time.Time, now time.Time) {
	for k, inner := range m {
		for j, v := range inner {
			if !now.Before(until(v)) {
				delete(inner, j)
			}
		}
		if len(inner) == 0 {
			delete(m, k)
		}
	}
}

// drop forgets that k holds a, with mu held.
func (t *Tracker) drop(a Artifact, k peerKey) {
	if hs := t.holders[a]; hs != nil {
		delete(hs, k)
		if len(hs) == 0 {
			delete(t.holders, a)
		}
	}
}

// Peers returns up to max machines of m's tenant and region that hold a
// (m left out), m's scale set first, each group in an order that spreads
// the askers over the holders (rotated by a hash of m's name). When more
// hold a than max, the few named are chosen for the pieces m lacks (as m
// announced its own): for each piece m lacks, rarest first, a holder of it
// in that order, while room is left; then the others that hold a piece m
// lacks; then the rest. So a plan of a swarm names a holder of every piece
// m could take from a peer, not only of the common ones.
func (t *Tracker) Peers(a Artifact, m Machine, max int) []Peer {
	now := t.now()
	t.mu.Lock()
	var mine []byte // m's pieces; nil: none announced
	if h, ok := t.holders[a][peerKey{m.Tenant, m.Name}]; ok && now.Before(h.expires) {
		mine = h.pieces
	}
	var same, other []Peer
	for k, h := range t.holders[a] {
		switch {
		case !now.Before(h.expires):
			t.drop(a, k) // lapsed
			continue
		case h.m.Tenant != m.Tenant || h.m.Region != m.Region || h.m.Name == m.Name || t.isBanned(a, k, now):
			continue
		}
		p := Peer{Name: h.m.Name, Address: h.addr, SameScaleSet: m.ScaleSet != "" && h.m.ScaleSet == m.ScaleSet, Pieces: h.pieces}
		if p.SameScaleSet {
			same = append(same, p)
		} else {
			other = append(other, p)
		}
	}
	t.mu.Unlock()
	return choose(append(spread(same, m.Name), spread(other, m.Name)...), mine, max)
}

// choose returns up to most of ps (in the order to prefer them; none for
// most <= 0) for an asker holding the pieces mine (nil: none): see Peers.
func choose(ps []Peer, mine []byte, most int) []Peer {
	most = max(0, min(len(ps), most))
	taken := make([]bool, len(ps))
	out := make([]Peer, 0, most)
	covered, whole := map[int]bool{}, false // the pieces the peers taken hold
	take := func(j int) {
		if taken[j] || len(out) >= most {
			return
		}
		taken[j] = true
		out = append(out, ps[j])
		whole = whole || ps[j].Pieces == nil
		for i := range len(ps[j].Pieces) * 8 {
			covered[i] = covered[i] || holds(ps[j].Pieces, i)
		}
	}
	if len(ps) > most {
		for _, i := range rarestLacked(ps, mine) {
			if whole || covered[i] {
				continue
			}
			// Not covered: none of its holders is taken yet.
			take(slices.IndexFunc(ps, func(p Peer) bool { return holds(p.Pieces, i) }))
		}
	}
	for j, p := range ps {
		if lacks(mine, p.Pieces) {
			take(j)
		}
	}
	for j := range ps {
		take(j)
	}
	return out
}

// rarestLacked returns the pieces that holders ps hold in part (bitmaps)
// and an asker holding mine lacks, those fewest of ps hold first.
func rarestLacked(ps []Peer, mine []byte) []int {
	count := map[int]int{}
	for _, p := range ps {
		for i := range len(p.Pieces) * 8 {
			if holds(p.Pieces, i) && (mine == nil || !holds(mine, i)) {
				count[i]++
			}
		}
	}
	out := slices.Sorted(maps.Keys(count))
	slices.SortStableFunc(out, func(i, j int) int { return cmp.Compare(count[i], count[j]) })
	return out
}

// holds tells whether bitmap b has piece i; a nil b holds every piece.
func holds(b []byte, i int) bool {
	return b == nil || i/8 < len(b) && b[i/8]&(1<<(i%8)) != 0
}

// lacks tells whether a machine holding pieces mine (nil: none) lacks
// one of theirs (nil: every piece).
func lacks(mine, theirs []byte) bool {
	if theirs == nil || mine == nil {
		return true
	}
	for i, b := range theirs {
		if i >= len(mine) || b&^mine[i] != 0 {
			return true
		}
	}
	return false
}

// spread sorts ps by name, then rotates them by a hash of asker.
func spread(ps []Peer, asker string) []Peer {
	if len(ps) == 0 {
		return nil
	}
	slices.SortFunc(ps, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	h := fnv.New32a()
	h.Write([]byte(asker))
	k := int(h.Sum32() % uint32(len(ps)))
	return append(ps[k:], ps[:k]...)
}

// isBanned tells whether k was reported for a less than BanTime ago, with
// mu held.
func (t *Tracker) isBanned(a Artifact, k peerKey, now time.Time) bool {
	until, ok := t.banned[a][k]
	if ok && !now.Before(until) {
		delete(t.banned[a], k)
		return false
	}
	return ok
}

// Report records that peer (of tenant) sent a bad piece of a: it isn't
// offered for a for BanTime.
func (t *Tracker) Report(a Artifact, tenant, peer string) {
	t.reports.Inc()
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.banned[a]
	if b == nil {
		b = map[peerKey]time.Time{}
		t.banned[a] = b
	}
	b[peerKey{tenant, peer}] = t.now().Add(BanTime)
}

// Holders counts the machines holding a whole whose lease runs, in a region
// ("": every region).
func (t *Tracker) Holders(a Artifact, region string) int {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, h := range t.holders[a] {
		if now.Before(h.expires) && h.pieces == nil && (region == "" || h.m.Region == region) {
			n++
		}
	}
	return n
}

// Serving tells whether machine name of tenant serves peers: it announced
// an address and its lease runs.
func (t *Tracker) Serving(tenant, name string) bool {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	until, ok := t.serving[peerKey{tenant, name}]
	return ok && now.Before(until)
}

// HolderNames returns the machines of tenant in region holding a whole
// whose lease runs, by name.
func (t *Tracker) HolderNames(a Artifact, tenant, region string) []string {
	now := t.now()
	t.mu.Lock()
	var out []string
	for _, h := range t.holders[a] {
		if now.Before(h.expires) && h.pieces == nil && h.m.Tenant == tenant && h.m.Region == region {
			out = append(out, h.m.Name)
		}
	}
	t.mu.Unlock()
	slices.Sort(out)
	return out
}

func (t *Tracker) count() int {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, hs := range t.holders {
		for _, h := range hs {
			if now.Before(h.expires) {
				n++
			}
		}
	}
	return n
}

// Downloading records that m, which serves peers, asked for a plan of a,
// and tells whether a is downloaded by a swarm: another machine of m's
// tenant and region that serves peers is downloading it too, or holds
// pieces of it.
func (t *Tracker) Downloading(a Artifact, m Machine) bool {
	now := t.now()
	k := peerKey{m.Tenant, m.Name}
	t.mu.Lock()
	defer t.mu.Unlock()
	ds := t.downloading[a]
	if ds == nil {
		ds = map[peerKey]holder{}
		t.downloading[a] = ds
	}
	ds[k] = holder{m: m, expires: now.Add(swarmTimes * SwarmRefresh)}
	swarm := false
	for dk, d := range ds {
		switch {
		case !now.Before(d.expires):
			delete(ds, dk)
		case dk != k && d.m.Region == m.Region && d.m.Tenant == m.Tenant:
			swarm = true
		}
	}
	for hk, h := range t.holders[a] {
		swarm = swarm || hk != k && h.pieces != nil && now.Before(h.expires) && h.m.Region == m.Region && h.m.Tenant == m.Tenant
	}
	return swarm
}

// swarmKey is an artifact downloaded by the machines of a tenant's region.
type swarmKey struct {
	a              Artifact
	tenant, region string
}

// claim is a piece a swarm member may take from the stores, until.
type claim struct {
	k     peerKey
	until time.Time
}

// Claims returns the pieces of a (of pieces in all) that m, a member of
// its region's swarm, may take from the stores now, ascending: its claims.
// A piece is claimed by one machine at a time, and only while no machine
// of the region holds it (announced): the stores send each piece about
// once, the swarm's peers the other copies. m's claims are renewed (they
// last ClaimLease from now) until it or another holds the piece; m gets
// new ones, pieces no one holds or claims, rotated by a hash of its name,
// up to its share of StoreWidth (StoreWidth over the swarm's members). A
// machine alone may claim every piece (a single machine downloads at the
// stores' full speed, not a plan's claims at a time); when others join,
// it keeps its share, or InFlight pieces if more, its lowest, and the
// others are free for them. A claim whose machine stops asking lapses: a piece never waits
// long for a claimant. When a machine of the region holds a whole, none
// is needed.
func (t *Tracker) Claims(a Artifact, m Machine, pieces int) []int {
	if pieces <= 0 {
		return nil
	}
	now := t.now()
	k := peerKey{m.Tenant, m.Name}
	sk := swarmKey{a, m.Tenant, m.Region}
	t.mu.Lock()
	defer t.mu.Unlock()
	held := make([]byte, (pieces+7)/8) // by any machine of the region, m too
	for hk, h := range t.holders[a] {
		if !now.Before(h.expires) || h.m.Tenant != m.Tenant || h.m.Region != m.Region || t.isBanned(a, hk, now) {
			continue
		}
		if h.pieces == nil {
			delete(t.claims, sk)
			return nil
		}
		for i := range min(len(held), len(h.pieces)) {
			held[i] |= h.pieces[i]
		}
	}
	cs := t.claims[sk]
	if cs == nil {
		cs = map[int]claim{}
		t.claims[sk] = cs
	}
	var mine []int
	for i, c := range cs {
		switch {
		case i >= pieces || holds(held, i) || !now.Before(c.until):
			delete(cs, i)
		case c.k == k:
			cs[i] = claim{k, now.Add(ClaimLease)}
			mine = append(mine, i)
		}
	}
	members := 0
	for dk, d := range t.downloading[a] {
		if dk != k && now.Before(d.expires) && d.m.Tenant == m.Tenant && d.m.Region == m.Region {
			members++
		}
	}
	width := StoreWidth
	if members == 0 { // alone: every piece, at the stores' full speed
		width = pieces
	}
	share := max(1, width/(members+1))
	// Others came: m keeps its share, or the pieces its workers may have
	// taken already (they take its claims lowest first), whichever is
	// more: a piece released while m fetches it would come from the
	// stores twice.
	if keep := max(share, InFlight); len(mine) > keep {
		slices.Sort(mine)
		for _, i := range mine[keep:] {
			delete(cs, i)
		}
		mine = mine[:keep]
	}
	h := fnv.New32a()
	h.Write([]byte(m.Name))
	start := int(h.Sum32() % uint32(pieces))
	for j := 0; j < pieces && len(mine) < share && len(cs) < width; j++ {
		i := (start + j) % pieces
		if _, claimed := cs[i]; claimed || holds(held, i) {
			continue
		}
		cs[i] = claim{k, now.Add(ClaimLease)}
		mine = append(mine, i)
	}
	if len(cs) == 0 {
		delete(t.claims, sk)
	}
	slices.Sort(mine)
	return mine
}

// Planned is what a machine's download plan takes from the tracker.
type Planned struct {
	Peers []Peer
	// Swarm: the machine serves peers, so it is one of its region's swarm
	// for the artifact, alone or not (a wave started at once has no first
	// machine that could take the stores whole), and Claims are the pieces
	// it may take from the stores.
	Swarm  bool
	Claims []int
}

// Plan returns up to max peers of m for a (of pieces in all); when m
// serves peers, it records m as downloading a (Downloading) and gives it
// its claims (Claims).
func (t *Tracker) Plan(a Artifact, m Machine, pieces, max int) Planned {
	p := Planned{Peers: t.Peers(a, m, max)}
	if t.Serving(m.Tenant, m.Name) {
		t.Downloading(a, m)
		p.Swarm, p.Claims = true, t.Claims(a, m, pieces)
	}
	return p
}
