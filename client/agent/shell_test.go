package agent

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestShellCommandWindows: on Windows a command line goes to cmd.exe
// verbatim between the quotes /s strips, whatever quotes, carets, percent
// signs and operators it holds: the exact CreateProcess command lines.
func TestShellCommandWindows(t *testing.T) {
	const dir = `C:\ProgramData\vmapp\g\myApp\1.0.0`
	for _, c := range []struct{ line, want string }{
		// The seeds' renaming install: Azure names the package after the
		// application, without an extension.
		{`move .\myApp .\myApp.exe & myApp.exe /S`,
			`cmd.exe /d /e:on /v:off /s /c "move .\myApp .\myApp.exe & myApp.exe /S"`},
		// The seeds' PowerShell pattern, with PowerShell's strings in
		// single quotes inside cmd.exe's double quotes.
		{`powershell.exe -NoProfile -ExecutionPolicy Bypass -Command "$ErrorActionPreference = 'Stop'; Expand-Archive -Path .\app.zip -DestinationPath 'C:\Program Files\app'; & 'C:\Program Files\app\setup.exe' /quiet; exit $LASTEXITCODE"`,
			`cmd.exe /d /e:on /v:off /s /c "powershell.exe -NoProfile -ExecutionPolicy Bypass -Command "$ErrorActionPreference = 'Stop'; Expand-Archive -Path .\app.zip -DestinationPath 'C:\Program Files\app'; & 'C:\Program Files\app\setup.exe' /quiet; exit $LASTEXITCODE""`},
		// A line that starts and ends with quotes keeps them: /s strips
		// only the agent's.
		{`"C:\Program Files\7-Zip\7z.exe" x .\app -o"C:\app"`,
			`cmd.exe /d /e:on /v:off /s /c ""C:\Program Files\7-Zip\7z.exe" x .\app -o"C:\app""`},
		// Variables are cmd.exe's to expand, operators its to run.
		{`echo %VMAPP_VERSION% > "%TEMP%\version.txt" && mkdir C:\app || exit /b 1`,
			`cmd.exe /d /e:on /v:off /s /c "echo %VMAPP_VERSION% > "%TEMP%\version.txt" && mkdir C:\app || exit /b 1"`},
		// Carets escape for cmd.exe; ! is a plain character (/v:off).
		{`echo a^&b ^| c ^> d! & msiexec /i app.msi /qn /l*v "install log.txt"`,
			`cmd.exe /d /e:on /v:off /s /c "echo a^&b ^| c ^> d! & msiexec /i app.msi /qn /l*v "install log.txt""`},
		{`myApp.exe /S`, `cmd.exe /d /e:on /v:off /s /c "myApp.exe /S"`},
	} {
		sh, err := shellCommand("windows", c.line, dir)
		if err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		if sh.CmdLine != c.want {
			t.Errorf("%s:\n\tgot  %s\n\twant %s", c.line, sh.CmdLine, c.want)
		}
		if want := []string{"cmd.exe", "/d", "/e:on", "/v:off", "/s", "/c", c.line}; !slices.Equal(sh.Args, want) {
			t.Errorf("%s: args %q", c.line, sh.Args)
		}
	}
}

// TestShellCommandLinux: on Linux the line is bash's -c script behind the
// start gate, with no Windows command line.
func TestShellCommandLinux(t *testing.T) {
	line := `move .\myApp .\myApp.exe & echo "a
b" %X% ^`
	sh, err := shellCommand("linux", line, "/var/lib/vmapp/g/a/1.0.0")
	if err != nil || sh.CmdLine != "" || !slices.Equal(sh.Args, []string{"/bin/bash", "-c", gate, "vmapp-agent", line}) {
		t.Fatalf("%+v %v", sh, err)
	}
}

// TestShellCommandRefused: what an interpreter can't take is refused with
// the reason, before anything starts; each limit holds exactly.
func TestShellCommandRefused(t *testing.T) {
	const dir = `C:\vmapp\g\a\1.0.0`
	longest := strings.Repeat("x", cmdMaxLine-len(cmdPrefix)-1)
	longestDir := `C:\` + strings.Repeat("d", cmdMaxDir-3)
	for _, c := range []struct {
		goos, line, dir string
		want            string // "" when it runs
	}{
		{"linux", "true\x00", "/r", "NUL"},
		{"windows", "echo\x00", dir, "NUL"},
		{"linux", "echo a\necho b\r\n", "/r", ""},
		{"windows", "echo a\necho b", dir, "line break (at byte 6): cmd.exe would run only what comes before it"},
		{"windows", "echo a\recho b", dir, "line break (at byte 6)"},
		{"windows", longest, dir, ""},
		{"windows", longest + "x", dir, "command line of 8192 characters; cmd.exe runs at most 8191"},
		// Counted in UTF-16 units: 𝄞 is two.
		{"windows", longest[4:] + "𝄞𝄞", dir, ""},
		{"windows", longest[3:] + "𝄞𝄞", dir, "8192 characters"},
		{"linux", longest + "x", "/r", ""},
		{"windows", "echo", `\\server\share\vmapp\g\a\1.0.0`, "UNC path: cmd.exe can't run in it"},
		{"windows", "echo", longestDir, ""},
		{"windows", "echo", longestDir + "d", "259 characters long: cmd.exe can't run in a directory longer than 258"},
		{"linux", "echo", "/" + strings.Repeat("d", 4000), ""},
	} {
		_, err := shellCommand(c.goos, c.line, c.dir)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %.20q in %.20s: %v", c.goos, c.line, c.dir, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %.20q in %.20s: %v, want %q", c.goos, c.line, c.dir, err, c.want)
		}
	}
}

// TestRunCommandRefused: runCommand reports a line the shell can't take
// without starting anything.
func TestRunCommandRefused(t *testing.T) {
	r := runCommand(context.Background(), command{line: "touch ran\x00", dir: t.TempDir(), timeout: time.Minute})
	if r.Err == nil || !strings.Contains(r.Err.Error(), "NUL") || r.ExitCode != -1 {
		t.Fatalf("%+v", r)
	}
}
