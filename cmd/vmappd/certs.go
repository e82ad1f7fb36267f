package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vmapp/vmapp/internal/devcerts"
)

// certs is `vmappd certs`: development certificates for vmappd and its
// clients. It returns the exit status.
func certs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmappd certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory to write the certificates and keys in (required)")
	hosts := fs.String("hosts", strings.Join(devcerts.DefaultHosts, ","), "comma-separated IP addresses and DNS names vmappd is reached at")
	clients := fs.String("clients", "", "comma-separated names to make client certificates for (CN=NAME): agents' machine names, operator, ...")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: vmappd certs --dir DIR [--hosts 127.0.0.1,localhost,::1] [--clients vm1,vm2]

Writes a development CA (ca.pem, ca-key.pem), a server certificate for the
hosts (server.pem, server-key.pem) and a client certificate per name
(NAME.pem, NAME-key.pem), ECDSA P-256; keys 0600. Run again, it keeps the CA
and every certificate that is still good, and adds what is missing.
For development and demos: use your own CA in production.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	res, err := devcerts.Generate(*dir, split(*hosts), split(*clients))
	if err != nil {
		fmt.Fprintf(stderr, "vmappd certs: %v\n", err)
		return 1
	}
	for _, r := range res {
		did := "kept   "
		if r.Created {
			did = "created"
		}
		fmt.Fprintf(stdout, "%s %-8s %s %s\n", did, r.Name, r.Cert, r.Key)
	}
	return 0
}

// split splits a comma-separated list, dropping blanks around items.
func split(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
