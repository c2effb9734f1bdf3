package edge

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

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
