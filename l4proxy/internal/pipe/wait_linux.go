package pipe

import (
	"io"
	"syscall"

	"github.com/onramp-net/onramp/dataplane/relay"
	"github.com/onramp-net/onramp/dataplane/sockio"
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
	rc := sockio.RawConn(cs.Conn)
	if rc == nil {
		return nil
	}
	return socketWaiter{rc}
}
