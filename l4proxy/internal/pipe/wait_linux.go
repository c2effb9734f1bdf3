package pipe

import (
	"io"
	"net"
	"syscall"

	"github.com/onramp-net/onramp/dataplane/relay"
)

// socketWaiter waits until a read from a socket would not block, without a
// buffer: the Go poller waits for readability, and a ppoll(2) with a zero
// timeout tells data, EOF or an error from a spurious wake-up. (A MSG_PEEK
// read would do the same but consume a pending error such as a reset,
// which the read after it would then report as EOF.)
type socketWaiter struct {
	rc syscall.RawConn
}

func (w socketWaiter) WaitReadable() error { return w.rc.Read(relay.Readable) }

// newReadWaiter returns a waiter for src if src waits by itself (a tunnel
// stream with WaitReadable) or is a ConnSide over a TCP or Unix socket,
// nil otherwise. A TLS connection gets none: it may hold decrypted bytes
// while its socket is not readable.
func newReadWaiter(src io.Reader) readWaiter {
	if w, ok := src.(readWaiter); ok {
		return w
	}
	cs, ok := src.(ConnSide)
	if !ok {
		return nil
	}
	var sc syscall.Conn
	switch c := cs.Conn.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return socketWaiter{rc}
}
