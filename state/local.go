package state

import (
	"context"
	"sync"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
)

var errClosed = errs.New(errs.Unavailable, "", "vmappd's state is closed: it is shutting down")

// maxBatch bounds the commands one transaction applies.
const maxBatch = 512

// localLog applies commands to the file at once, in the order they arrive:
// the log of a single vmappd. Commands proposed while a transaction commits
// wait and go together into the next one (group commit), so many writers
// share one fsync without anyone waiting for a timer.
type localLog struct {
	db      *DB
	reqs    chan *proposal
	quit    chan struct{} // closed by stop
	stopped chan struct{} // closed once run has returned
	once    sync.Once
}

type proposal struct {
	cmd  *statepb.Command
	done chan error
}

func newLocalLog(db *DB) *localLog {
	l := &localLog{db: db, reqs: make(chan *proposal, maxBatch), quit: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(l.stopped)
		l.run()
	}()
	return l
}

// Propose applies cmd. Once queued it is applied whatever ctx does, and
// Propose waits for it: a local commit takes milliseconds.
func (l *localLog) Propose(ctx context.Context, cmd *statepb.Command) error {
	p := &proposal{cmd: cmd, done: make(chan error, 1)}
	select {
	case l.reqs <- p:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.quit:
		return errClosed
	}
	select {
	case err := <-p.done:
		return err
	case <-l.stopped:
		select {
		case err := <-p.done:
			return err
		default: // queued after the log stopped: never applied
			return errClosed
		}
	}
}

// Sync has nothing to wait for: every command is applied when Propose
// returns.
func (l *localLog) Sync(context.Context) error { return nil }

func (l *localLog) run() {
	for {
		var batch []*proposal
		select {
		case p := <-l.reqs:
			batch = append(batch, p)
		case <-l.quit:
			l.drain()
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case p := <-l.reqs:
				batch = append(batch, p)
			default:
				break more
			}
		}
		l.apply(batch)
	}
}

func (l *localLog) apply(batch []*proposal) {
	cmds := make([]*statepb.Command, len(batch))
	for i, p := range batch {
		cmds[i] = p.cmd
	}
	for i, err := range l.db.applyBatch(cmds, nil, 0) {
		batch[i].done <- err
	}
}

// drain answers what was queued when the log stopped.
func (l *localLog) drain() {
	for {
		select {
		case p := <-l.reqs:
			p.done <- errClosed
		default:
			return
		}
	}
}

func (l *localLog) stop() {
	l.once.Do(func() { close(l.quit) })
	<-l.stopped
}
