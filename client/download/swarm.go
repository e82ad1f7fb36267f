package download

import (
	"context"
	"hash/fnv"
	"slices"
	"sync"
	"time"
)

// A swarm is a download whose plan has a peer_refresh: the machine serves
// peers, and is one of its region's machines downloading the artifact,
// alone or not. Then the download asks for a new plan every peer_refresh,
// to learn of the pieces its peers verified since and of the pieces it
// may take from the stores (store_pieces, claimed for it by vmappd's
// tracker so that the stores send each piece to one machine of the
// swarm). Each free worker chooses its next piece from the plan in force,
// not from a queue fixed at the start: a piece of its claims first (the
// swarm waits for it), else the piece held by the fewest of its peers
// (new copies of rare pieces), in an order rotated by machine.
//
// A piece chosen for its peers comes from peers only: when every peer of
// the plan that holds it fails, it goes back to the swarm, to be chosen
// again at a later plan (giveBack), rather than to the stores, whose
// bytes the swarm keeps for pieces no machine of the region holds.
//
// So that a download never hangs (peers that hold the pieces left aren't
// among those its plan names, or a tracker lost its claims), once
// swarmPatience plans in a row came with nothing to fetch and no byte
// received, it takes a piece from the stores anyway.
var swarmPatience = 15 // a variable for tests

// swarm chooses the pieces of a swarm's download.
type swarm struct {
	plan  *planner
	meter *meter

	mu      sync.Mutex
	order   []int        // the pieces to fetch, rotated by machine
	pending map[int]bool // pieces not taken by a worker yet
	// idle counts the plans in a row that gave nothing to fetch while no
	// byte arrived (moved: the bytes received at the last); gen is the
	// last plan counted.
	idle, gen int
	moved     int64
	// counts: for the plan counted, how many of its peers hold each
	// pending piece.
	counts map[int]int
	// viaPeers: the pieces taken for peers and not fetched yet; back: the
	// pieces given back, with the first plan that may choose them again.
	viaPeers map[int]bool
	back     map[int]int
}

func newSwarm(pl *planner, m *meter, todo []int, machineID string) *swarm {
	s := &swarm{plan: pl, meter: m, pending: make(map[int]bool, len(todo)), gen: -1, viaPeers: map[int]bool{}, back: map[int]int{}}
	if len(todo) > 0 {
		h := fnv.New32a()
		h.Write([]byte(machineID))
		k := int(h.Sum32() % uint32(len(todo)))
		s.order = append(slices.Clone(todo[k:]), todo[:k]...)
	}
	for _, i := range todo {
		s.pending[i] = true
	}
	return s
}

// left is how many pieces no worker took yet.
func (s *swarm) left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// next returns the next piece for a worker to fetch, waiting until the
// plan in force gives one; nil when no piece is left to take.
func (s *swarm) next(ctx context.Context) ([]int, error) {
	for {
		v, err := s.plan.current(ctx)
		if err != nil {
			if isFatal(err) || ctx.Err() != nil {
				return nil, err
			}
			// vmappd didn't answer, and the plan's URLs expire: ask again
			// in a while (the pieces in flight fail over meanwhile).
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.mu.Unlock()
			return nil, nil
		}
		i, ok := s.pick(v)
		if ok {
			delete(s.pending, i)
			s.mu.Unlock()
			return []int{i}, nil
		}
		s.mu.Unlock()
		wait := time.NewTimer(max(v.renewAt.Sub(s.plan.now()), time.Millisecond))
		select {
		case <-v.replaced:
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return nil, ctx.Err()
		}
		wait.Stop()
	}
}

// pick chooses a pending piece under plan v, with mu held: one of v's
// store_pieces, else the one fewest of v's peers hold (at least one),
// else, past swarmPatience plans with nothing to fetch and no byte
// received, the first pending one.
func (s *swarm) pick(v *view) (int, bool) {
	for _, i := range v.plan.StorePieces {
		if s.pending[int(i)] {
			s.idle = 0
			return int(i), true
		}
	}
	if s.gen != v.gen {
		s.gen, s.counts = v.gen, s.holders(v)
		if moved := s.meter.moved.Load(); moved != s.moved {
			s.moved, s.idle = moved, 0
		} else {
			s.idle++
		}
	}
	best, bestN := -1, 0
	for _, i := range s.order {
		if n := s.counts[i]; s.pending[i] && n > 0 && v.gen >= s.back[i] && (best < 0 || n < bestN) {
			best, bestN = i, n
		}
	}
	if best >= 0 {
		s.idle = 0
		s.viaPeers[best] = true
		return best, true
	}
	if s.idle > swarmPatience {
		for _, i := range s.order {
			if s.pending[i] {
				s.idle = 0
				return i, true
			}
		}
	}
	return 0, false
}

// peersOnly tells whether piece i, taken by a worker, was chosen for
// the plan's peers: then it comes from them or not at all (giveBack).
func (s *swarm) peersOnly(i int) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viaPeers[i]
}

// done records that piece i, taken by a worker, was fetched.
func (s *swarm) done(i int) {
	if s != nil {
		s.mu.Lock()
		delete(s.viaPeers, i)
		s.mu.Unlock()
	}
}

// giveBack returns piece i, chosen for its peers under plan generation
// gen, when none of them had it right: it is pending again, and chosen
// again from a plan after gen.
func (s *swarm) giveBack(i, gen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.viaPeers, i)
	s.pending[i] = true
	s.back[i] = gen + 1
}

// holders counts, for each pending piece, the peers of v that hold it and
// weren't dropped.
func (s *swarm) holders(v *view) map[int]int {
	out := make(map[int]int, len(s.pending))
	for _, src := range v.sources {
		if src.tier != tierPeer || src.health.dropped.Load() {
			continue
		}
		for i := range s.pending {
			if src.has(i) {
				out[i]++
			}
		}
	}
	return out
}

// size is how many pieces the swarm's download fetches (0 for nil).
func (s *swarm) size() int {
	if s == nil {
		return 0
	}
	return len(s.order)
}
