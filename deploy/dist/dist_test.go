package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/deploy/systemd"
	"github.com/vmapp/vmapp/topology"
)

func TestPackageVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.0":              "1.2.0",
		"1.2.0":               "1.2.0",
		"v1.2.0-3-gabc1234":   "1.2.0+3.gabc1234",
		"v1.2.0-rc1":          "1.2.0+rc1",
		"cac8725":             "0.0.0+cac8725",
		"cac8725-dirty":       "0.0.0+cac8725.dirty",
		"v2.0.0-1-gfff-dirty": "2.0.0+1.gfff.dirty",
	} {
		if got := packageVersion(in); got != want {
			t.Errorf("packageVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDefaultConfig: the regions file the vmappd package installs is one
// vmappd accepts.
func TestDefaultConfig(t *testing.T) {
	b, err := os.ReadFile("config/regions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	top, err := topology.Parse(b)
	if err != nil {
		t.Fatalf("config/regions.yaml: %v", err)
	}
	if len(top.Regions) == 0 {
		t.Fatal("config/regions.yaml: no region")
	}
}

// TestRelease builds this machine's Linux binaries, makes the release
// from them (tarball, .deb and .rpm packages, SHA256SUMS), reads the .rpm
// with rpm (when installed), installs the .deb packages
// with dpkg into a throwaway root (this machine's own dpkg database and
// files are not touched), runs the installed units' ExecStart command
// lines with --version, upgrades over an edited configuration, and purges.
func TestRelease(t *testing.T) {
	dir := t.TempDir()
	arch := runtime.GOARCH
	bin := filepath.Join(dir, "bin", "linux_"+arch)
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X github.com/vmapp/vmapp/internal/buildinfo.version=v9.9.9-test",
		"-o", bin+"/", "./cmd/vmappd", "./cmd/vmapp-agent", "./cmd/vmapp")
	build.Dir, build.Env = "../..", append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	made, err := release(config{root: "../..", dir: dir, version: "v9.9.9-test"})
	if err != nil {
		t.Fatalf("release: %v (made %v)", err, made)
	}
	rpmArch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
	want := []string{"vmapp_v9.9.9-test_linux_" + arch + ".tar.gz",
		"vmappd_9.9.9+test_" + arch + ".deb", "vmapp-agent_9.9.9+test_" + arch + ".deb", "vmapp_9.9.9+test_" + arch + ".deb",
		"vmappd-9.9.9+test-1." + rpmArch + ".rpm", "vmapp-agent-9.9.9+test-1." + rpmArch + ".rpm", "vmapp-9.9.9+test-1." + rpmArch + ".rpm",
		"SHA256SUMS"}
	if strings.Join(made, " ") != strings.Join(want, " ") {
		t.Fatalf("release made %v, want %v", made, want)
	}
	checkSums(t, dir)
	checkTarball(t, filepath.Join(dir, want[0]))
	checkRPM(t, filepath.Join(dir, want[4]))
	installRPMs(t, filepath.Join(dir, want[4]), filepath.Join(dir, want[5]), filepath.Join(dir, want[6]))
	debs := []string{filepath.Join(dir, want[1]), filepath.Join(dir, want[2]), filepath.Join(dir, want[3])}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is not installed: the packages are made but not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: the packages are made but not installed (their scripts chown)")
	}
	root := newRoot(t)
	dpkg(t, root, append([]string{"--install"}, debs...)...)
	checkInstalled(t, root)
	checkDocs(t, root)
	for _, svc := range []string{"vmappd", "vmapp-agent"} {
		runExecStart(t, root, svc)
	}
	// An upgrade keeps the operator's configuration.
	edited := []byte("VMAPPD_ARGS=--listen 0.0.0.0:7443\n")
	if err := os.WriteFile(filepath.Join(root, "etc/default/vmappd"), edited, 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg(t, root, append([]string{"--install", "--force-confold"}, debs...)...)
	if b, _ := os.ReadFile(filepath.Join(root, "etc/default/vmappd")); !bytes.Equal(b, edited) {
		t.Errorf("reinstalling replaced the edited /etc/default/vmappd with:\n%s", b)
	}
	dpkg(t, root, "--purge", "vmappd", "vmapp-agent", "vmapp")
	for _, f := range []string{"usr/bin/vmappd", "usr/bin/vmapp", "etc/default/vmappd", "lib/systemd/system/vmapp-agent.service"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			t.Errorf("/%s is still there after dpkg --purge", f)
		}
	}
}

// newRoot makes an empty root dpkg can install into: its database, and
// the account files the vmappd package adds its user to.
func newRoot(t *testing.T) string {
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f, content := range map[string]string{
		"var/lib/dpkg/status": "",
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":           "root:x:0:\n",
		"etc/shadow":          "root:*:19000:0:99999:7:::\n",
		"etc/gshadow":         "root:*::\n",
	} {
		if err := os.WriteFile(filepath.Join(root, f), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// dpkg runs dpkg on root, the maintainer scripts outside it (with
// DPKG_ROOT set: the root has no shell to chroot into).
func dpkg(t *testing.T, root string, args ...string) {
	t.Helper()
	cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-not-root", "--log=/dev/null"}, args...)...)
	out, err := cmd.CombinedOutput()
	t.Logf("dpkg %s:\n%s", args[0], out)
	if err != nil {
		t.Fatalf("dpkg %v: %v", args, err)
	}
}

func checkInstalled(t *testing.T, root string) {
	t.Helper()
	for f, mode := range map[string]os.FileMode{
		"usr/bin/vmappd": 0o755, "usr/bin/vmapp-agent": 0o755, "usr/bin/vmapp": 0o755,
		"lib/systemd/system/vmappd.service": 0o644, "lib/systemd/system/vmapp-agent.service": 0o644,
		"etc/vmapp/regions.yaml": 0o644, "etc/default/vmappd": 0o600, "etc/default/vmapp-agent": 0o600,
		"usr/share/doc/vmappd/LICENSE": 0o644, "usr/share/doc/vmapp/NOTICE": 0o644,
		"usr/share/man/man1/vmapp.1.gz": 0o644, "usr/share/man/man1/vmapp-version-create.1.gz": 0o644,
		"usr/share/man/man1/vmappd.1.gz": 0o644, "usr/share/man/man1/vmapp-agent.1.gz": 0o644,
		"usr/share/bash-completion/completions/vmapp": 0o644, "usr/share/zsh/vendor-completions/_vmappd": 0o644,
		"usr/share/fish/vendor_completions.d/vmapp-agent.fish": 0o644,
	} {
		st, err := os.Stat(filepath.Join(root, f))
		if err != nil {
			t.Errorf("not installed: %v", err)
		} else if st.Mode().Perm() != mode {
			t.Errorf("/%s: mode %v, want %v", f, st.Mode().Perm(), mode)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !regexpLine(passwd, "vmappd:x:") {
		t.Errorf("the vmappd package added no vmappd user:\n%s", passwd)
	}
	st, err := os.Stat(filepath.Join(root, "etc/vmapp"))
	if err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("/etc/vmapp: %v %v, want mode 0750 (group vmappd)", st, err)
	}
}

func regexpLine(b []byte, prefix string) bool {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// runExecStart runs the ExecStart of the installed unit of svc, with the
// installed environment file's settings, and --version.
func runExecStart(t *testing.T, root, svc string) {
	t.Helper()
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system", svc+".service"))
	if err != nil {
		t.Fatal(err)
	}
	args, err := systemd.ExecStart(unit, envFile(t, filepath.Join(root, "etc/default", svc)))
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "--version")
	out, err := exec.Command(filepath.Join(root, args[0]), args[1:]...).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), svc+" v9.9.9-test (") {
		t.Fatalf("%q: %v\n%s", args, err, out)
	}
	t.Logf("%q: %s", args, out)
}

// envFile reads the KEY=VALUE lines of a systemd EnvironmentFile (no
// quotes: the packages' files have none).
func envFile(t *testing.T, path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			env[k] = v
		}
	}
	return env
}

func checkSums(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Log("no sha256sum: SHA256SUMS not checked")
		return
	}
	cmd := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum --check: %v\n%s", err, out)
	}
}

func checkTarball(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command("tar", "-tzf", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tar -tzf: %v\n%s", err, out)
	}
	top := strings.TrimSuffix(filepath.Base(path), ".tar.gz") + "/"
	for _, f := range []string{"vmappd", "vmapp-agent", "vmapp", "LICENSE", "NOTICE", "README.md", "systemd/vmappd.service", "config/regions.yaml",
		"man/man1/vmapp.1.gz", "man/man1/vmappd.1.gz", "completions/bash/vmapp", "completions/zsh/vmapp-agent"} {
		if !strings.Contains("\n"+string(out), "\n"+top+f+"\n") {
			t.Errorf("%s lacks %s:\n%s", path, top+f, out)
		}
	}
}

// checkRPM reads the vmappd .rpm with rpm: its files, its configuration
// files, and the script that adds the vmappd user.
func checkRPM(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Log("rpm is not installed: the .rpm packages are made but not read")
		return
	}
	query := func(args ...string) string {
		out, err := exec.Command("rpm", append([]string{"-qp"}, append(args, path)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm -qp %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := query("--list")
	for _, f := range []string{"/usr/bin/vmappd", "/usr/lib/systemd/system/vmappd.service", "/etc/vmapp/regions.yaml", "/etc/default/vmappd",
		"/usr/share/man/man1/vmappd.1.gz", "/usr/share/zsh/site-functions/_vmappd", "/usr/share/bash-completion/completions/vmappd"} {
		if !strings.Contains("\n"+list, "\n"+f+"\n") {
			t.Errorf("%s lacks %s:\n%s", path, f, list)
		}
	}
	if conf := query("--configfiles"); !strings.Contains(conf, "/etc/default/vmappd") || !strings.Contains(conf, "/etc/vmapp/regions.yaml") {
		t.Errorf("%s: configuration files\n%s", path, conf)
	}
	if scripts := query("--scripts"); !strings.Contains(scripts, "useradd") {
		t.Errorf("%s: no script adds the vmappd user:\n%s", path, scripts)
	}
}

// checkDocs reads the installed man pages with man (where it is
// installed) and has bash load the installed completion of vmapp and
// complete a subcommand with it.
func checkDocs(t *testing.T, root string) {
	t.Helper()
	if _, err := exec.LookPath("man"); err == nil {
		man := exec.Command("man", "-l", "-P", "cat", filepath.Join(root, "usr/share/man/man1/vmapp-version-create.1.gz"))
		man.Env = append(os.Environ(), "LC_ALL=C", "MANWIDTH=200")
		out, err := man.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--package-file-name") {
			t.Errorf("man -l vmapp-version-create.1.gz: %v\n%s", err, out)
		}
	}
	script := `source "$1"; complete -p vmapp`
	out, err := exec.Command("bash", "-c", script, "bash", filepath.Join(root, "usr/share/bash-completion/completions/vmapp")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "vmapp") {
		t.Errorf("bash could not load the vmapp completion: %v\n%s", err, out)
	}
}

// installRPMs installs the .rpm packages with rpm into a throwaway root
// (a database of its own; the scripts don't run, as the root has no
// shell to run them in: the .deb run covers them), has rpm verify the
// files, upgrades over an edited configuration file, which stays, and
// erases the packages: the edited file is kept as .rpmsave.
func installRPMs(t *testing.T, rpms ...string) {
	t.Helper()
	if _, err := exec.LookPath("rpm"); err != nil || os.Geteuid() != 0 {
		t.Log("rpm is not installed, or not root: the .rpm packages are not installed")
		return
	}
	root := t.TempDir()
	rpm := func(args ...string) {
		t.Helper()
		out, err := exec.Command("rpm", append([]string{"--root", root, "--dbpath", "/var/lib/rpm"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm %v: %v\n%s", args, err, out)
		}
	}
	rpm("--initdb")
	rpm(append([]string{"--install", "--nodeps", "--noscripts"}, rpms...)...)
	for f, mode := range map[string]os.FileMode{
		"usr/bin/vmappd": 0o755, "usr/bin/vmapp": 0o755, "usr/lib/systemd/system/vmapp-agent.service": 0o644,
		"etc/default/vmappd": 0o600, "etc/vmapp/regions.yaml": 0o644, "usr/share/man/man1/vmappd.1.gz": 0o644,
	} {
		if st, err := os.Stat(filepath.Join(root, f)); err != nil || st.Mode().Perm() != mode {
			t.Errorf("/%s after rpm --install: %v %v, want mode %v", f, st, err, mode)
		}
	}
	rpm("--verify", "vmappd", "vmapp-agent", "vmapp")
	conf := filepath.Join(root, "etc/default/vmappd")
	edited := []byte("VMAPPD_ARGS=--listen 0.0.0.0:7443\n")
	if err := os.WriteFile(conf, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	rpm(append([]string{"--upgrade", "--replacepkgs", "--nodeps", "--noscripts"}, rpms...)...)
	if b, _ := os.ReadFile(conf); !bytes.Equal(b, edited) {
		t.Errorf("upgrading replaced the edited /etc/default/vmappd with:\n%s", b)
	}
	rpm("--erase", "--noscripts", "vmappd", "vmapp-agent", "vmapp")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/vmappd")); err == nil {
		t.Error("/usr/bin/vmappd is still there after rpm --erase")
	}
	if b, _ := os.ReadFile(conf + ".rpmsave"); !bytes.Equal(b, edited) {
		t.Errorf("rpm --erase lost the edited /etc/default/vmappd (.rpmsave: %q)", b)
	}
}
