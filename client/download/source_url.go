package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmapp/vmapp/errs"
)

// urlSource reads a replica through its presigned URL, with ranged GETs.
type urlSource struct {
	name  string // region/replica
	url   string // presigned: a secret
	where string // url without its query, for messages
	size  int64  // the object's
	hc    *http.Client
	// header is sent with every request (a peer's grant): a secret.
	header http.Header
}

func newURLSource(name, rawURL string, size int64, hc *http.Client) *urlSource {
	return &urlSource{name: name, url: rawURL, where: redact(rawURL), size: size, hc: hc}
}

func (s *urlSource) Name() string   { return s.name }
func (s *urlSource) String() string { return s.where }

// ReadRange sends the GET and checks the response's status and range; the
// body is the caller's to read.
func (s *urlSource) ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, errs.New(errs.Internal, "", "bad source URL %s", s.where)
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	resp, err := s.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		msg := strings.ReplaceAll(err.Error(), s.url, s.where)
		return nil, errs.New(errs.Unavailable, "", "GET %s: %s", s.where, msg)
	}
	if err := s.check(resp, off, n); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp.Body, nil
}

// check checks a response to a GET of n bytes from off.
func (s *urlSource) check(resp *http.Response, off, n int64) error {
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			if err := checkContentRange(cr, off, n, s.size); err != nil {
				return errs.New(errs.DataLoss, "", "GET %s: %v", s.where, err)
			}
		}
	case http.StatusOK: // the whole object
		if off != 0 || (resp.ContentLength >= 0 && resp.ContentLength != s.size) {
			return errs.New(errs.Unavailable, "", "GET %s ignored the range of bytes %d-%d", s.where, off, off+n-1)
		}
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		msg := fmt.Sprintf("GET %s: %s", s.where, resp.Status)
		if m := s3Code.FindSubmatch(b); m != nil {
			msg += " (" + string(m[1]) + ")"
		}
		return &statusError{code: resp.StatusCode, msg: msg}
	}
	return nil
}

// statusError is an unexpected HTTP status; a 403 is an expired URL.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func (e *statusError) Is(target error) bool {
	return target == ErrExpired && e.code == http.StatusForbidden
}

var s3Code = regexp.MustCompile(`<Code>([^<]{1,64})</Code>`)

// redact drops the query (the presigned signature) of a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexByte(raw, '?'); i >= 0 {
			return raw[:i]
		}
		return raw
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// checkContentRange checks "bytes first-last/size" against the request.
func checkContentRange(cr string, off, n, size int64) error {
	var first, last int64
	var total string
	if _, err := fmt.Sscanf(strings.Replace(cr, "/", " ", 1), "bytes %d-%d %s", &first, &last, &total); err != nil {
		return fmt.Errorf("bad Content-Range %q", cr)
	}
	if first != off || last != off+n-1 {
		return fmt.Errorf("Content-Range %q, asked for bytes %d-%d", cr, off, off+n-1)
	}
	if total != "*" {
		if t, err := strconv.ParseInt(total, 10, 64); err != nil || t != size {
			return fmt.Errorf("the object has %s bytes, not %d", total, size)
		}
	}
	return nil
}
