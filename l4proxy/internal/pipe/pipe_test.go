package pipe

import (
	"io"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// chunkReader returns a full chunk on every Read, forever.
type chunkReader struct {
	n     int
	reads int
	limit int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.reads == r.limit {
		return 0, io.EOF
	}
	r.reads++
	return min(r.n, len(p)), nil
}

func (r *chunkReader) Write(p []byte) (int, error) { return len(p), nil }

// TestCopyLoopAllocs holds the copy loop to zero allocations per read.
func TestCopyLoopAllocs(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "bytes"})
	var last atomic.Int64
	src := &chunkReader{n: BufSize, limit: 1000}
	CopyLoop(discard{}, src, c, &last) // warm the pool
	allocs := testing.AllocsPerRun(10, func() {
		src.reads = 0
		CopyLoop(discard{}, src, c, &last)
	})
	// At most the buffer, if the pool was emptied (the race detector drops
	// pooled items at random); never one per read.
	if allocs > 1 {
		t.Errorf("%.0f allocations per 1000 reads, want at most 1 (the pooled buffer)", allocs)
	}
}

type discard struct{}

func (discard) Read(p []byte) (int, error)  { return 0, io.EOF }
func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkCopyLoop: one op is one 32 KiB read and write; allocs/op must be 0.
func BenchmarkCopyLoop(b *testing.B) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "bytes"})
	var last atomic.Int64
	b.ReportAllocs()
	b.SetBytes(BufSize)
	src := &chunkReader{n: BufSize, limit: b.N}
	b.ResetTimer()
	n, err, eof := CopyLoop(discard{}, src, c, &last)
	if err != nil || !eof || n != int64(b.N)*BufSize {
		b.Fatal(n, err, eof)
	}
}
