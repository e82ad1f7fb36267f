package fleet

import (
	"context"
	"sync"
	"time"
)

// syncTimeout bounds one shared wait for the cluster's commits (a caller
// stops waiting at its own deadline anyway).
const syncTimeout = time.Minute

// syncs shares waits for the cluster's commits (state.DB.Sync: in a
// cluster, a read index asked of the leader) among the callers that need
// one at the same time, as etcd's linearizable reads do: a caller joins
// the next wait to begin, never one already under way (it could have
// begun before the change the caller must see), and every caller that
// arrived while one wait ran shares the one after it. So a burst of goal
// state misses (agents asking for a version the node they ask hasn't
// applied yet) costs two read indexes, not one each.
type syncs struct {
	sync func(context.Context) error
	// runs counts the waits begun (for tests).
	runs int

	mu      sync.Mutex
	next    *syncRound // the wait the next caller joins, not begun
	running bool
}

type syncRound struct {
	done    chan struct{}
	err     error
	callers int
}

// do waits for every change committed before it was called.
func (s *syncs) do(ctx context.Context) error {
	s.mu.Lock()
	r := s.next
	if r == nil {
		r = &syncRound{done: make(chan struct{})}
		s.next = r
	}
	r.callers++
	if !s.running {
		s.running = true
		go s.loop()
	}
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop runs the waits callers joined, one after the other, until none is
// wanted.
func (s *syncs) loop() {
	for {
		s.mu.Lock()
		r := s.next
		if r == nil {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.next = nil
		s.runs++
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
		r.err = s.sync(ctx)
		cancel()
		close(r.done)
	}
}
