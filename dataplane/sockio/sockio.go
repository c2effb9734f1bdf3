// Package sockio reads and writes TCP and Unix stream sockets with raw
// system calls on Go's poller.
//
// A net.Conn's Read and Write go through the runtime's system-call
// bookkeeping (entersyscall/exitsyscall), made for calls that may block.
// For a non-blocking socket that costs more than the call saves: the first
// such call after the process was idle wakes the runtime's monitor thread
// (sysmon), which then polls every 20 µs for a millisecond, and a call
// longer than 20 µs (on veth or loopback a write runs the receiver's TCP
// inline) lets the monitor hand the processor to another thread, which the
// caller then has to take back. A proxy that answers one small message at
// a time pays that on every message: through the L4 tunnel it was a third
// of the CPU of a 64-byte echo. Reader and Writer wait on Go's poller as
// net.Conn does (deadlines and Close work the same) and make the read(2)
// or write(2) itself as a raw call: it never blocks, the socket is
// non-blocking.
package sockio

import (
	"io"
	"net"
	"os"
	"syscall"
)

// Reader reads one socket. It is not for concurrent use: one Read at a
// time (a second reader needs its own Reader).
type Reader struct {
	c     net.Conn
	rc    syscall.RawConn
	buf   []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool // read, made once
}

// NewReader returns a Reader of c, or nil if c is not a TCP or Unix
// stream socket (or the system is not Linux): then read c itself.
func NewReader(c net.Conn) *Reader {
	rc := RawConn(c)
	if rc == nil {
		return nil
	}
	r := &Reader{c: c, rc: rc}
	r.fn = r.read
	return r
}

// Read reads into p as net.Conn's Read does: at most len(p) bytes, waiting
// (within the read deadline) until there are some; io.EOF at the end.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.buf = p
	err := r.rc.Read(r.fn)
	r.buf = nil
	switch {
	case err != nil:
		return 0, opError("read", r.c, err)
	case r.errno != 0:
		return 0, opError("read", r.c, os.NewSyscallError("read", r.errno))
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

// read is one read(2) of the socket fd into r.buf; false (wait for
// readability) if it has nothing.
func (r *Reader) read(fd uintptr) bool {
	for {
		n, errno := rawRead(fd, r.buf)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.n, r.errno = n, errno
		return true
	}
}

// Writer writes one socket. It is not for concurrent use: one Write at a
// time.
type Writer struct {
	c     net.Conn
	rc    syscall.RawConn
	buf   []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool // write, made once
	try   func(fd uintptr) bool // tryWrite, made once
}

// NewWriter returns a Writer of c, or nil if c is not a TCP or Unix
// stream socket (or the system is not Linux): then write c itself.
func NewWriter(c net.Conn) *Writer {
	rc := RawConn(c)
	if rc == nil {
		return nil
	}
	w := &Writer{c: c, rc: rc}
	w.fn, w.try = w.write, w.tryWrite
	return w
}

// Write writes all of p as net.Conn's Write does, waiting (within the
// write deadline) while the socket takes no more; it returns the bytes
// written and, if fewer than len(p), why.
func (w *Writer) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		w.buf = p[n:]
		err := w.rc.Write(w.fn)
		w.buf = nil
		switch {
		case err != nil:
			return n, opError("write", w.c, err)
		case w.errno != 0:
			return n, opError("write", w.c, os.NewSyscallError("write", w.errno))
		case w.n == 0:
			return n, io.ErrShortWrite // a socket that takes nothing says EAGAIN
		}
		n += w.n
	}
	return n, nil
}

// write is one write(2) of w.buf to the socket fd; false (wait for
// writability) if it takes nothing now.
func (w *Writer) write(fd uintptr) bool {
	for {
		n, errno := rawWrite(fd, w.buf)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		w.n, w.errno = n, errno
		return true
	}
}

// TryWrite makes one write(2) of p without waiting: it returns the bytes
// the socket took now, 0 if it takes none (EAGAIN), or the error of the
// write. It is for a writer that must not block (a tunnel's reader
// delivering a stream's bytes straight to their socket): whoever gets 0
// leaves the rest to a writer that can wait.
func (w *Writer) TryWrite(p []byte) (int, error) {
	w.buf = p
	err := w.rc.Write(w.try)
	w.buf = nil
	switch {
	case err != nil:
		return 0, opError("write", w.c, err)
	case w.errno != 0:
		return 0, opError("write", w.c, os.NewSyscallError("write", w.errno))
	}
	return w.n, nil
}

// tryWrite is write without the wait: EAGAIN (write's false) is 0 bytes
// taken.
func (w *Writer) tryWrite(fd uintptr) bool {
	if !w.write(fd) {
		w.n, w.errno = 0, 0
	}
	return true
}

// opError wraps err as net.Conn's methods do.
func opError(op string, c net.Conn, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// TryRead makes one read(2) of c into p without waiting, where c is a TCP
// or Unix socket: it returns the bytes c holds now, 0 if it holds none
// (EAGAIN, or c is another conn, which it does not read), io.EOF at its
// end, or the read's error. A pending error (a reset) is consumed by the
// read that returns it: the caller must not read c again expecting it.
// p must not be empty.
func TryRead(c net.Conn, p []byte) (int, error) {
	rc := RawConn(c)
	if rc == nil {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) { n, errno = rawRead(fd, p) }); err != nil {
		return 0, opError("read", c, err)
	}
	switch {
	case errno == syscall.EAGAIN:
		return 0, nil
	case errno != 0:
		return 0, opError("read", c, os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// ReadFD is one read(2) of the socket fd into p as a raw system call,
// without waiting: for a caller that waits by itself (syscall.RawConn's
// Read or Control). p must not be empty.
func ReadFD(fd uintptr, p []byte) (int, syscall.Errno) { return rawRead(fd, p) }

// CloseWrite passes EOF on: shutdown(SHUT_WR), as a raw system call on a
// TCP or Unix socket (it sends the FIN and, on veth or loopback, runs the
// peer's TCP inline: long enough for the runtime to hand its processor to
// another thread, had the call gone through its bookkeeping). Another
// conn is half-closed by its own CloseWrite, or closed if it has none.
func CloseWrite(c net.Conn) error {
	rc := RawConn(c)
	if rc == nil {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite()
		}
		return c.Close()
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) { errno = rawShutdownWrite(fd) }); err != nil {
		return opError("shutdown", c, err)
	}
	if errno != 0 {
		return opError("shutdown", c, os.NewSyscallError("shutdown", errno))
	}
	return nil
}
