package main

import (
	"io"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/internal/cobracmd/cobracmdtest"
)

func TestCommandLine(t *testing.T) {
	cobracmdtest.Check(t, func() *cobra.Command { return rootCmd(io.Discard, io.Discard) },
		"vmappd-restore.1", "vmappd-certs.1", "vmappd-operator-token.1")
}
