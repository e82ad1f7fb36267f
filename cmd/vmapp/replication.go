package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// shortBytes is formatBytes without a trailing ".0": 24 MiB, 1.5 GiB, 512 B.
func shortBytes(n int64) string {
	return strings.Replace(formatBytes(n), ".0 ", " ", 1)
}

// regionProgress is the PROGRESS cell: nothing while the region has no
// bytes to copy yet (Unknown: waiting for the package).
func regionProgress(r *pb.RegionalReplicationStatus) string {
	if r.State == pb.ReplicationUnknown && r.BytesTotal == 0 && r.Progress == 0 {
		return ""
	}
	return fmt.Sprintf("%d%%", r.Progress)
}

// regionReplicas is the REPLICAS cell: completed/wanted package replicas.
func regionReplicas(r *pb.RegionalReplicationStatus) string {
	if r.ReplicasWanted == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", r.ReplicasCompleted, r.ReplicasWanted)
}

// regionBytes is the BYTES cell: copied/total bytes of the region's replicas.
func regionBytes(r *pb.RegionalReplicationStatus) string {
	if r.BytesTotal == 0 {
		return ""
	}
	return shortBytes(r.BytesDone) + "/" + shortBytes(r.BytesTotal)
}

// regionETA is the ETA cell: vmappd's estimate for a region still
// replicating.
func regionETA(r *pb.RegionalReplicationStatus) string {
	if r.Eta == nil || r.State != pb.ReplicationReplicating {
		return ""
	}
	return formatETA(r.Eta.AsDuration())
}

// summarizeReplication is the aggregated line: "InProgress: 1/3 regions
// completed, 1 failed, 40 MiB/72 MiB".
func summarizeReplication(st *pb.ReplicationStatus) string {
	state := st.GetAggregatedState()
	if state == "" {
		state = pb.ReplicationUnknown
	}
	if len(st.GetSummary()) == 0 {
		return state
	}
	completed, failed := 0, 0
	var done, total int64
	for _, r := range st.Summary {
		switch r.State {
		case pb.ReplicationCompleted:
			completed++
		case pb.ReplicationFailed:
			failed++
		}
		done += r.BytesDone
		total += r.BytesTotal
	}
	s := fmt.Sprintf("%s: %d/%d regions completed", state, completed, len(st.Summary))
	if failed > 0 {
		s += fmt.Sprintf(", %d failed", failed)
	}
	if total > 0 {
		s += ", " + shortBytes(done) + "/" + shortBytes(total)
	}
	return s
}

// writeReplicationTable prints the per-region status as a table.
func writeReplicationTable(w io.Writer, st *pb.ReplicationStatus) error {
	t := newTable(w, "REGION", "STATE", "PROGRESS", "REPLICAS", "BYTES", "ETA", "DETAILS")
	for _, r := range st.GetSummary() {
		t.row(r.Region, r.State, regionProgress(r), regionReplicas(r), regionBytes(r), regionETA(r), r.Details)
	}
	return t.flush()
}

// jsonLine encodes m as one line of JSON (camelCase names), for streams of
// updates.
func jsonLine(m proto.Message) ([]byte, error) {
	raw, err := marshal(m)
	return append(raw, '\n'), err
}

// replicationResult turns the last status of a watch into the command's
// outcome: nil when Completed, FailedPrecondition naming the failed regions
// otherwise.
func replicationResult(st *pb.ReplicationStatus) error {
	var failed []*pb.RegionalReplicationStatus
	for _, r := range st.GetSummary() {
		if r.State == pb.ReplicationFailed {
			failed = append(failed, r)
		}
	}
	switch {
	case len(failed) == 1:
		d := failed[0].Details
		if d == "" {
			d = "no details"
		}
		return errs.New(errs.FailedPrecondition, "", "replication failed in %s: %s", failed[0].Region, d)
	case len(failed) > 1:
		var regions, details []string
		for _, r := range failed {
			regions = append(regions, r.Region)
			details = append(details, r.Region+": "+r.Details)
		}
		return errs.New(errs.FailedPrecondition, "", "replication failed in %s: %s", strings.Join(regions, ", "), strings.Join(details, "; "))
	case st.GetAggregatedState() == pb.ReplicationCompleted:
		return nil
	case st.GetAggregatedState() == pb.ReplicationFailed:
		return errs.New(errs.FailedPrecondition, "", "replication failed: %s", summarizeReplication(st))
	}
	return errs.New(errs.FailedPrecondition, "", "replication ended before completing: %s", summarizeReplication(st))
}

// watchView shows the updates of a watch.
type watchView interface {
	update(*pb.WatchReplicationResponse) error
	finish(last *pb.ReplicationStatus) error
}

// quietView shows nothing (create --wait -o json: stdout holds only the
// version).
type quietView struct{}

func (quietView) update(*pb.WatchReplicationResponse) error { return nil }
func (quietView) finish(*pb.ReplicationStatus) error        { return nil }

// jsonView prints each update as one JSON object per line (-o json), or
// as -o and --query say otherwise (YAML: one document each).
type jsonView struct {
	w io.Writer
	c *cli // nil: JSON lines
}

func (v jsonView) update(r *pb.WatchReplicationResponse) error {
	if v.c != nil && (v.c.output != "json" || v.c.query != nil) {
		c := *v.c
		c.stdout = v.w
		if c.output == "yaml" {
			fmt.Fprintln(c.stdout, "---")
		}
		return c.printJSON(r)
	}
	b, err := jsonLine(r)
	if err == nil {
		_, err = v.w.Write(b)
	}
	return err
}

func (jsonView) finish(*pb.ReplicationStatus) error { return nil }

// linesView prints one line per region per update (logs, pipes), and the
// aggregated line at the end.
type linesView struct {
	w      io.Writer
	name   string // gallery/app/version
	region int    // width of the region column
}

func (v *linesView) update(r *pb.WatchReplicationResponse) error {
	for _, s := range r.GetStatus().GetSummary() {
		v.region = max(v.region, len(s.Region))
	}
	var b strings.Builder
	for _, s := range r.GetStatus().GetSummary() {
		b.WriteString(regionLine(s, v.region))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(v.w, b.String())
	return err
}

func (v *linesView) finish(last *pb.ReplicationStatus) error {
	if last == nil {
		return nil
	}
	_, err := fmt.Fprintf(v.w, "Replication of %s: %s\n", v.name, summarizeReplication(last))
	return err
}

// regionLine is a region's line in fixed-width columns:
// "eastus  Replicating   42%  1/3  10 MiB/24 MiB  ETA 0:12".
func regionLine(r *pb.RegionalReplicationStatus, regionWidth int) string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	eta := regionETA(r)
	if eta != "" {
		eta = "ETA " + eta
	}
	line := fmt.Sprintf("%-*s  %-11s  %4s  %5s  %-21s  %-9s  %s", regionWidth, r.Region, dash(r.State), dash(regionProgress(r)),
		dash(regionReplicas(r)), dash(regionBytes(r)), dash(eta), r.Details)
	return strings.TrimRight(line, " ")
}

// blockView redraws a block on a terminal: the aggregated line, then one
// line per region with a progress bar, replicas, rate and ETA.
type blockView struct {
	w     io.Writer
	name  string
	width int // of the terminal; lines are cut to it so redraws stay in place
	now   func() time.Time
	lines int // drawn last time
	seen  map[string]sample
}

// sample is when a region's copied bytes were first seen, for its rate.
type sample struct {
	at   time.Time
	done int64
}

func newBlockView(w io.Writer, name string, width int) *blockView {
	return &blockView{w: w, name: name, width: width, now: time.Now, seen: map[string]sample{}}
}

func (v *blockView) update(r *pb.WatchReplicationResponse) error {
	st := r.GetStatus()
	now := v.now()
	lines := []string{fmt.Sprintf("Replication of %s: %s", v.name, summarizeReplication(st))}
	width := 0
	for _, s := range st.GetSummary() {
		width = max(width, len(s.Region))
	}
	for _, s := range st.GetSummary() {
		first, ok := v.seen[s.Region]
		if !ok || s.BytesDone < first.done {
			first = sample{now, s.BytesDone}
			v.seen[s.Region] = first
		}
		lines = append(lines, v.regionBlockLine(s, width, first, now))
	}
	var b strings.Builder
	if v.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.lines) // back to the block's first line
	}
	b.WriteString("\x1b[J") // clear it and what follows
	for _, l := range lines {
		b.WriteString(cut(l, v.width-1))
		b.WriteByte('\n')
	}
	v.lines = len(lines)
	_, err := io.WriteString(v.w, b.String())
	return err
}

// regionBlockLine is a region's line in the block: the state is left out
// while Replicating (the rate and ETA show instead), e.g.
// "westus  [=====       ]  42%  0/2  6.4 MiB/16 MiB  1.2 MiB/s  ETA 0:08" or
// "eastus  [============] 100%  3/3  24 MiB/24 MiB  Completed".
func (v *blockView) regionBlockLine(r *pb.RegionalReplicationStatus, regionWidth int, first sample, now time.Time) string {
	const barWidth = 12
	filled := min(barWidth, max(0, int(r.Progress)*barWidth/100))
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled)
	progress := regionProgress(r)
	if progress == "" {
		progress = "-"
	}
	line := fmt.Sprintf("%-*s  [%s] %4s", regionWidth, r.Region, bar, progress)
	if s := regionReplicas(r); s != "" {
		line += "  " + s
	}
	if s := regionBytes(r); s != "" {
		line += "  " + s
	}
	if r.State == pb.ReplicationReplicating {
		rate := 0.0
		if el := now.Sub(first.at).Seconds(); el >= 1 {
			rate = float64(r.BytesDone-first.done) / el
		}
		if rate > 0 {
			line += "  " + shortBytes(int64(rate)) + "/s"
		}
		switch {
		case r.Eta != nil:
			line += "  ETA " + formatETA(r.Eta.AsDuration())
		case rate > 0 && r.BytesTotal > r.BytesDone:
			line += "  ETA " + formatETA(time.Duration(float64(r.BytesTotal-r.BytesDone)/rate*float64(time.Second)))
		}
	} else {
		line += "  " + r.State
	}
	if r.Details != "" && r.State != pb.ReplicationCompleted {
		line += ": " + r.Details
	}
	return line
}

func (v *blockView) finish(*pb.ReplicationStatus) error { return nil }

// cut shortens s to at most n runes (n <= 0: no limit).
func cut(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// terminalWidth returns the width of w when it is a terminal.
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width <= 0 {
		width = 80
	}
	return width, true
}

// watchView picks how a watch shows its updates on w: JSON lines with -o
// json (unless quietJSON), a redrawn block on a terminal, lines otherwise.
func (c *cli) watchView(w io.Writer, name string, quietJSON bool) watchView {
	if c.structured() {
		if quietJSON {
			return quietView{}
		}
		return jsonView{w, c}
	}
	if width, ok := terminalWidth(w); ok {
		return newBlockView(w, name, width)
	}
	return &linesView{w: w, name: name}
}

// replicationClient returns the ReplicationService of the connection.
func replicationClient(cl *client.Client) pb.ReplicationServiceClient {
	return pb.NewReplicationServiceClient(cl.Conn())
}

// replicationErr maps an error of ReplicationService to its class, and
// explains Unimplemented: that vmappd does not replicate.
func (c *cli) replicationErr(err error) error {
	err = errs.FromStatus(err)
	if errs.Is(err, errs.Unimplemented) {
		return errs.Wrap(errs.Unimplemented, err, "vmappd at %s serves no ReplicationService (it runs without replication)", c.server)
	}
	return err
}

// watchReplication shows a version's replication status until vmappd ends
// the stream (every target region Completed or Failed) and returns the last
// status.
func (c *cli) watchReplication(cl *client.Client, gallery, app, version string, view watchView) (*pb.ReplicationStatus, error) {
	stream, err := replicationClient(cl).WatchReplication(c.ctx, &pb.WatchReplicationRequest{Gallery: gallery, Application: app, Version: version})
	if err != nil {
		return nil, c.replicationErr(err)
	}
	var last *pb.ReplicationStatus
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			_ = view.finish(nil)
			return last, c.replicationErr(err)
		}
		last = r.GetStatus()
		if err := view.update(r); err != nil {
			return last, err
		}
	}
	if err := view.finish(last); err != nil {
		return last, err
	}
	if last == nil {
		return nil, errs.New(errs.Unavailable, "", "the replication stream ended without a status")
	}
	return last, nil
}

func (c *cli) watchCmd(ref *versionRef) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch --gallery G --app A VERSION",
		Short: "Follow the replication of a version to its target regions",
		Long: `Follow the replication of a version to its target regions until every region
is Completed or Failed (vmappd then ends the stream).

On a terminal a block is redrawn: the aggregated state, then one line per
region with a progress bar, package replicas completed/wanted, bytes, rate
and ETA. Otherwise one line per region is printed on every update
(REGION STATE PROGRESS REPLICAS BYTES ETA DETAILS), then the aggregated
state. With -o json each update is printed as one JSON object per line
({"status": {"aggregatedState": ..., "summary": [...]}}).

Exit status: 0 when the replication is Completed, 1 when a region failed
(error: FailedPrecondition: replication failed in REGIONS: DETAILS) or the
watch could not be made, 2 on a usage error.`,
		Example: `  vmapp version watch --gallery g1 --app myapp 1.0.0
  vmapp version watch --gallery g1 --app myapp 1.0.0 -o json | jq -c .status.aggregatedState`,
		Args: args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			name := ref.gallery + "/" + ref.app + "/" + args[0]
			last, err := c.watchReplication(cl, ref.gallery, ref.app, args[0], c.watchView(c.stdout, name, false))
			if err != nil {
				return err
			}
			return replicationResult(last)
		}),
	}
	ref.add(cmd)
	return cmd
}

func (c *cli) repairCmd(ref *versionRef) *cobra.Command {
	var deep bool
	cmd := &cobra.Command{
		Use:   "repair --gallery G --app A VERSION [--deep]",
		Short: "Check the replicas of a version, and copy again those missing or corrupted",
		Long: `Check every completed replica of a version in its target regions (its size
and the store's checksum; with --deep, every piece's sha256 too, which reads
each replica back) and have vmappd copy again those missing or corrupted. A
replica its store keeps failing to serve while it answers other requests
(data or metadata rotted on disk) counts as corrupted. A replica whose
store is down can't be checked: it is left alone, and the others are
checked all the same.

Prints the problems found and the replicas that could not be checked
(REGION REPLICA ARTIFACT PROBLEM, the latter as "not checked: WHY"), how
many replicas were checked sound, and the replication status; follow the
copies with 'vmapp version watch'. With -o json the response is printed
({"problems": [...], "unchecked": [...], "replicasChecked": N,
"status": {...}}).

Exit status: 0 when every completed replica was checked (whether or not
problems were found), 1 when some could not be (error: Unavailable: N
replicas could not be checked ...) or the check could not run, 2 on a
usage error.`,
		Example: `  vmapp version repair --gallery g1 --app myapp 1.0.0 --deep`,
		Args:    args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := replicationClient(cl).RepairVersion(c.ctx, &pb.RepairVersionRequest{
				Gallery: ref.gallery, Application: ref.app, Version: args[0], Deep: deep,
			})
			if err != nil {
				return c.replicationErr(err)
			}
			if c.structured() {
				err = c.printJSON(r)
			} else {
				err = writeRepair(c.stdout, ref.gallery+"/"+ref.app+"/"+args[0], r)
			}
			if err != nil {
				return err
			}
			return repairResult(r)
		}),
	}
	ref.add(cmd)
	cmd.Flags().BoolVar(&deep, "deep", false, "also read every replica back and check each piece's sha256")
	return cmd
}

// writeRepair prints the outcome of RepairVersion.
func writeRepair(w io.Writer, name string, r *pb.RepairVersionResponse) error {
	sound := plural(int(r.ReplicasChecked), "replica", "replicas")
	if len(r.Problems)+len(r.Unchecked) == 0 {
		fmt.Fprintf(w, "No problems found: %s checked sound.\n", sound)
	} else {
		t := newTable(w, "REGION", "REPLICA", "ARTIFACT", "PROBLEM")
		for _, p := range r.Problems {
			t.row(p.Region, fmt.Sprint(p.Replica), p.Artifact, p.Problem)
		}
		for _, p := range r.Unchecked {
			t.row(p.Region, fmt.Sprint(p.Replica), p.Artifact, "not checked: "+p.Problem)
		}
		if err := t.flush(); err != nil {
			return err
		}
		var parts []string
		if n := len(r.Problems); n > 0 {
			parts = append(parts, plural(n, "problem", "problems")+" found, being copied again")
		}
		if n := len(r.Unchecked); n > 0 {
			parts = append(parts, plural(n, "replica", "replicas")+" could not be checked")
		}
		fmt.Fprintf(w, "%s; %s checked sound.\n", strings.Join(parts, "; "), sound)
	}
	if r.Status != nil {
		_, err := fmt.Fprintf(w, "Replication of %s: %s\n", name, summarizeReplication(r.Status))
		return err
	}
	return nil
}

// repairResult is the repair command's outcome: Unavailable when some
// replicas could not be checked.
func repairResult(r *pb.RepairVersionResponse) error {
	if len(r.Unchecked) == 0 {
		return nil
	}
	var which []string
	for _, p := range r.Unchecked {
		which = append(which, fmt.Sprintf("%s/%d (%s)", p.Region, p.Replica, p.Artifact))
	}
	return errs.New(errs.Unavailable, "", "%s could not be checked (%s): their store did not answer; the others were checked; run the repair again once it is back",
		plural(len(r.Unchecked), "replica", "replicas"), strings.Join(which, ", "))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// waitFlag adds --wait to create and upload.
func waitFlag(cmd *cobra.Command, v *bool) {
	cmd.Flags().BoolVar(v, "wait", false, "after storing the package, follow its replication (on stderr) until every target region is Completed or Failed; exit 1 if one failed")
}

// waitReplicated follows the replication of a version whose package is
// stored, showing the updates on stderr (nothing with -o json), and returns
// the last status.
func (c *cli) waitReplicated(cl *client.Client, gallery, app, version string) (*pb.ReplicationStatus, error) {
	name := gallery + "/" + app + "/" + version
	last, err := c.watchReplication(cl, gallery, app, version, c.watchView(c.stderr, name, true))
	if err != nil {
		fmt.Fprintf(c.stderr, "The package of '%s' is stored; follow its replication with 'vmapp version watch --gallery %s --app %s %s'.\n",
			name, gallery, app, version)
	}
	return last, err
}
