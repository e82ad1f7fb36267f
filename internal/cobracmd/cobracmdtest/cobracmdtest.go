// Package cobracmdtest checks what the three binaries' command lines have
// in common: completion scripts for every shell, --version, man pages.
package cobracmdtest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/internal/cobracmd"
	"github.com/vmapp/vmapp/internal/cobracmd/man"
)

// Check runs the command line root makes (a new one each run) in this
// process: `completion SHELL` prints the shell's script, --version prints
// "NAME ...", and the man pages, pages among them, generate.
func Check(t *testing.T, root func() *cobra.Command, pages ...string) {
	t.Helper()
	name := root().Name()
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cobracmd.Execute(root(), args, &out, &errb)
		return code, out.String(), errb.String()
	}
	for shell, want := range map[string]string{"bash": "bash completion V2 for " + name, "zsh": "#compdef " + name, "fish": "complete -c " + name, "powershell": "Register-ArgumentCompleter"} {
		if code, out, errb := run("completion", shell); code != 0 || !strings.Contains(out, want) {
			t.Errorf("%s completion %s: exit %d, lacks %q:\n%.300s\n%s", name, shell, code, want, out, errb)
		}
	}
	if code, out, errb := run("--version"); code != 0 || !strings.HasPrefix(out, name+" ") || errb != "" {
		t.Errorf("%s --version: exit %d\n%s\n%s", name, code, out, errb)
	}
	dir := t.TempDir()
	if err := man.Gen(root(), dir); err != nil {
		t.Fatal(err)
	}
	for _, page := range append([]string{name + ".1"}, pages...) {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil || !strings.Contains(string(b), ".TH ") {
			t.Errorf("man page %s: %v\n%.200s", page, err, b)
		}
	}
}
