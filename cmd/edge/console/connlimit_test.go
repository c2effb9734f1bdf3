package console

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/internal/connlimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// serveConsole serves e's console on a loopback port until the test ends.
func serveConsole(t *testing.T, e *env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// dialFrom opens a TCP connection to addr from the loopback address src
// (every 127.0.0.0/8 address is local on Linux): a source of its own for
// the per-source limit.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// refused reports whether the console closed c without an answer (EOF or
// a reset), waiting at most wait; a connection it keeps open times out.
func refused(t *testing.T, c net.Conn, wait time.Duration) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	if err == nil {
		t.Fatal("the console sent bytes to a connection that sent none")
	}
	return true
}

// operatorGET is the operator's browser: GET /login from 127.0.0.1.
func operatorGET(addr string) (int, error) {
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).DialContext, DisableKeepAlives: true}}
	resp, err := cl.Get("http://" + addr + "/login")
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// TestConnLimits plays an attacker holding idle sockets: it gets
// MaxConnsPerSource from one address and no more, several addresses stop at
// MaxConns, every refusal is counted and logged once a minute, the
// operator gets in as soon as there is room, and the idle sockets are
// closed at the header timeout, giving their slots back.
func TestConnLimits(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, Options{PasswordHash: testHash(t, testPassword), MaxConns: 8, MaxConnsPerSource: 3, Registerer: reg})
	e.s.opts.Now = time.Now // the refusal log's period is real time here
	addr := serveConsole(t, e)
	lim := func() *connlimit.Listener { return e.s.conns.Load() }
	waitOpen := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for lim().Open() != want {
			if time.Now().After(deadline) {
				t.Fatalf("open connections: %d, want %d", lim().Open(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// One source: 3 held, the 4th closed at once.
	var held []net.Conn
	for range 3 {
		held = append(held, dialFrom(t, "127.0.0.2", addr))
	}
	waitOpen(3)
	if !refused(t, dialFrom(t, "127.0.0.2", addr), 5*time.Second) {
		t.Fatal("a 4th connection from one source was kept (MaxConnsPerSource 3)")
	}
	for _, c := range held {
		if refused(t, c, 50*time.Millisecond) {
			t.Fatal("a connection within the limit was closed")
		}
	}
	if code, err := operatorGET(addr); err != nil || code != http.StatusOK {
		t.Fatalf("the operator beside a source at its limit: %d %v", code, err)
	}

	// Two more sources fill the console: 3+3+2 = 8, then all are refused,
	// the operator too (the trade-off: a full console serves no one new
	// until a slot is free).
	for i, src := range []string{"127.0.0.3", "127.0.0.3", "127.0.0.3", "127.0.0.4", "127.0.0.4"} {
		held = append(held, dialFrom(t, src, addr))
		waitOpen(4 + i)
	}
	if !refused(t, dialFrom(t, "127.0.0.5", addr), 5*time.Second) {
		t.Fatal("a connection over MaxConns 8 was kept")
	}
	if _, err := operatorGET(addr); err == nil {
		t.Fatal("the operator was served by a full console")
	}
	if got := testutil.ToFloat64(e.s.refused.WithLabelValues(connlimit.LimitMaxConnsPerSource)); got != 1 {
		t.Errorf("refused by maxConnsPerSource: %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.s.refused.WithLabelValues(connlimit.LimitMaxConns)); got != 2 {
		t.Errorf("refused by maxConns: %v, want 2", got)
	}
	if n, err := testutil.GatherAndCount(reg, "onramp_edge_console_connections_refused_total"); err != nil || n != 2 {
		t.Errorf("registered series: %d %v", n, err)
	}
	if n := strings.Count(e.log.String(), "console: connection refused"); n != 1 {
		t.Errorf("refusals logged %d times in a minute, want once:\n%s", n, e.log.String())
	}

	// One attacker socket closed: its slot is the operator's.
	_ = held[0].Close()
	waitOpen(7)
	if code, err := operatorGET(addr); err != nil || code != http.StatusOK {
		t.Fatalf("the operator once a slot was free: %d %v", code, err)
	}

	// The idle sockets never sent a request head: the header timeout (5 s)
	// closes them, and the console is empty again.
	for _, c := range held[1:] {
		if !refused(t, c, 10*time.Second) {
			t.Fatal("an idle socket outlived the header timeout")
		}
	}
	waitOpen(0)
}

// TestConnFlood: 1,000 sockets from 10 sources against the default limits
// hold at most DefaultMaxConns slots, and the console's goroutines stay
// bounded by them, not by the flood.
func TestConnFlood(t *testing.T) {
	e := newEnv(t, Options{PasswordHash: testHash(t, testPassword)})
	addr := serveConsole(t, e)
	before := runtime.NumGoroutine()
	for i := range 1000 {
		dialFrom(t, "127.0.1."+string(rune('0'+i%10)), addr)
	}
	lim := e.s.conns.Load()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(e.s.refused.WithLabelValues(connlimit.LimitMaxConnsPerSource))+testutil.ToFloat64(e.s.refused.WithLabelValues(connlimit.LimitMaxConns)) < 1000-DefaultMaxConns {
		if time.Now().After(deadline) {
			t.Fatalf("refusals: %v per source, %v in all; open %d", testutil.ToFloat64(e.s.refused.WithLabelValues(connlimit.LimitMaxConnsPerSource)),
				testutil.ToFloat64(e.s.refused.WithLabelValues(connlimit.LimitMaxConns)), lim.Open())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := lim.Open(); n != DefaultMaxConns {
		t.Errorf("open: %d, want %d (10 sources x %d per source, capped)", n, DefaultMaxConns, DefaultMaxConnsPerSource)
	}
	if g := runtime.NumGoroutine() - before; g > DefaultMaxConns+16 {
		t.Errorf("%d goroutines for 1000 sockets: not bounded by the %d slots", g, DefaultMaxConns)
	}
	t.Logf("1000 sockets from 10 sources: %d open, %d goroutines more", lim.Open(), runtime.NumGoroutine()-before)
}

// TestHostChecked: a plain-HTTP console answers to loopback names only (a
// page whose name is rebound to 127.0.0.1 gets 421); over TLS the
// certificate does that job and any name is served.
func TestHostChecked(t *testing.T) {
	plain := newEnv(t, Options{PasswordHash: testHash(t, testPassword)})
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"localhost:8844", true}, {"LOCALHOST", true}, {"127.0.0.1:8844", true}, {"127.9.9.9", true}, {"[::1]:8844", true},
		{"evil.example:8844", false}, {"198.18.0.1:8844", false}, {"localhost.evil.example", false}, {"[::ffff:198.18.0.1]:8844", false},
	} {
		got := plain.do(req{method: "GET", path: "/login", host: tc.host})
		if (got.StatusCode != http.StatusMisdirectedRequest) != tc.ok {
			t.Errorf("Host %q: %s (want served: %v)", tc.host, got.Status, tc.ok)
		}
	}
	// No Host at all (HTTP/1.0) is no loopback name either.
	r := httptest.NewRequest(http.MethodGet, "/login", nil)
	r.Host = ""
	w := httptest.NewRecorder()
	plain.h.ServeHTTP(w, r)
	if w.Code != http.StatusMisdirectedRequest {
		t.Errorf("no Host: %d", w.Code)
	}
	withTLS := newEnv(t, Options{PasswordHash: testHash(t, testPassword), TLS: &tls.Config{}, Addr: "198.18.0.1:443"})
	if got := withTLS.do(req{method: "GET", path: "/login", host: "console.example.com"}); got.StatusCode != http.StatusOK {
		t.Errorf("TLS console, Host console.example.com: %s", got.Status)
	}
}
