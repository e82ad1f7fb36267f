package fleet

import (
	"strings"
	"testing"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func wantRefused(t *testing.T, what string, err error, class errs.Class, field string) {
	t.Helper()
	if !errs.Is(err, class) || errs.FieldOf(err) != field {
		t.Errorf("%s: %v (field %q), want %v naming %q", what, err, errs.FieldOf(err), class, field)
	}
}

// TestCheckResult: an agent's report of a run, each wrong value refused
// naming its field.
func TestCheckResult(t *testing.T) {
	good := func() *pb.ActionRun {
		return &pb.ActionRun{Id: "r1", State: pb.ActionSucceeded, OutputTail: strings.Repeat("o", maxOutputTail), Logs: []*pb.ActionLog{{Name: "L", Content: make([]byte, MaxActionLog)}}}
	}
	if err := checkResult(good()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		edit  func(r *pb.ActionRun)
		field string
	}{
		{"no id", func(r *pb.ActionRun) { r.Id = "" }, "run.id"},
		{"still Pending", func(r *pb.ActionRun) { r.State = pb.ActionPending }, "run.state"},
		{"an unknown state", func(r *pb.ActionRun) { r.State = "Done" }, "run.state"},
		{"an output tail too long", func(r *pb.ActionRun) { r.OutputTail += "o" }, "run.outputTail"},
		{"a reason too long", func(r *pb.ActionRun) { r.Reason = strings.Repeat("r", maxOutputTail+1) }, "run.outputTail"},
		{"a log too big", func(r *pb.ActionRun) { r.Logs[0].Content = append(r.Logs[0].Content, 'x') }, "run.logs"},
		{"too many logs", func(r *pb.ActionRun) { r.Logs = make([]*pb.ActionLog, 51) }, "run.logs"},
	} {
		r := good()
		c.edit(r)
		wantRefused(t, c.name, checkResult(r), errs.InvalidArgument, c.field)
	}
	wantRefused(t, "no run", checkResult(nil), errs.InvalidArgument, "run.id")
	wantRefused(t, "no target", checkTarget(Target{}), errs.InvalidArgument, "target")
	wantRefused(t, "two targets", checkTarget(Target{Machine: "m", ScaleSet: "s"}), errs.InvalidArgument, "target")
}

// TestActionParameters: what a run's script gets: the values given, the
// defaults of Strings not given, every LogOutputBlob; and the refusals.
func TestActionParameters(t *testing.T) {
	def := &pb.GalleryApplicationCustomAction{Name: "a", Parameters: []*pb.GalleryApplicationCustomActionParameter{
		{Name: "S", Type: pb.ParamString, DefaultValue: "d"}, {Name: "N", Type: pb.ParamString},
		{Name: "C", Type: pb.ParamConfigurationDataBlob}, {Name: "L", Type: pb.ParamLogOutputBlob},
	}}
	got, err := actionParameters(def, []*pb.ActionParameterValue{{Name: "C", Value: "https://h/c?sig=x"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, p.Name+"="+p.Type+":"+p.Value)
	}
	if s := strings.Join(names, " "); s != "S=String:d C=ConfigurationDataBlob:https://h/c?sig=x L=LogOutputBlob:" {
		t.Errorf("parameters: %s", s)
	}
	for _, c := range []struct {
		name  string
		given []*pb.ActionParameterValue
	}{
		{"a String too long", []*pb.ActionParameterValue{{Name: "S", Value: strings.Repeat("v", MaxParameterValue+1)}}},
		{"a String with NUL", []*pb.ActionParameterValue{{Name: "S", Value: "a\x00"}}},
		{"a String not UTF-8", []*pb.ActionParameterValue{{Name: "S", Value: "\xff"}}},
		{"a blob with both", []*pb.ActionParameterValue{{Name: "C", Value: "https://h/c", Data: []byte("x")}}},
		{"a blob's URL not http(s)", []*pb.ActionParameterValue{{Name: "C", Value: "file:///etc/passwd"}}},
		{"a blob of nothing", []*pb.ActionParameterValue{{Name: "C"}}},
		{"a name in another case", []*pb.ActionParameterValue{{Name: "s", Value: "x"}}},
	} {
		_, err := actionParameters(def, c.given)
		wantRefused(t, c.name, err, errs.InvalidArgument, "parameters")
	}
}
