package download

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// A replica that sends a piece failing verification is reported to vmappd
// (DownloadService.ReportReplicaDamage), which reads the piece itself and
// has the replica copied again if it is damaged: once per replica per
// download, in the background. Run waits for reports still in flight at
// its end for at most reportWait, so that a process that exits right after
// still delivers them; a report that fails is logged, never the download's
// failure.
const (
	reportWait    = 5 * time.Second
	reportTimeout = time.Minute
	// maxProblem is the most of the error a report carries.
	maxProblem = 1024
)

// reporter reports damaged replicas to vmappd.
type reporter struct {
	svc  pb.DownloadServiceClient
	t    target
	what string
	log  *slog.Logger
	wg   sync.WaitGroup
	// onBadPeer is told of every peer reported (Options.OnBadPeer).
	onBadPeer func(peer string)
}

func newReporter(svc pb.DownloadServiceClient, t target, what string, log *slog.Logger) *reporter {
	return &reporter{svc: svc, t: t, what: what, log: log}
}

// report tells vmappd, in the background, that piece i from s failed
// verification (err is DataLoss): once per replica; other sources aren't
// vmappd's to repair.
func (r *reporter) report(ctx context.Context, s *source, i int, err error) {
	if s.peer != "" {
		r.reportPeer(ctx, s, i, err)
		return
	}
	if s.replica == nil || !errs.Is(err, errs.DataLoss) || isFatal(err) || s.health.reported.Swap(true) {
		return
	}
	problem := err.Error()
	if len(problem) > maxProblem {
		problem = strings.ToValidUTF8(problem[:maxProblem], "")
	}
	req := &pb.ReportReplicaDamageRequest{
		Gallery: r.t.gallery, Application: r.t.app, Version: r.t.version, Kind: r.t.kind,
		Region: s.replica.region, Replica: s.replica.index, Piece: int64(i), Problem: problem,
	}
	log := r.log.With("artifact", r.what, "source", s.Name(), "piece", i)
	r.wg.Go(func() {
		// Not cancelled with the download: the report is worth making.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportTimeout)
		defer cancel()
		resp, err := r.svc.ReportReplicaDamage(rctx, req)
		switch {
		case errs.Is(errs.FromStatus(err), errs.Unimplemented):
			log.Debug("download: vmappd takes no reports of corrupted replicas")
		case err != nil:
			log.Warn("download: could not report a corrupted replica to vmappd", "err", errs.FromStatus(err))
		default:
			log.Info("download: reported a corrupted replica to vmappd", "verdict", resp.Verdict.String(), "detail", resp.Detail)
		}
	})
}

// wait waits for the reports in flight, at most reportWait.
func (r *reporter) wait() {
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(reportWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// reportPeer drops a peer that sent piece i failing verification for the
// rest of the download, and tells vmappd, in the background, once.
func (r *reporter) reportPeer(ctx context.Context, s *source, i int, err error) {
	if !errs.Is(err, errs.DataLoss) || isFatal(err) {
		return
	}
	s.health.dropped.Store(true)
	if s.health.reported.Swap(true) {
		return
	}
	problem := err.Error()
	if len(problem) > maxProblem {
		problem = strings.ToValidUTF8(problem[:maxProblem], "")
	}
	req := &pb.ReportPeerRequest{Gallery: r.t.gallery, Application: r.t.app, Version: r.t.version, Kind: r.t.kind,
		Peer: s.peer, Piece: int64(i), Problem: problem}
	log := r.log.With("artifact", r.what, "peer", s.peer, "piece", i)
	log.Warn("download: a peer sent a piece that failed verification; dropped for this download", "err", err)
	if r.onBadPeer != nil {
		r.onBadPeer(s.peer)
	}
	if r.svc == nil {
		return // a test's download, with no vmappd
	}
	r.wg.Go(func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportTimeout)
		defer cancel()
		if _, err := r.svc.ReportPeer(rctx, req); err != nil {
			log.Warn("download: could not report a bad peer to vmappd", "err", errs.FromStatus(err))
			return
		}
		log.Info("download: reported a bad peer to vmappd")
	})
}
