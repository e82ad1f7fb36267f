package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vmapp/vmapp/internal/atomicfile"
	"github.com/vmapp/vmapp/sign/minisign"
)

// keyKDF is the cost of encrypting a new secret key: minisign's. Tests
// lower it.
var keyKDF = minisign.DefaultKDF

func (c *cli) keyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "key",
		Aliases: []string{"keys"},
		Short:   "Create signing keys; sign and verify files (minisign's format)",
		Long: `Create Ed25519 signing keys, and sign and verify files with them. Keys and
signatures are in minisign's formats: minisign -V verifies a vmapp signature,
minisign -S signs with a vmapp secret key, and vmapp uses minisign's keys and
verifies its signatures.

These commands work on local files only: they never call vmappd.`,
		RunE: group,
	}
	cmd.AddCommand(c.keyCreateCmd(), c.keyPublicCmd(), c.keySignCmd(), c.keyVerifyCmd())
	return cmd
}

// local adapts the body of a command that doesn't call vmappd: the errors
// it returns are run errors (exit 1) unless they are usage errors.
func (c *cli) local(body func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := body(cmd, args)
		var ue usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return runError{err}
	}
}

// passphraseFile reads a passphrase: the file's one line.
func passphraseFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--passphrase-file: %v", err)
	}
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	switch {
	case len(b) == 0:
		return nil, usagef("--passphrase-file %s: empty", path)
	case bytes.ContainsAny(b, "\r\n"):
		return nil, usagef("--passphrase-file %s: holds more than one line", path)
	}
	return b, nil
}

// promptPassphrase asks for a passphrase on the terminal, twice when
// confirm; without a terminal it returns a usage error with hint.
func (c *cli) promptPassphrase(confirm bool, hint string) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, usagef("no terminal to ask for the passphrase on: %s", hint)
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(c.stderr, prompt)
		defer fmt.Fprintln(c.stderr)
		return term.ReadPassword(fd)
	}
	p, err := ask("Passphrase: ")
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, usagef("empty passphrase: %s", hint)
	}
	if confirm {
		again, err := ask("Passphrase (again): ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, again) {
			return nil, usagef("the passphrases differ")
		}
	}
	return p, nil
}

// readSecretKey reads and, if need be, decrypts the secret key file path,
// with the passphrase in passFile or asked on the terminal.
func (c *cli) readSecretKey(path, passFile string) (minisign.PrivateKey, error) {
	f, err := minisign.ReadSecretKeyFile(path)
	if err != nil {
		return minisign.PrivateKey{}, err
	}
	var pass []byte
	switch {
	case !f.Encrypted():
	case passFile != "":
		pass, err = passphraseFile(passFile)
	default:
		pass, err = c.promptPassphrase(false, path+" is encrypted: give --passphrase-file F")
	}
	if err != nil {
		return minisign.PrivateKey{}, err
	}
	return f.Decrypt(pass)
}

// printPublicKey prints k as a public key file (table output), so that
// the output redirected to a file is one minisign reads.
func (c *cli) printPublicKey(k minisign.PublicKey, extra map[string]any) error {
	if !c.structured() {
		_, err := c.stdout.Write(k.Encode())
		return err
	}
	v := map[string]any{"keyId": k.ID.String(), "publicKey": k.String()}
	for name, x := range extra {
		v[name] = x
	}
	return c.printIndented(v)
}

func (c *cli) keyCreateCmd() *cobra.Command {
	var out, passFile string
	var noPass bool
	cmd := &cobra.Command{
		Use:   "create --out FILE [--passphrase-file F | --no-passphrase]",
		Short: "Create a key pair: the secret key goes to a new file, the public key to stdout",
		Long: `Create an Ed25519 key pair with a random key id. The secret key is written to
a new file (mode 0600; an existing file is never overwritten), encrypted with
a passphrase as minisign does (scrypt with 1 GiB of memory) unless
--no-passphrase. The passphrase comes from --passphrase-file or is asked for
on the terminal.

The public key is printed as a minisign public key file: its key id in the
comment line, then the key on one line (what minisign -P takes).`,
		Example: `  vmapp key create --out publisher.key > publisher.pub
  vmapp key create --out ci.key --passphrase-file ci.pass -o json`,
		Args: args(),
		RunE: c.local(func(cmd *cobra.Command, args []string) error {
			if passFile != "" && noPass {
				return usagef("--passphrase-file and --no-passphrase exclude each other")
			}
			if _, err := os.Lstat(out); err == nil {
				return usagef("--out %s: the file exists (a key is never overwritten)", out)
			}
			var pass []byte
			var err error
			switch {
			case noPass:
			case passFile != "":
				pass, err = passphraseFile(passFile)
			default:
				pass, err = c.promptPassphrase(true, "give --passphrase-file F, or --no-passphrase for an unencrypted key")
			}
			if err != nil {
				return err
			}
			k, err := minisign.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			data, err := k.Encode(pass, keyKDF, rand.Reader)
			if err != nil {
				return err
			}
			if err := writeNew(out, data); err != nil {
				return err
			}
			how := "encrypted with the passphrase"
			if pass == nil {
				how = "not encrypted"
			}
			fmt.Fprintf(c.stderr, "secret key %s saved to %s (%s)\n", k.ID, out, how)
			return c.printPublicKey(k.Public(), map[string]any{"secretKeyFile": out, "encrypted": pass != nil})
		}),
	}
	cmd.Flags().StringVar(&out, "out", "", "the secret key's new file")
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "encrypt the secret key with the passphrase in this file (its one line)")
	cmd.Flags().BoolVar(&noPass, "no-passphrase", false, "leave the secret key unencrypted (minisign -W)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// writeNew writes data to a new file, mode 0600, never over an existing
// one; a file it could not finish is removed.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return usagef("--out %s: the file exists (a key is never overwritten)", path)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

func (c *cli) keyPublicCmd() *cobra.Command {
	var key, passFile string
	cmd := &cobra.Command{
		Use:   "public --key FILE [--passphrase-file F]",
		Short: "Print the public key of a secret key file",
		Long: `Print the public key of a secret key file (vmapp's or minisign's) as a
minisign public key file. An encrypted key is decrypted first: the public key
is inside the encrypted part.`,
		Example: "  vmapp key public --key publisher.key > publisher.pub",
		Args:    args(),
		RunE: c.local(func(cmd *cobra.Command, args []string) error {
			k, err := c.readSecretKey(key, passFile)
			if err != nil {
				return err
			}
			return c.printPublicKey(k.Public(), nil)
		}),
	}
	cmd.Flags().StringVar(&key, "key", "", "the secret key file")
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "the file holding the key's passphrase (else asked on the terminal)")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func (c *cli) keySignCmd() *cobra.Command {
	var key, passFile, sigPath, trusted string
	cmd := &cobra.Command{
		Use:   "sign --key FILE [--passphrase-file F] [--sig OUT] [--trusted-comment T] IN",
		Short: "Sign a file (minisign -S)",
		Long: `Sign the file IN with a secret key, as minisign -S does: Ed25519 over the
file's BLAKE2b-512, with a trusted comment that the signature covers too
(default: the time and the file's name). The signature goes to IN.minisig,
or --sig, replacing it.`,
		Example: `  vmapp key sign --key publisher.key --passphrase-file pass myapp.tar.gz
  minisign -V -p publisher.pub -m myapp.tar.gz`,
		Args: args("IN"),
		RunE: c.local(func(cmd *cobra.Command, args []string) error {
			in := args[0]
			if sigPath == "" {
				sigPath = in + ".minisig"
			}
			if !cmd.Flags().Changed("trusted-comment") {
				trusted = fmt.Sprintf("timestamp:%d\tfile:%s\thashed", time.Now().Unix(), filepath.Base(in))
			}
			k, err := c.readSecretKey(key, passFile)
			if err != nil {
				return err
			}
			f, err := os.Open(in)
			if err != nil {
				return err
			}
			defer f.Close()
			s, err := minisign.Sign(k, f, trusted, "vmapp signature by key "+k.ID.String())
			if err != nil {
				return err
			}
			if err := atomicfile.Write(sigPath, s.Encode(), 0o644); err != nil {
				return err
			}
			if c.structured() {
				return c.printIndented(map[string]any{"file": in, "signature": sigPath, "keyId": k.ID.String(), "trustedComment": s.TrustedComment})
			}
			_, err = fmt.Fprintf(c.stdout, "Signed %s with key %s: %s\n", in, k.ID, sigPath)
			return err
		}),
	}
	cmd.Flags().StringVar(&key, "key", "", "the secret key file")
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "the file holding the key's passphrase (else asked on the terminal)")
	cmd.Flags().StringVar(&sigPath, "sig", "", "the signature file to write (default IN.minisig)")
	cmd.Flags().StringVar(&trusted, "trusted-comment", "", "the signed comment (one line)")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func (c *cli) keyVerifyCmd() *cobra.Command {
	var pub, sigPath string
	cmd := &cobra.Command{
		Use:   "verify --pub FILE [--sig F] IN",
		Short: "Verify a file's signature (minisign -V)",
		Long: `Verify the signature of the file IN (IN.minisig, or --sig) with a public key
file, as minisign -V does: the signature over the file, then over its trusted
comment, which is printed. Both the prehashed signatures minisign makes by
default and legacy ones are verified. Exit status 1 when the signature is not
the key's, or not over this file or this comment.`,
		Example: "  vmapp key verify --pub publisher.pub myapp.tar.gz",
		Args:    args("IN"),
		RunE: c.local(func(cmd *cobra.Command, args []string) error {
			in := args[0]
			if sigPath == "" {
				sigPath = in + ".minisig"
			}
			k, err := minisign.ReadPublicKeyFile(pub)
			if err != nil {
				return err
			}
			s, err := minisign.ReadSignatureFile(sigPath)
			if err != nil {
				return err
			}
			f, err := os.Open(in)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := k.Verify(f, s); err != nil {
				return fmt.Errorf("%s: %w", sigPath, err)
			}
			if c.structured() {
				return c.printIndented(map[string]any{"file": in, "signature": sigPath, "verified": true,
					"keyId": k.ID.String(), "prehashed": s.Prehashed, "trustedComment": s.TrustedComment})
			}
			_, err = fmt.Fprintf(c.stdout, "Signature and trusted comment verified: %s by key %s\nTrusted comment: %s\n", in, k.ID, s.TrustedComment)
			return err
		}),
	}
	cmd.Flags().StringVar(&pub, "pub", "", "the public key file")
	cmd.Flags().StringVar(&sigPath, "sig", "", "the signature file (default IN.minisig)")
	_ = cmd.MarkFlagRequired("pub")
	return cmd
}
