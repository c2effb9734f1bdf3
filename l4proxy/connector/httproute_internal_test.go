package connector

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// pipeStream is one end of a net.Pipe as a tunnel.Stream, for the
// streamConn tests.
type pipeStream struct{ net.Conn }

func (pipeStream) Respond(tunnel.Status, string) error { return nil }
func (p pipeStream) CloseWrite() error                 { return p.Conn.Close() }
func (p pipeStream) Reset()                            { p.Conn.Close() }

func testConnector(t *testing.T) *Connector {
	t.Helper()
	cfg, err := ingress.Parse([]byte("ingress:\n  - service: http_status:404\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Ingress: cfg, Token: tunnel.Token{Edges: []string{"127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStreamConnDeadlines: what net/http relies on. A read deadline ends a
// blocked Read with a timeout net.Error, also when set from another
// goroutine while the Read waits; the stream read it left pending hands
// its bytes to the next Read; Close ends a waiting Read.
func TestStreamConnDeadlines(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	sc := newStreamConn(pipeStream{a}, netip.MustParseAddrPort("198.18.0.7:4242"), testConnector(t))
	if got := sc.RemoteAddr().String(); got != "198.18.0.7:4242" {
		t.Errorf("RemoteAddr = %s", got)
	}
	buf := make([]byte, 64)

	// A deadline in the future.
	sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := sc.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want a timeout", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("Read timed out after %v, before its deadline", d)
	}

	// Moved to the past while a Read waits (net/http's abortPendingRead).
	sc.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := sc.Read(buf)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	sc.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-errc:
		if _, ok := err.(net.Error); !ok || !err.(net.Error).Timeout() {
			t.Fatalf("aborted Read: %v (%T), want a net.Error that is a timeout, unwrapped", err, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a past deadline did not end the waiting Read")
	}

	// Bytes that arrive later go to the next Read, none lost.
	sc.SetReadDeadline(time.Time{})
	go b.Write([]byte("hello"))
	n, err := sc.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read after the deadline was cleared: %q, %v", buf[:n], err)
	}
	if !sc.writeDeadlineRefused() {
		t.Error("a write deadline was accepted, but streams cannot honour it")
	}

	go func() {
		_, err := sc.Read(buf)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	sc.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("Read ended by Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the waiting Read")
	}
}

func (sc *streamConn) writeDeadlineRefused() bool {
	return sc.SetWriteDeadline(time.Now().Add(time.Second)) != nil && sc.SetWriteDeadline(time.Time{}) == nil
}

// TestOriginsFollowConfig: each rule has one origin Transport, reused by
// every request; a Config that is gone (replaced on reload, last stream
// ended) takes its Transports and their idle connections with it.
func TestOriginsFollowConfig(t *testing.T) {
	key := func() weak.Pointer[ingress.Config] {
		cfg, err := ingress.Parse([]byte("ingress:\n  - {path: /a, service: \"http://198.18.2.10:1\"}\n  - service: \"unix:/run/app.sock\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		rules := cfg.Rules()
		a, b := originFor(cfg, rules[0]), originFor(cfg, rules[1])
		if a == b || originFor(cfg, rules[0]) != a {
			t.Fatal("want one origin proxy per rule, reused")
		}
		if a.scheme+"://"+a.host != "http://198.18.2.10:1" || b.scheme+"://"+b.host != "http://localhost" {
			t.Errorf("origin URLs %s://%s and %s://%s", a.scheme, a.host, b.scheme, b.host)
		}
		key := weak.Make(cfg)
		if _, ok := originsByConfig.Load(key); !ok {
			t.Fatal("no origins recorded for the config")
		}
		return key
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		if _, ok := originsByConfig.Load(key); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the origins of an unreachable config were not dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
