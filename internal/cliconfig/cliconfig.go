// Package cliconfig is the vmapp CLI's configuration file: named contexts
// (a server list, TLS files, a token file, a tenant) and the current one,
// as kubectl's kubeconfig has them. The file is
// ${XDG_CONFIG_HOME:-~/.config}/vmapp/config.yaml:
//
//	current-context: prod
//	contexts:
//	  prod:
//	    server: vmappd-1:7443,vmappd-2:7443,vmappd-3:7443
//	    ca: /etc/vmapp/ca.pem
//	    token-file: /home/me/.config/vmapp/prod.token
//	    tenant: team-a
//
// Paths are stored absolute, so the file works from any directory.
package cliconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/vmapp/vmapp/internal/atomicfile"
)

// Context is one named connection setting. Empty fields are not set.
type Context struct {
	Server    string `yaml:"server,omitempty" json:"server,omitempty"`
	Tenant    string `yaml:"tenant,omitempty" json:"tenant,omitempty"`
	CA        string `yaml:"ca,omitempty" json:"ca,omitempty"`
	Cert      string `yaml:"cert,omitempty" json:"cert,omitempty"`
	Key       string `yaml:"key,omitempty" json:"key,omitempty"`
	TokenFile string `yaml:"token-file,omitempty" json:"tokenFile,omitempty"`
	// TLS connects over TLS trusting the system's CAs (implied by CA and
	// Cert).
	TLS bool `yaml:"tls,omitempty" json:"tls,omitempty"`
}

// Config is the file's content.
type Config struct {
	CurrentContext string              `yaml:"current-context,omitempty" json:"currentContext,omitempty"`
	Contexts       map[string]*Context `yaml:"contexts,omitempty" json:"contexts"`
}

// Path is the file's path: $XDG_CONFIG_HOME/vmapp/config.yaml, or
// ~/.config/vmapp/config.yaml.
func Path() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no configuration directory: set XDG_CONFIG_HOME or HOME: %w", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "vmapp", "config.yaml"), nil
}

// Load reads the file at path; a file that doesn't exist is an empty
// configuration. Unknown keys are refused (a typo would otherwise be
// silently ignored).
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Config{}, nil
	}
	if err != nil {
		return nil, err
	}
	var c Config
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for name, ctx := range c.Contexts {
		if ctx == nil {
			c.Contexts[name] = &Context{}
		}
	}
	return &c, nil
}

// Save writes c to path (mode 0600, in a directory made 0700 if absent:
// the file names credentials' files).
func (c *Config) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// Names are the contexts' names, sorted.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.Contexts))
	for n := range c.Contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Current is the context named name, or the current one when name is "";
// nil when neither is set. A name that isn't in the file is an error.
func (c *Config) Current(name string) (*Context, string, error) {
	if name == "" {
		name = c.CurrentContext
	}
	if name == "" {
		return nil, "", nil
	}
	ctx, ok := c.Contexts[name]
	if !ok {
		return nil, name, fmt.Errorf("no context %q (contexts: %v)", name, c.Names())
	}
	return ctx, name, nil
}
