//go:build linux

package tunnel

import (
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSocketBuffersForced(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root")
		}
		t.Skip("SO_RCVBUFFORCE needs root (CAP_NET_ADMIN)")
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const size = 8 << 20
	setSocketBuffers(c, size)
	rc, _ := c.SyscallConn()
	var rcv, snd int
	rc.Control(func(fd uintptr) {
		rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	// Linux reports twice the requested size (bookkeeping overhead).
	if rcv < size || snd < size {
		t.Fatalf("SO_RCVBUF %d, SO_SNDBUF %d, want >= %d", rcv, snd, size)
	}
}
