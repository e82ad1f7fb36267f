package agent

import (
	"fmt"
	"runtime"
	"strings"
	"unicode/utf16"
)

// hostOS is the OS the agent runs on: the functions below take the OS as a
// value, so that their Windows rules are tested on Linux too.
const hostOS = runtime.GOOS

// shellCmd is how a command line runs: the program's argv and, on Windows,
// the command line passed verbatim to CreateProcess (SysProcAttr.CmdLine).
type shellCmd struct {
	Args    []string
	CmdLine string
}

// Limits of cmd.exe.
const (
	// cmdMaxLine is the longest command line cmd.exe runs, in UTF-16
	// units; CreateProcess takes up to 32767 but cmd.exe stops at 8191.
	cmdMaxLine = 8191
	// cmdMaxDir is the longest current directory cmd.exe runs in: MAX_PATH
	// (260) less the NUL and the trailing backslash it adds.
	cmdMaxDir = 258
	// cmdPrefix starts every command line: /d skips the AutoRun commands
	// of the registry, /e:on and /v:off pin command extensions on and
	// delayed expansion off whatever the registry says (so %VAR% expands
	// and ! is a plain character), and /s /c runs what is between the
	// first and the last quote exactly as written.
	cmdPrefix = `cmd.exe /d /e:on /v:off /s /c "`
)

// shellCommand is how the command line runs in dir on goos: the seeds'
// interpreters, /bin/bash on Linux (behind the start gate) and cmd.exe on
// Windows. It fails, saying why, for a line or a directory the interpreter
// can't take.
func shellCommand(goos, line, dir string) (shellCmd, error) {
	if err := checkCommand(goos, line); err != nil {
		return shellCmd{}, err
	}
	if err := checkCommandDir(goos, dir); err != nil {
		return shellCmd{}, err
	}
	if goos != "windows" {
		return shellCmd{Args: []string{"/bin/bash", "-c", gate, "vmapp-agent", line}}, nil
	}
	// Go's argument quoting follows CommandLineToArgvW, which isn't how
	// cmd.exe reads quotes (os/exec says so): the line goes verbatim,
	// inside the quotes that /s strips.
	return shellCmd{
		Args:    []string{"cmd.exe", "/d", "/e:on", "/v:off", "/s", "/c", line},
		CmdLine: cmdPrefix + line + `"`,
	}, nil
}

// checkCommand says why goos's interpreter can't run line, or nil.
func checkCommand(goos, line string) error {
	if strings.ContainsRune(line, 0) {
		return fmt.Errorf("the command holds a NUL character, which no command line can")
	}
	if goos != "windows" {
		return nil
	}
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		return fmt.Errorf("the command holds a line break (at byte %d): cmd.exe would run only what comes before it; join the commands with & or &&", i)
	}
	if n := len(utf16.Encode([]rune(cmdPrefix + line + `"`))); n > cmdMaxLine {
		return fmt.Errorf("the command makes a cmd.exe command line of %d characters; cmd.exe runs at most %d: put the commands in a script in the package", n, cmdMaxLine)
	}
	return nil
}

// checkCommandDir says why goos's interpreter can't run in dir, or nil.
func checkCommandDir(goos, dir string) error {
	if goos != "windows" {
		return nil
	}
	switch {
	case strings.HasPrefix(dir, `\\`) || strings.HasPrefix(dir, `//`):
		// cmd.exe would run in the Windows directory instead, with a warning.
		return fmt.Errorf("%s is a UNC path: cmd.exe can't run in it; give the agent a --root on a drive", dir)
	case len(utf16.Encode([]rune(dir))) > cmdMaxDir:
		return fmt.Errorf("%s is %d characters long: cmd.exe can't run in a directory longer than %d; give the agent a shorter --root", dir, len(utf16.Encode([]rune(dir))), cmdMaxDir)
	}
	return nil
}
