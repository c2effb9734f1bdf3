package pipe

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// peekStream is a tunnel stream like a QUIC stream: WaitReadable waits
// without a buffer, and a read deadline in the past ends a wait and fails
// a Read even with data there, as quic-go's do (a future deadline does not
// wake a wait here: the tests set only past ones). Writes are kept.
type peekStream struct {
	mu       sync.Mutex
	data     []byte
	eof      bool
	deadline time.Time
	wake     chan struct{}
	got      bytes.Buffer
	waits    atomic.Int64 // WaitReadable calls
}

func newPeekStream() *peekStream { return &peekStream{wake: make(chan struct{}, 1)} }

func (s *peekStream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// push makes p readable; close ends the stream after it.
func (s *peekStream) push(p []byte) {
	s.mu.Lock()
	s.data = append(s.data, p...)
	s.mu.Unlock()
	s.signal()
}

func (s *peekStream) close() {
	s.mu.Lock()
	s.eof = true
	s.mu.Unlock()
	s.signal()
}

func (s *peekStream) pastDeadline() bool {
	return !s.deadline.IsZero() && !time.Now().Before(s.deadline)
}

func (s *peekStream) WaitReadable() error {
	s.waits.Add(1)
	for {
		s.mu.Lock()
		switch {
		case s.pastDeadline():
			s.mu.Unlock()
			return os.ErrDeadlineExceeded
		case len(s.data) > 0 || s.eof:
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		<-s.wake
	}
}

func (s *peekStream) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		switch {
		case s.pastDeadline():
			s.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		case len(s.data) > 0:
			n := copy(p, s.data)
			s.data = s.data[n:]
			s.mu.Unlock()
			return n, nil
		case s.eof:
			s.mu.Unlock()
			return 0, io.EOF
		}
		s.mu.Unlock()
		<-s.wake
	}
}

func (s *peekStream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	s.signal()
	return nil
}

func (s *peekStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.Write(p)
}

func (s *peekStream) written() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

func (s *peekStream) CloseWrite() error { return nil }
func (s *peekStream) Reset()            { s.close() }
func (s *peekStream) Close() error      { s.close(); return nil }

// shortRescue makes the sweeper look every millisecond for directions
// quiet for 5 ms, for the test.
func shortRescue(t *testing.T) {
	after, every := rescueAfter.Load(), rescueEvery.Load()
	rescueAfter.Store(int64(5 * time.Millisecond))
	rescueEvery.Store(int64(time.Millisecond))
	kickSweeper() // a running one may sleep for its old period
	t.Cleanup(func() { rescueAfter.Store(after); rescueEvery.Store(every) })
}

// TestCopyLoopPeekHoldsNoBuffer: a source that waits with a peek (a QUIC
// stream) holds no buffer while quiet; messages of every size, a single
// byte among them, arrive whole and in order, and EOF ends the loop.
func TestCopyLoopPeekHoldsNoBuffer(t *testing.T) {
	src := newPeekStream()
	dst := &checkWriter{t: t}
	done := goCopyLoop(dst, src)
	var seq sequence
	for _, n := range []int{1, 64, SmallBufSize + 1, 1 << 20, 1, 3} {
		waitHeld(t, 0, fmt.Sprintf("quiet before %d bytes", n))
		seq.push(t, src, dst, n)
	}
	waitHeld(t, 0, "quiet at the end")
	src.close()
	r := <-done
	if r.err != nil || !r.eof || r.n != int64(seq.total) {
		t.Fatalf("copied %d (want %d), err %v, eof %v; want EOF", r.n, seq.total, r.err, r.eof)
	}
}

// push is send for a peekStream: the next n counting bytes, and a wait
// until the copy loop has passed them on.
func (s *sequence) push(t *testing.T, src *peekStream, dst *checkWriter, n int) {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		b[i] = s.next
		s.next++
	}
	src.push(b)
	s.total += n
	deadline := time.Now().Add(5 * time.Second)
	for dst.totalNow() < s.total {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d bytes arrived", dst.totalNow(), s.total)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestQuietStreamMovesToFreshGoroutine: the direction from a quiet stream
// that waits with a peek is woken by the sweeper and moved to a fresh
// goroutine, once per quiet spell, and the proxy carries on: bytes
// arrive whole and in order both ways, also when data comes while the
// sweeper wakes the wait (the deadline it sets must not fail a read), and
// EOF from both ends finishes it orderly with the counts. The sweeper ends
// once no such direction is left.
func TestQuietStreamMovesToFreshGoroutine(t *testing.T) {
	shortRescue(t)
	user, edge := tcpPair(t)
	st := newPeekStream()
	before := rescued.Load()
	done := make(chan Result, 1)
	p := &Proxy{A: ConnSide{edge}, B: st}
	p.Start(t.Context(), func(r Result) { done <- r })

	// Quiet: moved once (the fresh goroutine's wait is left alone).
	waitFor(t, "a rescue", func() bool { return rescued.Load() >= before+1 })
	time.Sleep(20 * time.Millisecond)
	if n := rescued.Load() - before; n != 1 {
		t.Errorf("%d rescues in one quiet spell, want 1", n)
	}

	// Bytes from the stream, some right around a rescue, and the user's.
	var sent []byte
	var next byte
	got := make([]byte, 0, 4096)
	buf := make([]byte, 4096)
	for i := range 300 {
		n := 1 + rand.IntN(100)
		msg := make([]byte, n)
		for j := range msg {
			msg[j] = next
			next++
		}
		sent = append(sent, msg...)
		time.Sleep(time.Duration(rand.IntN(8000)) * time.Microsecond)
		st.push(msg)
		for len(got) < len(sent) {
			_ = user.SetReadDeadline(time.Now().Add(5 * time.Second))
			m, err := user.Read(buf)
			if err != nil {
				t.Fatalf("message %d: the user read %d of %d bytes: %v", i, len(got), len(sent), err)
			}
			got = append(got, buf[:m]...)
		}
		if i%10 == 0 {
			if _, err := fmt.Fprintf(user, "%d;", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !bytes.Equal(got, sent) {
		t.Fatal("the user got other bytes than the stream sent")
	}
	if rescued.Load() < before+10 {
		t.Errorf("%d rescues in 300 messages up to 8 ms apart after 5 ms quiet, want some", rescued.Load()-before)
	}
	var want bytes.Buffer
	for i := 0; i < 300; i += 10 {
		fmt.Fprintf(&want, "%d;", i)
	}
	waitFor(t, "the user's bytes", func() bool { return st.written() == want.String() })

	// Both ends close: an orderly end with the counts.
	st.close()
	if err := user.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.Err != nil || r.BToA != int64(len(sent)) || r.AToB != int64(want.Len()) {
		t.Fatalf("result %+v: want an orderly end, %d and %d bytes", r, want.Len(), len(sent))
	}
	waitFor(t, "the sweeper to end", func() bool {
		return !groups.sweeping.Load() && groups.live.Load() == 0
	})
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
