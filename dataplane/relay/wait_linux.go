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
