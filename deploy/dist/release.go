package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

type config struct {
	root, dir, version string
	// formats of the Linux packages (nil: deb and rpm).
	formats []string
}

// release makes the release's files in c.dir from the platforms found
// under c.dir/bin, and returns their names.
func release(c config) ([]string, error) {
	plats, err := os.ReadDir(filepath.Join(c.dir, "bin"))
	if err != nil {
		return nil, fmt.Errorf("no binaries (make dist builds them): %w", err)
	}
	if err := docs(c); err != nil {
		return nil, fmt.Errorf("man pages and completions: %w", err)
	}
	var made []string
	for _, p := range plats {
		goos, arch, ok := strings.Cut(p.Name(), "_")
		if !p.IsDir() || !ok {
			continue
		}
		name := fmt.Sprintf("vmapp_%s_%s_%s.tar.gz", c.version, goos, arch)
		if err := tarball(c, p.Name(), name); err != nil {
			return made, err
		}
		made = append(made, name)
		if goos != "linux" {
			continue
		}
		pkgs, err := linuxPackages(c, arch)
		made = append(made, pkgs...)
		if err != nil {
			return made, err
		}
	}
	if err := checksums(c.dir, made); err != nil {
		return made, err
	}
	return append(made, "SHA256SUMS"), nil
}

// linuxPackages writes the packages of arch in every format.
func linuxPackages(c config, arch string) ([]string, error) {
	var made []string
	bin := filepath.Join(c.dir, "bin", "linux_"+arch)
	for _, format := range cmpOr(c.formats, []string{"deb", "rpm"}) {
		for _, p := range packages {
			d, err := docFiles(c, p.name, format)
			if err != nil {
				return made, err
			}
			name, err := writePackage(p.info(c.root, bin, c.version, arch, d), format, c.dir)
			if err != nil {
				return made, fmt.Errorf("%s %s: %w", p.name, format, err)
			}
			made = append(made, name)
		}
	}
	return made, nil
}

func writePackage(info *nfpm.Info, format, dir string) (string, error) {
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", err
	}
	name := packager.ConventionalFileName(info)
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := packager.Package(info, f); err != nil {
		return "", err
	}
	return name, f.Close()
}

// tarball writes name: a directory named like it holding the binaries of
// plat, LICENSE, NOTICE, README.md, the man pages and completions and,
// for Linux, the units and the default configuration.
func tarball(c config, plat, name string) error {
	top := strings.TrimSuffix(name, ".tar.gz")
	bins, err := filepath.Glob(filepath.Join(c.dir, "bin", plat, "*"))
	if err != nil || len(bins) == 0 {
		return fmt.Errorf("%s: no binaries", plat)
	}
	type entry struct{ src, dst string }
	var list []entry
	for _, b := range bins {
		list = append(list, entry{b, filepath.Base(b)})
	}
	for _, f := range []string{"LICENSE", "NOTICE", "README.md"} {
		list = append(list, entry{filepath.Join(c.root, f), f})
	}
	for _, p := range packages {
		d, err := docFiles(c, p.name, "tar")
		if err != nil {
			return err
		}
		for _, f := range d {
			list = append(list, entry{f.src, f.dst})
		}
	}
	if strings.HasPrefix(plat, "linux_") {
		for _, f := range []string{"deploy/systemd/vmappd.service", "deploy/systemd/vmapp-agent.service", "deploy/dist/config/regions.yaml", "deploy/dist/config/vmappd.default", "deploy/dist/config/vmapp-agent.default"} {
			list = append(list, entry{filepath.Join(c.root, f), filepath.Join(filepath.Base(filepath.Dir(f)), filepath.Base(f))})
		}
	}
	out, err := os.Create(filepath.Join(c.dir, name))
	if err != nil {
		return err
	}
	defer out.Close()
	gz := gzip.NewWriter(out)
	tw := tar.NewWriter(gz)
	for _, e := range list {
		if err := addFile(tw, e.src, top+"/"+e.dst); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return out.Close()
}

func addFile(tw *tar.Writer, src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	h, err := tar.FileInfoHeader(st, "")
	if err != nil {
		return err
	}
	h.Name, h.Uid, h.Gid, h.Uname, h.Gname = name, 0, 0, "root", "root"
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// checksums writes SHA256SUMS in dir: sha256sum's format, so
// `sha256sum -c SHA256SUMS` checks a download.
func checksums(dir string, names []string) error {
	var b strings.Builder
	for _, n := range slices.Sorted(slices.Values(names)) {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%x  %s\n", h.Sum(nil), n)
	}
	return os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(b.String()), 0o644)
}

func cmpOr[T any](v, def []T) []T {
	if len(v) == 0 {
		return def
	}
	return v
}
