//go:build linux

package tunnel

import (
	"net"

	"golang.org/x/sys/unix"
)

// setSocketBuffers raises the UDP socket buffers to size bytes. As root (or with
// CAP_NET_ADMIN) SO_RCVBUFFORCE/SO_SNDBUFFORCE bypass net.core.rmem_max/wmem_max;
// otherwise SO_RCVBUF/SO_SNDBUF are set, which the kernel silently caps.
// Failures are ignored: quic-go then works with smaller buffers.
func setSocketBuffers(c *net.UDPConn, size int) {
	if size <= 0 {
		return
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size)
		}
	})
}
