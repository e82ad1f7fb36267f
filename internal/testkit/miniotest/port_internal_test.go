package miniotest

import (
	"errors"
	"net"
	"path/filepath"
	"testing"
)

// A start on a port someone else holds fails as errExited, the error Start
// retries on with new ports; it never mistakes the other server for its own.
func TestLaunchOnTakenPort(t *testing.T) {
	t.Parallel()
	other := Start(t)
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	for name, addr := range map[string]string{"minio": other.Addr(), "listener": plain.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			bin, _ := Binary()
			work := t.TempDir()
			_, console, err := freePorts()
			if err != nil {
				t.Fatal(err)
			}
			s := &Server{
				AccessKey: "intruder", SecretKey: "intruder-secret",
				DataDir: filepath.Join(work, "data"), bin: bin, addr: addr, consoleAddr: console,
				certsDir: filepath.Join(work, "certs"), logPath: filepath.Join(work, "minio.log"),
			}
			err = s.launch()
			if !errors.Is(err, errExited) {
				t.Fatalf("launch on a taken port: %v, want errExited\n%s", err, s.LogTail())
			}
			if s.Running() {
				t.Fatal("still running after a failed launch")
			}
		})
	}
	if !other.Running() {
		t.Fatal("the server holding the port stopped")
	}
}
