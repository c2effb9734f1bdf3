package relay

import (
	"net"
	"syscall"
	"unsafe"

	"github.com/onramp-net/onramp/dataplane/sockio"
	"golang.org/x/sys/unix"
)

// rawConn returns the raw connection of a TCP or Unix stream socket, nil
// for anything else.
func rawConn(c net.Conn) syscall.RawConn { return sockio.RawConn(c) }

// waitReadable waits on Go's poller, holding no buffer, until a read from
// rc would not block: data, EOF or an error. A ppoll(2) with a zero
// timeout tells these from a spurious wake-up (a MSG_PEEK read would
// consume a pending error such as a reset).
func waitReadable(rc syscall.RawConn) error { return rc.Read(Readable) }

// ReadWaiter waits until a read from one socket would not block, holding
// no buffer: a ppoll(2) with a zero timeout tells whether the socket holds
// data, EOF or an error now, and if not, Go's poller waits until it
// becomes readable. (A MSG_PEEK read would do the same but consume a
// pending error such as a reset, which the read after it would then
// report as EOF.) The poller wakes a reader only when the socket became
// readable, or for the read deadline or a close, which the read after the
// wait reports: so the wake is not checked with a second ppoll. Were it
// spurious, the read after it would wait holding its buffer, and nothing
// else would change. One wait at a time; a wait allocates nothing.
type ReadWaiter struct {
	rc       syscall.RawConn
	checked  bool               // in a wait: the ppoll was made
	fn       func(uintptr) bool // w.check, made once
	readable func(uintptr) bool // Readable; tests count its calls
}

// NewReadWaiter returns a ReadWaiter of the socket rc.
func NewReadWaiter(rc syscall.RawConn) *ReadWaiter {
	w := &ReadWaiter{rc: rc, readable: Readable}
	w.fn = w.check
	return w
}

// Wait returns when a read would not block, or with the error of the
// poller's wait (the read deadline, a close).
func (w *ReadWaiter) Wait() error {
	w.checked = false
	return w.rc.Read(w.fn)
}

// check is the wait's condition: the ppoll before the wait, then true
// once the poller woke it.
func (w *ReadWaiter) check(fd uintptr) bool {
	if w.checked {
		return true
	}
	w.checked = true
	return w.readable(fd)
}

// Readable reports whether a read from the socket fd would return at once
// (data, EOF or an error): for RawConn.Read, to wait on Go's poller
// holding no buffer.
func Readable(fd uintptr) bool {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	var ts unix.Timespec // zero: do not wait
	// Raw: it never waits (see splice).
	n, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	if errno != 0 {
		// EINTR or worse: let the read find out.
		return errno != unix.EINTR
	}
	return n > 0
}
