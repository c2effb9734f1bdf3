package testnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The helpers below play the attackers of the edge's listeners (many idle
// connections from one source, handshakes that never finish) and the user
// who comes from another source meanwhile.

// RaiseFileLimit raises this process's limit of open files (soft and hard)
// to at least n, for a test that holds many sockets. Processes started
// afterwards inherit it. It needs root (CAP_SYS_RESOURCE) to raise the
// hard limit.
func RaiseFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	lim.Cur = n
	lim.Max = max(lim.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", n, err)
	}
	return nil
}

// AddAddress puts another address (with its prefix length) on the node's
// interface dev, for a second source on the same link.
func (node *Node) AddAddress(ctx context.Context, dev string, p netip.Prefix) error {
	if !Allowed(p.Addr()) {
		return fmt.Errorf("testnet: address %s outside 198.18.0.0/15 and fd00::/8", p)
	}
	args := []string{"addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		args = append(args, "nodad") // usable at once
	}
	return node.IP(ctx, args...)
}

// DialFrom connects from inside the node with src as the source address
// (any address of the node if src is the zero Addr).
func (node *Node) DialFrom(src netip.Addr, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	var c net.Conn
	err := node.Do(func() (err error) {
		c, err = d.Dial(network, addr)
		return err
	})
	return c, err
}

// HTTPGetFrom is [Node.HTTPGet] from the source address src.
func (node *Node) HTTPGetFrom(src netip.Addr, addr, host, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := node.httpClientFrom(src, 15*time.Second).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// httpClientFrom returns a client whose connections are made inside the
// node from src (any address of the node if src is the zero Addr).
func (node *Node) httpClientFrom(src netip.Addr, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return node.DialFrom(src, network, addr)
			},
		},
	}
}

// EchoFrom connects to a TCP echo service at addr from src, sends msg and
// checks that it comes back.
func (node *Node) EchoFrom(src netip.Addr, addr, msg string) error {
	c, err := node.DialFrom(src, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}

// HoldConns makes n TCP connections from inside the node, to addrs in
// turn, and sends nothing on them: the idle sockets of an attacker. It
// returns those it holds and how many were reset before their connect
// returned (a server that closes a connection at once with a reset can
// beat the connect). It stops at the first other failure.
func (node *Node) HoldConns(addrs []string, n int) (conns []net.Conn, reset int, err error) {
	conns = make([]net.Conn, 0, n)
	d := net.Dialer{Timeout: 10 * time.Second}
	err = node.Do(func() error {
		for i := range n {
			c, err := d.Dial("tcp", addrs[i%len(addrs)])
			if errors.Is(err, syscall.ECONNRESET) {
				reset++
				continue
			}
			if err != nil {
				return fmt.Errorf("connection %d of %d: %w", i+1, n, err)
			}
			conns = append(conns, c)
		}
		return nil
	})
	return conns, reset, err
}

// StillOpen waits wait, then counts the connections the server has not
// closed (no EOF, no reset). It reads nothing: a connection the server
// never sent to is closed if and only if it is readable. It runs no
// goroutine per connection (the race detector allows 8128).
func StillOpen(conns []net.Conn, wait time.Duration) int {
	time.Sleep(wait)
	n := 0
	for _, c := range conns {
		if !hungUp(c) {
			n++
		}
	}
	return n
}

// hungUp reports whether the TCP connection c is readable or hung up, with
// a poll that does not wait.
func hungUp(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	if err := rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		n, _ := unix.Poll(pfd, 0)
		closed = n > 0 && pfd[0].Revents != 0
	}); err != nil {
		return true
	}
	return closed
}
