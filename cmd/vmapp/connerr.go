package main

import (
	"errors"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/errs"
)

// Connection failures reach the CLI as Unavailable with gRPC's words for
// them ("error reading server preface: EOF", "first record does not look
// like a TLS handshake"); explain says what went wrong and what to change,
// from what the error says and how vmapp connected.

// hint is one kind of connection failure: it applies when the cause holds
// one of its words and the connection was made as when says.
type hint struct {
	words []string
	when  func(c *cli) bool
	what  string // what went wrong
	fix   string
}

func tlsOn(c *cli) bool  { return c.useTLS || c.ca != "" || c.cert != "" }
func plain(c *cli) bool  { return !tlsOn(c) }
func noCert(c *cli) bool { return tlsOn(c) && c.cert == "" }
func cert(c *cli) bool   { return c.cert != "" }
func always(*cli) bool   { return true }

var hints = []hint{
	{[]string{"connection refused", "no such host", "no children to pick from", "i/o timeout", "network is unreachable", "no route to host"}, always,
		"nothing answers there",
		"check that vmappd runs and that --server (env VMAPP_SERVER, or the context's server) is its host:port"},
	{[]string{"first record does not look like a TLS handshake"}, tlsOn,
		"it serves plaintext, not TLS",
		"drop --tls, --ca, --cert and --key (env VMAPP_CA, VMAPP_CERT, VMAPP_KEY, or the context's), or start vmappd with --tls-cert and --tls-key"},
	{[]string{"server preface", "EOF", "connection reset", "broken pipe"}, plain,
		"it serves TLS and closed a plaintext connection",
		"give --ca FILE, the CA that signed vmappd's certificate (env VMAPP_CA; the demo's is .demo/certs/ca.pem), or --tls when a public CA signed it; with --cert FILE --key FILE if vmappd requires client certificates"},
	{[]string{"unknown authority"}, func(c *cli) bool { return c.ca == "" },
		"its certificate isn't signed by a CA this system trusts",
		"give --ca FILE, the CA that signed vmappd's certificate (env VMAPP_CA)"},
	{[]string{"unknown authority"}, always,
		"its certificate isn't signed by the CA of --ca",
		"give --ca the CA that signed vmappd's certificate (vmappd --tls-cert's issuer)"},
	{[]string{"certificate is valid for", "certificate is not valid for"}, always,
		"its certificate doesn't name the host of --server",
		"reach vmappd by a name or address its certificate holds (vmappd certs --host)"},
	{[]string{"certificate required", "EOF", "connection reset", "broken pipe"}, noCert,
		"it requires a client certificate",
		"give --cert FILE --key FILE (env VMAPP_CERT, VMAPP_KEY), a certificate of the CA vmappd trusts (vmappd --client-ca)"},
	{[]string{"bad certificate", "unknown certificate authority", "certificate required", "EOF", "connection reset", "broken pipe", "expired"}, cert,
		"it refused the client certificate of --cert",
		"give --cert a certificate signed by the CA vmappd trusts (vmappd --client-ca), still valid, with its --key"},
}

// explain rewrites a connection failure as what went wrong and the fix.
func (c *cli) explain(err error) error {
	cause := err.Error()
	if errs.ClassOf(err) != errs.Unavailable || !transportFailure(cause) {
		return err
	}
	for _, h := range hints {
		if !h.when(c) {
			continue
		}
		for _, w := range h.words {
			if strings.Contains(cause, w) {
				return errs.Wrap(errs.Unavailable, errors.New(grpcCause(cause)), "can't connect to vmappd at %s: %s.\n  Fix: %s.\n  gRPC said", c.server, h.what, h.fix)
			}
		}
	}
	return err
}

// transportFailure tells a connection that failed from a call vmappd
// answered Unavailable (an import from a URL it couldn't reach): gRPC's own
// errors name the transport; vmappd's messages never start so.
func transportFailure(msg string) bool {
	c := grpcCause(msg)
	for _, p := range []string{"transport:", "write tcp", "read tcp", "connection closed", "EOF", "no children to pick from"} {
		if strings.HasPrefix(c, p) {
			return true
		}
	}
	return strings.Contains(msg, "connection error: desc") || strings.Contains(c, "server preface") || strings.Contains(c, "produced zero addresses")
}

// grpcCause is the part of a gRPC error that says something.
func grpcCause(s string) string {
	for _, p := range []string{"desc = ", "failed after 5 attempts: "} {
		if i := strings.LastIndex(s, p); i >= 0 {
			s = s[i+len(p):]
		}
	}
	return strings.Trim(s, `"`)
}

// fileText is the message of a local file's error: class InvalidArgument
// (the file named on the command line is at fault) and its path said once
// ("--key k: open k: no such file" reads "--key k: no such file").
func fileText(err error) (errs.Class, string, bool) {
	var pe *fs.PathError
	if errs.ClassOf(err) != errs.Internal || !errors.As(err, &pe) {
		return 0, "", false
	}
	msg := err.Error()
	if strings.Count(msg, pe.Path) > 1 {
		return errs.InvalidArgument, strings.Replace(msg, pe.Error(), pe.Err.Error(), 1), true
	}
	return errs.InvalidArgument, strings.Replace(msg, pe.Error(), pe.Path+": "+pe.Err.Error(), 1), true
}

// cascadeHint names --cascade in vmappd's refusal to delete a resource
// that has children ("..., or delete with cascade.").
func cascadeHint(err error, cmd *cobra.Command, args []string) error {
	const words = "delete with cascade"
	if errs.ClassOf(err) != errs.FailedPrecondition || !strings.Contains(err.Error(), words) || cmd.Flags().Lookup("cascade") == nil {
		return err
	}
	again := cmd.CommandPath() + " " + strings.Join(args, " ")
	if g, _ := cmd.Flags().GetString("gallery"); g != "" {
		again = cmd.CommandPath() + " --gallery " + g + " " + strings.Join(args, " ")
	}
	return errs.New(errs.FailedPrecondition, "cascade", "%s", strings.Replace(err.Error(), words, "delete with --cascade: "+again+" --cascade", 1))
}
