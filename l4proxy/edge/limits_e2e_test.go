package edge_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// echoOnce writes a message on c and reads it back.
func echoOnce(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "ping"); err != nil {
		return err
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != "ping" {
		return fmt.Errorf("echo %q", b)
	}
	return nil
}

// refusedAtOnce dials addr and reports whether the edge closed the
// connection (EOF or reset) within a second; the reset may come before
// the connect returns.
func refusedAtOnce(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return closedWithin(c, time.Second)
}

// closedWithin reports whether the edge closed c (EOF or reset) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestUserConnLimits: with MaxConnsPerSource 2, two idle connections from
// one source (one proxied by a TCP binding, one that sent no HTTP head
// yet) hold the source's slots across listeners: the third is reset at
// once and counted with the limit's name; when one closes, the source is
// served again. MaxConns refuses the same way over all sources.
func TestUserConnLimits(t *testing.T) {
	t.Run("per source", func(t *testing.T) {
		e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{MaxConnsPerSource: 2})
		e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", edgetest.EchoTCP(t, "127.0.0.1")), nil)
		tcpAddr, httpAddr := e.ServeTCP("echo"), e.ServeHTTP()
		first := dial(t, tcpAddr)
		if err := echoOnce(first); err != nil {
			t.Fatal(err)
		}
		dial(t, httpAddr) // silent: waits for its head
		open := func() float64 { return edgetest.Metric(t, e.Registry, "onramp_edge_user_connections", "") }
		waitMetric(t, open, 2)
		for _, addr := range []string{tcpAddr, httpAddr} {
			if !refusedAtOnce(t, addr) {
				t.Fatalf("third connection from the source (to %s) not closed at once", addr)
			}
		}
		if v := edgetest.Metric(t, e.Registry, "onramp_edge_user_connections_refused_total", "maxConnsPerSource"); v != 2 {
			t.Errorf("refused{limit=maxConnsPerSource} = %v, want 2", v)
		}
		first.Close()
		waitMetric(t, open, 1)
		if err := echoOnce(dial(t, tcpAddr)); err != nil {
			t.Fatalf("source not served after one of its connections closed: %v", err)
		}
	})
	t.Run("global", func(t *testing.T) {
		e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{MaxConns: 1})
		httpAddr := e.ServeHTTP()
		held := dial(t, httpAddr)
		waitMetric(t, func() float64 { return edgetest.Metric(t, e.Registry, "onramp_edge_user_connections", "") }, 1)
		if !refusedAtOnce(t, httpAddr) {
			t.Fatal("connection over MaxConns not closed at once")
		}
		if v := edgetest.Metric(t, e.Registry, "onramp_edge_user_connections_refused_total", "maxConns"); v != 1 {
			t.Errorf("refused{limit=maxConns} = %v, want 1", v)
		}
		held.Close()
		waitMetric(t, func() float64 { return edgetest.Metric(t, e.Registry, "onramp_edge_user_connections", "") }, 0)
		if c := dial(t, httpAddr); closedWithin(c, 300*time.Millisecond) {
			t.Fatal("connection closed after the held one left")
		}
	})
}

// TestHeaderTimeout: a user that sends no head, or half of one, is closed
// after Options.HeaderTimeout on the HTTP and TLS listeners.
func TestHeaderTimeout(t *testing.T) {
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{HeaderTimeout: 300 * time.Millisecond})
	for _, tc := range []struct {
		name, addr, send string
	}{
		{"http silent", e.ServeHTTP(), ""},
		{"http partial head", e.ServeHTTP(), "GET / HTTP/1.1\r\nHost: a"},
		{"tls silent", e.ServeTLS(), ""},
		{"tls partial hello", e.ServeTLS(), "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, tc.addr)
			start := time.Now()
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			if !closedWithin(c, 5*time.Second) {
				t.Fatal("not closed within 5s")
			}
			if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
				t.Errorf("closed after %v, want about 300ms", d)
			}
		})
	}
}

// TestAuthFailuresCounted: the edge counts its listener's failed
// authentications by reason in onramp_edge_auth_failures_total.
func TestAuthFailuresCounted(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		bad := e.Token
		bad.Secret[0] ^= 1
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := tunnel.Dial(ctx, proto, e.Listener.Addr().String(), bad, [16]byte{1}, edgetest.TunnelConfig()); err == nil {
			t.Fatal("bad secret accepted")
		}
		waitMetric(t, func() float64 {
			return edgetest.Metric(t, e.Registry, "onramp_edge_auth_failures_total", "bad_secret")
		}, 1)
		if proto == tunnel.ProtoHTTP2 {
			c, err := tls.Dial("tcp", e.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err == nil {
				c.Close()
			}
			waitMetric(t, func() float64 {
				return edgetest.Metric(t, e.Registry, "onramp_edge_auth_failures_total", "tls")
			}, 1)
		}
		if v := edgetest.Metric(t, e.Registry, "onramp_edge_auth_failures_total", "unknown_tunnel"); v != 0 {
			t.Errorf("unknown_tunnel = %v, want 0", v)
		}
	})
}
