// Command install-minio installs the pinned MinIO server into vmapp's tools
// directory (if it is not there already) and prints its path. The Makefile
// runs it so that `make test` and the tests install MinIO the same way.
package main

import (
	"fmt"
	"os"

	"github.com/vmapp/vmapp/internal/testkit/miniotest"
)

func main() {
	bin, err := miniotest.Binary()
	if err != nil {
		fmt.Fprintln(os.Stderr, "install-minio:", err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
