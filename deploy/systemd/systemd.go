// Package systemd holds vmapp's systemd units (vmappd.service,
// vmapp-agent.service; deploy/dist packs them), embedded for the tests
// that check them, with the parsing of ExecStart those tests run.
package systemd

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"strings"
)

//go:embed *.service
var units embed.FS

// Units are the unit files by name (vmappd.service, vmapp-agent.service).
func Units() map[string][]byte {
	out := map[string][]byte{}
	names, _ := fs.Glob(units, "*.service")
	for _, n := range names {
		b, _ := units.ReadFile(n)
		out[n] = b
	}
	return out
}

// ExecStart is the command line of unit's ExecStart, split in words as
// systemd splits it, with ${NAME} and $NAME replaced by env's values
// (${NAME} stays one word, $NAME splits on whitespace, as systemd does).
// It knows the subset of the syntax vmapp's units use: no quotes, no
// prefixes such as '-' or '@'.
func ExecStart(unit []byte, env map[string]string) ([]string, error) {
	line, err := key(unit, "Service", "ExecStart")
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(line, `"'\`) || strings.ContainsAny(line[:1], "-@:+!") {
		return nil, fmt.Errorf("ExecStart=%s: quotes, escapes and prefixes are not understood here", line)
	}
	var args []string
	for _, w := range strings.Fields(line) {
		switch {
		case strings.HasPrefix(w, "${") && strings.HasSuffix(w, "}"):
			args = append(args, env[w[2:len(w)-1]])
		case strings.HasPrefix(w, "$"):
			args = append(args, strings.Fields(env[w[1:]])...)
		default:
			args = append(args, w)
		}
	}
	return args, nil
}

// key is the value of the one key name in section of unit.
func key(unit []byte, section, name string) (string, error) {
	var in, found bool
	var value string
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			in = l == "["+section+"]"
		case in && strings.HasPrefix(l, name+"="):
			if found {
				return "", fmt.Errorf("[%s] %s: set twice", section, name)
			}
			found, value = true, strings.TrimPrefix(l, name+"=")
		}
	}
	if !found || value == "" {
		return "", fmt.Errorf("[%s] %s: missing", section, name)
	}
	return value, nil
}
