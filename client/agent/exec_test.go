package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	r := runCommand(context.Background(), `pwd; echo $FOO; echo err >&2; exit 4`, dir, []string{"FOO=bar"}, 10*time.Second)
	if r.ExitCode != 4 || r.Err != nil || r.TimedOut || r.Tail != dir+"\nbar\nerr\n" {
		t.Fatalf("%+v", r)
	}
	// The tail keeps the last TailSize bytes, valid UTF-8.
	r = runCommand(context.Background(), `for i in $(seq 3000); do printf 'é%04d\n' $i; done`, dir, nil, 10*time.Second)
	if r.ExitCode != 0 || len(r.Tail) > TailSize || len(r.Tail) < TailSize-8 || !strings.HasSuffix(r.Tail, "é3000\n") || strings.ContainsRune(r.Tail, '\uFFFD') {
		t.Fatalf("tail of %d bytes: %q", len(r.Tail), r.Tail[:min(40, len(r.Tail))])
	}
	// A timeout kills the group.
	start := time.Now()
	r = runCommand(context.Background(), `sleep 30 & sleep 30`, dir, nil, 300*time.Millisecond)
	if !r.TimedOut || r.ExitCode != -1 || time.Since(start) > 5*time.Second {
		t.Fatalf("%+v after %v", r, time.Since(start))
	}
	// So does the end of ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r = runCommand(ctx, `sleep 30`, dir, nil, time.Minute)
	if !errors.Is(r.Err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("%+v", r)
	}
	// A service left running doesn't fail the command.
	r = runCommand(context.Background(), `sleep 1 >/dev/null 2>&1 & echo ok`, dir, nil, 10*time.Second)
	if r.ExitCode != 0 || r.Err != nil || r.Tail != "ok\n" || r.Duration > time.Second {
		t.Fatalf("%+v", r)
	}
	// Even when it holds the output: the agent waits killGrace for it.
	r = runCommand(context.Background(), `sleep 3 & echo ok; exit 0`, dir, nil, 10*time.Second)
	if r.ExitCode != 0 || r.Err != nil || r.Tail != "ok\n" {
		t.Fatalf("%+v", r)
	}
	// A missing directory can't run.
	if r = runCommand(context.Background(), `true`, dir+"/nope", nil, time.Second); r.Err == nil {
		t.Fatalf("%+v", r)
	}
}

func TestGenerationNumber(t *testing.T) {
	if n := GenerationNumber("0123456789abcdef0123"); n != 0x0123456789abcde {
		t.Fatalf("%x", n)
	}
	if n := GenerationNumber("fffffffffffffffffff"); n <= 0 {
		t.Fatalf("%d", n)
	}
	if GenerationNumber("zz") != 0 || GenerationNumber("") != 0 {
		t.Fatal("non-hex")
	}
}
