// Package buildinfo says which build of vmapp is running: the version,
// commit and date the Makefile stamps into the binaries (-ldflags -X), or
// what the Go toolchain recorded (the module's version, the VCS revision
// and time) when they were built otherwise.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Stamped by the Makefile: go build -ldflags "-X github.com/vmapp/vmapp/internal/buildinfo.version=...".
var (
	version string
	commit  string
	date    string
)

// Info is one build.
type Info struct {
	Version, Commit, Date, GoVersion string
}

// Get returns the running binary's build.
func Get() Info {
	i := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && i.Commit == "":
				i.Commit = s.Value
			case s.Key == "vcs.time" && i.Date == "":
				i.Date = s.Value
			}
		}
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	return i
}

// String is what --version prints: "vmappd 1.2.0 (commit abc1234, 2026-11-30T12:00:00Z, go1.26.8)".
func (i Info) String() string {
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	return fmt.Sprintf("%s (commit %s, built %s, %s)", i.Version, orUnknown(c), orUnknown(i.Date), i.GoVersion)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Collector is the vmapp_build_info gauge: 1, labelled with the build.
func Collector() prometheus.Collector {
	i := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "vmapp_build_info", Help: "The running build of vmapp (always 1).",
		ConstLabels: prometheus.Labels{"version": i.Version, "commit": i.Commit, "goversion": i.GoVersion}})
	g.Set(1)
	return g
}
