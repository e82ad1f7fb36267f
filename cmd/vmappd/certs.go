package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/internal/cobracmd"
	"github.com/vmapp/vmapp/internal/devcerts"
)

// certsCmd is `vmappd certs`: development certificates for vmappd and its
// clients.
func certsCmd(stdout io.Writer) *cobra.Command {
	var dir, hosts, clients string
	cmd := &cobra.Command{
		Use:   "certs --dir DIR [--hosts 127.0.0.1,localhost,::1] [--clients vm1,vm2]",
		Short: "development certificates: a CA, vmappd's, and clients'",
		Long: `Writes a development CA (ca.pem, ca-key.pem), a server certificate for the
hosts (server.pem, server-key.pem) and a client certificate per name
(NAME.pem, NAME-key.pem), ECDSA P-256; keys 0600. Run again, it keeps the CA
and every certificate that is still good, and adds what is missing.
For development and demos: use your own CA in production.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return cobracmd.Usage(cmd)
			}
			return cobracmd.Exit(certs(dir, hosts, clients, stdout, cmd.ErrOrStderr()))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dir, "dir", "", "directory to write the certificates and keys in (required)")
	fs.StringVar(&hosts, "hosts", strings.Join(devcerts.DefaultHosts, ","), "comma-separated IP addresses and DNS names vmappd is reached at")
	fs.StringVar(&clients, "clients", "", "comma-separated names to make client certificates for (CN=NAME): agents' machine names, operator, ...")
	return cmd
}

// certs writes the certificates and returns the exit status.
func certs(dir, hosts, clients string, stdout, stderr io.Writer) int {
	res, err := devcerts.Generate(dir, split(hosts), split(clients))
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
