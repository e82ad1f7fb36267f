package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// pkg is one package: a binary, and for a service its unit, default
// configuration and scripts.
type pkg struct {
	name, summary string
	service       bool
	configs       []file // config|noreplace: an upgrade keeps the operator's edits
}

// file is a file of the repository (path from its root) and where it goes.
type file struct {
	src, dst string
	mode     os.FileMode
}

// packages are the three packages of a release: a machine of the fleet
// installs vmapp-agent only, a server vmappd, a publisher's or operator's
// machine vmapp.
var packages = []pkg{
	{name: "vmappd", summary: "vmapp service: VM application galleries, replication across regional stores, the fleet API", service: true,
		configs: []file{
			{"deploy/dist/config/regions.yaml", "/etc/vmapp/regions.yaml", 0o644},
			{"deploy/dist/config/vmappd.default", "/etc/default/vmappd", 0o600},
		}},
	{name: "vmapp-agent", summary: "vmapp agent: installs, updates and removes this machine's VM applications", service: true,
		configs: []file{
			{"deploy/dist/config/vmapp-agent.default", "/etc/default/vmapp-agent", 0o600},
		}},
	{name: "vmapp", summary: "vmapp command-line client: publish VM applications, manage galleries, machines and access"},
}

// info is the nfpm description of p for arch (Go's name), with the
// binary from bin, the other files from the repository root, and docs
// (man pages and completions, see docFiles).
func (p pkg) info(root, bin, version, arch string, docs []file) *nfpm.Info {
	c := files.Contents{
		{Source: filepath.Join(bin, p.name), Destination: "/usr/bin/" + p.name, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
		{Source: filepath.Join(root, "LICENSE"), Destination: "/usr/share/doc/" + p.name + "/LICENSE"},
		{Source: filepath.Join(root, "NOTICE"), Destination: "/usr/share/doc/" + p.name + "/NOTICE"},
	}
	var s nfpm.Scripts
	if p.service {
		unit := filepath.Join(root, "deploy/systemd", p.name+".service")
		c = append(c,
			&files.Content{Source: unit, Destination: "/lib/systemd/system/" + p.name + ".service", Packager: "deb"},
			&files.Content{Source: unit, Destination: "/usr/lib/systemd/system/" + p.name + ".service", Packager: "rpm"},
			&files.Content{Destination: "/etc/vmapp", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o755}})
		s = nfpm.Scripts{
			PostInstall: filepath.Join(root, "deploy/dist/scripts", p.name+"-postinst.sh"),
			PreRemove:   filepath.Join(root, "deploy/dist/scripts", p.name+"-prerm.sh"),
		}
	}
	for _, f := range docs {
		c = append(c, &files.Content{Source: f.src, Destination: f.dst, FileInfo: &files.ContentFileInfo{Mode: f.mode}})
	}
	for _, f := range p.configs {
		c = append(c, &files.Content{Source: filepath.Join(root, f.src), Destination: f.dst, Type: files.TypeConfigNoReplace,
			FileInfo: &files.ContentFileInfo{Mode: f.mode}})
	}
	return nfpm.WithDefaults(&nfpm.Info{
		Name: p.name, Arch: arch, Platform: "linux",
		Version: packageVersion(version), VersionSchema: "none",
		Maintainer:  "vmapp maintainers <vmapp@localhost>",
		Description: p.summary,
		Homepage:    "https://github.com/vmapp/vmapp",
		License:     "Apache-2.0",
		Section:     "admin",
		Overridables: nfpm.Overridables{
			Contents: c,
			Scripts:  s,
		},
	})
}

var releaseVersion = regexp.MustCompile(`^v?([0-9]+(\.[0-9]+)*)(.*)$`)

// packageVersion is version (git describe's) as deb and rpm order it: a
// tag's number without its v; a build after a tag, or from a tree with
// no tag, after its release and before the next one (+, not -, which
// both formats reserve); an untagged commit as 0.0.0+COMMIT.
func packageVersion(version string) string {
	m := releaseVersion.FindStringSubmatch(version)
	if m == nil {
		return "0.0.0+" + strings.ReplaceAll(version, "-", ".")
	}
	rest := strings.TrimPrefix(m[3], "-")
	if rest == "" {
		return m[1]
	}
	return m[1] + "+" + strings.ReplaceAll(rest, "-", ".")
}
