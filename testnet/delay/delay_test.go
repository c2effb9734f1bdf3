package delay

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoTCP serves a TCP echo on loopback that half-closes after EOF.
func echoTCP(t testing.TB) string {
	return serveTCP(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

func serveTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echoUDP serves a UDP echo on loopback (without allocating per datagram,
// so that BenchmarkUDP counts the relay's allocations only).
func echoUDP(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				pc.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func tcpRelay(t testing.TB, target string, o Options) *TCP {
	t.Helper()
	r, err := ListenTCP("127.0.0.1:0", target, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func udpRelay(t testing.TB, target string, o Options) *UDP {
	t.Helper()
	r, err := ListenUDP("127.0.0.1:0", target, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestTCPRoundTrip: an echo through the relay takes at least two delays,
// and the bytes come back intact.
func TestTCPRoundTrip(t *testing.T) {
	const d = 25 * time.Millisecond
	r := tcpRelay(t, echoTCP(t), Options{Delay: d})
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 5)
	for i := range 3 {
		start := time.Now()
		if _, err := c.Write([]byte("ping" + string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		rtt := time.Since(start)
		if string(buf) != "ping"+string(rune('0'+i)) {
			t.Fatalf("echo %q", buf)
		}
		if rtt < 2*d {
			t.Errorf("round trip %d took %v, less than 2 × %v", i, rtt, d)
		}
		t.Logf("round trip %d: %v", i, rtt)
	}
	deadline := time.Now().Add(time.Second)
	for r.Stats().Forwarded < 6 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s := r.Stats(); s.Forwarded != 6 || s.Bytes != 30 {
		t.Errorf("stats %+v, want 6 chunks of 30 bytes", s)
	}
}

// TestTCPBurstNotSerialised: 4 MiB written at once through a 20 ms relay
// arrive in a time far below one delay per chunk (256 chunks of 16 KiB would
// take over 5 s if each waited its delay after the previous one), intact,
// and the FIN follows them both ways.
func TestTCPBurstNotSerialised(t *testing.T) {
	const d = 20 * time.Millisecond
	const size = 4 << 20
	r := tcpRelay(t, echoTCP(t), Options{Delay: d})
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	want := sha256.New()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, io.TeeReader(io.LimitReader(rand.Reader, size), want))
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", n, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("echoed %d bytes (want %d), checksum match %v", n, size, bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
	if took < 2*d || took > 2*time.Second {
		t.Errorf("4 MiB echo took %v: want at least 2 × %v and far less than a delay per chunk", took, d)
	}
	t.Logf("4 MiB echo through a %v relay: %v, %+v", d, took, r.Stats())
}

// TestTCPReset: an origin that resets its connection makes the client see
// a reset, not an orderly EOF.
func TestTCPReset(t *testing.T) {
	origin := serveTCP(t, func(c net.Conn) {
		io.ReadFull(c, make([]byte, 1))
		c.(*net.TCPConn).SetLinger(0)
	})
	r := tcpRelay(t, origin, Options{Delay: 5 * time.Millisecond})
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("x"))
	_, err = io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want a connection reset", err)
	}
}

// TestUDPRoundTrip: datagrams of two clients come back to each, after at
// least two delays.
func TestUDPRoundTrip(t *testing.T) {
	const d = 25 * time.Millisecond
	r := udpRelay(t, echoUDP(t), Options{Delay: d})
	for i := range 2 {
		c, err := net.Dial("udp", r.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := []byte("client " + string(rune('0'+i)))
		start := time.Now()
		c.Write(msg)
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		rtt := time.Since(start)
		if !bytes.Equal(buf[:n], msg) {
			t.Fatalf("got %q, want %q", buf[:n], msg)
		}
		if rtt < 2*d {
			t.Errorf("client %d: round trip %v, less than 2 × %v", i, rtt, d)
		}
	}
	// The last count lands just after the write the client already saw.
	deadline := time.Now().Add(time.Second)
	for r.Stats().Forwarded < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s := r.Stats(); s.Forwarded != 4 || s.Dropped != 0 {
		t.Errorf("stats %+v, want 4 forwarded, none dropped", s)
	}
}

// TestUDPBounded: a burst larger than the queue is dropped beyond Slots
// (+1) datagrams per direction, not buffered.
func TestUDPBounded(t *testing.T) {
	r := udpRelay(t, echoUDP(t), Options{Delay: 50 * time.Millisecond, Slots: 4})
	c, err := net.Dial("udp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 100 {
		c.Write([]byte("burst"))
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	got := 0
	buf := make([]byte, 100)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
		got++
	}
	s := r.Stats()
	// Slots queued plus the one the writer holds while it waits.
	if got == 0 || got > 5 || s.Dropped < 95 {
		t.Fatalf("%d datagrams back, stats %+v: want 1 to 5 back and at least 95 dropped", got, s)
	}
}

// TestUDPMaxSessions: clients beyond MaxSessions get nothing through.
func TestUDPMaxSessions(t *testing.T) {
	r := udpRelay(t, echoUDP(t), Options{MaxSessions: 1})
	var answered []bool
	for range 2 {
		c, err := net.Dial("udp", r.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hi"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = c.Read(make([]byte, 10))
		answered = append(answered, err == nil)
	}
	if !answered[0] || answered[1] {
		t.Fatalf("answered %v, want [true false]", answered)
	}
}

// TestAddressRules: only loopback and the test ranges, IP literals, and a
// target port.
func TestAddressRules(t *testing.T) {
	for _, tc := range []struct{ listen, target, want string }{
		{"127.0.0.1:0", "192.0.2.1:80", "target 192.0.2.1:80: only loopback"},
		{"0.0.0.0:0", "127.0.0.1:80", "listen address 0.0.0.0:0: only loopback"},
		{"127.0.0.1:0", "localhost:80", `target "localhost:80": want an IP literal`},
		{"127.0.0.1:0", "127.0.0.1:0", "target 127.0.0.1:0: port 0"},
		{"[2001:db8::1]:0", "127.0.0.1:80", "listen address [2001:db8::1]:0: only loopback"},
	} {
		for _, network := range []string{"tcp", "udp"} {
			var err error
			if network == "tcp" {
				_, err = ListenTCP(tc.listen, tc.target, Options{})
			} else {
				_, err = ListenUDP(tc.listen, tc.target, Options{})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %s -> %s: %v, want %q", network, tc.listen, tc.target, err, tc.want)
			}
		}
	}
	if _, err := ListenTCP("127.0.0.1:0", "127.0.0.1:1", Options{Delay: -1}); err == nil || !strings.Contains(err.Error(), "Options.Delay") {
		t.Errorf("negative delay: %v", err)
	}
	for _, ok := range []string{"198.19.255.254:9", "[fd00::1]:9", "[::1]:9"} {
		if _, err := checkAddr("target", ok, true); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}

// TestCloseEndsEverything: Close with connections and sessions open ends
// every goroutine of the relay.
func TestCloseEndsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	echo, uecho := echoTCP(t), echoUDP(t)
	base := runtime.NumGoroutine()
	tr, err := ListenTCP("127.0.0.1:0", echo, Options{Delay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ur, err := ListenUDP("127.0.0.1:0", uecho, Options{Delay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("queued"))
	u, err := net.Dial("udp", ur.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("queued"))
	time.Sleep(50 * time.Millisecond) // the bytes wait in the queues
	tr.Close()
	ur.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+2 { // the echo's own handler may linger
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkTCP measures the throughput of a relay without delay (the
// relay's own cost) and its allocations per chunk.
func BenchmarkTCP(b *testing.B) {
	sink := serveTCP(b, func(c net.Conn) { io.Copy(io.Discard, c) })
	r := tcpRelay(b, sink, Options{})
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUDP measures one datagram round trip through a relay without
// delay, and its allocations.
func BenchmarkUDP(b *testing.B) {
	r := udpRelay(b, echoUDP(b), Options{})
	c, err := net.Dial("udp", r.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, buf := make([]byte, 1200), make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		c.Write(msg)
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
