package pipe

import (
	"io"
	"slices"
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
	src := &chunkReader{n: BigBufSize, limit: 1000}
	CopyLoop(discard{}, src, c, &last) // warm the pool
	allocs := testing.AllocsPerRun(10, func() {
		src.reads = 0
		CopyLoop(discard{}, src, c, &last)
	})
	// At most the two buffers (small, then big), if the pools were emptied
	// (the race detector drops pooled items at random); never one per read.
	if allocs > 2 {
		t.Errorf("%.0f allocations per 1000 reads, want at most 2 (the pooled buffers)", allocs)
	}
}

type discard struct{}

func (discard) Read(p []byte) (int, error)  { return 0, io.EOF }
func (discard) Write(p []byte) (int, error) { return len(p), nil }

// scriptReader returns, read after read, the sizes of its script (-1: the
// whole buffer), filling each read with the next bytes of a counting
// sequence, and records the buffer sizes it was given.
type scriptReader struct {
	script []int
	seen   []int
	next   byte
}

func (r *scriptReader) Read(p []byte) (int, error) {
	if len(r.script) == 0 {
		return 0, io.EOF
	}
	n := r.script[0]
	r.script = r.script[1:]
	r.seen = append(r.seen, len(p))
	if n < 0 {
		n = len(p)
	}
	for i := range p[:n] {
		p[i] = r.next
		r.next++
	}
	return n, nil
}

func (r *scriptReader) Write(p []byte) (int, error) { return len(p), nil }

// checkWriter checks that it is written the counting sequence.
type checkWriter struct {
	t     *testing.T
	next  byte
	total int
}

func (w *checkWriter) Read(p []byte) (int, error) { return 0, io.EOF }
func (w *checkWriter) Write(p []byte) (int, error) {
	for i, b := range p {
		if b != w.next {
			w.t.Fatalf("byte %d: got %d, want %d", w.total+i, b, w.next)
		}
		w.next++
	}
	w.total += len(p)
	return len(p), nil
}

// TestCopyLoopBufferSizes: a direction starts with a BufSize buffer, moves
// to BigBufSize when a read fills it, stays there while reads bring at
// least BufSize and goes back to BufSize after a smaller read; the bytes
// arrive intact throughout.
func TestCopyLoopBufferSizes(t *testing.T) {
	var last atomic.Int64
	src := &scriptReader{script: []int{-1, -1, BufSize, 100, 10, -1, -1, BufSize - 1, -1}}
	dst := &checkWriter{t: t}
	n, err, eof := CopyLoop(dst, src, nil, &last)
	if err != nil || !eof {
		t.Fatalf("CopyLoop: err %v, eof %v; want nil, true", err, eof)
	}
	want := []int{BufSize, BigBufSize, BigBufSize, BigBufSize, BufSize, BufSize, BigBufSize, BigBufSize, BufSize}
	if !slices.Equal(src.seen, want) {
		t.Errorf("buffer sizes read into: %v, want %v", src.seen, want)
	}
	wantN := int64(BufSize + BigBufSize + BufSize + 100 + 10 + BufSize + BigBufSize + BufSize - 1 + BufSize)
	if n != wantN || int64(dst.total) != wantN {
		t.Errorf("copied %d, written %d, want %d", n, dst.total, wantN)
	}
}

// BenchmarkCopyLoop: one op is one read and write of a full big buffer
// (256 KiB, the bulk case); allocs/op must be 0.
func BenchmarkCopyLoop(b *testing.B) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "bytes"})
	var last atomic.Int64
	b.ReportAllocs()
	b.SetBytes(BigBufSize)
	src := &chunkReader{n: BigBufSize, limit: b.N + 1}
	b.ResetTimer()
	n, err, eof := CopyLoop(discard{}, src, c, &last)
	// The first read fills the small buffer only.
	if err != nil || !eof || n != int64(b.N)*BigBufSize+BufSize {
		b.Fatal(n, err, eof)
	}
}
