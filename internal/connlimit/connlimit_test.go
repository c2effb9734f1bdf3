package connlimit

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCounter: per source (an IPv4 address, an IPv6 /64) and in all, and
// every slot given back.
func TestCounter(t *testing.T) {
	l := NewCounter(5, 2)
	src := func(s string) netip.Addr { return tunnel.SourceOf(netip.MustParseAddr(s)) }
	a, a6, a6same := src("198.18.10.2"), src("fd00:10::2"), src("fd00:10::3:4")
	for i := range 2 {
		if r := l.Acquire(a); r != "" {
			t.Fatalf("connection %d of a refused by %s", i+1, r)
		}
	}
	if r := l.Acquire(a); r != LimitMaxConnsPerSource {
		t.Fatalf("third connection of a: refused by %q, want %s", r, LimitMaxConnsPerSource)
	}
	if r := l.Acquire(a6); r != "" {
		t.Fatalf("first connection of a6 refused by %s", r)
	}
	// Another address of the same IPv6 /64 is the same source.
	if r := l.Acquire(a6same); r != "" {
		t.Fatalf("second connection of the /64 refused by %s", r)
	}
	if r := l.Acquire(a6same); r != LimitMaxConnsPerSource {
		t.Fatalf("third connection of the /64: refused by %q, want %s", r, LimitMaxConnsPerSource)
	}
	l.Release(a)
	if r := l.Acquire(src("198.18.10.3")); r != "" {
		t.Fatalf("a new source refused by %s under the global limit", r)
	}
	if r := l.Acquire(src("198.18.10.4")); r != "" {
		t.Fatalf("fifth connection refused by %s", r)
	}
	if r := l.Acquire(src("198.18.10.5")); r != LimitMaxConns {
		t.Fatalf("sixth connection: refused by %q, want %s", r, LimitMaxConns)
	}
	for _, s := range []netip.Addr{a, a6, a6, src("198.18.10.3"), src("198.18.10.4")} {
		l.Release(s)
	}
	if l.Open() != 0 || len(l.sources) != 0 {
		t.Errorf("after every release: %d open, %d sources kept", l.Open(), len(l.sources))
	}
}

// TestCounts: the counts per source (IPv4 address, IPv6 /64) and in all,
// slots given back, the refusals counted by limit and logged once per
// LogEvery with the count of those left out.
func TestCounts(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var log bytes.Buffer
	refused := NewRefused("test_refused_total", "test")
	l := New(nil, Config{Max: 4, PerSource: 2, Refused: refused, Log: slog.New(slog.NewTextHandler(&log, nil)),
		Name: "test", Now: func() time.Time { return now }})
	a := netip.MustParseAddr("198.18.0.1")
	v6a, v6b := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2") // one /64
	for i, tc := range []struct {
		src  netip.Addr
		want bool
	}{{a, true}, {a, true}, {a, false}, {v6a, true}, {v6b, true}, {v6b, false}, {netip.MustParseAddr("198.18.0.2"), false}} {
		src := tunnel.SourceOfAddr(&net.TCPAddr{IP: tc.src.AsSlice(), Port: 1000 + i})
		if got := l.acquire(src); got != tc.want {
			t.Errorf("%d: %s admitted %v, want %v", i, tc.src, got, tc.want)
		}
	}
	if l.Open() != 4 {
		t.Errorf("open %d", l.Open())
	}
	// The third from a; the second fd00::/64 one is over both counts, and
	// the total is checked first.
	if g := testutil.ToFloat64(refused.WithLabelValues(LimitMaxConnsPerSource)); g != 1 {
		t.Errorf("refused per source: %v", g)
	}
	if g := testutil.ToFloat64(refused.WithLabelValues(LimitMaxConns)); g != 2 {
		t.Errorf("refused in all: %v", g)
	}
	if n := strings.Count(log.String(), "test: connection refused"); n != 1 {
		t.Errorf("%d log lines within a minute:\n%s", n, log.String())
	}
	l.count.Release(tunnel.SourceOfAddr(&net.TCPAddr{IP: a.AsSlice()}))
	if !l.acquire(tunnel.SourceOfAddr(&net.TCPAddr{IP: net.IPv4(198, 18, 0, 2)})) {
		t.Error("a freed slot not given to another source")
	}
	now = now.Add(LogEvery)
	l.acquire(tunnel.SourceOfAddr(&net.TCPAddr{IP: net.IPv4(198, 18, 0, 3)}))
	if !strings.Contains(log.String(), "more_refusals_not_logged=2") {
		t.Errorf("the next minute's line does not count the 2 left out:\n%s", log.String())
	}
}

// TestCloseOnce: a connection closed twice gives its slot back once.
func TestCloseOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, Config{Max: 2, PerSource: 2})
	defer l.Close()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	c1, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	_ = c1.Close()
	_ = c1.Close()
	if l.Open() != 1 {
		t.Errorf("open after closing one twice: %d, want 1", l.Open())
	}
}
