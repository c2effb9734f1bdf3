package edge

import (
	"context"
	"net"
	"net/netip"
	"testing"

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

// TestUDPForwardAllocs holds the edge's user-to-tunnel datagram path (flow
// lookup, header in place, send) to zero allocations once the flow exists.
func TestUDPForwardAllocs(t *testing.T) {
	s := NewServer(Options{})
	s.SetTunnels(map[string][16]byte{"t": {1}})
	fc := &fakeConn{}
	s.register(&liveConn{conn: fc})
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	l := &udpListener{pc: pc, upc: pc, b: Binding{Tunnel: "t", Service: "svc"}, byAddr: make(map[netip.AddrPort]*udpFlow)}
	user := netip.MustParseAddrPort("127.0.0.1:5353")
	f := s.newFlow(l, user)
	if f == nil {
		t.Fatal("no flow")
	}
	f.confirmed.Store(true)
	buf := make([]byte, tunnel.DatagramHeaderLen+1500)
	allocs := testing.AllocsPerRun(1000, func() {
		l.mu.Lock()
		g := l.byAddr[user]
		l.mu.Unlock()
		s.sendToOrigin(g, buf, 1200)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per datagram, want 0", allocs)
	}
	if fc.sent < 1000 {
		t.Errorf("sent %d datagrams", fc.sent)
	}
}
