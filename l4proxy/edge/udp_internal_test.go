package edge

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

func TestGCRA(t *testing.T) {
	r := perSecond(10)
	var g gcra
	now := time.Now().UnixNano()
	for i := range 10 {
		if !g.allow(now, r) {
			t.Fatalf("event %d of a burst of 10 refused", i)
		}
	}
	if g.allow(now, r) {
		t.Fatal("11th event of a burst of 10 allowed")
	}
	// One more every 100 ms.
	if !g.allow(now+int64(100*time.Millisecond), r) || g.allow(now+int64(100*time.Millisecond), r) {
		t.Fatal("not one event per 100 ms at 10/s")
	}
	// Idle for long: a full burst again, not more.
	later := now + int64(time.Hour)
	n := 0
	for g.allow(later, r) {
		n++
	}
	if n != 10 {
		t.Fatalf("burst after an idle hour: %d, want 10", n)
	}
}

func TestPrefixLimiter(t *testing.T) {
	p := newPrefixLimiter(3)
	now := time.Now().UnixNano()
	take := func(a string) int {
		n := 0
		for n < 100 && p.allow(netip.MustParseAddr(a), now) {
			n++
		}
		return n
	}
	bucket := func(a string) *gcra { return p.bucket(netip.MustParseAddr(a)) }
	if n := take("198.18.1.1"); n != 3 {
		t.Fatalf("burst from 198.18.1.1: %d, want 3", n)
	}
	// The same /24, also written as an IPv4-mapped IPv6 address: spent.
	for _, a := range []string{"198.18.1.200", "::ffff:198.18.1.7"} {
		if n := take(a); n != 0 {
			t.Errorf("%s allowed %d more in a spent /24", a, n)
		}
	}
	// Another /24 (in another bucket) has its own.
	for _, a := range []string{"198.18.2.1", "198.19.1.1", "10.0.0.1"} {
		if bucket(a) == bucket("198.18.1.1") {
			continue // shares the bucket by chance (1 in 4096)
		}
		if n := take(a); n != 3 {
			t.Errorf("%s: %d, want its own 3", a, n)
		}
	}
	// IPv6 by /64.
	if n := take("fd00:1:2:3::1"); n != 3 {
		t.Fatalf("burst from fd00:1:2:3::1: %d, want 3", n)
	}
	if n := take("fd00:1:2:3:ffff::9"); n != 0 {
		t.Errorf("same /64 allowed %d more", n)
	}
	if a := "fd00:1:2:4::1"; bucket(a) != bucket("fd00:1:2:3::1") {
		if n := take(a); n != 3 {
			t.Errorf("%s: %d, want its own 3", a, n)
		}
	}
}

// TestPrefixLimiterBounded: a flood from random prefixes, v4 and v6, costs
// no memory (the table is fixed) and gets through at no more than the
// table's worth of bursts.
func TestPrefixLimiterBounded(t *testing.T) {
	p := newPrefixLimiter(2)
	now := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(1, 2))
	allowed := 0
	allocs := testing.AllocsPerRun(200000, func() {
		var a netip.Addr
		if rng.IntN(2) == 0 {
			a = netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), 1})
		} else {
			var b [16]byte
			for i := range 8 {
				b[i] = byte(rng.Uint32())
			}
			a = netip.AddrFrom16(b)
		}
		if p.allow(a, now) {
			allowed++
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per source", allocs)
	}
	if allowed > 2*prefixBuckets {
		t.Errorf("%d new flows allowed at one instant: more than %d buckets of 2", allowed, prefixBuckets)
	}
}

func TestLogLimiter(t *testing.T) {
	var l logLimiter
	now := time.Now().UnixNano()
	if ok, _ := l.allow(now); !ok {
		t.Fatal("first line held back")
	}
	for range 5 {
		if ok, _ := l.allow(now + int64(500*time.Millisecond)); ok {
			t.Fatal("second line within a second let through")
		}
	}
	ok, held := l.allow(now + int64(time.Second))
	if !ok || held != 5 {
		t.Fatalf("after a second: %v, %d held back; want true, 5", ok, held)
	}
}

// recConn is a tunnel.Conn of a given tunnel that records what is sent on
// it and can die.
type recConn struct {
	tunnel.Conn // nil: methods not overridden panic
	tunnelID    [16]byte
	ctx         context.Context
	kill        context.CancelFunc
	mu          sync.Mutex
	sent        [][]byte
}

func newRecConn(tunnelID byte) *recConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &recConn{tunnelID: [16]byte{tunnelID}, ctx: ctx, kill: cancel}
}

func (c *recConn) SendDatagram(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, bytes.Clone(b))
	return nil
}
func (c *recConn) Context() context.Context { return c.ctx }
func (c *recConn) Draining() bool           { return false }
func (c *recConn) TunnelID() [16]byte       { return c.tunnelID }
func (c *recConn) ConnectorID() [16]byte    { return [16]byte{} }
func (c *recConn) RemoteAddr() net.Addr     { return &net.UDPAddr{} }

// TestUDPFlowMovesTables: a flow whose connection dies moves to another
// connection of its tunnel under a new ID, leaving the old one's table; the
// old ID then names nothing on either connection.
func TestUDPFlowMovesTables(t *testing.T) {
	s, _, _, l := udpBench(t, Options{})
	te := s.entry([16]byte{1})
	s.unregister(te, te.conns[0]) // only the connections below
	a, b := newRecConn(1), newRecConn(1)
	la, lb := &liveConn{conn: a}, &liveConn{conn: b}
	s.register(la)
	user := netip.MustParseAddrPort("127.0.0.1:9")
	f := s.newFlow(l, user)
	if f == nil {
		t.Fatal("no flow")
	}
	s.register(lb)
	buf := make([]byte, tunnel.DatagramHeaderLen+10)
	s.sendToOrigin(f, buf, 10)
	old := f.id
	if f.lc != la || la.flow(old) != f {
		t.Fatal("flow not on the first connection")
	}
	a.kill()
	s.sendToOrigin(f, buf, 10)
	f.mu.Lock()
	lc, id := f.lc, f.id
	f.mu.Unlock()
	if lc != lb || id == old || lb.flow(id) != f || la.flow(old) != nil || lb.flow(old) != nil {
		t.Fatalf("after the move: on %p (b %p) as %d (was %d); a has it %v", lc, lb, id, old, la.flow(old) != nil)
	}
	// b was told of the flow (FlowOpen, then the datagram) under its new ID.
	b.mu.Lock()
	got := b.sent
	b.mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("b got %d datagrams, want FlowOpen and data", len(got))
	}
	for i, want := range []tunnel.DatagramType{tunnel.DatagramFlowOpen, tunnel.DatagramData} {
		if typ, gid, _, _ := tunnel.ParseDatagram(got[i]); typ != want || gid != id {
			t.Errorf("b's datagram %d: type %d flow %d, want type %d flow %d", i, typ, gid, want, id)
		}
	}
	// The old ID from b is not the flow's.
	s.handleDatagram(lb, te, tunnel.AppendFlowClose(nil, old, tunnel.FlowClosed), nil)
	if f.closed.Load() {
		t.Error("a close naming the old ID closed the flow")
	}
	s.closeFlow(f, true)
	if lb.flow(id) != nil || len(s.flowIDs) != 0 || te.udpFlows.Load() != 0 {
		t.Errorf("closed flow still held: table %v, index %d, count %d", lb.flow(id) != nil, len(s.flowIDs), te.udpFlows.Load())
	}
}
