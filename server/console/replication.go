package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// matrix is a version's replication as the page shows it: a row per
// target region, a column per replica index.
type matrix struct {
	State   string
	Columns []int32 // replica indexes: 0 .. the most any region wants - 1
	Rows    []matrixRow
}

type matrixRow struct {
	*pb.RegionalReplicationStatus
	// Cells holds each replica index's artifacts (package, configuration);
	// empty past the region's count.
	Cells [][]*pb.ReplicaStatus
}

func matrixOf(s *pb.ReplicationStatus) matrix {
	m := matrix{State: s.GetAggregatedState()}
	width := int32(0)
	for _, r := range s.GetSummary() {
		width = max(width, r.ReplicasWanted)
	}
	for i := range width {
		m.Columns = append(m.Columns, i)
	}
	for _, r := range s.GetSummary() {
		row := matrixRow{RegionalReplicationStatus: r, Cells: make([][]*pb.ReplicaStatus, width)}
		for _, rep := range r.Replicas {
			if rep.Index < width {
				row.Cells[rep.Index] = append(row.Cells[rep.Index], rep)
			}
		}
		m.Rows = append(m.Rows, row)
	}
	return m
}

// streamFunc serves an event stream for a signed-in person.
type streamFunc func(w http.ResponseWriter, r *http.Request, s *session, send func(event string, data any) error) error

// signedInStream serves server-sent events: 401 without a session (an
// EventSource can't follow a redirect to sign in), and the stream's error
// as a last "problem" event.
func (c *Console) signedInStream(h streamFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.sessionOf(r)
		if err != nil {
			http.Error(w, "sign in first: "+err.Error(), http.StatusUnauthorized)
			return
		}
		fl := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		send := func(event string, data any) error {
			b, err := json.Marshal(data)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
				return err
			}
			return fl.Flush()
		}
		if err := h(w, r, s, send); err != nil && r.Context().Err() == nil {
			p, _ := explain(err)
			send("problem", p)
		}
	})
}

// statusEvent is one update of the matrix, and of the version's facts
// (its state and package change as it replicates).
type statusEvent struct {
	State string `json:"state"`
	HTML  string `json:"html"`
	Facts string `json:"facts"`
}

// watchReplication streams the version's matrix as WatchReplication
// reports changes, then "done" once every region is Completed or Failed.
func (c *Console) watchReplication(_ http.ResponseWriter, r *http.Request, s *session, send func(string, any) error) error {
	ctx := s.ctx(r.Context())
	g, a, v := r.PathValue("gallery"), r.PathValue("application"), r.PathValue("version")
	stream, err := c.repl.WatchReplication(ctx, &pb.WatchReplicationRequest{Gallery: g, Application: a, Version: v})
	if err != nil {
		return err
	}
	return relay(stream, send, func(res *pb.WatchReplicationResponse) (string, any, error) {
		ev, err := c.statusEvent(ctx, g, a, v, res.Status)
		return "status", ev, err
	})
}

// relay sends the event that event makes of each message of a watch
// stream, then "done" when the stream ends.
func relay[M any](stream interface{ Recv() (M, error) }, send func(string, any) error, event func(M) (string, any, error)) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return send("done", struct{}{})
		}
		if err != nil {
			return errs.FromStatus(err)
		}
		name, data, err := event(m)
		if err != nil {
			return err
		}
		if err := send(name, data); err != nil {
			return nil // the browser went away
		}
	}
}

// statusEvent renders the matrix of st and the version's facts as they
// are now.
func (c *Console) statusEvent(ctx context.Context, g, a, v string, st *pb.ReplicationStatus) (statusEvent, error) {
	m := matrixOf(st)
	ev := statusEvent{State: m.State}
	res, err := c.catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: g, Application: a, Version: v})
	if err != nil {
		return ev, err
	}
	if ev.HTML, err = c.fragment("version", "matrix", m); err != nil {
		return ev, err
	}
	ev.Facts, err = c.fragment("version", "facts", res.Version)
	return ev, err
}
