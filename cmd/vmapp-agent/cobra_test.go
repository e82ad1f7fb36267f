package main

import (
	"testing"

	"github.com/vmapp/vmapp/internal/cobracmd/cobracmdtest"
)

func TestCommandLine(t *testing.T) {
	cobracmdtest.Check(t, rootCmd)
}
