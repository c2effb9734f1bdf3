//go:build !linux

package relay

import (
	"net"
	"syscall"
)

// rawConn is nil outside Linux: directions keep a buffer while idle.
func rawConn(c net.Conn) syscall.RawConn { return nil }

func waitReadable(rc syscall.RawConn) error { return nil }
