package systemd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestVerify runs systemd-analyze verify on both units, with their
// ExecStart binaries built from this tree (verify checks they exist).
func TestVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd): the units are not verified")
	}
	dir := t.TempDir()
	for _, cmd := range []string{"vmappd", "vmapp-agent"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "github.com/vmapp/vmapp/cmd/"+cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	var files []string
	for name, unit := range Units() {
		unit = bytes.ReplaceAll(unit, []byte("ExecStart=/usr/bin/"), []byte("ExecStart="+dir+"/"))
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, unit, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	slices.Sort(files)
	if len(files) != 2 {
		t.Fatalf("units %v, want vmappd.service and vmapp-agent.service", files)
	}
	// --man=no: the man pages of Documentation= are not installed here.
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, files...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Warnings (an unknown key, a bad value) don't fail verify: any line
	// about our units does here.
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, ".service") {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
}

func TestHardening(t *testing.T) {
	u := Units()
	for _, want := range []string{"User=vmappd", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "StateDirectory=vmappd", "Restart=on-failure", "After=network-online.target", "Wants=network-online.target"} {
		if !bytes.Contains(u["vmappd.service"], []byte("\n"+want+"\n")) {
			t.Errorf("vmappd.service lacks %s", want)
		}
	}
	for _, want := range []string{"User=root", "StateDirectory=vmapp", "After=network-online.target", "KillMode=mixed"} {
		if !bytes.Contains(u["vmapp-agent.service"], []byte("\n"+want+"\n")) {
			t.Errorf("vmapp-agent.service lacks %s", want)
		}
	}
}

func TestExecStart(t *testing.T) {
	unit := Units()["vmapp-agent.service"]
	got, err := ExecStart(unit, map[string]string{"VMAPP_VM": "vm 1", "VMAPP_AGENT_ARGS": " --log-level debug  --tls "})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/usr/bin/vmapp-agent", "--vm", "vm 1", "--root", "/var/lib/vmapp", "--log-level", "debug", "--tls"}
	if !slices.Equal(got, want) {
		t.Fatalf("ExecStart %q, want %q", got, want)
	}
	got, err = ExecStart(unit, nil)
	if err != nil || !slices.Equal(got, []string{"/usr/bin/vmapp-agent", "--vm", "", "--root", "/var/lib/vmapp"}) {
		t.Fatalf("ExecStart with no environment: %q, %v", got, err)
	}
	for _, bad := range []string{
		"[Service]\nType=exec\n",
		"[Service]\nExecStart=/a\nExecStart=/b\n",
		"[Unit]\nExecStart=/a\n",
		"[Service]\nExecStart=-/usr/bin/x\n",
		"[Service]\nExecStart=/usr/bin/x \"a b\"\n",
	} {
		if args, err := ExecStart([]byte(bad), nil); err == nil {
			t.Errorf("ExecStart of %q = %q, want an error", bad, args)
		}
	}
}
