// Package notice writes NOTICE: the third-party modules linked into vmapp's
// binaries, each with its version and license, as `go list` and the
// modules' license files say. `go run ./internal/notice > NOTICE`
// regenerates it; its test fails when NOTICE is out of date.
package notice

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Module is one third-party module of the binaries.
type Module struct {
	Path, Version, License string
}

// Modules lists the modules the packages of ./cmd/... link, but vmapp's own.
func Modules(root string) ([]Module, error) {
	cmd := exec.Command("go", "list", "-deps", "-json=Module", "./cmd/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	seen := map[string]Module{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Module *struct {
				Path, Version, Dir string
				Main               bool
				Replace            *struct{ Path, Version, Dir string }
			}
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		m := p.Module
		if m == nil || m.Main || seen[m.Path].Path != "" {
			continue
		}
		version, dir := m.Version, m.Dir
		if m.Replace != nil {
			version, dir = m.Replace.Version, m.Replace.Dir
		}
		seen[m.Path] = Module{Path: m.Path, Version: version, License: license(dir)}
	}
	var mods []Module
	for _, m := range seen {
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b Module) int { return strings.Compare(a.Path, b.Path) })
	return mods, nil
}

// license names a module's license from its license file.
func license(dir string) string {
	for _, name := range []string{"LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING", "LICENCE"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		t := strings.Join(strings.Fields(string(b)), " ")
		switch {
		case strings.Contains(t, "Apache License") && strings.Contains(t, "Version 2.0"):
			return "Apache-2.0"
		case strings.Contains(t, "Mozilla Public License Version 2.0") || strings.Contains(t, "Mozilla Public License, version 2.0"):
			return "MPL-2.0"
		case strings.Contains(t, "Permission is hereby granted, free of charge"):
			return "MIT"
		case strings.Contains(t, "Permission to use, copy, modify, and/or distribute this software"):
			return "ISC"
		case strings.Contains(t, "Redistribution and use in source and binary forms") && strings.Contains(t, "Neither the name"):
			return "BSD-3-Clause"
		case strings.Contains(t, "Redistribution and use in source and binary forms"):
			return "BSD-2-Clause"
		}
		return "see " + name
	}
	return "unknown"
}

// Write writes NOTICE.
func Write(w io.Writer, mods []Module) error {
	b := bufio.NewWriter(w)
	fmt.Fprint(b, `vmapp
Copyright the vmapp authors. Licensed under the Apache License, Version 2.0
(see LICENSE).

vmappd, vmapp and vmapp-agent include the following third-party modules,
under their own licenses (the license texts are in each module's source, at
the version given). Files under the Mozilla Public License 2.0 are used
unmodified; their source is available from the module's repository at that
version.

`)
	for _, m := range mods {
		fmt.Fprintf(b, "%s %s  %s\n", m.Path, m.Version, m.License)
	}
	return b.Flush()
}
