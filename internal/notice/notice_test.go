package notice

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestNoticeCurrent: NOTICE lists exactly the modules the binaries link,
// each with a license it could name.
func TestNoticeCurrent(t *testing.T) {
	mods, err := Modules("../..")
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := Write(&want, mods); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../NOTICE")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("NOTICE is out of date: run go run ./internal/notice/cmd > NOTICE\nwant:\n%s", want.Bytes())
	}
	for _, m := range mods {
		if m.License == "unknown" || strings.HasPrefix(m.License, "see ") {
			t.Errorf("%s: license not recognised (%s): add its pattern", m.Path, m.License)
		}
	}
}
