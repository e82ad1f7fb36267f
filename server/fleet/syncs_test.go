package fleet

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
)

// TestSyncsShared: callers that need a wait for the cluster's commits
// while one runs share the next one, and never one that began before
// they called (it could miss what they must see).
func TestSyncsShared(t *testing.T) {
	started := make(chan int, 10) // each wait says its number as it begins
	release := make(chan error)
	s := &syncs{}
	n := 0
	s.sync = func(context.Context) error {
		n++
		started <- n
		return <-release
	}
	ctx := context.Background()
	first := make(chan error)
	go func() { first <- s.do(ctx) }()
	if got := <-started; got != 1 {
		t.Fatalf("wait %d began, want 1", got)
	}
	// 50 callers arrive while wait 1 runs: none may take its answer.
	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() { errs <- s.do(ctx) })
	}
	waitJoined(t, s, callers)
	release <- errors.New("first")
	if err := <-first; err == nil || err.Error() != "first" {
		t.Fatalf("the first caller got %v", err)
	}
	if got := <-started; got != 2 {
		t.Fatalf("wait %d began, want 2", got)
	}
	release <- nil
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a caller who arrived during wait 1 got %v: wait 1's answer", err)
		}
	}
	s.mu.Lock()
	runs := s.runs
	s.mu.Unlock()
	if runs != 2 {
		t.Fatalf("%d waits for %d callers, want 2", runs, callers+1)
	}

	// A caller whose context ends stops waiting; the wait goes on for the
	// others.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- s.do(cctx) }()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled caller got %v", err)
	}
	release <- nil
}

// waitJoined waits until n callers have joined the next wait.
func waitJoined(t *testing.T, s *syncs, n int) {
	t.Helper()
	for {
		s.mu.Lock()
		joined := s.next != nil && s.next.callers == n
		s.mu.Unlock()
		if joined {
			return
		}
		runtime.Gosched()
	}
}
