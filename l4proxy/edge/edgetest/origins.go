package edgetest

import (
	"errors"
	"io"
	"net"
	"testing"
)

// EchoTCP starts a TCP echo origin on host: it copies what it reads back and
// half-closes after EOF, so a client sees its own bytes and then EOF. It
// returns the address.
func EchoTCP(t testing.TB, host string) string {
	return ServeTCPOrigin(t, host, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// ServeTCPOrigin starts a TCP origin on host running handle for each
// connection (which it closes after handle returns). It returns the address.
func ServeTCPOrigin(t testing.TB, host string, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// EchoUDP starts a UDP origin on host that answers each datagram with
// prefix followed by the datagram. It returns the address.
func EchoUDP(t testing.TB, host, prefix string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			out := append([]byte(prefix), buf[:n]...)
			pc.WriteTo(out, from)
		}
	}()
	return pc.LocalAddr().String()
}

// ClosedPort returns an address on host where nothing listens.
func ClosedPort(t testing.TB, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
