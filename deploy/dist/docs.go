package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// shells are the shells whose completions the packages install, and where
// each of the two packagers' distributions looks for them (%s is the
// command's name).
var shells = []struct {
	name     string
	deb, rpm string
}{
	{"bash", "/usr/share/bash-completion/completions/%s", "/usr/share/bash-completion/completions/%s"},
	{"zsh", "/usr/share/zsh/vendor-completions/_%s", "/usr/share/zsh/site-functions/_%s"},
	{"fish", "/usr/share/fish/vendor_completions.d/%s.fish", "/usr/share/fish/vendor_completions.d/%s.fish"},
}

// docsDir is where docs writes a command's pages and completions:
// DIR/share/NAME/man1/*.1.gz and DIR/share/NAME/completion.SHELL.
func docsDir(c config, name string) string { return filepath.Join(c.dir, "share", name) }

// docs writes the man pages (cobra/doc, through each command's hidden
// gen-man, linked only with -tags man) and shell completions of the
// three commands, from binaries of this machine built for the purpose:
// both are the same on every platform.
func docs(c config) error {
	tmp, err := os.MkdirTemp("", "vmapp-docs")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	build := exec.Command("go", "build", "-tags", "man", "-o", tmp+"/")
	for _, p := range packages {
		build.Args = append(build.Args, "./cmd/"+p.name)
	}
	build.Dir, build.Env = c.root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -tags man: %v\n%s", err, out)
	}
	for _, p := range packages {
		if err := commandDocs(filepath.Join(tmp, p.name), docsDir(c, p.name)); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

// commandDocs runs bin to write its pages (gzipped, as Debian's policy
// and rpm's conventions want) and completions into dir.
func commandDocs(bin, dir string) error {
	man := filepath.Join(dir, "man1")
	if out, err := exec.Command(bin, "gen-man", man).CombinedOutput(); err != nil {
		return fmt.Errorf("gen-man: %v\n%s", err, out)
	}
	pages, err := filepath.Glob(filepath.Join(man, "*.1"))
	if err != nil || len(pages) == 0 {
		return fmt.Errorf("gen-man wrote no page (%v)", err)
	}
	for _, p := range pages {
		if err := gzipFile(p); err != nil {
			return err
		}
	}
	for _, sh := range shells {
		out, err := exec.Command(bin, "completion", sh.name).Output()
		if err != nil || len(out) == 0 {
			return fmt.Errorf("completion %s: %v", sh.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "completion."+sh.name), out, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// gzipFile replaces path with path.gz, without a name or time in the
// header so that a release is reproducible.
func gzipFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(path+".gz", out.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Remove(path)
}

// docFiles are the pages and completions of the command name as
// (source, destination) pairs for format ("deb", "rpm" or "tar": the
// tarball's man/ and completions/).
func docFiles(c config, name, format string) ([]file, error) {
	dir := docsDir(c, name)
	pages, err := filepath.Glob(filepath.Join(dir, "man1", "*.1.gz"))
	if err != nil || len(pages) == 0 {
		return nil, fmt.Errorf("%s: no man pages in %s (docs makes them)", name, dir)
	}
	var out []file
	for _, p := range pages {
		dst := "/usr/share/man/man1/" + filepath.Base(p)
		if format == "tar" {
			dst = "man/man1/" + filepath.Base(p)
		}
		out = append(out, file{p, dst, 0o644})
	}
	for _, sh := range shells {
		dst := map[string]string{"deb": sh.deb, "rpm": sh.rpm, "tar": "completions/" + sh.name + "/%s"}[format]
		out = append(out, file{filepath.Join(dir, "completion."+sh.name), strings.Replace(dst, "%s", name, 1), 0o644})
	}
	return out, nil
}
