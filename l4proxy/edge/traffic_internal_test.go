package edge

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/onramp-net/onramp/l4proxy/internal/pipe"
)

// chunks returns a full buffer on every Read, limit times, then EOF.
type chunks struct{ reads, limit int }

func (r *chunks) Read(p []byte) (int, error) {
	if r.reads == r.limit {
		return 0, io.EOF
	}
	r.reads++
	return len(p), nil
}

func (r *chunks) Write(p []byte) (int, error) { return len(p), nil }

// TestByteCounterCopyLoop: the copy loop counting through a connection's
// byteCounter allocates nothing per read (at most its two pooled buffers)
// and adds every byte to the global counter, the connection and the
// tunnel.
func TestByteCounterCopyLoop(t *testing.T) {
	s := NewServer(Options{Logger: slog.New(slog.DiscardHandler)})
	lc := &liveConn{conn: &liveFake{}}
	te, _ := s.register(lc)
	var last atomic.Int64
	src := &chunks{limit: 1000}
	n, _, _ := pipe.CopyLoop(&chunks{}, src, &lc.toOrigin, &last) // warms the pools
	allocs := testing.AllocsPerRun(10, func() {
		src.reads = 0
		m, _, _ := pipe.CopyLoop(&chunks{}, src, &lc.toOrigin, &last)
		n += m
	})
	if allocs > 2 && !raceEnabled {
		t.Errorf("%.0f allocations per 1000 reads, want at most 2 (the pooled buffers)", allocs)
	}
	// AllocsPerRun runs the function once more than asked.
	if n == 0 || lc.bytes.toOrigin.Load() != uint64(n) || te.bytes.toOrigin.Load() != uint64(n) {
		t.Errorf("copied %d bytes; the connection counted %d, the tunnel %d", n, lc.bytes.toOrigin.Load(), te.bytes.toOrigin.Load())
	}
	if g := testutil.ToFloat64(s.m.BytesToOrigin); g != float64(n) {
		t.Errorf("the global counter has %v bytes to the origin, want %d", g, n)
	}
	if lc.bytes.toUser.Load() != 0 || te.bytes.toUser.Load() != 0 {
		t.Error("bytes to the origin counted toward the user")
	}
	if got := s.TunnelBytes()[te.id]; got.ToOrigin != uint64(n) {
		t.Errorf("TunnelBytes: %+v, want %d to the origin", got, n)
	}
}
