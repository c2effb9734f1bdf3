package pipe

import (
	"io"

	"github.com/onramp-net/onramp/dataplane/relay"
	"github.com/onramp-net/onramp/dataplane/sockio"
)

// socketWaiter waits until a read from a socket would not block, without a
// buffer (see relay.ReadWaiter).
type socketWaiter struct{ w *relay.ReadWaiter }

func (w socketWaiter) WaitReadable() error { return w.w.Wait() }

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
	return socketWaiter{relay.NewReadWaiter(rc)}
}
