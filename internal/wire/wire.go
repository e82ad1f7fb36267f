// Package wire holds the gRPC transport settings vmappd and its clients
// share: message sizes, flow-control windows, keepalive, and the zstd and
// s2 compressors (klauspost/compress, registered by import).
//
// gRPC-Go's defaults (64 KiB windows, grown by BDP estimation) cap a
// single stream well below what a loopback or LAN link carries; uploads
// stream 1 MiB chunks, so the windows are set large enough to keep several
// chunks in flight.
package wire

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/keepalive"

	"github.com/mostynb/go-grpc-compression/nonclobbering/experimental/s2"
	"github.com/mostynb/go-grpc-compression/nonclobbering/zstd"
)

const (
	// MaxMessage bounds one gRPC message: a 1 MiB chunk plus room.
	MaxMessage = 16 << 20
	// StreamWindow and ConnWindow are the flow-control windows.
	StreamWindow = 8 << 20
	ConnWindow   = 32 << 20
	// buffer is a client's transport read and write buffer (a client has
	// one connection or a few, and uploads through it).
	buffer = 1 << 20
	// serverBuffer is vmappd's read buffer per connection, and the write
	// buffer it takes from a pool while it writes (SharedWriteBuffer): a
	// vmappd holds a connection per agent, mostly quiet, and 1 MiB each
	// way per connection made its resident set grow by hundreds of MiB
	// when 10,000 agents reported at once (bench fleet-10k). Frames are
	// 16 KiB: 64 KiB still reads several per system call.
	serverBuffer = 64 << 10
)

// Keepalive: a connection whose path dies without a word (a network cut,
// a NAT that forgets it, a peer back at another address) is found dead
// within about keepaliveTime + keepaliveTimeout, where it would otherwise
// be waited on for ever (an agent's goal-state stream is quiet for hours).
// A client dialled with Keepalive pings after keepaliveTime without news
// while it has a call in flight; vmappd lets it (gRPC servers close
// connections that ping more often than every 5 minutes by default), and
// pings a client it hasn't heard from for twice that.
var (
	keepaliveTime    = 20 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// Keepalive is the dial option of a client that holds quiet calls (the
// agent's goal-state stream). Not every client's: a ping waits behind the
// data written before it, and an upload on a slow link can hold it past
// keepaliveTimeout.
func Keepalive() grpc.DialOption {
	return grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout})
}

// Compressors are the names of the registered compressors a client can ask
// for, besides "" (none, the default: packages are mostly compressed already).
var Compressors = []string{zstd.Name, s2.Name}

// Registered reports whether name is a registered compressor.
func Registered(name string) bool { return encoding.GetCompressor(name) != nil }

// ServerOptions are vmappd's transport options.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessage),
		grpc.InitialWindowSize(StreamWindow),
		grpc.InitialConnWindowSize(ConnWindow),
		grpc.ReadBufferSize(serverBuffer),
		grpc.WriteBufferSize(serverBuffer),
		grpc.SharedWriteBuffer(true),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveTime / 2}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * keepaliveTime, Timeout: keepaliveTimeout}),
	}
}

// DialOptions are the clients' transport options.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
		grpc.WithInitialWindowSize(StreamWindow),
		grpc.WithInitialConnWindowSize(ConnWindow),
		grpc.WithReadBufferSize(buffer),
		grpc.WithWriteBufferSize(buffer),
	}
}
