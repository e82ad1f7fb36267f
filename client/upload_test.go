package client_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestCheckFile: vmappd's size limits hold at their values and refuse a
// byte more; the file is looked at, not read (the files are sparse).
func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	sized := func(size int64) string {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		kind pb.ArtifactKind
		size int64
		want string // "" for accepted
	}{
		{pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, 1, ""},
		{pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, 2 << 30, ""},
		{pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, 2<<30 + 1, "has 2147483649 bytes: a package has at most 2147483648 bytes (2 GiB)"},
		{pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION, 1 << 30, ""},
		{pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION, 1<<30 + 1, "has 1073741825 bytes: a default configuration has at most 1073741824 bytes (1 GiB)"},
		{pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION, 0, "is empty: a default configuration has at least 1 byte"},
	} {
		p := sized(tc.size)
		size, err := client.CheckFile(p, tc.kind)
		switch {
		case tc.want == "" && (err != nil || size != tc.size):
			t.Errorf("%s of %d bytes: %d, %v; want it accepted", tc.kind.Label(), tc.size, size, err)
		case tc.want != "" && (!errs.Is(err, errs.InvalidArgument) || !strings.Contains(err.Error(), p+" "+tc.want)):
			t.Errorf("%s of %d bytes: %v; want InvalidArgument %q", tc.kind.Label(), tc.size, err, tc.want)
		}
	}
	if os.Geteuid() != 0 { // root reads any file
		p := sized(10)
		os.Chmod(p, 0)
		if _, err := client.CheckFile(p, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE); err == nil || !strings.Contains(err.Error(), p+" can't be read: permission denied") {
			t.Errorf("unreadable file: %v", err)
		}
	}
}
