package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// strategies returns an engine per strategy that works here. The sockmap
// strategy needs eBPF (root): without it the test says so, except with
// CI=true, where it must run.
func strategies(t *testing.T) map[Strategy]*Engine {
	t.Helper()
	out := map[Strategy]*Engine{}
	for _, s := range []Strategy{Copy, Splice, Sockmap} {
		e, err := New(Config{Strategy: s})
		if err != nil {
			if s == Sockmap && os.Getenv("CI") != "true" {
				t.Logf("sockmap strategy not tested: %v", err)
				continue
			}
			t.Fatalf("%s: %v", s, err)
		}
		t.Cleanup(func() { e.Close() })
		out[s] = e
	}
	return out
}

// eachStrategy runs f as a subtest per strategy.
func eachStrategy(t *testing.T, f func(t *testing.T, e *Engine)) {
	engines := strategies(t)
	for _, s := range []Strategy{Copy, Splice, Sockmap} {
		e := engines[s]
		if e == nil {
			continue
		}
		t.Run(s.String(), func(t *testing.T) { f(t, e) })
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return c.(*net.TCPConn), r.c.(*net.TCPConn)
}

// relayed is client <-> a [relay] b <-> server.
type relayed struct {
	client, server *net.TCPConn
	done           chan Result
	cancel         context.CancelFunc
}

func startRelay(t testing.TB, e *Engine, o Options) *relayed {
	t.Helper()
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &relayed{client: client, server: server, done: make(chan Result, 1), cancel: cancel}
	go func() { r.done <- e.Relay(ctx, a, b, o) }()
	t.Cleanup(func() {
		cancel()
		client.Close()
		server.Close()
	})
	return r
}

func (r *relayed) result(t testing.TB, within time.Duration) Result {
	t.Helper()
	select {
	case res := <-r.done:
		return res
	case <-time.After(within):
		t.Fatalf("the relay did not end within %v", within)
	}
	return Result{}
}

// noise is random bytes that stream sends slices of.
var noise = func() []byte {
	b := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}()

// stream writes n bytes to w and returns their SHA-256: 64 KiB slices of
// noise at offsets that follow seed, so that lost, repeated or reordered
// chunks change the checksum (and the test does not spend its time, under
// -race, making random bytes).
func stream(w io.Writer, n int64, seed uint64) ([32]byte, error) {
	h := sha256.New()
	const chunk = 64 << 10
	off := seed * 4099
	for n > 0 {
		k := min(int64(chunk), n)
		off = (off*6364136223846793005 + 1442695040888963407) % uint64(len(noise)-chunk)
		b := noise[off : off+uint64(k)]
		h.Write(b)
		if _, err := w.Write(b); err != nil {
			return [32]byte{}, err
		}
		n -= k
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// drainSum reads r to EOF and returns the count and SHA-256.
func drainSum(r io.Reader) (int64, [32]byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return n, sum, err
}

// TestBulkBothWays sends 1 GiB each way at once (64 MiB with -short) and
// compares the checksums and the counts the relay reports.
func TestBulkBothWays(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	eachStrategy(t, func(t *testing.T, e *Engine) {
		r := startRelay(t, e, Options{})
		type sent struct {
			sum [32]byte
			err error
		}
		type got struct {
			n   int64
			sum [32]byte
			err error
		}
		var wg sync.WaitGroup
		var up, down sent
		var atServer, atClient got
		wg.Add(4)
		go func() {
			defer wg.Done()
			up.sum, up.err = stream(r.client, size, 1)
			if up.err == nil {
				up.err = r.client.CloseWrite()
			}
		}()
		go func() {
			defer wg.Done()
			down.sum, down.err = stream(r.server, size, 2)
			if down.err == nil {
				down.err = r.server.CloseWrite()
			}
		}()
		go func() {
			defer wg.Done()
			atServer.n, atServer.sum, atServer.err = drainSum(r.server)
		}()
		go func() {
			defer wg.Done()
			atClient.n, atClient.sum, atClient.err = drainSum(r.client)
		}()
		wg.Wait()
		for _, err := range []error{up.err, down.err, atServer.err, atClient.err} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if atServer.n != size || atServer.sum != up.sum {
			t.Errorf("client to server: %d bytes received of %d, checksums equal: %v", atServer.n, size, atServer.sum == up.sum)
		}
		if atClient.n != size || atClient.sum != down.sum {
			t.Errorf("server to client: %d bytes received of %d, checksums equal: %v", atClient.n, size, atClient.sum == down.sum)
		}
		res := r.result(t, 10*time.Second)
		if res.Err != nil || res.AEnd != nil || res.BEnd != nil {
			t.Errorf("result %+v, want an orderly end", res)
		}
		if res.AToB != size || res.BToA != size {
			t.Errorf("counted %d and %d bytes, want %d each way", res.AToB, res.BToA, size)
		}
	})
}

// TestHalfClose closes one direction and keeps using the other, each way
// round.
func TestHalfClose(t *testing.T) {
	eachStrategy(t, func(t *testing.T, e *Engine) {
		for _, first := range []string{"client", "server"} {
			t.Run(first+" closes first", func(t *testing.T) {
				r := startRelay(t, e, Options{})
				closer, other := r.client, r.server
				if first == "server" {
					closer, other = r.server, r.client
				}
				deadline := time.Now().Add(10 * time.Second)
				closer.SetDeadline(deadline)
				other.SetDeadline(deadline)
				if _, err := closer.Write([]byte("request")); err != nil {
					t.Fatal(err)
				}
				if err := closer.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(other)
				if err != nil || string(got) != "request" {
					t.Fatalf("the other side read %q, %v; want the request then EOF", got, err)
				}
				// The other direction still works after the half-close.
				answer := bytes.Repeat([]byte("answer "), 100000)
				go func() {
					other.Write(answer)
					other.CloseWrite()
				}()
				back, err := io.ReadAll(closer)
				if err != nil || !bytes.Equal(back, answer) {
					t.Fatalf("after its half-close the %s read %d bytes, %v; want %d", first, len(back), err, len(answer))
				}
				res := r.result(t, 5*time.Second)
				if res.Err != nil {
					t.Errorf("result %+v, want an orderly end", res)
				}
				want := [2]int64{7, int64(len(answer))}
				if first == "server" {
					want = [2]int64{int64(len(answer)), 7}
				}
				if res.AToB != want[0] || res.BToA != want[1] {
					t.Errorf("counted %d, %d; want %d, %d", res.AToB, res.BToA, want[0], want[1])
				}
			})
		}
	})
}

// TestResetPropagates resets one end and expects the other end to see a
// reset, not an EOF, each way round.
func TestResetPropagates(t *testing.T) {
	eachStrategy(t, func(t *testing.T, e *Engine) {
		for _, first := range []string{"client", "server"} {
			t.Run(first+" resets", func(t *testing.T) {
				r := startRelay(t, e, Options{})
				resetter, other := r.client, r.server
				if first == "server" {
					resetter, other = r.server, r.client
				}
				other.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := resetter.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 5)
				if _, err := io.ReadFull(other, buf); err != nil {
					t.Fatal(err)
				}
				resetter.SetLinger(0)
				resetter.Close()
				_, err := other.Read(buf)
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("after the %s's reset the other end read %v, want a reset", first, err)
				}
				res := r.result(t, 5*time.Second)
				if res.Err == nil {
					t.Errorf("result %+v, want the reset as its error", res)
				}
			})
		}
	})
}

// TestStalledReader plays a server that stops reading while the client
// sends as fast as it can: the relay must hold back (the client's writes
// block) instead of buffering, and hold at most one pipe.
func TestStalledReader(t *testing.T) {
	eachStrategy(t, func(t *testing.T, e *Engine) {
		r := startRelay(t, e, Options{})
		var sent int64
		var mu sync.Mutex
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := r.client.Write(buf)
				mu.Lock()
				sent += int64(n)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		time.Sleep(2 * time.Second)
		mu.Lock()
		s1 := sent
		mu.Unlock()
		time.Sleep(time.Second)
		mu.Lock()
		s2 := sent
		mu.Unlock()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		t.Logf("the client sent %d MiB before blocking", s2>>20)
		if s2 != s1 {
			t.Errorf("the client still sends after 2 s (%d then %d bytes): the relay buffers", s1, s2)
		}
		// Socket buffers of three sockets plus one pipe and one buffer.
		if s2 > 64<<20 {
			t.Errorf("%d MiB taken from a client whose server reads nothing", s2>>20)
		}
		if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 8<<20 {
			t.Errorf("heap grew %d MiB while the server did not read", grew>>20)
		}
		if st := e.Stats(); st.PipesInUse > 1 {
			t.Errorf("%d pipes in use for one stalled direction", st.PipesInUse)
		}
		// The server reads again: everything arrives.
		r.client.SetLinger(0)
		n, _ := io.Copy(io.Discard, io.LimitReader(r.server, s2))
		if n != s2 {
			t.Errorf("the server read %d of the %d bytes sent", n, s2)
		}
	})
}

// TestIdleTimeout expects an idle relay reset after Options.Idle and a
// relay with traffic, one way only, kept.
func TestIdleTimeout(t *testing.T) {
	eachStrategy(t, func(t *testing.T, e *Engine) {
		const idle = 400 * time.Millisecond
		busy := startRelay(t, e, Options{Idle: idle})
		quiet := startRelay(t, e, Options{Idle: idle})
		start := time.Now()
		stop := make(chan struct{})
		go func() {
			tick := time.NewTicker(idle / 4)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					busy.client.Write([]byte("x"))
				}
			}
		}()
		go io.Copy(io.Discard, busy.server)
		res := quiet.result(t, 5*time.Second)
		took := time.Since(start)
		if !res.Idle || !errors.Is(res.Err, ErrIdle) {
			t.Errorf("quiet relay: %+v, want the idle timeout", res)
		}
		if took < idle {
			t.Errorf("quiet relay ended after %v, before the idle timeout", took)
		}
		quiet.client.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := quiet.client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the quiet client read %v after the idle timeout, want a reset", err)
		}
		select {
		case res := <-busy.done:
			t.Errorf("busy relay ended: %+v", res)
		case <-time.After(3 * idle):
		}
		close(stop)
	})
}

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestManyShortConnections relays 1,000 short connections (a request, an
// answer, a close) and expects descriptors, pipes and sockmap entries back
// where they started.
func TestManyShortConnections(t *testing.T) {
	eachStrategy(t, func(t *testing.T, e *Engine) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		origin, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer origin.Close()
		// The origin answers each request with its reverse and closes.
		go func() {
			for {
				c, err := origin.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					b, _ := io.ReadAll(c)
					for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
						b[i], b[j] = b[j], b[i]
					}
					c.Write(b)
				}()
			}
		}()
		var relays sync.WaitGroup
		go func() {
			for {
				a, err := ln.Accept()
				if err != nil {
					return
				}
				relays.Add(1)
				go func() {
					defer relays.Done()
					b, err := net.Dial("tcp", origin.Addr().String())
					if err != nil {
						a.Close()
						return
					}
					e.Relay(context.Background(), a, b, Options{Idle: 10 * time.Second})
				}()
			}
		}()
		// Warm the pools, then count.
		conn := func(i int) error {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			msg := []byte("request-" + string(rune('a'+i%26)))
			if _, err := c.Write(msg); err != nil {
				return err
			}
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				return err
			}
			if len(got) != len(msg) || got[0] != msg[len(msg)-1] {
				return errors.New("wrong answer " + string(got))
			}
			return nil
		}
		for i := range 8 {
			if err := conn(i); err != nil {
				t.Fatal(err)
			}
		}
		waitQuiet(e)
		fds0, st0 := openFDs(t), e.Stats()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		var failed sync.Once
		for i := range 1000 {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := conn(i); err != nil {
					failed.Do(func() { t.Errorf("connection %d: %v", i, err) })
				}
			}()
		}
		wg.Wait()
		waitQuiet(e)
		fds1, st1 := openFDs(t), e.Stats()
		t.Logf("before: %d descriptors, %+v; after: %d, %+v", fds0, st0, fds1, st1)
		if st1.PipesInUse != 0 || st1.SockmapPairs != 0 {
			t.Errorf("after 1000 connections: %+v, want no pipe in use and no sockmap pair", st1)
		}
		if fds1-2*st1.PipesIdle > fds0-2*st0.PipesIdle {
			t.Errorf("%d descriptors after 1000 connections (%d idle pipes), %d before (%d idle pipes)", fds1, st1.PipesIdle, fds0, st0.PipesIdle)
		}
		ln.Close()
		origin.Close()
	})
}

// waitQuiet waits (at most 5 s) until no pipe is in use and no sockmap
// pair registered: the relays of closed connections have returned.
func waitQuiet(e *Engine) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st := e.Stats(); st.PipesInUse == 0 && st.SockmapPairs == 0 {
			time.Sleep(50 * time.Millisecond) // sockets closing
			return
		}
	}
}

// TestClosedAtStart hands the relay a connection its user has already
// reset, and one closed right after the relay starts (with the sockmap
// strategy: during its registration): the relay ends, resets the origin
// side and leaks nothing.
func TestClosedAtStart(t *testing.T) {
	eachStrategy(t, func(t *testing.T, e *Engine) {
		for _, when := range []string{"before", "during"} {
			t.Run(when, func(t *testing.T) {
				fds0 := openFDs(t)
				for range 50 {
					client, a := tcpPair(t)
					b, server := tcpPair(t)
					if when == "before" {
						client.SetLinger(0)
						client.Close()
						time.Sleep(time.Millisecond)
					}
					done := make(chan Result, 1)
					go func() { done <- e.Relay(context.Background(), a, b, Options{}) }()
					if when == "during" {
						client.SetLinger(0)
						client.Close()
					}
					select {
					case <-done:
					case <-time.After(5 * time.Second):
						t.Fatal("the relay did not end after its user reset")
					}
					server.SetReadDeadline(time.Now().Add(2 * time.Second))
					if _, err := server.Read(make([]byte, 1)); err == nil {
						t.Error("the origin read data from a reset user")
					}
					server.Close()
				}
				waitQuiet(e)
				if st := e.Stats(); st.PipesInUse != 0 || st.SockmapPairs != 0 {
					t.Errorf("%+v after the relays ended", st)
				}
				if fds := openFDs(t); fds-2*e.Stats().PipesIdle > fds0 {
					t.Errorf("%d descriptors after, %d before", fds, fds0)
				}
			})
		}
	})
}

// TestStopped cancels a relay's context: both ends see a reset.
func TestStopped(t *testing.T) {
	eachStrategy(t, func(t *testing.T, e *Engine) {
		r := startRelay(t, e, Options{})
		r.cancel()
		res := r.result(t, 5*time.Second)
		if !errors.Is(res.Err, ErrStopped) {
			t.Errorf("result %+v, want ErrStopped", res)
		}
		r.server.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := r.server.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the origin read %v after the stop, want a reset", err)
		}
	})
}

func TestParseStrategy(t *testing.T) {
	for in, want := range map[string]Strategy{"": Auto, "auto": Auto, "Splice": Splice, "copy": Copy, "sockmap": Sockmap} {
		if got, err := ParseStrategy(in); err != nil || got != want {
			t.Errorf("ParseStrategy(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseStrategy("zerocopy"); err == nil {
		t.Error("ParseStrategy accepted zerocopy")
	}
}

// TestAutoPicksSplice: on Linux the default is splice, which passed its
// self-test.
func TestAutoPicksSplice(t *testing.T) {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if runtime.GOOS == "linux" && e.Strategy() != Splice {
		t.Errorf("default strategy %s (%s), want splice", e.Strategy(), e.Why())
	}
}

// TestPipeCap caps the pool at one pipe and relays two bulk connections:
// the second copies in user space, both deliver every byte.
func TestPipeCap(t *testing.T) {
	e, err := New(Config{Strategy: Splice, MaxPipes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var wg sync.WaitGroup
	for i := range 2 {
		r := startRelay(t, e, Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() {
				stream(r.client, 32<<20, uint64(i))
				r.client.CloseWrite()
			}()
			n, _, err := drainSum(r.server)
			if err != nil || n != 32<<20 {
				t.Errorf("connection %d: %d bytes, %v", i, n, err)
			}
			r.server.Close()
		}()
	}
	wg.Wait()
	if st := e.Stats(); st.PipeFallbacks == 0 {
		t.Errorf("%+v: no copy fallback with one pipe for two connections", st)
	}
}

// TestIdleHoldsNoGoroutine holds 200 idle relays (each spoke once) with
// the splice strategy, started with Start: their directions wait in the
// engine's epoll set, so the relays hold no goroutine, no pipe and no
// buffer; each still answers when spoken to, and ends when closed.
func TestIdleHoldsNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	e, err := New(Config{Strategy: Splice})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const n = 200
	type pair struct{ client, server *net.TCPConn }
	var pairs []pair
	results := make(chan Result, n)
	g0 := runtime.NumGoroutine()
	for range n {
		client, a := tcpPair(t)
		b, server := tcpPair(t)
		defer client.Close()
		defer server.Close()
		e.Start(context.Background(), a, b, Options{Idle: time.Minute}, func(r Result) { results <- r })
		pairs = append(pairs, pair{client, server})
	}
	one := make([]byte, 1)
	for _, p := range pairs {
		p.client.Write([]byte("x"))
		p.server.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(p.server, one); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); e.Stats().Parked < 2*n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	st, g := e.Stats(), runtime.NumGoroutine()
	t.Logf("%d idle relays: %d goroutines more than before, %+v", n, g-g0, st)
	if st.Parked != 2*n || st.PipesInUse != 0 {
		t.Errorf("%d idle relays: %+v, want %d parked directions and no pipe", n, st, 2*n)
	}
	if g-g0 > n/10 {
		t.Errorf("%d idle relays hold %d goroutines", n, g-g0)
	}
	// Each still works both ways, and ends on close.
	for i, p := range pairs {
		p.server.Write([]byte("y"))
		p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(p.client, one); err != nil || one[0] != 'y' {
			t.Fatalf("relay %d after parking: %q %v", i, one, err)
		}
		p.client.CloseWrite()
		p.server.CloseWrite()
	}
	for range n {
		select {
		case r := <-results:
			if r.Err != nil || r.AToB != 1 || r.BToA != 1 {
				t.Errorf("result %+v", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("relays did not end")
		}
	}
	if st := e.Stats(); st.Parked != 0 {
		t.Errorf("%+v after every relay ended", st)
	}
}
