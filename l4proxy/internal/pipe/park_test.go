//go:build linux

package pipe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/onramp-net/onramp/dataplane/sockio"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// waitParked waits up to 2 s for the shared poller to hold want sockets.
func waitParked(t *testing.T, want int64, when string) {
	t.Helper()
	p := sockio.SharedPoller()
	deadline := time.Now().Add(2 * time.Second)
	for p.Parked() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d sockets parked, want %d", when, p.Parked(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// proxyPair runs a Proxy between two loopback TCP connections (a stands
// for the user's socket, b for the tunnel stream) and returns the far
// ends: what the user and the "stream" peer hold.
func proxyPair(t *testing.T, ctx context.Context, p *Proxy) (user, peer io.ReadWriteCloser, done chan Result) {
	t.Helper()
	return startPair(t, p, func(done func(Result)) { p.Start(ctx, done) })
}

// startPair gives p two TCP connections as its sides and starts it with
// start; it returns the user's and the peer's ends and the result's channel.
func startPair(t *testing.T, p *Proxy, start func(done func(Result))) (user, peer io.ReadWriteCloser, done chan Result) {
	t.Helper()
	u, a := tcpPair(t)
	pe, b := tcpPair(t)
	p.A, p.B = ConnSide{a}, ConnSide{b}
	done = make(chan Result, 1)
	start(func(r Result) { done <- r })
	return u, pe, done
}

func readN(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if c, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
	}
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// TestProxyParksQuietSocket: the direction from the socket parks when the
// socket is quiet, holding no goroutine, wakes when data comes, and the
// bytes both ways and the close are as without parking.
func TestProxyParksQuietSocket(t *testing.T) {
	waitParked(t, 0, "before")
	p := &Proxy{Prefix: []byte("head:")}
	user, peer, done := proxyPair(t, t.Context(), p)
	if got := readN(t, peer, 5); string(got) != "head:" {
		t.Fatalf("the peer read %q, want the prefix", got)
	}
	waitParked(t, 1, "quiet")
	for i, n := range []int{1, 64, 300 << 10} {
		msg := bytes.Repeat([]byte{byte('a' + i)}, n)
		if _, err := user.Write(msg); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, peer, n); !bytes.Equal(got, msg) {
			t.Fatalf("message %d: the peer read other bytes", i)
		}
		if _, err := peer.Write(msg[:1]); err != nil { // the other way
			t.Fatal(err)
		}
		if got := readN(t, user, 1); got[0] != msg[0] {
			t.Fatalf("message %d: the user read %q", i, got)
		}
		waitParked(t, 1, "quiet again")
	}
	user.(interface{ CloseWrite() error }).CloseWrite()
	if b, err := io.ReadAll(peer); err != nil || len(b) != 0 {
		t.Fatalf("after the user's EOF the peer read %q, %v; want EOF", b, err)
	}
	waitParked(t, 0, "after EOF")
	peer.Close()
	select {
	case res := <-done:
		if res.Err != nil || res.AToB != 5+1+64+300<<10 || res.BToA != 3 {
			t.Fatalf("result %+v; want no error, %d bytes from the user, 3 to", res, 5+1+64+300<<10)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after both sides closed")
	}
}

// TestProxyParkedEndsOnAbort: a parked direction ends when the proxy is
// aborted (idle timeout, shutdown) though its socket says nothing.
func TestProxyParkedEndsOnAbort(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		_, _, done := proxyPair(t, t.Context(), &Proxy{Idle: 200 * time.Millisecond})
		select {
		case res := <-done:
			if !res.Idle {
				t.Fatalf("result %+v; want the idle timeout", res)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run still running 5 s after a 200 ms idle timeout")
		}
		waitParked(t, 0, "after")
	})
	t.Run("stopped", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		_, _, done := proxyPair(t, ctx, &Proxy{})
		waitParked(t, 1, "quiet")
		cancel()
		select {
		case res := <-done:
			if !errors.Is(res.Err, ErrStopped) {
				t.Fatalf("result %+v; want ErrStopped", res)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run still running 5 s after the context ended")
		}
		waitParked(t, 0, "after")
	})
}

// blockedRefusal is a stream whose first Read returns a refusal when
// told to.
type blockedRefusal struct{ refuse chan struct{} }

func (s blockedRefusal) Read([]byte) (int, error) {
	<-s.refuse
	return 0, &tunnel.StreamError{Status: tunnel.StatusForbidden, Message: "refused"}
}
func (blockedRefusal) Write(p []byte) (int, error) { return len(p), nil }
func (blockedRefusal) CloseWrite() error           { return nil }
func (blockedRefusal) Reset()                      {}
func (blockedRefusal) Close() error                { return nil }

// TestProxyParkedRefused: a refusal that comes while the user's socket is
// parked is answered, and Run returns though the user keeps the
// connection open and quiet.
func TestProxyParkedRefused(t *testing.T) {
	u, a := tcpPair(t)
	s := blockedRefusal{refuse: make(chan struct{})}
	p := &Proxy{A: ConnSide{a}, B: s, OnRefused: func(se *tunnel.StreamError) { io.WriteString(a, "403 "+se.Message+"\n") }}
	done := make(chan Result, 1)
	go func() { done <- p.Run(t.Context()) }()
	waitParked(t, 1, "quiet")
	close(s.refuse)
	if got := readN(t, u, 12); string(got) != "403 refused\n" {
		t.Fatalf("the user read %q", got)
	}
	waitRefused(t, done)
}

// waitRefused waits for the result of a Proxy whose stream was refused:
// the refusal, not an abort, within 5 s, and no socket left parked.
func waitRefused(t *testing.T, done chan Result) {
	t.Helper()
	select {
	case res := <-done:
		if res.Refused == nil || res.Err != nil {
			t.Fatalf("result %+v; want refused, not aborted", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still running 5 s after the refusal")
	}
	waitParked(t, 0, "after")
}

// TestProxyParkedRefusedClosed: with nothing to answer (a TCP binding,
// no OnRefused), a refusal that comes while the user's socket is parked
// closes the user's connection and ends the Proxy: its direction from the
// socket, parked, is ended by the refusal (closing the socket wakes
// nothing), or the Proxy, its stream and its place under the tunnel's
// stream limit would be held until the idle timeout, or for ever.
func TestProxyParkedRefusedClosed(t *testing.T) {
	u, a := tcpPair(t)
	s := blockedRefusal{refuse: make(chan struct{})}
	p := &Proxy{A: ConnSide{a}, B: s}
	done := make(chan Result, 1)
	go func() { done <- p.Run(t.Context()) }()
	waitParked(t, 1, "quiet")
	close(s.refuse)
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(u); len(got) != 0 || err != nil {
		t.Fatalf("the user read %q, %v; want an orderly close", got, err)
	}
	waitRefused(t, done)
}

// TestProxyIdleHoldsOneGoroutine: 200 quiet proxies between sockets,
// started with Start, hold one goroutine each (the one reading B, a
// stream in the tunnel) and none for the socket's direction.
func TestProxyIdleHoldsOneGoroutine(t *testing.T) {
	const n = 200
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	var dones []chan Result
	for range n {
		_, _, done := proxyPair(t, ctx, &Proxy{})
		dones = append(dones, done)
	}
	waitParked(t, n, "quiet")
	// The slack is the test's and the runtime's own.
	if g := runtime.NumGoroutine() - base; g > n+10 {
		t.Errorf("%d goroutines for %d quiet proxies, want at most %d", g, n, n+10)
	}
	cancel()
	for _, d := range dones {
		<-d
	}
	waitParked(t, 0, "after")
}

// parkStream is a tunnel stream that parks its reader, as the HTTP/2
// streams do: Send queues bytes (nil: EOF) and wakes a parked reader.
type parkStream struct {
	mu     sync.Mutex
	data   []byte
	eof    bool
	reset  bool
	ready  chan struct{} // cap 1
	onRead func()
	wrote  bytes.Buffer
}

func newParkStream() *parkStream { return &parkStream{ready: make(chan struct{}, 1)} }

func (s *parkStream) Send(b []byte) {
	s.mu.Lock()
	if b == nil {
		s.eof = true
	}
	s.data = append(s.data, b...)
	f := s.onRead
	s.onRead = nil
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
	if f != nil {
		go f()
	}
}

func (s *parkStream) readyLocked() bool { return len(s.data) > 0 || s.eof || s.reset }

func (s *parkStream) ParkRead(wake func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readyLocked() {
		return false
	}
	s.onRead = wake
	return true
}

func (s *parkStream) WaitReadable() error {
	for {
		s.mu.Lock()
		ok := s.readyLocked()
		s.mu.Unlock()
		if ok {
			return nil
		}
		<-s.ready
	}
}

func (s *parkStream) Read(p []byte) (int, error) {
	if err := s.WaitReadable(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.reset:
		return 0, errors.New("stream reset")
	case len(s.data) == 0:
		return 0, io.EOF
	}
	n := copy(p, s.data)
	s.data = s.data[n:]
	return n, nil
}

func (s *parkStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wrote.Write(p)
}
func (s *parkStream) CloseWrite() error { return nil }
func (s *parkStream) Reset() {
	s.mu.Lock()
	s.reset = true
	f := s.onRead
	s.onRead = nil
	s.mu.Unlock()
	if f != nil {
		go f()
	}
}
func (s *parkStream) Close() error { s.Reset(); return nil }

// TestProxyBothParkHoldNoGoroutine: between a socket and a stream that
// parks its reader (HTTP/2), 200 quiet proxies hold no goroutine at all;
// data from the stream still reaches the user, its EOF half-closes the
// user's socket, and an abort ends a proxy parked on both sides.
func TestProxyBothParkHoldNoGoroutine(t *testing.T) {
	const n = 200
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type held struct {
		user io.ReadWriteCloser
		st   *parkStream
		done chan Result
	}
	var hs []held
	for range n {
		u, a := tcpPair(t)
		st := newParkStream()
		done := make(chan Result, 1)
		(&Proxy{A: ConnSide{a}, B: st}).Start(ctx, func(r Result) { done <- r })
		hs = append(hs, held{u, st, done})
	}
	waitParked(t, n, "quiet")
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine()-base > 10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines for %d quiet proxies, want none (slack 10)", runtime.NumGoroutine()-base, n)
		}
		time.Sleep(time.Millisecond)
	}

	h := hs[0]
	h.st.Send([]byte("from the stream"))
	if got := readN(t, h.user, 15); string(got) != "from the stream" {
		t.Fatalf("the user read %q", got)
	}
	h.st.Send(nil)
	h.user.(*net.TCPConn).SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(h.user); err != nil || len(b) != 0 {
		t.Fatalf("after the stream's EOF the user read %q, %v; want EOF", b, err)
	}
	h.user.Close()
	if res := <-h.done; res.Err != nil || res.BToA != 15 {
		t.Fatalf("result %+v; want 15 bytes to the user, no error", res)
	}

	cancel()
	for _, h := range hs[1:] {
		select {
		case res := <-h.done:
			if !errors.Is(res.Err, ErrStopped) {
				t.Fatalf("result %+v; want ErrStopped", res)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a proxy parked on both sides still running 5 s after the context ended")
		}
	}
	waitParked(t, 0, "after")
}

// directStream is a parkStream that delivers while parked (ParkReadTo),
// as the HTTP/2 stream does: what deliver takes never reaches Read.
type directStream struct {
	*parkStream
	deliver func([]byte) int
	wakes   int // wakes run (under mu)
}

func (s *directStream) ParkReadTo(wake func(), deliver func([]byte) int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readyLocked() {
		return false
	}
	s.onRead, s.deliver = func() { s.mu.Lock(); s.wakes++; s.mu.Unlock(); wake() }, deliver
	return true
}

// Send delivers b if the reader is parked, and keeps (and wakes for)
// what deliver does not take.
func (s *directStream) Send(b []byte) {
	s.mu.Lock()
	d := s.deliver
	if d != nil && len(b) > 0 && s.onRead != nil && len(s.data) == 0 {
		s.mu.Unlock()
		n := d(b) // the reader is parked: nothing else writes A
		b = b[n:]
		if len(b) == 0 {
			return
		}
		s.mu.Lock()
	}
	s.deliver = nil
	s.mu.Unlock()
	s.parkStream.Send(b)
}

// TestProxyDirectDelivery: a stream that delivers while its reader is
// parked hands small messages straight to the user's socket, with no
// wake; a delivery the socket cannot take whole (the user not reading)
// wakes the direction, which writes the rest as the user reads; the
// bytes are counted once, in the result and the counter.
func TestProxyDirectDelivery(t *testing.T) {
	u, a := tcpPair(t)
	st := &directStream{parkStream: newParkStream()}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "to_user"})
	done := make(chan Result, 1)
	(&Proxy{A: ConnSide{a}, B: st, BToA: c}).Start(t.Context(), func(r Result) { done <- r })
	parked := func() bool { st.mu.Lock(); defer st.mu.Unlock(); return st.deliver != nil }
	deadline := time.Now().Add(2 * time.Second)
	for !parked() {
		if time.Now().After(deadline) {
			t.Fatal("the direction from the stream did not park with a delivery")
		}
		time.Sleep(time.Millisecond)
	}
	total := 0
	for i := range 50 {
		msg := []byte("message " + string(rune('a'+i%26)))
		st.Send(msg)
		total += len(msg)
		if got := readN(t, u, len(msg)); !bytes.Equal(got, msg) {
			t.Fatalf("the user read %q, want %q", got, msg)
		}
	}
	st.mu.Lock()
	if st.wakes != 0 {
		t.Fatalf("%d wakes for 50 delivered messages, want 0", st.wakes)
	}
	st.mu.Unlock()

	// More than the socket takes while the user does not read.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	st.Send(big)
	total += len(big)
	if got := readN(t, u, len(big)); !bytes.Equal(got, big) {
		t.Fatal("the user read other bytes than the stream sent")
	}
	st.mu.Lock()
	if st.wakes == 0 {
		t.Fatal("a delivery the socket could not take whole woke nothing")
	}
	st.mu.Unlock()
	st.Send(nil)
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(u); err != nil || len(b) != 0 {
		t.Fatalf("after the stream's EOF the user read %q, %v; want EOF", b, err)
	}
	u.Close()
	res := <-done
	if res.Err != nil || res.BToA != int64(total) {
		t.Fatalf("result %+v; want %d bytes to the user, no error", res, total)
	}
	if v := testutil.ToFloat64(c); v != float64(total) {
		t.Fatalf("counter %v, want %d", v, total)
	}
}
