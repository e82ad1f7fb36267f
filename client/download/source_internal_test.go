package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// A presigned URL's answers, from an HTTP server that answers as a store
// would or as a broken one does: what is served, and what fails in which
// class, never showing the URL's query.
func TestURLSource(t *testing.T) {
	const size = 1000
	body := strings.Repeat("x", size)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			http.ServeContent(w, r, "", time.Time{}, strings.NewReader(body)) // ranges as a store serves them
		case "/whole":
			w.Write([]byte(body))
		case "/wrong-range":
			w.Header().Set("Content-Range", "bytes 0-9/1000")
			w.WriteHeader(http.StatusPartialContent)
		case "/wrong-size":
			w.Header().Set("Content-Range", "bytes 100-199/999")
			w.WriteHeader(http.StatusPartialContent)
		case "/expired":
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>`)
		case "/busy":
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<Error><Code>SlowDown</Code></Error>`)
		}
	}))
	defer srv.Close()
	const query = "?X-Amz-Signature=secret"
	read := func(path string, off, n int64) (string, error) {
		s := newURLSource("eastus/0", srv.URL+path+query, size, srv.Client())
		r, err := s.ReadRange(context.Background(), off, n)
		if err != nil {
			return "", err
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		return string(b), err
	}
	for _, c := range []struct {
		path    string
		off, n  int64
		class   errs.Class // with served, none
		want    string
		expired bool
	}{
		{"/ok", 100, 100, served, body[100:200], false},
		{"/whole", 0, 100, served, body, false}, // the caller reads what it asked for
		{"/whole", 100, 100, errs.Unavailable, "GET " + srv.URL + "/whole ignored the range of bytes 100-199", false},
		{"/wrong-range", 100, 100, errs.DataLoss, `Content-Range "bytes 0-9/1000", asked for bytes 100-199`, false},
		{"/wrong-size", 100, 100, errs.DataLoss, "the object has 999 bytes, not 1000", false},
		{"/expired", 0, 100, errs.Internal, "GET " + srv.URL + "/expired: 403 Forbidden (AccessDenied)", true},
		{"/busy", 0, 100, errs.Internal, "503 Service Unavailable (SlowDown)", false},
	} {
		got, err := read(c.path, c.off, c.n)
		switch {
		case c.class == served && (err != nil || got != c.want):
			t.Errorf("%s %d+%d: %q, %v; want %q", c.path, c.off, c.n, got, err, c.want)
		case c.class != served && (!errs.Is(err, c.class) || !strings.Contains(fmt.Sprint(err), c.want)):
			t.Errorf("%s %d+%d: error %v (%v), want %v with %q", c.path, c.off, c.n, err, errs.ClassOf(err), c.class, c.want)
		case errors.Is(err, ErrExpired) != c.expired:
			t.Errorf("%s: error %v: expired %v, want %v", c.path, err, !c.expired, c.expired)
		case strings.Contains(fmt.Sprint(err), "secret"):
			t.Errorf("%s: error %v shows the query", c.path, err)
		}
	}

	// Nothing listens: Unavailable, without the query.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := newURLSource("eastus/0", "http://"+addr+"/b/k"+query, size, http.DefaultClient)
	_, err = s.ReadRange(context.Background(), 0, 10)
	if !errs.Is(err, errs.Unavailable) || !strings.Contains(err.Error(), "GET http://"+addr+"/b/k: ") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v (%v)", err, errs.ClassOf(err))
	}
	if s.String() != "http://"+addr+"/b/k" || s.Name() != "eastus/0" {
		t.Fatalf("source %q named %q", s.String(), s.Name())
	}
}

// served is no class: no error.
const served errs.Class = -1

// stream is a ReadRange stream that sends msgs, then ends with end.
type stream struct {
	grpc.ClientStream
	msgs []*pb.ReadRangeResponse
	end  error
}

func (s *stream) Recv() (*pb.ReadRangeResponse, error) {
	if len(s.msgs) == 0 {
		return nil, s.end
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

// vmappd's ReadRange stream is read across its messages; a message that
// doesn't continue the range is DataLoss, the stream's failure keeps its
// class, and a failure that won't get better ends the download.
func TestStreamReader(t *testing.T) {
	msg := func(off int64, data string) *pb.ReadRangeResponse {
		return &pb.ReadRangeResponse{Offset: off, Data: []byte(data)}
	}
	for _, c := range []struct {
		name  string
		msgs  []*pb.ReadRangeResponse
		end   error
		want  string
		class errs.Class // served: no error
		fatal bool
	}{
		{"in order", []*pb.ReadRangeResponse{msg(100, "abc"), msg(103, ""), msg(103, "defg")}, io.EOF, "abcdefg", served, false},
		{"a gap", []*pb.ReadRangeResponse{msg(100, "abc"), msg(104, "efg")}, io.EOF, "abc", errs.DataLoss, false},
		{"too much", []*pb.ReadRangeResponse{msg(100, "abcdefgh")}, io.EOF, "", errs.DataLoss, false},
		{"the wrong start", []*pb.ReadRangeResponse{msg(0, "abc")}, io.EOF, "", errs.DataLoss, false},
		{"vmappd fails", []*pb.ReadRangeResponse{msg(100, "ab")}, errs.ToStatus(errs.New(errs.Unavailable, "", "no replica")), "ab", errs.Unavailable, false},
		{"the version is gone", nil, errs.ToStatus(errs.New(errs.NotFound, "", "no such version")), "", errs.NotFound, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &streamReader{stream: &stream{msgs: c.msgs, end: c.end}, cancel: func() {}, off: 100, n: 7, next: 100}
			var got []byte
			buf := make([]byte, 2) // reads shorter than the messages
			var err error
			for {
				var k int
				k, err = r.Read(buf)
				got = append(got, buf[:k]...)
				if err != nil {
					break
				}
			}
			if string(got) != c.want {
				t.Fatalf("read %q, want %q", got, c.want)
			}
			if c.class == served {
				if err != io.EOF {
					t.Fatalf("ended with %v, want EOF", err)
				}
				return
			}
			if !errs.Is(err, c.class) || isFatal(err) != c.fatal {
				t.Fatalf("error %v (%v, fatal %v), want %v, fatal %v", err, errs.ClassOf(err), isFatal(err), c.class, c.fatal)
			}
		})
	}
}
