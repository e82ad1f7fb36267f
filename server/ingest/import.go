package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/redact"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// accessError is the seeds' message for a URL that can't be read.
func accessError(c errs.Class, u, desc string) error {
	return errs.New(c, "url", "The gallery application version url %s can't be accessed due to the following error: %s. Ensure that the blob exists and that it's either publicly accessible or is a SAS url with read privileges.", redact.URL(u), desc)
}

// Import pulls a version's artifact from an http(s) URL, resuming an
// interrupted import of the same URL with a Range request. An import that
// fails (the source can't be read, is empty or too large, doesn't match
// the sha256, or can't be stored) makes the version Failed unless it has
// its package; its session, if any, stays open for a later import of the
// same URL to resume.
func (s *Service) Import(ctx context.Context, tenant string, r *pb.ImportRequest) (*pb.GalleryApplicationVersion, error) {
	if err := checkKind(r.Kind); err != nil {
		return nil, err
	}
	u, err := url.Parse(r.Url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errs.New(errs.InvalidArgument, "url", "The gallery application version url '%s' isn't a valid http(s) URL.", redact.URL(r.Url))
	}
	if r.Sha256 != "" {
		if err := checkSHA("sha256", r.Sha256); err != nil {
			return nil, err
		}
	}
	v, err := s.cat.UploadTarget(ctx, tenant, r.Gallery, r.Application, r.Version, r.Kind)
	if err != nil {
		return nil, err
	}
	sess, err := s.cat.FindUpload(ctx, tenant, r.Gallery, r.Application, r.Version, r.Kind)
	if err != nil {
		return nil, err
	}
	if sess != nil && (redact.URL(sess.SourceUrl) != redact.URL(r.Url) || sess.Sha256 != r.Sha256) {
		return nil, state.UploadInProgress("url", sess)
	}
	if sess != nil {
		unlock, err := s.lock(tenant, sess.Id)
		if err != nil {
			return nil, err
		}
		defer unlock()
		// Read it again under the lock: another writer may have moved it.
		if sess, err = s.session(ctx, tenant, sess.Id); err != nil {
			return nil, err
		}
	}
	if err := s.retrying(ctx, v); err != nil {
		return nil, err
	}
	return s.pull(ctx, tenant, r, v, sess)
}

// pull fetches r.Url into v: from the start into a new session when sess is
// nil, else from sess's committed offset on (sess is locked).
func (s *Service) pull(ctx context.Context, tenant string, r *pb.ImportRequest, v *pb.GalleryApplicationVersion, sess *statepb.UploadSession) (*pb.GalleryApplicationVersion, error) {
	var off int64
	if sess != nil {
		off = sess.CommittedOffset
	}
	body, size, err := s.get(ctx, r.Url, off)
	if err != nil {
		return nil, s.failed(ctx, v, err)
	}
	defer body.Close()
	if sess == nil {
		switch {
		case size == 0:
			return nil, s.failed(ctx, v, errs.New(errs.InvalidArgument, "url", "The blob referenced by source uri %s is empty.", redact.URL(r.Url)))
		case size > r.Kind.MaxSize():
			return nil, s.failed(ctx, v, errs.New(errs.InvalidArgument, "url", "The blob referenced by source uri %s is too large: size = %d. The maximum blob size allowed is %s.", redact.URL(r.Url), size, sizeLabel(r.Kind)))
		}
		if sess, err = s.newSession(ctx, tenant, v, r.Kind, size, r.Sha256, r.Url); errs.Is(err, errs.FailedPrecondition) {
			return nil, err // the version changed meanwhile: another upload began, or it was deleted
		} else if err != nil {
			return nil, s.failed(ctx, v, err)
		}
		unlock, err := s.lock(tenant, sess.Id)
		if err != nil {
			return nil, err
		}
		defer unlock()
	} else if sess.SizeBytes >= 0 && size >= 0 && off+size != sess.SizeBytes {
		return nil, s.failed(ctx, v, errs.New(errs.FailedPrecondition, "url", "The blob referenced by source uri %s changed size since the import began (%d bytes, now %d): abort the import and start again.", redact.URL(r.Url), sess.SizeBytes, off+size))
	}
	out, err := s.write(ctx, sess, body)
	if err != nil {
		return nil, s.failed(ctx, v, err)
	}
	return out, nil
}

// get opens url from offset. size is the number of bytes the body holds, or
// -1 when the server doesn't say.
func (s *Service) get(ctx context.Context, u string, offset int64) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, errs.New(errs.InvalidArgument, "url", "The gallery application version url '%s' isn't a valid http(s) URL.", redact.URL(u))
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		var dns *net.DNSError
		if errors.As(err, &dns) {
			return nil, 0, accessError(errs.Unavailable, u, "remote name not found")
		}
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		desc := err.Error()
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			desc = ue.Err.Error() // without the URL, which may hold a secret
		}
		return nil, 0, accessError(errs.Unavailable, u, desc)
	}
	fail := func(e error) (io.ReadCloser, int64, error) {
		resp.Body.Close()
		return nil, 0, e
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fail(errs.New(errs.NotFound, "url", "The blob referenced by source uri %s doesn't exist.", redact.URL(u)))
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		return fail(errs.New(errs.PermissionDenied, "url", "The SAS isn't valid for source uri %s.", redact.URL(u)))
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		return fail(errs.New(errs.FailedPrecondition, "url", "The blob referenced by source uri %s is shorter than when the import began: abort the import and start again.", redact.URL(u)))
	case offset > 0 && resp.StatusCode != http.StatusPartialContent:
		return fail(accessError(errs.FailedPrecondition, u, fmt.Sprintf("the server did not honour a Range request to resume at byte %d (HTTP %s)", offset, resp.Status)))
	case offset == 0 && resp.StatusCode != http.StatusOK:
		c := errs.Unavailable
		if resp.StatusCode < 500 {
			c = errs.FailedPrecondition
		}
		return fail(accessError(c, u, "HTTP "+resp.Status))
	}
	return resp.Body, resp.ContentLength, nil
}

// RunJanitor aborts sessions that made no progress for the session TTL,
// every interval, until ctx ends.
func (s *Service) RunJanitor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Expire(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("expiring upload sessions", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Expire aborts the sessions whose expiry is before now and that no stream
// is writing.
func (s *Service) Expire(ctx context.Context, now time.Time) error {
	sessions, err := s.cat.ListUploads(ctx)
	if err != nil {
		return err
	}
	for _, sess := range sessions {
		if !sess.ExpireTime.AsTime().Before(now) {
			continue
		}
		unlock, err := s.lock(sess.Tenant, sess.Id)
		if err != nil {
			continue // being written: not abandoned
		}
		s.abortQuietly(sess)
		err = s.cat.DeleteUpload(ctx, sess.Id)
		unlock()
		if err != nil {
			return err
		}
		s.log.Info("abandoned upload session expired", "session", sess.Id, "tenant", sess.Tenant, "version", sess.Gallery+"/"+sess.Application+"/"+sess.Version, "committed", sess.CommittedOffset)
		s.failed(ctx, sessionVersion(sess), errs.New(errs.DeadlineExceeded, "", "The upload of the %s of '%s/%s/%s' made no progress for %s and was discarded (%d bytes had been stored): upload or import it again.",
			sess.Kind.Label(), sess.Gallery, sess.Application, sess.Version, s.ttl, sess.CommittedOffset))
	}
	return nil
}

// DeleteObjects deletes a version's stored artifacts and aborts its open
// sessions: the catalog's finalizer for a version being deleted.
func (s *Service) DeleteObjects(ctx context.Context, v *pb.GalleryApplicationVersion) error {
	st, err := s.store(v.Location, 0)
	if err != nil {
		return err
	}
	for _, k := range []pb.ArtifactKind{pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION} {
		sess, err := s.cat.FindUpload(ctx, v.Tenant, v.Gallery, v.Application, v.Name, k)
		if err != nil {
			return err
		}
		if sess != nil {
			if err := st.AbortMultipart(ctx, sess.ObjectKey, sess.MultipartId); err != nil && !errs.Is(err, errs.NotFound) {
				return err
			}
		}
		if err := st.Delete(ctx, blob.SourceKey(v.Tenant, v.Gallery, v.Application, v.Name, k)); err != nil {
			return err
		}
	}
	return nil
}
