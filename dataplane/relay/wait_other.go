//go:build !linux

package relay

import (
	"net"
	"syscall"
)

// rawConn is nil outside Linux: directions keep a buffer while idle.
func rawConn(c net.Conn) syscall.RawConn { return nil }

func waitReadable(rc syscall.RawConn) error { return nil }

// Readable reports true: without Linux's ppoll the caller reads at once.
func Readable(fd uintptr) bool { return true }
