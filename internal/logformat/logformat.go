// Package logformat is the --log-format flag of vmappd and the agent:
// text (logfmt-like key=value lines, for people) or json (one object a
// line, for log collectors), both through log/slog.
package logformat

import (
	"fmt"
	"io"
	"log/slog"
)

// Format is a log format; the zero value is Text. It is a flag.Value.
type Format string

// The formats.
const (
	Text Format = "text"
	JSON Format = "json"
)

// Usage describes the flag.
const Usage = "log format: text or json (one JSON object a line)"

func (f *Format) String() string {
	if *f == "" {
		return string(Text)
	}
	return string(*f)
}

// Set accepts text or json.
func (f *Format) Set(s string) error {
	switch Format(s) {
	case Text, JSON:
		*f = Format(s)
		return nil
	}
	return fmt.Errorf("%q is not a log format: want text or json", s)
}

// Type names the flag's value in usage texts (pflag.Value).
func (f *Format) Type() string { return "format" }

// Logger returns a logger writing to w in format f at level and above.
func (f Format) Logger(w io.Writer, level slog.Leveler) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if f == JSON {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}
