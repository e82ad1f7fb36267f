package s3

import (
	"net"
	"time"
)

// deadPeerTimeout is how long a connection to a store may go without a
// sign of life before it fails: unacknowledged data for that long (the
// store's host is gone: a killed container, a pulled cable, a region cut
// off), or keepalive probes unanswered for that long while a reply is
// awaited. Without it a write to a vanished host waits out the kernel's
// retransmissions (about 15 minutes on Linux) and a copy in flight hangs
// with it; nothing else would notice, because a slow store is not an
// error. A store that answers, however slowly, is never cut off.
const deadPeerTimeout = 30 * time.Second

// dialer connects to stores: a bounded connect, keepalive probes that
// start after a short idle, and (on Linux) TCP_USER_TIMEOUT, so that a
// store that vanishes mid-request fails the request within
// deadPeerTimeout instead of hanging it.
func dialer() *net.Dialer {
	return &net.Dialer{
		Timeout: 10 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     deadPeerTimeout / 2,
			Interval: deadPeerTimeout / 6,
			Count:    3,
		},
		Control: setUserTimeout,
	}
}
