package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vmapp/vmapp/errs"
)

// stallTimeout ends a read that received nothing for so long.
const stallTimeout = 30 * time.Second

var errStalled = fmt.Errorf("no data for too long")

// fetchRun fetches a run of consecutive pieces: with one read of the first
// source (fewer requests: less work for the store and no wait for response
// headers between pieces), and what that didn't verify piece by piece.
func (d *downloader) fetchRun(ctx context.Context, run []int, buf []byte) error {
	if s := d.runSource(ctx, run); s != nil {
		n, err := d.try(ctx, s, run, buf)
		if isFatal(err) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			d.warn(s.Name(), run[n:], err)
			d.rep.report(ctx, s, run[n], err)
		}
		run = run[n:]
	}
	for _, i := range run {
		if err := d.fetchPiece(ctx, i, buf); err != nil {
			return err
		}
	}
	return nil
}

// runSource returns the source to ask for run in one read: the first to
// try, unless run is a single piece, the first is vmappd's ReadRange (the
// last resort, which is asked a piece at a time) or a peer that lacks a
// piece of run. nil: piece by piece.
func (d *downloader) runSource(ctx context.Context, run []int) *source {
	if len(run) < 2 {
		return nil
	}
	v, err := d.plan.current(ctx)
	if err != nil {
		return nil // fetchPiece says why
	}
	if srcs := v.order(run[0]); len(srcs) > 0 && srcs[0].tier != tierVmappd && srcs[0].hasAll(run) {
		return srcs[0]
	}
	return nil
}

// fetchPiece fetches piece i from the first source that has it right,
// going through the sources pieceRounds times; a piece a swarm chose for
// its peers, from them once (fetchFromPeers).
func (d *downloader) fetchPiece(ctx context.Context, i int, buf []byte) error {
	if d.swarm.peersOnly(i) {
		return d.fetchFromPeers(ctx, i, buf)
	}
	var failures []string
	corrupt := true
	for round := range pieceRounds {
		if round > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(round) * time.Second):
			}
		}
		failures, corrupt = failures[:0], true
		fail := func(src string, err error) error {
			if isFatal(err) || ctx.Err() != nil {
				return err
			}
			failures = append(failures, src+": "+err.Error())
			corrupt = corrupt && errs.Is(err, errs.DataLoss)
			d.warn(src, []int{i}, err)
			return nil
		}
		v, err := d.plan.current(ctx)
		if err != nil {
			if err := fail("plan", err); err != nil {
				return err
			}
			continue
		}
		if err := d.trySources(ctx, v.order(i), i, buf, fail); err != errAllFailed {
			return err
		}
	}
	c := errs.Unavailable
	if corrupt {
		c = errs.DataLoss
	}
	off, n := d.art.span(i)
	return errs.New(c, "", "%s piece %d (bytes %d-%d): every source failed %d times; last: %s", d.art.what, i, off, off+n-1, pieceRounds, strings.Join(failures, "; "))
}

// fetchFromPeers fetches piece i, which the swarm chose for its peers,
// from the peers of the plan in force that hold it, once each. When none
// has it right, the piece goes back to the swarm: a later plan's peers,
// or past the swarm's patience the stores, send it.
func (d *downloader) fetchFromPeers(ctx context.Context, i int, buf []byte) error {
	v, err := d.plan.current(ctx)
	if err != nil {
		if isFatal(err) || ctx.Err() != nil {
			return err
		}
		d.swarm.giveBack(i, d.plan.cur.Load().gen)
		return nil
	}
	srcs := v.order(i) // its peers first
	n := 0
	for n < len(srcs) && srcs[n].tier == tierPeer {
		n++
	}
	err = d.trySources(ctx, srcs[:n], i, buf, func(src string, err error) error {
		if isFatal(err) || ctx.Err() != nil {
			return err
		}
		d.warn(src, []int{i}, err)
		return nil
	})
	switch err {
	case nil:
		d.swarm.done(i)
	case errAllFailed:
		d.swarm.giveBack(i, v.gen)
		return nil
	}
	return err
}

// errAllFailed: every source of the view failed for the piece.
var errAllFailed = errors.New("every source failed")

// trySources tries piece i from srcs in order, until one has it right;
// fail records a failure (a non-nil error of it ends the download).
func (d *downloader) trySources(ctx context.Context, srcs []*source, i int, buf []byte, fail func(string, error) error) error {
	for _, s := range srcs {
		_, err := d.try(ctx, s, []int{i}, buf)
		if err == nil {
			return nil
		}
		d.rep.report(ctx, s, i, err)
		if err := fail(s.Name(), err); err != nil {
			return err
		}
	}
	return errAllFailed
}

// try reads the consecutive pieces run from the source named as s,
// records the outcome in its health and reports how many pieces it
// verified. When the source's access expired it asks for a new plan, and
// tries the source of the same name in it for the pieces left, twice at
// most.
func (d *downloader) try(ctx context.Context, s *source, run []int, buf []byte) (int, error) {
	name, done := s.Name(), 0
	for renewed := 0; ; renewed++ {
		v, err := d.plan.current(ctx)
		if err != nil {
			return done, err
		}
		if s = v.find(name); s == nil {
			return done, errs.New(errs.Unavailable, "", "%s is no longer in the download plan", name)
		}
		n, err := d.read(ctx, s, run[done:], buf)
		done += n
		if errors.Is(err, ErrExpired) && renewed < 2 {
			if err = d.plan.renew(ctx, v.gen); err == nil {
				continue
			}
		}
		s.result(err)
		return done, err
	}
}

// read reads the consecutive pieces run from s, verifying and writing each
// as it arrives, and reports how many it verified.
func (d *downloader) read(ctx context.Context, s *source, run []int, buf []byte) (int, error) {
	off, _ := d.art.span(run[0])
	end, last := d.art.span(run[len(run)-1])
	end += last
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wait := s.stallTimeout()
	stall := time.AfterFunc(wait, func() { cancel(errStalled) })
	defer stall.Stop()
	body, err := s.ReadRange(ctx, off, end-off)
	if err != nil {
		if context.Cause(ctx) == errStalled && !isFatal(err) {
			err = errs.New(errs.Unavailable, "", "%s: no data for %v", s, wait)
		}
		return 0, err
	}
	body = d.limitBody(ctx, body)
	defer body.Close()
	for done, i := range run {
		w := d.newPieceWriter(i, buf)
		for w.got < w.n {
			k, err := body.Read(w.space())
			if k > 0 {
				stall.Reset(wait)
				if err := w.add(k); err != nil {
					return done, err
				}
			}
			if err == io.EOF && w.got == w.n {
				break
			}
			if err != nil {
				got := w.abort()
				return done, readErr(ctx, s, i, got, w.n, err)
			}
		}
		if err := w.verify(s.String()); err != nil {
			return done, err
		}
		if d.o.OnPiece != nil {
			d.o.OnPiece()
		}
		s.health.bytes.Add(w.n)
	}
	return len(run), nil
}

// readErr is the error of a read of piece i from s that failed after got
// of its n bytes.
func readErr(ctx context.Context, s Source, i int, got, n int64, err error) error {
	switch {
	case context.Cause(ctx) == errStalled:
		err = fmt.Errorf("no data for %v", s.(*source).stallTimeout())
	case isClassified(err) || isFatal(err) || errors.Is(err, ErrExpired):
		return err // the source's own account
	case err == io.EOF:
		err = io.ErrUnexpectedEOF
	}
	return errs.New(errs.Unavailable, "", "%s: piece %d: %d of %d bytes: %v", s, i, got, n, err)
}

// warn logs a failed attempt at pieces from src; they are tried again.
func (d *downloader) warn(src string, pieces []int, err error) {
	d.o.Logger.Warn("download: a piece failed; trying again", "artifact", d.art.what, "source", src,
		"pieces", fmt.Sprint(pieces), "class", errs.ClassOf(err).String(), "err", err)
}
