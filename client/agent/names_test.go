package agent

import (
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestCheckName: the names Windows refuses (devices with any extension and
// in any case, its reserved characters, trailing periods and spaces, more
// than 255 UTF-16 units) are refused for Windows and not for Linux; what
// neither can take is refused for both.
func TestCheckName(t *testing.T) {
	both := func(why string) [2]string { return [2]string{why, why} }
	windows := func(why string) [2]string { return [2]string{"", why} }
	for name, want := range map[string][2]string{ // [linux, windows]; "" when allowed
		"myApp":                          {},
		"myApp.exe":                      {},
		"TestPythonApp-config":           {},
		"1.0.0":                          {},
		"CONSOLE":                        {},
		"COM10":                          {},
		"NULL":                           {},
		"con_app":                        {},
		".vmapp-agent":                   {},
		"":                               both("isn't a file name"),
		".":                              both("isn't a file name"),
		"..":                             both("isn't a file name"),
		"a/b":                            both("path separator"),
		`a\b`:                            both("path separator"),
		"a\x00b":                         both("path separator or a NUL"),
		"CON":                            windows("Windows device (CON)"),
		"con":                            windows("Windows device (CON)"),
		"Nul.txt":                        windows("Windows device (NUL)"),
		"nul.tar.gz":                     windows("Windows device (NUL)"),
		"aux ":                           windows("ends with a period or a space"),
		"PRN .log":                       windows("Windows device (PRN)"),
		"COM1":                           windows("Windows device (COM1)"),
		"com¹.cfg":                       windows("Windows device (COM¹)"),
		"LPT9":                           windows("Windows device (LPT9)"),
		"CONIN$":                         windows("Windows device (CONIN$)"),
		"a:b":                            windows(`holds ":"`),
		"a<b":                            windows(`holds "<"`),
		"a>b":                            windows(`holds ">"`),
		`a"b`:                            windows(`holds "\""`),
		"a|b":                            windows(`holds "|"`),
		"a?b":                            windows(`holds "?"`),
		"a*b":                            windows(`holds "*"`),
		"a\tb":                           windows(`holds "\t"`),
		"app.":                           windows("ends with a period or a space"),
		"app ":                           windows("ends with a period or a space"),
		strings.Repeat("a", 255):         {},
		strings.Repeat("a", 256):         {"256 bytes long; a file name has at most 255", "256 characters long; a Windows file name has at most 255"},
		strings.Repeat("é", 200):         {"400 bytes long", ""},
		strings.Repeat("𝄞", 128):         {"512 bytes long", "256 characters long"},
		"pkg" + strings.Repeat("x", 200): {},
	} {
		for i, goos := range []string{"linux", "windows"} {
			err := checkName(goos, name)
			switch {
			case want[i] == "" && err != nil:
				t.Errorf("%s %.20q: %v", goos, name, err)
			case want[i] != "" && (err == nil || !strings.Contains(err.Error(), want[i])):
				t.Errorf("%s %.20q: %v, want %q", goos, name, err, want[i])
			}
		}
	}
}

// TestAppDir: another tenant's gallery is <tenant>:<gallery> on Linux and
// <tenant>@<gallery> on Windows, where ':' names a stream; names Windows
// refuses, and the agent's own directory in any case, are refused there.
func TestAppDir(t *testing.T) {
	const root = "/r"
	for _, c := range []struct {
		goos, key string
		want      string // the directory, or the error
	}{
		{"linux", "g/tools", "/r/g/tools"},
		{"windows", "g/tools", "/r/g/tools"},
		{"linux", "contoso:g2/tools", "/r/contoso:g2/tools"},
		{"windows", "contoso:g2/tools", "/r/contoso@g2/tools"},
		{"windows", "contoso@g2/tools", "'contoso@g2/tools' can't name a directory: it holds '@', which names another tenant's gallery on Windows"},
		{"linux", "contoso@g2/tools", "/r/contoso@g2/tools"},
		{"linux", "a:b:c/tools", "'a:b:c/tools' can't name a directory: it holds ':' or '@'"},
		{"windows", "con:g2/tools", "'con:g2/tools' can't name a directory: it is the name of a Windows device (CON), whatever its extension"},
		{"windows", "a:b:c/tools", "'a:b:c/tools' can't name a directory: it holds \":\", which Windows doesn't allow in file names"},
		{"windows", "g/NUL", "'g/NUL' can't name a directory: it is the name of a Windows device (NUL), whatever its extension"},
		{"linux", "g/NUL", "/r/g/NUL"},
		{"windows", "g./tools", "'g./tools' can't name a directory: it ends with a period or a space, which Windows drops from file names"},
		{"windows", ".VMAPP-AGENT/tools", "gallery '.VMAPP-AGENT' can't name a directory under the root: the agent keeps its own files in /r/.vmapp-agent"},
		{"linux", ".VMAPP-AGENT/tools", "/r/.VMAPP-AGENT/tools"},
		{"linux", ".vmapp-agent/tools", "gallery '.vmapp-agent' can't name a directory under the root: the agent keeps its own files in /r/.vmapp-agent"},
	} {
		dir, err := appDir(c.goos, root, c.key)
		got := filepath.ToSlash(dir) // the host's separators
		if err != nil {
			got = strings.ReplaceAll(err.Error(), filepath.Join(root, StateDir), "/r/.vmapp-agent")
		}
		if got != c.want {
			t.Errorf("%s %s: %s, want %s", c.goos, c.key, got, c.want)
		}
	}
}

// TestSharedDirs: on Windows, directories that differ only in case are
// one; on Linux they are two.
func TestSharedDirs(t *testing.T) {
	dirs := map[string]string{"g/App": "/r/g/App", "g/app": "/r/g/app", "G/APP": "/r/G/APP", "g/b": "/r/g/b", "h/x": "/r/h/x"}
	if got := sharedDirs("linux", dirs); len(got) != 0 {
		t.Errorf("linux: %v", got)
	}
	want := map[string]string{"G/APP": "g/App", "g/App": "G/APP", "g/app": "G/APP"}
	if got := sharedDirs("windows", dirs); !maps.Equal(got, want) {
		t.Errorf("windows: %v, want %v", got, want)
	}
}

// TestSuggestedRoot: %ProgramData%\vmapp on Windows.
func TestSuggestedRoot(t *testing.T) {
	for _, c := range []struct{ goos, pd, want string }{
		{"linux", "", "/var/lib/vmapp"},
		{"windows", `D:\ProgramData`, `D:\ProgramData\vmapp`},
		{"windows", `D:\ProgramData\`, `D:\ProgramData\vmapp`},
		{"windows", "", `C:\ProgramData\vmapp`},
	} {
		if got := SuggestedRoot(c.goos, c.pd); got != c.want {
			t.Errorf("%s %q: %s", c.goos, c.pd, got)
		}
	}
}

// TestPlanWindows: the plan of an agent on Windows refuses, before
// anything is downloaded, what can't be installed there and can on Linux:
// applications whose directories differ only in case (one installed keeps
// its own), package and configuration files that differ only in case,
// names Windows refuses, commands cmd.exe can't run.
func TestPlanWindows(t *testing.T) {
	gallery := func(g string) func(*pb.GoalApplication) { return func(ga *pb.GoalApplication) { ga.Gallery = g } }
	files := func(pkg, cfg string) func(*pb.GoalApplication) {
		return func(ga *pb.GoalApplication) {
			ga.Settings = &pb.UserArtifactSettings{PackageFileName: pkg, ConfigFileName: cfg}
		}
	}
	install := func(line string) func(*pb.GoalApplication) {
		return func(ga *pb.GoalApplication) { ga.ManageActions.Install = line }
	}
	tools := local("tools", installedAt("1.0.0", ""))
	goals := []*pb.GoalApplication{
		goal("App", "1.0.0"), goal("app", "1.0.0"), // new, both
		goal("tools", "2.0.0"), goal("Tools", "1.0.0"), // installed, and new
		goal("files", "1.0.0", files("files.exe", "FILES.EXE")),
		goal("same", "1.0.0", files("same.bin", "same.bin")),
		goal("nul", "1.0.0"),
		goal("x", "1.0.0", gallery("g.")),
		goal("lines", "1.0.0", install("copy a b\nrun b")),
		goal("ps", "1.0.0", install(`powershell.exe -Command "Write-Host 'a & b'"`), files("ps.ps1", "ps.json")),
	}
	plan := func(goos string) map[string]string {
		st := &state{Schema: stateSchema, Apps: map[string]*appState{"g/tools": tools}}
		p := planOn(goos, st, &pb.GoalState{Applications: goals}, root, t0)
		out := map[string]string{}
		for _, line := range p.lines() {
			key := strings.Fields(line)[2]
			out[key] = strings.TrimPrefix(line, "unordered: ")
		}
		return out
	}
	const sameRefused = "refuse g/same 1.0.0 #1: packageFileName 'same.bin' and configFileName 'same.bin' name the same file"
	dir := func(elem ...string) string { return filepath.Join(append([]string{root}, elem...)...) }
	want := map[string]string{
		"g/App":   "refuse g/App 1.0.0 #1: its directory " + dir("g", "App") + " would be the one of g/app: file names ignore case on Windows",
		"g/app":   "refuse g/app 1.0.0 #1: its directory " + dir("g", "app") + " would be the one of g/App: file names ignore case on Windows",
		"g/tools": "remove-then-install g/tools 1.0.0→2.0.0 #1",
		"g/Tools": "refuse g/Tools 1.0.0 #1: its directory " + dir("g", "Tools") + " would be the one of g/tools: file names ignore case on Windows",
		"g/files": "refuse g/files 1.0.0 #1: packageFileName 'files.exe' and configFileName 'FILES.EXE' name the same file",
		"g/same":  sameRefused,
		"g/nul":   "refuse g/nul 1.0.0 #1: 'g/nul' can't name a directory: it is the name of a Windows device (NUL), whatever its extension",
		"g./x":    "refuse g./x 1.0.0 #1: 'g./x' can't name a directory: it ends with a period or a space, which Windows drops from file names",
		"g/lines": "refuse g/lines 1.0.0 #1: the install command can't run: the command holds a line break (at byte 8): cmd.exe would run only what comes before it; join the commands with & or &&",
		"g/ps":    "install g/ps 1.0.0 #1",
	}
	if got := plan("windows"); !maps.Equal(got, want) {
		t.Errorf("windows:\n%s", diffLines(got, want))
	}
	for key := range want {
		want[key] = "install " + key + " 1.0.0 #1"
	}
	want["g/tools"] = "remove-then-install g/tools 1.0.0→2.0.0 #1"
	want["g/same"] = sameRefused
	if got := plan("linux"); !maps.Equal(got, want) {
		t.Errorf("linux:\n%s", diffLines(got, want))
	}
}

func diffLines(got, want map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(want) {
		if got[k] != want[k] {
			b.WriteString("\t" + k + ": " + got[k] + "\n\t\twant " + want[k] + "\n")
		}
	}
	return b.String()
}

// TestOSType: the agent tells vmappd its OS as an osType; vmappd's refusal
// of it (FailedPrecondition on osType) is for good, another
// FailedPrecondition isn't.
func TestOSType(t *testing.T) {
	for goos, want := range map[string]string{"linux": "Linux", "windows": "Windows", "darwin": ""} {
		if got := osType(goos); got != want {
			t.Errorf("%s: %q", goos, got)
		}
	}
	if refusal(errs.New(errs.FailedPrecondition, "osType", "created with osType Windows")) == "" {
		t.Error("an osType refusal isn't for good")
	}
	if why := refusal(errs.New(errs.FailedPrecondition, "version", "not replicated")); why != "" {
		t.Errorf("another FailedPrecondition is for good: %s", why)
	}
}
