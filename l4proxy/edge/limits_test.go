package edge

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

func TestConnLimiter(t *testing.T) {
	l := connLimiter{max: 5, perSource: 2, sources: make(map[netip.Addr]int)}
	src := func(s string) netip.Addr { return tunnel.SourceOf(netip.MustParseAddr(s)) }
	a, a6, a6same := src("198.18.10.2"), src("fd00:10::2"), src("fd00:10::3:4")
	for i := range 2 {
		if r := l.acquire(a); r != "" {
			t.Fatalf("connection %d of a refused by %s", i+1, r)
		}
	}
	if r := l.acquire(a); r != limitMaxConnsPerSource {
		t.Fatalf("third connection of a: refused by %q, want %s", r, limitMaxConnsPerSource)
	}
	if r := l.acquire(a6); r != "" {
		t.Fatalf("first connection of a6 refused by %s", r)
	}
	// Another address of the same IPv6 /64 is the same source.
	if r := l.acquire(a6same); r != "" {
		t.Fatalf("second connection of the /64 refused by %s", r)
	}
	if r := l.acquire(a6same); r != limitMaxConnsPerSource {
		t.Fatalf("third connection of the /64: refused by %q, want %s", r, limitMaxConnsPerSource)
	}
	l.release(a)
	if r := l.acquire(src("198.18.10.3")); r != "" {
		t.Fatalf("a new source refused by %s under the global limit", r)
	}
	if r := l.acquire(src("198.18.10.4")); r != "" {
		t.Fatalf("fifth connection refused by %s", r)
	}
	if r := l.acquire(src("198.18.10.5")); r != limitMaxConns {
		t.Fatalf("sixth connection: refused by %q, want %s", r, limitMaxConns)
	}
	for _, s := range []netip.Addr{a, a6, a6, src("198.18.10.3"), src("198.18.10.4")} {
		l.release(s)
	}
	if l.open() != 0 || len(l.sources) != 0 {
		t.Errorf("after every release: %d open, %d sources kept", l.open(), len(l.sources))
	}
}

func TestOptionsDefaults(t *testing.T) {
	s := NewServer(Options{})
	if s.opts.IdleTimeout != DefaultIdleTimeout || s.opts.HeaderTimeout != DefaultHeaderTimeout ||
		s.opts.MaxConns != DefaultMaxConns || s.opts.MaxConnsPerSource != DefaultMaxConnsPerSource {
		t.Errorf("defaults: %+v", s.opts)
	}
	if s := NewServer(Options{IdleTimeout: -1}); s.opts.IdleTimeout >= 0 {
		t.Errorf("a negative IdleTimeout (never) became %v", s.opts.IdleTimeout)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestRefusalLog: a flood of refusals from one source writes one line,
// then one summary at the end of the interval.
func TestRefusalLog(t *testing.T) {
	var buf syncBuffer
	r := newRefusalLog(slog.New(slog.NewTextHandler(&buf, nil)), "refused")
	r.interval = 100 * time.Millisecond
	a, b := netip.MustParseAddr("198.18.10.2"), netip.MustParseAddr("198.18.10.3")
	logged := 0
	for i := range 10000 {
		src := a
		if i%1000 == 999 {
			src = b
		}
		if r.first(src) {
			r.log("n", i)
			logged++
		}
	}
	if logged != 2 {
		t.Errorf("%d refusals logged one by one, want 2 (one per source)", logged)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "count=9998") {
		if time.Now().After(deadline) {
			t.Fatalf("no summary of the 9998 refusals not logged:\n%s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(buf.String(), "\n"); n != 3 {
		t.Errorf("%d log lines, want 3:\n%s", n, buf.String())
	}
	// A new interval logs the source again.
	if !r.first(a) {
		t.Error("the next interval did not log the source's first refusal")
	}
}
