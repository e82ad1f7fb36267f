//go:build !linux

package s3

import "syscall"

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not offered: the
// keepalive probes alone notice a vanished store while a reply is awaited.
func setUserTimeout(network, address string, c syscall.RawConn) error { return nil }
