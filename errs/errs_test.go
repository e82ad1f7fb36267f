package errs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
)

// classes lists every class, with the gRPC code it maps to.
var classes = []struct {
	c    errs.Class
	code codes.Code
}{
	{errs.Internal, codes.Internal},
	{errs.InvalidArgument, codes.InvalidArgument},
	{errs.NotFound, codes.NotFound},
	{errs.AlreadyExists, codes.AlreadyExists},
	{errs.FailedPrecondition, codes.FailedPrecondition},
	{errs.ResourceExhausted, codes.ResourceExhausted},
	{errs.PermissionDenied, codes.PermissionDenied},
	{errs.Unauthenticated, codes.Unauthenticated},
	{errs.Unavailable, codes.Unavailable},
	{errs.DataLoss, codes.DataLoss},
	{errs.OutOfRange, codes.OutOfRange},
	{errs.Aborted, codes.Aborted},
	{errs.Canceled, codes.Canceled},
	{errs.DeadlineExceeded, codes.DeadlineExceeded},
	{errs.Unimplemented, codes.Unimplemented},
}

func TestClassCodes(t *testing.T) {
	seen := map[codes.Code]errs.Class{}
	for _, c := range classes {
		if got := c.c.Code(); got != c.code {
			t.Errorf("%v.Code() = %v, want %v", c.c, got, c.code)
		}
		if other, dup := seen[c.code]; dup {
			t.Errorf("%v and %v both map to %v", c.c, other, c.code)
		}
		seen[c.code] = c.c
		if c.c.String() != c.code.String() {
			t.Errorf("%v.String() = %q, want %q", c.c, c.c.String(), c.code.String())
		}
	}
}

func TestClassOf(t *testing.T) {
	notFound := errs.New(errs.NotFound, "gallery", "no gallery")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dctx, dcancel := context.WithTimeout(context.Background(), -1)
	defer dcancel()
	for _, c := range []struct {
		name string
		err  error
		want errs.Class
	}{
		{"nil", nil, errs.Internal},
		{"plain error", io.EOF, errs.Internal},
		{"classified", notFound, errs.NotFound},
		{"wrapped with %w", fmt.Errorf("read: %w", notFound), errs.NotFound},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", notFound)), errs.NotFound},
		{"joined", errors.Join(io.EOF, notFound), errs.NotFound},
		{"the outermost class wins", errs.Wrap(errs.Unavailable, notFound, "store"), errs.Unavailable},
		{"outermost through %w", fmt.Errorf("x: %w", errs.Wrap(errs.DataLoss, notFound, "y")), errs.DataLoss},
		{"Wrap of a plain error", errs.Wrap(errs.PermissionDenied, io.EOF, "z"), errs.PermissionDenied},
		{"context canceled", context.Canceled, errs.Canceled},
		{"a canceled context's error", ctx.Err(), errs.Canceled},
		{"context deadline", context.DeadlineExceeded, errs.DeadlineExceeded},
		{"a past deadline's error, wrapped", fmt.Errorf("call: %w", dctx.Err()), errs.DeadlineExceeded},
		{"a classified error around a context error", errs.Wrap(errs.Unavailable, context.Canceled, "store"), errs.Unavailable},
		{"gRPC status", status.Error(codes.NotFound, "gone"), errs.NotFound},
		{"gRPC status, wrapped", fmt.Errorf("call: %w", status.Error(codes.ResourceExhausted, "full")), errs.ResourceExhausted},
		{"gRPC Unknown", status.Error(codes.Unknown, "?"), errs.Internal},
		{"gRPC code without a class", status.Error(codes.Code(99), "?"), errs.Internal},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := errs.ClassOf(c.err); got != c.want {
				t.Fatalf("ClassOf(%v) = %v, want %v", c.err, got, c.want)
			}
			if got := errs.Is(c.err, c.want); got != (c.err != nil) {
				t.Fatalf("Is(%v, %v) = %v", c.err, c.want, got)
			}
		})
	}
	for _, c := range classes {
		if got := errs.ClassOf(status.Error(c.code, "x")); got != c.c {
			t.Errorf("ClassOf(a %v status) = %v, want %v", c.code, got, c.c)
		}
	}
}

func TestFieldOf(t *testing.T) {
	inner := errs.New(errs.InvalidArgument, "publishingProfile.replicaCount", "bad")
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{io.EOF, ""},
		{inner, "publishingProfile.replicaCount"},
		{fmt.Errorf("create: %w", inner), "publishingProfile.replicaCount"},
		{errs.Wrap(errs.InvalidArgument, inner, "outer"), ""}, // the outermost error's field
	} {
		if got := errs.FieldOf(c.err); got != c.want {
			t.Errorf("FieldOf(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// wire sends a status error as gRPC does: its google.rpc.Status, encoded
// and decoded.
func wire(t *testing.T, err error) error {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%v is not a status error", err)
	}
	b, merr := proto.Marshal(st.Proto())
	if merr != nil {
		t.Fatal(merr)
	}
	var p spb.Status
	if err := proto.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return status.ErrorProto(&p)
}

// TestStatusRoundTrip: every class and its field survive ToStatus, the
// wire and FromStatus; the message does too, but for Internal errors,
// whose message stays on the server.
func TestStatusRoundTrip(t *testing.T) {
	for _, c := range classes {
		for _, field := range []string{"", "publishingProfile.targetRegions[1].name"} {
			err := fmt.Errorf("wrapped: %w", errs.New(c.c, field, "the %s detail at /var/lib/vmapp", c.c))
			st := errs.ToStatus(err)
			if got := status.Code(st); got != c.code {
				t.Errorf("%v: code %v, want %v", c.c, got, c.code)
			}
			back := errs.FromStatus(wire(t, st))
			if errs.ClassOf(back) != c.c || errs.FieldOf(back) != field {
				t.Errorf("%v %q: back as %v %q", c.c, field, errs.ClassOf(back), errs.FieldOf(back))
			}
			hidden := c.c == errs.Internal
			if leaked := strings.Contains(back.Error(), "/var/lib/vmapp"); leaked == hidden {
				t.Errorf("%v: message after the round trip %q (hidden: %v)", c.c, back.Error(), hidden)
			}
			if hidden && back.Error() != "internal error" {
				t.Errorf("Internal: message %q, want %q", back.Error(), "internal error")
			}
		}
	}
}

func TestToStatus(t *testing.T) {
	if errs.ToStatus(nil) != nil {
		t.Error("ToStatus(nil) is not nil")
	}
	// An unclassified error is Internal, its message hidden.
	st := errs.ToStatus(errors.New("open /etc/secret: permission denied"))
	if status.Code(st) != codes.Internal || status.Convert(st).Message() != "internal error" {
		t.Errorf("ToStatus of a plain error = %v", st)
	}
	// A context error keeps its class.
	if got := status.Code(errs.ToStatus(fmt.Errorf("read: %w", context.DeadlineExceeded))); got != codes.DeadlineExceeded {
		t.Errorf("ToStatus of a deadline: %v", got)
	}
	// A status error from another service passes through unchanged.
	in := status.Error(codes.Unavailable, "peer down")
	if out := errs.ToStatus(in); out != in {
		t.Errorf("ToStatus of a status error = %v, want it unchanged", out)
	}
	// A classified error wrapping a status error is converted by its class.
	wrapped := errs.Wrap(errs.FailedPrecondition, in, "forwarding")
	if got := status.Code(errs.ToStatus(wrapped)); got != codes.FailedPrecondition {
		t.Errorf("ToStatus of a classified error around a status: %v", got)
	}
}

func TestFromStatus(t *testing.T) {
	if errs.FromStatus(nil) != nil {
		t.Error("FromStatus(nil) is not nil")
	}
	plain := io.EOF
	if errs.FromStatus(plain) != plain {
		t.Error("FromStatus of a non-status error changed it")
	}
	back := errs.FromStatus(status.Error(codes.PermissionDenied, "token tok_x may not publish"))
	var e *errs.Error
	if !errors.As(back, &e) || e.Class != errs.PermissionDenied || e.Msg != "token tok_x may not publish" || e.Field != "" {
		t.Errorf("FromStatus = %#v", back)
	}
}
