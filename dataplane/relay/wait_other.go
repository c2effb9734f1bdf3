//go:build !linux

package relay

import (
	"net"
	"syscall"
)

// rawConn is nil outside Linux: directions keep a buffer while idle.
func rawConn(c net.Conn) syscall.RawConn { return nil }

func waitReadable(rc syscall.RawConn) error { return nil }

// ReadWaiter is not made outside Linux (there is no raw connection to
// wait on); its Wait returns at once.
type ReadWaiter struct{}

// NewReadWaiter returns a ReadWaiter whose Wait returns at once.
func NewReadWaiter(syscall.RawConn) *ReadWaiter { return &ReadWaiter{} }

// Wait returns at once: the caller reads.
func (*ReadWaiter) Wait() error { return nil }

// Readable reports true: without Linux's ppoll the caller reads at once.
func Readable(fd uintptr) bool { return true }
