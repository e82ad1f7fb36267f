// Package testnet shapes test connections: a dialer whose connections send
// at a fixed rate, so that a test can act in the middle of a transfer.
package testnet

import (
	"context"
	"net"
	"time"
)

// SlowDialer dials TCP connections whose writes are paced at bytesPerSec.
// Use it with grpc.WithContextDialer.
func SlowDialer(bytesPerSec int) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &slowConn{Conn: c, rate: bytesPerSec}, nil
	}
}

type slowConn struct {
	net.Conn
	rate int
}

// Write sends p in slices of at most 64 KiB, sleeping after each for the
// time the rate allows it.
func (c *slowConn) Write(p []byte) (int, error) {
	var done int
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		w, err := c.Conn.Write(p[:n])
		done += w
		if err != nil {
			return done, err
		}
		time.Sleep(time.Duration(n) * time.Second / time.Duration(c.rate))
		p = p[n:]
	}
	return done, nil
}
