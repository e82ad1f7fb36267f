package agent

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
)

// The names of an application's directories and files come from vmappd
// (galleries, applications, tenants, versions, packageFileName,
// configFileName): the agent checks each is one plain element of a path on
// the OS it runs on before it makes anything of it.

// maxNameLen is the longest file name: 255 bytes on Linux file systems,
// 255 UTF-16 units on NTFS.
const maxNameLen = 255

// windowsDevices are the names Windows gives devices, in every directory
// and with any extension ("nul.txt" is NUL too), in any case.
var windowsDevices = map[string]bool{
	"CON": true, "PRN": true, "AUX": true, "NUL": true, "CONIN$": true, "CONOUT$": true,
	"COM0": true, "COM1": true, "COM2": true, "COM3": true, "COM4": true, "COM5": true, "COM6": true, "COM7": true, "COM8": true, "COM9": true,
	"COM¹": true, "COM²": true, "COM³": true,
	"LPT0": true, "LPT1": true, "LPT2": true, "LPT3": true, "LPT4": true, "LPT5": true, "LPT6": true, "LPT7": true, "LPT8": true, "LPT9": true,
	"LPT¹": true, "LPT²": true, "LPT³": true,
}

// checkName says why name can't be one element of a path on goos, or
// nil. Its errors are about "it": the caller names what name is.
func checkName(goos, name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return errors.New("it isn't a file name")
	case strings.ContainsAny(name, "/\\\x00"):
		return errors.New("it holds a path separator or a NUL")
	case goos != "windows" && len(name) > maxNameLen:
		return fmt.Errorf("it is %d bytes long; a file name has at most %d", len(name), maxNameLen)
	case goos != "windows":
		return nil
	}
	if i := strings.IndexFunc(name, func(r rune) bool { return r < 32 || strings.ContainsRune(`<>:"|?*`, r) }); i >= 0 {
		return fmt.Errorf("it holds %q, which Windows doesn't allow in file names", name[i:i+1])
	}
	if strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return errors.New("it ends with a period or a space, which Windows drops from file names")
	}
	if n := len(utf16.Encode([]rune(name))); n > maxNameLen {
		return fmt.Errorf("it is %d characters long; a Windows file name has at most %d", n, maxNameLen)
	}
	base, _, _ := strings.Cut(name, ".")
	if dev := strings.ToUpper(strings.TrimRight(base, " ")); windowsDevices[dev] {
		return fmt.Errorf("it is the name of a Windows device (%s), whatever its extension", dev)
	}
	return nil
}

// tenantDir names the directory of another tenant's gallery:
// "<tenant>:<gallery>" as the key has it, or "<tenant>@<gallery>" on
// Windows, where ':' names a file's stream. Tenant and gallery names hold
// neither character (vmappd allows letters, digits, '-', '.' and '_').
func tenantDir(goos, top string) (string, error) {
	tenant, gallery, shared := strings.Cut(top, ":")
	if !shared {
		if goos == "windows" && strings.Contains(top, "@") {
			return "", errors.New("it holds '@', which names another tenant's gallery on Windows")
		}
		return top, checkName(goos, top)
	}
	for _, n := range []string{tenant, gallery} {
		if err := checkName(goos, n); err != nil {
			return "", err
		}
		if strings.ContainsAny(n, ":@") {
			return "", errors.New("it holds ':' or '@'")
		}
	}
	if goos == "windows" {
		return tenant + "@" + gallery, nil
	}
	return top, nil
}

// sameFile tells whether two names are one file on goos: Windows' file
// names are case-insensitive.
func sameFile(goos, a, b string) bool {
	if goos == "windows" {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// sharedDirs finds the applications of dirs (key → the directory of its
// versions) whose directory is another's on goos, or holds it or is in it:
// on Windows, applications whose names differ only in case. It maps each
// to one of the others, the first by key.
func sharedDirs(goos string, dirs map[string]string) map[string]string {
	out := map[string]string{}
	keys := sortedKeys(dirs)
	for _, k := range keys {
		for _, o := range keys {
			if o != k && (withinOn(goos, dirs[k], dirs[o]) || withinOn(goos, dirs[o], dirs[k])) {
				out[k] = o
				break
			}
		}
	}
	return out
}

// withinOn tells whether path is dir or in it, on goos.
func withinOn(goos, path, dir string) bool {
	if goos == "windows" {
		path, dir = strings.ToUpper(path), strings.ToUpper(dir)
	}
	return within(path, dir)
}

// SuggestedRoot is the root the agent's usage and README suggest:
// /var/lib/vmapp, or %ProgramData%\vmapp on Windows (programData is that
// variable; C:\ProgramData when it is empty). Not Azure's
// C:\Packages\Plugins\Microsoft.CPlat.Core.VMApplicationManagerWindows\...:
// that directory is Microsoft's extension's, which may run on the same
// machine.
func SuggestedRoot(goos, programData string) string {
	if goos != "windows" {
		return "/var/lib/vmapp"
	}
	if programData == "" {
		programData = `C:\ProgramData`
	}
	return strings.TrimRight(programData, `\`) + `\vmapp`
}

// osType is the osType of a machine that runs goos, as the agent tells
// vmappd: Linux or Windows; "" (not checked) on another OS.
func osType(goos string) string {
	switch goos {
	case "linux":
		return "Linux"
	case "windows":
		return "Windows"
	}
	return ""
}

// rootSDDL is the access the agent gives its root on Windows, as SDDL:
// full control to SYSTEM, the Administrators and the agent's own account
// (user, a SID), inherited by everything under it, and nothing inherited
// from above (%ProgramData% lets every user create files). Like its
// 0755 root and 0600 files on Linux, no other account can plant a file
// where commands run, nor read a configuration.
func rootSDDL(user string) string {
	return "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;" + user + ")"
}
