// Command dist makes a release's files from binaries already built (make
// dist builds them, static, into DIR/bin/OS_ARCH/): a tarball per
// platform, .deb and .rpm packages per Linux architecture (vmappd,
// vmapp-agent, vmapp; nfpm as a library), and SHA256SUMS of them all.
//
//	go run . --root ../.. --dir ../../dist --version v1.2.0
//
// It is a module of its own so that nfpm and what it needs stay out of the
// product's go.mod.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	var c config
	flag.StringVar(&c.root, "root", "../..", "the repository's root (LICENSE, NOTICE, deploy/)")
	flag.StringVar(&c.dir, "dir", "../../dist", "directory holding bin/OS_ARCH/ and receiving the release's files")
	flag.StringVar(&c.version, "version", "", "the release's version, as git describe prints it (required)")
	flag.Parse()
	if c.version == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: dist --version V [--root DIR] [--dir DIR]")
		os.Exit(2)
	}
	made, err := release(c)
	for _, f := range made {
		fmt.Println(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}
