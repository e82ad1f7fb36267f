package download

import (
	"cmp"
	"context"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// PeerPath is the path of the artifact an agent serves to peers. The query
// names the artifact (gallery, application, version, kind); the grant in
// the Authorization header must name the same.
const PeerPath = "/v1/artifact"

// GrantScheme is the Authorization scheme a peer grant is sent with.
const GrantScheme = "VmappGrant"

// peerStallTimeout ends a read from a peer that received nothing for so
// long: a peer is one machine among many, not worth the store's patience.
const peerStallTimeout = 10 * time.Second

// peerMaxFails is how many failures in a row drop a peer for the download.
const peerMaxFails = 3

// newPeerSource reads the artifact of plan p from a peer's agent, with
// ranged GETs that carry the plan's grant.
func newPeerSource(p *pb.DownloadPlan, peer *pb.PeerSource, hc *http.Client) Source {
	q := url.Values{"gallery": {p.Gallery}, "application": {p.Application}, "version": {p.Version}, "kind": {strings.TrimPrefix(p.Kind.String(), "ARTIFACT_KIND_")}}
	u := (&url.URL{Scheme: "http", Host: peer.Address, Path: PeerPath, RawQuery: q.Encode()}).String()
	s := newURLSource("peer/"+peer.Machine, u, p.SizeBytes, hc)
	s.where = "peer " + peer.Machine + " (" + peer.Address + ")"
	s.header = http.Header{"Authorization": {GrantScheme + " " + p.PeerGrant}}
	return s
}

// peerSources are the plan's peers, when it names them and o lets them be
// used.
func peerSources(p *pb.DownloadPlan, o Options) []*source {
	if o.NoPeers || p.PeerGrant == "" {
		return nil
	}
	var out []*source
	for _, peer := range p.Peers {
		out = append(out, &source{Source: newPeerSource(p, peer, o.HTTPClient), tier: tierPeer, peer: peer.Machine, stall: o.PeerStallTimeout, pieces: bitmap(peer.Pieces)})
	}
	return out
}

// limitBody caps a body's reads at the download's rate cap.
func (d *downloader) limitBody(ctx context.Context, body io.ReadCloser) io.ReadCloser {
	return d.o.Cap.Reader(ctx, body)
}

// bitmap is a PeerSource's pieces: nil (every piece) when empty.
func bitmap(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// rarestFirst orders the pieces todo for a download whose peers hold some
// pieces only: the pieces fewest of them hold first (those no peer holds,
// the store's alone, at the head: new copies for the region), in todo's
// order within a count, rotated by FNV-1a(machineID) so that machines
// start at different pieces. With no such peer, todo as it is. (A swarm's
// download chooses each piece as a worker is free: swarm.go.)
func rarestFirst(todo []int, srcs []*source, machineID string) []int {
	var peers []*source
	partial := false
	for _, s := range srcs {
		if s.tier == tierPeer {
			peers = append(peers, s)
			partial = partial || s.pieces != nil
		}
	}
	if !partial || len(todo) == 0 {
		return todo
	}
	holders := make(map[int]int, len(todo))
	for _, i := range todo {
		for _, s := range peers {
			if s.has(i) {
				holders[i]++
			}
		}
	}
	h := fnv.New32a()
	h.Write([]byte(machineID))
	k := int(h.Sum32() % uint32(len(todo)))
	out := append(slices.Clone(todo[k:]), todo[:k]...)
	slices.SortStableFunc(out, func(a, b int) int { return cmp.Compare(holders[a], holders[b]) })
	return out
}
