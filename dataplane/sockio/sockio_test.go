package sockio

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func tcpPair(t testing.TB) (a, b net.Conn) { return connPair(t, "tcp", "127.0.0.1:0") }
func unixPair(t testing.TB) (a, b net.Conn) {
	return connPair(t, "unix", filepath.Join(t.TempDir(), "s"))
}

func connPair(t testing.TB, network, addr string) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func linuxOnly(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("raw socket I/O is for Linux; elsewhere NewReader and NewWriter return nil")
	}
}

// TestBothWays sends 64 MiB each way at once over TCP and Unix sockets,
// each side reading and writing with a Reader and a Writer, in chunks of
// odd sizes, and compares checksums and counts; then EOF each way.
func TestBothWays(t *testing.T) {
	linuxOnly(t)
	for name, pair := range map[string]func(testing.TB) (net.Conn, net.Conn){"tcp": tcpPair, "unix": unixPair} {
		t.Run(name, func(t *testing.T) {
			a, b := pair(t)
			const total = 64 << 20
			send := func(c net.Conn, seed byte, done chan<- [32]byte) {
				w := NewWriter(c)
				h := sha256.New()
				buf := make([]byte, 100_003)
				for i := range buf {
					buf[i] = seed + byte(i*7)
				}
				for n := 0; n < total; {
					k := min(len(buf), total-n)
					m, err := w.Write(buf[:k])
					if err != nil || m != k {
						t.Errorf("write: %d of %d, %v", m, k, err)
						break
					}
					h.Write(buf[:k])
					n += k
				}
				c.(interface{ CloseWrite() error }).CloseWrite()
				done <- [32]byte(h.Sum(nil))
			}
			recv := func(c net.Conn, done chan<- [32]byte, count chan<- int) {
				r := NewReader(c)
				h := sha256.New()
				buf := make([]byte, 65_521)
				n := 0
				for {
					k, err := r.Read(buf)
					h.Write(buf[:k])
					n += k
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Errorf("read after %d bytes: %v", n, err)
						break
					}
				}
				count <- n
				done <- [32]byte(h.Sum(nil))
			}
			sa, sb, ra, rb := make(chan [32]byte, 1), make(chan [32]byte, 1), make(chan [32]byte, 1), make(chan [32]byte, 1)
			ca, cb := make(chan int, 1), make(chan int, 1)
			go send(a, 1, sa)
			go send(b, 2, sb)
			go recv(a, ra, ca)
			go recv(b, rb, cb)
			if n := <-cb; n != total {
				t.Errorf("b received %d bytes, want %d", n, total)
			}
			if n := <-ca; n != total {
				t.Errorf("a received %d bytes, want %d", n, total)
			}
			if <-sa != <-rb || <-sb != <-ra {
				t.Error("checksums differ")
			}
		})
	}
}

// TestErrors: a read deadline, a Close under a waiting Read, a reset by
// the peer, and a write to a peer that is gone come back as net.Conn's
// Read and Write return them.
func TestErrors(t *testing.T) {
	linuxOnly(t)
	t.Run("deadline", func(t *testing.T) {
		a, _ := tcpPair(t)
		a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := NewReader(a).Read(make([]byte, 10))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("read past the deadline: %v, want a timeout", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		a, _ := tcpPair(t)
		errc := make(chan error, 1)
		go func() { _, err := NewReader(a).Read(make([]byte, 10)); errc <- err }()
		time.Sleep(20 * time.Millisecond)
		a.Close()
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Errorf("read of a closed conn: %v, want net.ErrClosed", err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		a, b := tcpPair(t)
		b.(*net.TCPConn).SetLinger(0)
		b.Close()
		_, err := NewReader(a).Read(make([]byte, 10))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("read after a reset: %v, want ECONNRESET", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" {
			t.Errorf("read error %T, want *net.OpError", err)
		}
	})
	t.Run("write to a gone peer", func(t *testing.T) {
		a, b := tcpPair(t)
		b.(*net.TCPConn).SetLinger(0)
		b.Close()
		w := NewWriter(a)
		var err error
		for i := 0; i < 100 && err == nil; i++ {
			_, err = w.Write(make([]byte, 64<<10))
			time.Sleep(time.Millisecond)
		}
		if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("write to a reset peer: %v, want EPIPE or ECONNRESET", err)
		}
	})
	t.Run("eof", func(t *testing.T) {
		a, b := tcpPair(t)
		b.Write([]byte("last"))
		b.Close()
		r := NewReader(a)
		got, err := io.ReadAll(readerFunc(r.Read))
		if err != nil || !bytes.Equal(got, []byte("last")) {
			t.Errorf("read to the end: %q, %v", got, err)
		}
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestNotASocket: anything but a TCP or Unix socket gets no Reader or
// Writer (the caller uses the conn itself).
func TestNotASocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if NewReader(a) != nil || NewWriter(a) != nil {
		t.Error("a net.Pipe got a raw reader or writer")
	}
}

// TestNoAllocations: a Read and a Write that move bytes allocate nothing.
func TestNoAllocations(t *testing.T) {
	linuxOnly(t)
	a, b := tcpPair(t)
	r, w := NewReader(b), NewWriter(a)
	out, in := make([]byte, 512), make([]byte, 512)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := w.Write(out); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(in); {
			k, err := r.Read(in[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += k
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per write and read, want 0", allocs)
	}
}

// BenchmarkPingPong sends a 64-byte message back and forth over loopback
// TCP, with net.Conn's Read and Write and with a Reader and Writer.
//
//	go test -run '^$' -bench PingPong -benchmem ./dataplane/sockio/
func BenchmarkPingPong(b *testing.B) {
	for _, raw := range []bool{false, true} {
		name := "net.Conn"
		if raw {
			name = "sockio"
		}
		b.Run(name, func(b *testing.B) {
			x, y := tcpPair(b)
			rw := func(c net.Conn) (func([]byte) (int, error), func([]byte) (int, error)) {
				if raw {
					if r, w := NewReader(c), NewWriter(c); r != nil {
						return r.Read, w.Write
					}
				}
				return c.Read, c.Write
			}
			xr, xw := rw(x)
			yr, yw := rw(y)
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(readerFunc(yr), buf); err != nil {
						return
					}
					if _, err := yw(buf); err != nil {
						return
					}
				}
			}()
			msg, buf := make([]byte, 64), make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := xw(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(readerFunc(xr), buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestTryRead: one read without waiting: nothing held is 0 bytes and no
// error, what is held comes at once, then EOF; a reset comes as an error
// once; a conn that is not a socket is not read.
func TestTryRead(t *testing.T) {
	linuxOnly(t)
	buf := make([]byte, 64)
	for _, pair := range []func(testing.TB) (net.Conn, net.Conn){tcpPair, unixPair} {
		a, b := pair(t)
		if n, err := TryRead(b, buf); n != 0 || err != nil {
			t.Fatalf("nothing sent: %d bytes, %v; want 0, nil", n, err)
		}
		if _, err := a.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		var n int
		var err error
		for n == 0 && err == nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			n, err = TryRead(b, buf)
		}
		if string(buf[:n]) != "hello" || err != nil {
			t.Fatalf("read %q, %v; want hello", buf[:n], err)
		}
		a.(interface{ CloseWrite() error }).CloseWrite()
		for err == nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			n, err = TryRead(b, buf)
		}
		if n != 0 || err != io.EOF {
			t.Fatalf("after the peer's EOF: %d bytes, %v; want io.EOF", n, err)
		}
	}

	a, b := tcpPair(t)
	a.(*net.TCPConn).SetLinger(0)
	a.Close() // an RST
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		_, err = TryRead(b, buf)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after a reset: %v; want ECONNRESET", err)
	}

	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if n, err := TryRead(q, buf); n != 0 || err != nil {
		t.Fatalf("net.Pipe: %d bytes, %v; want 0, nil (not read)", n, err)
	}
}
