package download

import (
	"cmp"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

const (
	progressTick = 100 * time.Millisecond
	// runBytes caps how much one request asks for: a run of consecutive
	// pieces, each verified as it arrives.
	runBytes = 32 << 20
)

// maxRun is the most pieces of pieceSize in a run.
func maxRun(pieceSize int64) int { return max(1, int(runBytes/max(pieceSize, 1))) }

// meter counts the bytes of a download as they arrive.
type meter struct {
	moved atomic.Int64 // bytes received, failed pieces too: throughput
	// firstByte is when the first bytes were received (UnixNano; 0: not
	// yet), where the adaptive pool's first measure starts.
	firstByte atomic.Int64
	done      atomic.Int64 // bytes of verified pieces and pieces in flight: progress
}

// received counts k bytes of a piece in flight.
func (m *meter) received(k int64) {
	if m.moved.Add(k) == k { // the download's first bytes
		m.firstByte.Store(time.Now().UnixNano())
	}
	m.done.Add(k)
}

func (m *meter) first() time.Time {
	if ns := m.firstByte.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// pool fetches pieces with workers, parallelism of them or an adaptive
// number: each takes a run of consecutive pieces from the queue and
// fetches it, until the queue is empty or a fetch fails for good.
type pool struct {
	parallelism int // 0 adapts
	maxRun      int
	meter       *meter
	fetch       func(ctx context.Context, run []int, buf []byte) error
	progress    func() // called every progressTick

	// swarm, when set, chooses each worker's next piece instead of the
	// queue.
	swarm *swarm

	mu       sync.Mutex
	queue    []int // pieces not taken yet, in order
	target   int   // workers wanted
	active   int   // workers running
	finished chan struct{}
}

// run fetches the pieces todo; it returns the first error of a fetch, or
// ctx's.
func (p *pool) run(ctx context.Context, todo []int) error {
	if len(todo) == 0 {
		return nil
	}
	if p.swarm != nil {
		todo = nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p.queue, p.finished = todo, make(chan struct{})
	p.target = min(cmp.Or(p.parallelism, adaptiveStart), max(len(todo), p.swarm.size()))
	var ad *adaptive // nil: a fixed number of workers
	if p.parallelism == 0 {
		ad = &adaptive{target: p.target}
	}
	p.mu.Lock()
	p.spawn(ctx, cancel, p.target)
	p.mu.Unlock()

	tick := time.NewTicker(progressTick)
	defer tick.Stop()
	for {
		select {
		case <-p.finished:
			return context.Cause(ctx)
		case now := <-tick.C:
			p.progress()
			if ad == nil {
				continue
			}
			p.mu.Lock()
			if t := ad.observe(now, p.meter.moved.Load(), p.meter.first(), len(p.queue)); p.active > 0 {
				// Workers above the target leave by themselves.
				p.spawn(ctx, cancel, t-p.target)
				p.target = t
			}
			p.mu.Unlock()
		}
	}
}

// spawn starts n workers (none when n <= 0), with mu held.
func (p *pool) spawn(ctx context.Context, cancel context.CancelCauseFunc, n int) {
	for range n {
		p.active++
		go p.worker(ctx, cancel)
	}
}

func (p *pool) worker(ctx context.Context, cancel context.CancelCauseFunc) {
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	for {
		run := p.take(ctx, cancel)
		if run == nil {
			return
		}
		if err := p.fetch(ctx, run, *bufp); err != nil {
			cancel(err)
		}
	}
}

// take returns the next run of consecutive pieces: up to maxRun, and
// shorter as the queue empties, so that the last pieces still spread over
// every worker. nil tells the worker to leave: the queue is empty, the
// pool has more workers than it wants, or ctx ended.
func (p *pool) take(ctx context.Context, cancel context.CancelCauseFunc) []int {
	if p.swarm != nil {
		return p.takeSwarm(ctx, cancel)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active > p.target || ctx.Err() != nil || len(p.queue) == 0 {
		p.leave()
		return nil
	}
	n := min(p.maxRun, max(1, len(p.queue)/(2*p.target)), len(p.queue))
	k := 1
	for k < n && p.queue[k] == p.queue[k-1]+1 {
		k++
	}
	run := p.queue[:k:k]
	p.queue = p.queue[k:]
	return run
}

// takeSwarm is take in a swarm: the piece the swarm chooses, once it
// does.
func (p *pool) takeSwarm(ctx context.Context, cancel context.CancelCauseFunc) []int {
	p.mu.Lock()
	if p.active > p.target || ctx.Err() != nil {
		p.leave()
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	run, err := p.swarm.next(ctx)
	if run != nil {
		return run
	}
	if err != nil {
		cancel(err)
	}
	p.mu.Lock()
	p.leave()
	p.mu.Unlock()
	return nil
}

// leave counts a worker gone, with mu held.
func (p *pool) leave() {
	p.active--
	if p.active == 0 {
		close(p.finished)
	}
}
