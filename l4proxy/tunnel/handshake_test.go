package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

func TestSourceOf(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.10.2":             "198.18.10.2",
		"::ffff:198.18.10.2":      "198.18.10.2",
		"fd00:10::2":              "fd00:10::",
		"fd00:10::1:2:3:4":        "fd00:10::",
		"fd00:10:0:1::2":          "fd00:10:0:1::",
		"fe80::1%eth0":            "fe80::",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1:2::",
		"2001:db8:1:2:ffff::ffff": "2001:db8:1:2::",
	} {
		if got := SourceOf(netip.MustParseAddr(in)); got != netip.MustParseAddr(want) {
			t.Errorf("SourceOf(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestHandshakeGate(t *testing.T) {
	g := newHandshakeGate(&Config{MaxHandshakes: 5, MaxHandshakesPerSource: 2})
	a, b := netip.MustParseAddr("198.18.10.2"), netip.MustParseAddr("198.18.10.3")
	for i := range 2 {
		if ok, _ := g.acquire(a, true); !ok {
			t.Fatalf("handshake %d of a refused under the limit", i+1)
		}
	}
	if ok, perSource := g.acquire(a, true); ok || !perSource {
		t.Fatalf("third handshake of a: ok %v perSource %v, want refused by the per-source limit", ok, perSource)
	}
	if ok, _ := g.acquire(b, true); !ok {
		t.Fatal("another source refused")
	}
	g.release(a, true)
	if ok, _ := g.acquire(a, true); !ok {
		t.Fatal("a refused after one of its handshakes ended")
	}

	// Unvalidated attempts (spoofable QUIC Initials) fill their source's
	// count of all attempts, not its validated budget.
	c := SourceOf(netip.MustParseAddr("fd00:10::2"))
	for i := range 2 {
		if ok, _ := g.acquire(c, false); !ok {
			t.Fatalf("unvalidated attempt %d of c refused under the limit", i+1)
		}
	}
	// Now a:2, b:1, c:2: 5 pending, at MaxHandshakes.
	if retry, perSource := g.needsRetry(c, 100); !retry || !perSource {
		t.Error("a source at its limit must validate its address (Retry)")
	}
	if retry, _ := g.needsRetry(b, 100); retry {
		t.Error("Retry asked of a source under its limit with few pending handshakes")
	}
	if retry, perSource := g.needsRetry(b, 4); !retry || perSource {
		t.Error("no Retry with more pending handshakes than retryAbove")
	}
	if ok, perSource := g.acquire(c, true); ok || perSource {
		t.Fatalf("attempt over MaxHandshakes: ok %v perSource %v, want refused by the global limit", ok, perSource)
	}
	g.release(b, true)
	if ok, _ := g.acquire(c, true); !ok {
		t.Fatal("validated attempt of c refused although only unvalidated ones fill its count")
	}
	if ok, perSource := g.acquire(c, false); ok || perSource {
		t.Fatalf("over MaxHandshakes again: ok %v perSource %v", ok, perSource)
	}
	for _, r := range []struct {
		src       netip.Addr
		validated bool
	}{{a, true}, {a, true}, {c, false}, {c, false}, {c, true}} {
		g.release(r.src, r.validated)
	}
	if total, _ := g.counts(a); total != 0 || len(g.sources) != 0 {
		t.Errorf("after every release: %d pending, %d sources kept", total, len(g.sources))
	}
}

// events records the listener events of a Config.
type events struct {
	mu       sync.Mutex
	failures []AuthReason
	refused  []bool
	retries  int
	accept   []error

	perSourceRetries int
}

func (e *events) config(cfg *Config) *Config {
	cfg.OnAuthFailure = func(r AuthReason, _ net.Addr) {
		e.mu.Lock()
		e.failures = append(e.failures, r)
		e.mu.Unlock()
	}
	cfg.OnHandshakeRefused = func(perSource bool, _ net.Addr) {
		e.mu.Lock()
		e.refused = append(e.refused, perSource)
		e.mu.Unlock()
	}
	cfg.OnQUICRetry = func(perSource bool, _ net.Addr) {
		e.mu.Lock()
		e.retries++
		if perSource {
			e.perSourceRetries++
		}
		e.mu.Unlock()
	}
	cfg.OnAcceptError = func(err error, _ time.Duration) {
		e.mu.Lock()
		e.accept = append(e.accept, err)
		e.mu.Unlock()
	}
	return cfg
}

func (e *events) count(r AuthReason) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, f := range e.failures {
		if f == r {
			n++
		}
	}
	return n
}

func (e *events) refusals() []bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]bool(nil), e.refused...)
}

func (e *events) retryCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.retries
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listenWith starts a listener of tr with a token's tunnel allowed.
func listenWith(t *testing.T, tr transportCase, cfg *Config) (Listener, Token) {
	t.Helper()
	cert, pin := edgeCert(t)
	tok, err := NewToken([]string{"edge.example:443"}, pin)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.listen("127.0.0.1:0", cert, StaticAuthenticator{tok.TunnelID: tok.Secret[:]}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// Accept and keep what authenticates.
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			t.Cleanup(func() { c.CloseWithError(0, "") })
		}
	}()
	return ln, tok
}

// dialOnce dials ln with tok and closes the connection if it succeeded.
func dialOnce(tr transportCase, ln Listener, tok Token, cfg *Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tr.dial(ctx, ln.Addr().String(), tok, [16]byte{9}, cfg)
	if err == nil {
		c.CloseWithError(0, "")
	}
	return err
}

// stallQUIC completes a QUIC handshake with ln but never authenticates.
func stallQUIC(t *testing.T, addr string) (*quic.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ALPNQUIC}}, &quic.Config{})
	if err == nil {
		t.Cleanup(func() { qc.CloseWithError(0, "") })
	}
	return qc, err
}

// stallTCP connects to addr and sends nothing.
func stallTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refusedAtOnce connects to addr and reports whether the edge closed the
// connection within a second; its reset may come before the connect returns.
func refusedAtOnce(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return closedAtOnce(c)
}

// closedAtOnce reports whether the edge closed c within a second.
func closedAtOnce(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestHTTP2HandshakeLimits holds handshakes open over TCP (connected,
// silent) up to the limits: the next connection is closed at once and
// counted, a real connector from the same source is refused until a held
// one ends, and the held ones are counted as timeouts when they expire.
func TestHTTP2HandshakeLimits(t *testing.T) {
	tr := transports[1]
	t.Run("per source", func(t *testing.T) {
		var ev events
		cfg := ev.config(&Config{HandshakeTimeout: 2 * time.Second, MaxHandshakesPerSource: 2})
		ln, tok := listenWith(t, tr, cfg)
		addr := ln.Addr().String()
		held := []net.Conn{stallTCP(t, addr), stallTCP(t, addr)}
		waitFor(t, "two pending handshakes", func() bool {
			n, _ := ln.(*HTTP2Listener).gate.counts(netip.Addr{})
			return n == 2
		})
		if !refusedAtOnce(t, addr) {
			t.Fatal("third silent connection from the source not closed at once")
		}
		if err := dialOnce(tr, ln, tok, testConfig()); err == nil {
			t.Fatal("a connector authenticated over the per-source limit")
		}
		// The refusal is reported after the reset the client saw.
		waitFor(t, "two refusals reported", func() bool { return len(ev.refusals()) >= 2 })
		if got := ev.refusals(); len(got) != 2 || !got[0] || !got[1] {
			t.Errorf("refusals reported %v, want two by the per-source limit", got)
		}
		held[0].Close()
		waitFor(t, "the closed handshake's slot", func() bool {
			n, _ := ln.(*HTTP2Listener).gate.counts(netip.Addr{})
			return n == 1
		})
		if err := dialOnce(tr, ln, tok, testConfig()); err != nil {
			t.Fatalf("connector refused once a slot was free: %v", err)
		}
		waitFor(t, "the silent handshake to time out", func() bool { return ev.count(AuthHandshakeTimeout) >= 1 })
		if ev.count(AuthTLSFailed) != 1 {
			t.Errorf("%d TLS failures counted, want 1 (the closed silent connection)", ev.count(AuthTLSFailed))
		}
	})
	t.Run("global", func(t *testing.T) {
		var ev events
		cfg := ev.config(&Config{HandshakeTimeout: 2 * time.Second, MaxHandshakes: 1})
		ln, tok := listenWith(t, tr, cfg)
		addr := ln.Addr().String()
		stallTCP(t, addr)
		waitFor(t, "a pending handshake", func() bool {
			n, _ := ln.(*HTTP2Listener).gate.counts(netip.Addr{})
			return n == 1
		})
		if !refusedAtOnce(t, addr) {
			t.Fatal("connection over MaxHandshakes not closed at once")
		}
		waitFor(t, "a refusal reported", func() bool { return len(ev.refusals()) >= 1 })
		if got := ev.refusals(); len(got) != 1 || got[0] {
			t.Errorf("refusals reported %v, want one by the global limit", got)
		}
		waitFor(t, "the held handshake to time out", func() bool { return ev.count(AuthHandshakeTimeout) == 1 })
		if err := dialOnce(tr, ln, tok, testConfig()); err != nil {
			t.Fatalf("connector refused after the held handshake ended: %v", err)
		}
	})
}

// TestQUICHandshakeLimits holds QUIC handshakes (TLS done, no proof) up to
// the per-source limit: the next attempt from the source must prove its
// address (Retry) and then counts against the validated budget; over that
// it is refused before any cryptography.
func TestQUICHandshakeLimits(t *testing.T) {
	tr := transports[0]
	var ev events
	cfg := ev.config(&Config{HandshakeTimeout: 3 * time.Second, MaxHandshakesPerSource: 2})
	ln, tok := listenWith(t, tr, cfg)
	addr := ln.Addr().String()
	gate := ln.(*QUICListener).gate
	src := netip.MustParseAddr("127.0.0.1")
	for i := range 2 {
		if _, err := stallQUIC(t, addr); err != nil {
			t.Fatalf("held handshake %d: %v", i+1, err)
		}
	}
	if ev.retryCount() != 0 {
		t.Fatalf("%d Retries under the limits", ev.retryCount())
	}
	// At the limit: validated by a Retry, two more fit in the validated budget.
	for i := range 2 {
		if _, err := stallQUIC(t, addr); err != nil {
			t.Fatalf("validated handshake %d: %v", i+1, err)
		}
	}
	ev.mu.Lock()
	if ev.perSourceRetries < 2 || ev.perSourceRetries != ev.retries {
		t.Errorf("%d Retries, %d for the per-source limit; want one per attempt over the per-source limit", ev.retries, ev.perSourceRetries)
	}
	ev.mu.Unlock()
	if _, n := gate.counts(src); n != 4 {
		t.Errorf("%d pending handshakes from the source, want 4", n)
	}
	if err := dialOnce(tr, ln, tok, testConfig()); err == nil {
		t.Fatal("a connector authenticated over the per-source limit")
	} else {
		t.Logf("refused as wanted: %v", err)
	}
	if got := ev.refusals(); len(got) == 0 || !got[0] {
		t.Errorf("refusals reported %v, want the per-source limit", got)
	}
	waitFor(t, "the held handshakes to time out", func() bool {
		total, _ := gate.counts(src)
		return total == 0
	})
	if n := ev.count(AuthHandshakeTimeout); n != 4 {
		t.Errorf("%d handshake timeouts counted, want 4", n)
	}
	if err := dialOnce(tr, ln, tok, testConfig()); err != nil {
		t.Fatalf("connector refused after the held handshakes ended: %v", err)
	}
}

// TestQUICRetryAbove: with more pending handshakes than QUICRetryAbove, a
// connector goes through a Retry and still authenticates.
func TestQUICRetryAbove(t *testing.T) {
	tr := transports[0]
	var ev events
	cfg := ev.config(&Config{HandshakeTimeout: 5 * time.Second, QUICRetryAbove: 1})
	ln, tok := listenWith(t, tr, cfg)
	for range 2 {
		if _, err := stallQUIC(t, ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
	}
	before := ev.retryCount()
	if err := dialOnce(tr, ln, tok, testConfig()); err != nil {
		t.Fatalf("connector with a Retry: %v", err)
	}
	if ev.retryCount() == before {
		t.Error("no Retry with more pending handshakes than QUICRetryAbove")
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.perSourceRetries != 0 {
		t.Errorf("%d Retries for the per-source limit, want none", ev.perSourceRetries)
	}
}

// TestAuthFailureReasons: each way an attempt fails is reported with its
// reason, on both transports.
func TestAuthFailureReasons(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			var ev events
			cfg := ev.config(&Config{HandshakeTimeout: time.Second})
			ln, tok := listenWith(t, tr, cfg)
			bad := tok
			bad.Secret[0] ^= 1
			if err := dialOnce(tr, ln, bad, testConfig()); err == nil {
				t.Fatal("bad secret accepted")
			}
			unknown := tok
			unknown.TunnelID[0] ^= 1
			if err := dialOnce(tr, ln, unknown, testConfig()); err == nil {
				t.Fatal("unknown tunnel accepted")
			}
			waitFor(t, "bad secret and unknown tunnel", func() bool {
				return ev.count(AuthBadSecret) == 1 && ev.count(AuthUnknownTunnel) == 1
			})
			// TLS done, no proof: a timeout.
			if tr.name == ProtoQUIC {
				if _, err := stallQUIC(t, ln.Addr().String()); err != nil {
					t.Fatal(err)
				}
			} else {
				c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ALPNHTTP2}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
			}
			waitFor(t, "a handshake timeout", func() bool { return ev.count(AuthHandshakeTimeout) == 1 })
			// Another ALPN: a TLS failure.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tr.name == ProtoQUIC {
				if _, err := quic.DialAddr(ctx, ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h3"}}, nil); err == nil {
					t.Fatal("QUIC handshake with another ALPN succeeded")
				}
			} else {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
				c.Close()
			}
			waitFor(t, "a TLS failure", func() bool { return ev.count(AuthTLSFailed) == 1 })
		})
	}
}

// emfileListener fails its first n Accepts with EMFILE, as a process out
// of file descriptors does, then accepts from the real listener.
type emfileListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	fail := l.n > 0
	if fail {
		l.n--
	}
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestHTTP2ListenerSurvivesEMFILE: accept failures such as EMFILE do not
// end the listener; it backs off, reports the streak once, and accepts
// the next connector.
func TestHTTP2ListenerSurvivesEMFILE(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, pin := edgeCert(t)
	tok, err := NewToken([]string{"edge.example:443"}, pin)
	if err != nil {
		t.Fatal(err)
	}
	var ev events
	cfg := ev.config(testConfig())
	ln := newHTTP2Listener(&emfileListener{Listener: raw, n: 5}, cert, StaticAuthenticator{tok.TunnelID: tok.Secret[:]}, cfg)
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept(context.Background())
		if err == nil {
			t.Cleanup(func() { c.CloseWithError(0, "") })
		}
		accepted <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialHTTP2(ctx, raw.Addr().String(), tok, [16]byte{1}, testConfig())
	if err != nil {
		t.Fatalf("dial after EMFILE: %v", err)
	}
	defer c.CloseWithError(0, "")
	if err := <-accepted; err != nil {
		t.Fatalf("accept after EMFILE: %v", err)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.accept) != 1 || !errors.Is(ev.accept[0], syscall.EMFILE) {
		t.Errorf("accept errors reported %v, want one EMFILE for the streak", ev.accept)
	}
}
