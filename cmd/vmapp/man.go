//go:build man

package main

import "github.com/vmapp/vmapp/internal/cobracmd/man"

func init() { extraCommands = append(extraCommands, man.Command()) }
