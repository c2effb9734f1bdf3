package edge

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// fakeConn is a tunnel.Conn that counts the datagrams sent on it.
type fakeConn struct {
	tunnel.Conn // nil: methods not overridden panic
	sent        int
}

func (c *fakeConn) SendDatagram(b []byte) error { c.sent++; return nil }
func (c *fakeConn) Context() context.Context    { return context.Background() }
func (c *fakeConn) Draining() bool              { return false }
func (c *fakeConn) TunnelID() [16]byte          { return [16]byte{1} }

// udpBench is a server with one fake connection of tunnel {1} and a UDP
// binding of that tunnel on loopback.
func udpBench(tb testing.TB, opts Options) (*Server, *fakeConn, *liveConn, *udpListener) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := NewServer(opts)
	s.SetTunnels(map[string][16]byte{"t": {1}})
	fc := &fakeConn{}
	lc := &liveConn{conn: fc}
	s.register(lc)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	b, err := NewBindingVar(Binding{Tunnel: "t", Service: "svc"})
	if err != nil {
		tb.Fatal(err)
	}
	return s, fc, lc, s.newUDPListener(pc, b)
}

// forward is ServeUDP's work for one datagram once read: flow lookup (or
// creation), header in place, send.
func forward(s *Server, l *udpListener, user netip.AddrPort, buf []byte, n int) {
	l.mu.Lock()
	f := l.byAddr[user]
	l.mu.Unlock()
	if f == nil {
		if f = s.newFlow(l, user); f == nil {
			s.m.Dropped.Inc()
			return
		}
	}
	s.sendToOrigin(f, buf, n)
}

// TestUDPForwardAllocs holds the edge's user-to-tunnel datagram path (flow
// lookup, header in place, send) to zero allocations once the flow exists.
func TestUDPForwardAllocs(t *testing.T) {
	s, fc, _, l := udpBench(t, Options{})
	user := netip.MustParseAddrPort("127.0.0.1:5353")
	f := s.newFlow(l, user)
	if f == nil {
		t.Fatal("no flow")
	}
	f.confirmed.Store(true)
	buf := make([]byte, tunnel.DatagramHeaderLen+1500)
	allocs := testing.AllocsPerRun(1000, func() { forward(s, l, user, buf, 1200) })
	if allocs != 0 {
		t.Errorf("%v allocations per datagram, want 0", allocs)
	}
	if fc.sent < 1000 {
		t.Errorf("sent %d datagrams", fc.sent)
	}
}

// TestUDPRefuseAllocs holds the path of a datagram from a new source that a
// limit refuses (a spoofed flood) to zero allocations.
func TestUDPRefuseAllocs(t *testing.T) {
	s, fc, _, l := udpBench(t, Options{UDPNewFlowsPerSource: 1, UDPNewFlowsPerTunnel: 1})
	buf := make([]byte, tunnel.DatagramHeaderLen+64)
	forward(s, l, netip.MustParseAddrPort("198.18.0.1:1"), buf, 64) // the one flow allowed
	// Let the one log line of each refusal go out before counting.
	forward(s, l, netip.MustParseAddrPort("198.18.0.1:2"), buf, 64)
	forward(s, l, netip.MustParseAddrPort("198.18.1.1:2"), buf, 64)
	sent := fc.sent
	var i uint16
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		// Alternately the same prefix (source rate) and new ones (tunnel rate).
		third := byte(0) // 198.18.0.0/24, out of its rate
		if i%2 == 1 {
			third = byte(i>>8) | 1 // a new prefix, out of the tunnel's rate
		}
		a := netip.AddrFrom4([4]byte{198, 18, third, byte(i)})
		forward(s, l, netip.AddrPortFrom(a, i), buf, 64)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per refused datagram, want 0", allocs)
	}
	if fc.sent != sent || len(l.byAddr) != 1 {
		t.Errorf("refused datagrams made %d sends, %d flows", fc.sent-sent, len(l.byAddr))
	}
}

// TestUDPReceiveAllocs holds the tunnel-to-user path (own-table lookup,
// write to the user) and the refusal of a datagram naming a flow the
// connection does not carry to zero allocations.
func TestUDPReceiveAllocs(t *testing.T) {
	s, _, lc, l := udpBench(t, Options{})
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	f := s.newFlow(l, sink.LocalAddr().(*net.UDPAddr).AddrPort())
	te := s.entry([16]byte{1})
	ctl := make([]byte, 0, tunnel.DatagramHeaderLen+1)
	d := tunnel.AppendDatagram(nil, f.id, make([]byte, 100))
	other := tunnel.AppendDatagram(nil, f.id+1, make([]byte, 100))
	allocs := testing.AllocsPerRun(1000, func() {
		s.handleDatagram(lc, te, d, ctl)
		s.handleDatagram(lc, te, other, ctl)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per pair of datagrams, want 0", allocs)
	}
}

// BenchmarkUDPForward is the user-to-tunnel path of an established flow.
func BenchmarkUDPForward(b *testing.B) {
	s, _, _, l := udpBench(b, Options{})
	user := netip.MustParseAddrPort("127.0.0.1:5353")
	s.newFlow(l, user).confirmed.Store(true)
	buf := make([]byte, tunnel.DatagramHeaderLen+1500)
	b.ReportAllocs()
	for b.Loop() {
		forward(s, l, user, buf, 1200)
	}
}

// BenchmarkUDPRefuse is a spoofed flood's datagram, each from a new source
// address, refused by the per-source or per-tunnel rate.
func BenchmarkUDPRefuse(b *testing.B) {
	s, _, _, l := udpBench(b, Options{UDPNewFlowsPerSource: 1, UDPNewFlowsPerTunnel: 1})
	buf := make([]byte, tunnel.DatagramHeaderLen+64)
	var i uint32
	b.ReportAllocs()
	for b.Loop() {
		i++
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>24&1), byte(i >> 8), byte(i)})
		forward(s, l, netip.AddrPortFrom(a, uint16(i)), buf, 64)
	}
}

// BenchmarkUDPReceive is the tunnel-to-user path: a datagram from the
// connector looked up in its connection's table and written to the user.
func BenchmarkUDPReceive(b *testing.B) {
	s, _, lc, l := udpBench(b, Options{})
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := sink.Read(buf); err != nil {
				return
			}
		}
	}()
	f := s.newFlow(l, sink.LocalAddr().(*net.UDPAddr).AddrPort())
	te := s.entry([16]byte{1})
	ctl := make([]byte, 0, tunnel.DatagramHeaderLen+1)
	d := tunnel.AppendDatagram(nil, f.id, make([]byte, 1200))
	b.ReportAllocs()
	for b.Loop() {
		s.handleDatagram(lc, te, d, ctl)
	}
}

// BenchmarkUDPExpireScan is one expiry scan of a binding with 10,000 flows
// (none due): the janitor's cost per tick.
func BenchmarkUDPExpireScan(b *testing.B) {
	s, _, _, l := udpBench(b, Options{MaxUDPFlowsPerTunnel: 10000, UDPNewFlowsPerSource: 1e6, UDPNewFlowsPerTunnel: 1e6})
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		if s.newFlow(l, netip.AddrPortFrom(a, 1)) == nil {
			b.Fatal("flow refused")
		}
	}
	now := time.Now().UnixNano()
	var dst []*udpFlow
	b.ReportAllocs()
	for b.Loop() {
		dst = s.expired(l, now, dst[:0])
	}
	if len(dst) != 0 {
		b.Fatalf("%d flows expired", len(dst))
	}
}
