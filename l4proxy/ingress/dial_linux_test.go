package ingress

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// fullBacklogListener returns the address of a loopback TCP socket that
// listens with a backlog of 0 and never accepts, and fills its accept
// queue. Further connects then hang: Linux drops SYNs to a full queue.
func fullBacklogListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Skipf("bind: %v", err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Skipf("listen: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for i := 0; i < 16; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("accept queue of a backlog-0 listener never filled: cannot provoke a hanging connect here")
	return ""
}

func TestDialConnectTimeout(t *testing.T) {
	addr := fullBacklogListener(t)
	for _, scheme := range []string{"tcp", "https"} {
		r := oneRule(t, scheme+"://"+addr, "connectTimeout: 300ms")
		start := time.Now()
		c, err := r.DialStream(context.Background(), false)
		elapsed := time.Since(start)
		if err == nil {
			c.Close()
			t.Fatalf("%s: dial to a full backlog succeeded", scheme)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%s: error %v is not a timeout", scheme, err)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: error %v unwraps to neither deadline error", scheme, err)
		}
		if elapsed < 250*time.Millisecond || elapsed > 3*time.Second {
			t.Errorf("%s: dial gave up after %v, want about 300ms", scheme, elapsed)
		}
	}
}
