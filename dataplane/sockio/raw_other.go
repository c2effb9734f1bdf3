//go:build !linux

package sockio

import (
	"net"
	"syscall"
)

// RawConn is nil outside Linux: read and write the net.Conn itself.
func RawConn(c net.Conn) syscall.RawConn { return nil }

func rawRead(fd uintptr, p []byte) (int, syscall.Errno)  { return 0, syscall.ENOSYS }
func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) { return 0, syscall.ENOSYS }
func rawShutdownWrite(fd uintptr) syscall.Errno          { return syscall.ENOSYS }
