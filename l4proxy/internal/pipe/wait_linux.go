package pipe

import (
	"io"
	"syscall"

	"github.com/onramp-net/onramp/dataplane/relay"
	"github.com/onramp-net/onramp/dataplane/sockio"
)

// socketWaiter waits until a read from a socket would not block, without a
// buffer: a ppoll(2) with a zero timeout tells whether the socket holds
// data, EOF or an error now, and if not, the Go poller waits until it
// becomes readable. (A MSG_PEEK read would do the same but consume a
// pending error such as a reset, which the read after it would then
// report as EOF.) The poller wakes a reader only when the socket became
// readable, or for the read deadline or a close, which the read after the
// wait reports: so the wake is not checked with a second ppoll. Were it
// spurious, the read after it would wait holding its buffer, and nothing
// else would change.
type socketWaiter struct {
	rc      syscall.RawConn
	checked bool               // in a wait: the ppoll was made
	fn      func(uintptr) bool // w.check, made once
}

func (w *socketWaiter) WaitReadable() error {
	w.checked = false
	return w.rc.Read(w.fn)
}

// check is the wait's condition: the ppoll before the wait, then true
// once the poller woke it.
func (w *socketWaiter) check(fd uintptr) bool {
	if w.checked {
		return true
	}
	w.checked = true
	return readable(fd)
}

// readable is relay.Readable; tests count its calls.
var readable = relay.Readable

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
	w := &socketWaiter{rc: rc}
	w.fn = w.check
	return w
}
