//go:build linux

package tunnel

import (
	"net"
	"syscall"

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

// tcpSegments returns the segments c's TCP socket sent and retransmitted
// (TCP_INFO); 0, 0 if c is not a socket.
func tcpSegments(c net.Conn) (sent, retrans uint64) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, 0
	}
	_ = rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			sent, retrans = uint64(info.Segs_out), uint64(info.Total_retrans)
		}
	})
	return sent, retrans
}
