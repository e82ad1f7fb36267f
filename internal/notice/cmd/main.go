// Command notice prints NOTICE (run from the repository root).
package main

import (
	"fmt"
	"os"

	"github.com/vmapp/vmapp/internal/notice"
)

func main() {
	mods, err := notice.Modules(".")
	if err == nil {
		err = notice.Write(os.Stdout, mods)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "notice:", err)
		os.Exit(1)
	}
}
