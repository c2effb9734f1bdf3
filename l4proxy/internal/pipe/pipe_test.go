package pipe

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
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
	mu    sync.Mutex
	next  byte
	total int
}

func (w *checkWriter) Read(p []byte) (int, error) { return 0, io.EOF }
func (w *checkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, b := range p {
		if b != w.next {
			w.t.Errorf("byte %d: got %d, want %d", w.total+i, b, w.next)
			return 0, io.ErrShortWrite
		}
		w.next++
	}
	w.total += len(p)
	return len(p), nil
}

func (w *checkWriter) totalNow() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}

// TestCopyLoopBufferSizes: a direction starts with a SmallBufSize buffer,
// moves to BigBufSize when a read fills it, stays there while reads bring
// at least SmallBufSize and goes back to SmallBufSize after a smaller read;
// the bytes arrive intact throughout.
func TestCopyLoopBufferSizes(t *testing.T) {
	var last atomic.Int64
	src := &scriptReader{script: []int{-1, -1, SmallBufSize, 100, 10, -1, -1, SmallBufSize - 1, -1}}
	dst := &checkWriter{t: t}
	n, err, eof := CopyLoop(dst, src, nil, &last)
	if err != nil || !eof {
		t.Fatalf("CopyLoop: err %v, eof %v; want nil, true", err, eof)
	}
	want := []int{SmallBufSize, BigBufSize, BigBufSize, BigBufSize, SmallBufSize, SmallBufSize, BigBufSize, BigBufSize, SmallBufSize}
	if !slices.Equal(src.seen, want) {
		t.Errorf("buffer sizes read into: %v, want %v", src.seen, want)
	}
	wantN := int64(SmallBufSize + BigBufSize + SmallBufSize + 100 + 10 + SmallBufSize + BigBufSize + SmallBufSize - 1 + SmallBufSize)
	if n != wantN || int64(dst.total) != wantN {
		t.Errorf("copied %d, written %d, want %d", n, dst.total, wantN)
	}
	if h := heldBufs.Load(); h != 0 {
		t.Errorf("%d buffers held after CopyLoop returned", h)
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// waitHeld waits up to 5 s for heldBufs to reach want (a loaded CI
// machine has been seen to need more than one for a loop to get there).
func waitHeld(t *testing.T, want int64, when string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for heldBufs.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d copy buffers held, want %d", when, heldBufs.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// copyResult is what CopyLoop returned.
type copyResult struct {
	n   int64
	err error
	eof bool
}

// goCopyLoop runs CopyLoop from src to dst in a goroutine of its own and
// returns where its result comes.
func goCopyLoop(dst, src io.ReadWriter) <-chan copyResult {
	done := make(chan copyResult, 1)
	go func() {
		var last atomic.Int64
		n, err, eof := CopyLoop(dst, src, nil, &last)
		done <- copyResult{n, err, eof}
	}()
	return done
}

// TestCopyLoopIdleSocketHoldsNoBuffer: a direction reading a TCP socket
// that has nothing to read holds no buffer (on Linux), bursts and bulk
// data still arrive intact, and a read deadline still ends the loop.
func TestCopyLoopIdleSocketHoldsNoBuffer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the bufferless wait is Linux only")
	}
	user, edge := tcpPair(t)
	dst := &checkWriter{t: t}
	done := goCopyLoop(dst, ConnSide{edge})
	time.Sleep(20 * time.Millisecond)
	waitHeld(t, 0, "idle before any data")
	var next byte
	send := func(n int) {
		b := make([]byte, n)
		for i := range b {
			b[i] = next
			next++
		}
		if _, err := user.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, n := range []int{64, 1, SmallBufSize + 1, 8 << 20, 100} {
		send(n)
		total += n
		deadline := time.Now().Add(5 * time.Second)
		for dst.totalNow() < total {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d bytes arrived", dst.totalNow(), total)
			}
			time.Sleep(time.Millisecond)
		}
		waitHeld(t, 0, fmt.Sprintf("idle after %d bytes", n))
	}
	edge.SetReadDeadline(time.Now())
	r := <-done
	if r.err == nil || r.eof || r.n != int64(total) {
		t.Fatalf("after the deadline: copied %d (want %d), err %v, eof %v; want a timeout", r.n, total, r.err, r.eof)
	}
}

// TestReadWaiterAllocs: waiting for a readable socket allocates nothing.
func TestReadWaiterAllocs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the bufferless wait is Linux only")
	}
	user, edge := tcpPair(t)
	if _, err := user.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	w := newReadWaiter(ConnSide{edge})
	if w == nil {
		t.Fatal("no waiter for a TCP connection")
	}
	if err := w.WaitReadable(); err != nil { // let the byte arrive
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() { w.WaitReadable() }); allocs != 0 {
		t.Errorf("%.1f allocations per wait, want 0", allocs)
	}
	if newReadWaiter(ConnSide{tls.Client(edge, nil)}) != nil {
		t.Error("a waiter for a TLS connection, which may hold decrypted bytes")
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
	if err != nil || !eof || n != int64(b.N)*BigBufSize+SmallBufSize {
		b.Fatal(n, err, eof)
	}
}

// TestCopyLoopSocketReset: a reset of an idle socket ends the loop with an
// error, not EOF (the wait for readability must not consume the error).
func TestCopyLoopSocketReset(t *testing.T) {
	user, edge := tcpPair(t)
	done := goCopyLoop(discard{}, ConnSide{edge})
	user.Write([]byte("hello"))
	time.Sleep(20 * time.Millisecond) // the loop is waiting again
	user.SetLinger(0)
	user.Close()
	select {
	case r := <-done:
		if r.eof || r.err == nil {
			t.Fatalf("after a reset: err %v, eof %v; want an error", r.err, r.eof)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("CopyLoop still running 5s after the reset")
	}
}

// waitingSource is a Side-like source with WaitReadable, as the HTTP/2
// tunnel streams are: chunks come from a channel.
type waitingSource struct {
	ch   chan []byte
	next []byte
}

func (s *waitingSource) WaitReadable() error {
	if s.next == nil {
		s.next = <-s.ch
	}
	return nil
}

func (s *waitingSource) Read(p []byte) (int, error) {
	if s.next == nil {
		s.next = <-s.ch
	}
	if len(s.next) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.next)
	s.next = s.next[n:]
	if len(s.next) == 0 {
		s.next = nil
	}
	return n, nil
}

func (s *waitingSource) Write(p []byte) (int, error) { return len(p), nil }

// TestCopyLoopWaiterHoldsNoBuffer: a source with WaitReadable is waited
// for without a buffer, like a socket.
func TestCopyLoopWaiterHoldsNoBuffer(t *testing.T) {
	src := &waitingSource{ch: make(chan []byte)}
	dst := &checkWriter{t: t}
	var last atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		CopyLoop(dst, src, nil, &last)
	}()
	var next byte
	for _, n := range []int{10, SmallBufSize, 100} {
		waitHeld(t, 0, "waiting")
		b := make([]byte, n)
		for i := range b {
			b[i] = next
			next++
		}
		src.ch <- b
	}
	src.ch <- []byte{} // EOF
	<-done
	if dst.totalNow() != 10+SmallBufSize+100 {
		t.Fatalf("%d bytes copied, want %d", dst.totalNow(), 10+SmallBufSize+100)
	}
}

// refusingStream is a tunnel stream the connector refused: writes fail at
// once (the stream is gone), the refusal is read after delay.
type refusingStream struct {
	delay time.Duration
}

func (s refusingStream) Read([]byte) (int, error) {
	time.Sleep(s.delay)
	return 0, &tunnel.StreamError{Status: tunnel.StatusForbidden, Message: "refused"}
}
func (refusingStream) Write([]byte) (int, error) {
	return 0, fmt.Errorf("stream reset by the connector")
}
func (refusingStream) CloseWrite() error { return nil }
func (refusingStream) Reset()            {}
func (refusingStream) Close() error      { return nil }

// TestRefusalAnsweredWhenWriteFailsFirst: the write of the user's request
// to a refused stream fails before the refusal is read; the user still
// gets the answer OnRefused writes and then an orderly close, not a reset
// that destroys the answer.
func TestRefusalAnsweredWhenWriteFailsFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	user, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	edge, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Result, 1)
	go func() {
		p := &Proxy{A: ConnSide{edge}, B: refusingStream{delay: 100 * time.Millisecond}, Prefix: []byte("GET / HTTP/1.1\r\n\r\n"),
			OnRefused: func(se *tunnel.StreamError) { fmt.Fprintf(edge, "403 %s\n", se.Message) }}
		done <- p.Run(t.Context())
	}()
	_ = user.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(user)
	if err != nil || string(got) != "403 refused\n" {
		t.Fatalf("the user read %q, %v; want the answer and EOF", got, err)
	}
	user.Close()
	if res := <-done; res.Refused == nil || res.Err != nil {
		t.Errorf("result %+v: want refused, not aborted", res)
	}
}

// TestRefusalReportedWhenWriteFailsFirst: on a TCP binding (no
// OnRefused) too, a refusal read after the user's bytes failed to go out
// is what the Proxy reports (the edge counts it as the origin's error),
// not an abort by the failed write; with the prefix written by Start and
// with bytes the user sends later.
func TestRefusalReportedWhenWriteFailsFirst(t *testing.T) {
	for _, prefix := range []string{"hello", ""} {
		t.Run(fmt.Sprintf("prefix=%q", prefix), func(t *testing.T) {
			user, edge := tcpPair(t)
			done := make(chan Result, 1)
			go func() {
				p := &Proxy{A: ConnSide{edge}, B: refusingStream{delay: 100 * time.Millisecond}, Prefix: []byte(prefix)}
				done <- p.Run(t.Context())
			}()
			if prefix == "" {
				if _, err := user.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
			}
			_ = user.SetReadDeadline(time.Now().Add(10 * time.Second))
			if got, _ := io.ReadAll(user); len(got) != 0 {
				t.Fatalf("the user read %q", got)
			}
			if res := <-done; res.Refused == nil || res.Err != nil {
				t.Errorf("result %+v: want refused, not aborted", res)
			}
		})
	}
}

// sequence pushes messages of counting bytes (checkWriter's order) and
// waits until the copy loop has passed each on whole.
type sequence struct {
	next  byte
	total int
}

// recordingStream is a tunnel stream that keeps what is written to it and
// reads nothing until it is reset or closed.
type recordingStream struct {
	mu     sync.Mutex
	got    []byte
	closed chan struct{}
	once   sync.Once
}

func newRecordingStream() *recordingStream { return &recordingStream{closed: make(chan struct{})} }

func (s *recordingStream) Read(p []byte) (int, error) { <-s.closed; return 0, io.EOF }
func (s *recordingStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, p...)
	return len(p), nil
}
func (s *recordingStream) written() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.got)
}
func (s *recordingStream) CloseWrite() error { return nil }
func (s *recordingStream) Reset()            { s.once.Do(func() { close(s.closed) }) }
func (s *recordingStream) Close() error      { s.Reset(); return nil }

// TestStartWritesPrefix: Start writes the prefix before it returns, so
// that it leaves right behind the stream's request (one packet, not two),
// and the caller may reuse its memory; the bytes count in the result.
func TestStartWritesPrefix(t *testing.T) {
	user, edge := tcpPair(t)
	st := newRecordingStream()
	prefix := []byte("GET / HTTP/1.1\r\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	p := &Proxy{A: ConnSide{edge}, B: st, Prefix: prefix}
	p.Start(ctx, func(r Result) { done <- r })
	if got := st.written(); got != string(prefix) {
		t.Fatalf("when Start returned the stream had %q, want the prefix %q", got, prefix)
	}
	copy(prefix, "XXXXXXXXXXXXXXXX") // the caller's buffer, reused
	if _, err := user.Write([]byte("Host: a\r\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.written() != "GET / HTTP/1.1\r\nHost: a\r\n" {
		if time.Now().After(deadline) {
			t.Fatalf("the stream got %q", st.written())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	res := <-done
	if res.AToB != int64(len("GET / HTTP/1.1\r\nHost: a\r\n")) {
		t.Errorf("AToB %d, want the prefix and the bytes after it", res.AToB)
	}
}
