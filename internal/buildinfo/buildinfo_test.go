package buildinfo

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStamped(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "1.2.3", "0123456789abcdef0123", "2026-11-30T12:00:00Z"
	got := Get().String()
	if want := "1.2.3 (commit 0123456789ab, built 2026-11-30T12:00:00Z, go"; !strings.HasPrefix(got, want) {
		t.Fatalf("String() = %q, want prefix %q", got, want)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`# HELP vmapp_build_info The running build of vmapp (always 1).
# TYPE vmapp_build_info gauge
vmapp_build_info{commit="0123456789abcdef0123",goversion="`+Get().GoVersion+`",version="1.2.3"} 1
`), "vmapp_build_info"); err != nil {
		t.Fatal(err)
	}
}

func TestUnstamped(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "", "", ""
	if i := Get(); i.Version == "" || !strings.Contains(i.String(), i.GoVersion) {
		t.Fatalf("unstamped: %+v", i)
	}
}
