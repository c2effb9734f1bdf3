//go:build linux

package wg

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// The multi-path tests run two edges sharing one key (as edges on one
// registry do), each a router device on its own port of 127.0.0.1 with
// two stock clients and the connector as peers, and a connector, a TUN
// device on a channel TUN, whose one peer, the edges' key, has both
// endpoints.

var client2IP = netip.MustParseAddr("198.18.160.3")

// twoClientRouter routes client1 (clientIP), client2 (client2IP) and the
// site (198.18.30.0/24).
func twoClientRouter(tb testing.TB) *l3router.Router {
	router, err := l3router.New(l3router.Config{
		Address4: netip.MustParseAddr("198.18.160.1"),
		Peers: []l3router.PeerConfig{
			{Name: "client1", Kind: l3router.KindClient, Routes: []netip.Prefix{netip.PrefixFrom(clientIP, 32)}},
			{Name: "client2", Kind: l3router.KindClient, Routes: []netip.Prefix{netip.PrefixFrom(client2IP, 32)}},
			{Name: "site", Kind: l3router.KindConnector, Routes: []netip.Prefix{netip.MustParsePrefix("198.18.30.0/24")}},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return router
}

type multiEdge struct {
	edges     [2]*Device
	site      [2]*Peer // each edge's peer for the connector
	conn      *Device
	edge      *Peer // the connector's peer: both edges
	tun       *node // the connector's TUN side
	c1, c2    *node // stock clients: client1 dials edge A, client2 edge B
	k1        l3config.Key
	endpoints []netip.AddrPort
}

func newMultiEdge(t *testing.T) *multiEdge {
	t.Helper()
	m := &multiEdge{}
	ke, k1, k2, ks := newKey(t), newKey(t), newKey(t), newKey(t)
	m.k1 = k1
	for i := range m.edges {
		d, err := New(Config{PrivateKey: ke, Router: twoClientRouter(t), Loops: 1, Logger: testLogger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		for _, p := range []struct {
			name string
			key  l3config.Key
		}{{"client1", k1}, {"client2", k2}, {"site", ks}} {
			peer, err := d.AddPeer(l3router.PeerID(p.name), p.key.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			if p.name == "site" {
				m.site[i] = peer
			}
		}
		m.edges[i] = d
		m.endpoints = append(m.endpoints, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(d.Port())))
	}
	ct := tuntest.NewChannelTUN()
	conn, err := New(Config{PrivateKey: ks, TUN: ct.TUN(), Loops: 1, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m.conn, m.tun = conn, &node{name: "connector", ct: ct}
	if m.edge, err = conn.AddPeer("edge", ke.PublicKey()); err != nil {
		t.Fatal(err)
	}
	m.edge.SetAllowedIPs([]netip.Prefix{netip.MustParsePrefix("198.18.160.0/20")})
	if err := m.edge.SetEndpoints(m.endpoints); err != nil {
		t.Fatal(err)
	}
	m.edge.SetKeepalive(time.Second)
	m.c1 = newNode(t, m.edges[0], "client1", k1, true, "127.0.0.1")
	m.c2 = newNode(t, m.edges[1], "client2", k2, true, "127.0.0.1")
	return m
}

// waitPaths waits until the connector's paths are live (or not) as want
// says, and returns how long that took.
func (m *multiEdge) waitPaths(t *testing.T, want [2]bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ps := m.edge.Paths()
		if len(ps) == 2 && ps[0].Live == want[0] && ps[1].Live == want[1] {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("paths %+v after %v, want live %v", ps, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// roundTrip sends a packet up from client c (at ip) to the site and the
// site's reply down, which reaches c only through the edge c is on.
func (m *multiEdge) roundTrip(t *testing.T, c *node, ip netip.Addr, tag string) {
	t.Helper()
	c.send(t, udp(t, ip, hostIP, tag+" up"))
	m.tun.expect(t, tag+" up", 10*time.Second)
	m.tun.send(t, udp(t, hostIP, ip, tag+" down"))
	c.expect(t, tag+" down", 10*time.Second)
}

// TestMultiPath: a connector peered with two edges of one key keeps a
// session with each; the replies to each client go back through the edge
// the client is on; an initiation from an edge is taken by its path; with
// edge A closed its path goes stale, a packet for a client of A goes
// through B (which holds it until the client comes), and once the client
// moved to B traffic flows through B both ways.
func TestMultiPath(t *testing.T) {
	// Probes and staleness in seconds (restored after the devices close).
	probe, stale := pathProbeAfter, pathStaleAfter
	t.Cleanup(func() { pathProbeAfter, pathStaleAfter = probe, stale })
	pathProbeAfter, pathStaleAfter = time.Second, 3*time.Second
	m := newMultiEdge(t)
	m.waitPaths(t, [2]bool{true, true}, 10*time.Second)

	// Both clients at once, each through its edge, several rounds.
	for i := range 5 {
		m.c1.send(t, udp(t, clientIP, hostIP, fmt.Sprint("c1 up ", i)))
		m.c2.send(t, udp(t, client2IP, hostIP, fmt.Sprint("c2 up ", i)))
		m.tun.expectAll(t, 10*time.Second, fmt.Sprint("c1 up ", i), fmt.Sprint("c2 up ", i))
		m.tun.send(t, udp(t, hostIP, client2IP, fmt.Sprint("c2 down ", i)))
		m.tun.send(t, udp(t, hostIP, clientIP, fmt.Sprint("c1 down ", i)))
		m.c1.expect(t, fmt.Sprint("c1 down ", i), 10*time.Second)
		m.c2.expect(t, fmt.Sprint("c2 down ", i), 10*time.Second)
	}
	for i, p := range m.edge.Paths() {
		if p.Configured != m.endpoints[i] || p.Handshakes == 0 || p.RxBytes == 0 || p.TxBytes == 0 {
			t.Errorf("path %d: %+v", i, p)
		}
	}
	for i, p := range m.site {
		if st := p.Stats(); st.Handshakes == 0 || st.RxBytes == 0 {
			t.Errorf("edge %d: the connector's peer %+v", i, st)
		}
	}

	// Edge B starts a handshake itself (it had packets for the
	// connector and no session): the connector's path to B takes it.
	before := m.edge.Paths()
	m.edges[1].initiate(m.site[1], m.edges[1].now())
	deadline := time.Now().Add(5 * time.Second)
	for m.edge.Paths()[1].Handshakes == before[1].Handshakes {
		if time.Now().After(deadline) {
			t.Fatal("edge B's initiation not answered on its path")
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.roundTrip(t, m.c2, client2IP, "c2 after B's handshake")

	// Edge A goes: its path goes stale within pathStaleAfter.
	closed := time.Now()
	m.edges[0].Close()
	m.waitPaths(t, [2]bool{false, true}, 3*stale)
	t.Logf("path to the closed edge stale after %v", time.Since(closed).Round(time.Millisecond))
	// A packet for client1, whose packets last came through A, goes
	// through B, which holds it for client1's handshake.
	m.tun.send(t, udp(t, hostIP, clientIP, "c1 while moving"))
	// client1 moves to B (a new session: stock WireGuard would start one
	// once its session went unanswered).
	if err := m.c1.dev.IpcSet(fmt.Sprintf("public_key=%s\nremove=true\npublic_key=%s\nendpoint=%s\nallowed_ip=0.0.0.0/0\npersistent_keepalive_interval=1\n",
		m.edges[0].PublicKey().Hex(), m.edges[0].PublicKey().Hex(), m.endpoints[1])); err != nil {
		t.Fatal(err)
	}
	m.c1.expect(t, "c1 while moving", 10*time.Second)
	m.roundTrip(t, m.c1, clientIP, "c1 through B")
	m.roundTrip(t, m.c2, client2IP, "c2 through B")
}

// expectAll waits up to d for UDP packets carrying each of tags, in any
// order.
func (n *node) expectAll(t *testing.T, d time.Duration, tags ...string) {
	t.Helper()
	left := map[string]bool{}
	for _, tag := range tags {
		left[tag] = true
	}
	deadline := time.After(d)
	for len(left) > 0 {
		select {
		case p := <-n.ct.Inbound:
			for tag := range left {
				if len(p) >= len(tag) && string(p[len(p)-len(tag):]) == tag {
					delete(left, tag)
				}
			}
		case <-deadline:
			t.Fatalf("at %s: %v did not arrive in %v", n.name, left, d)
		}
	}
}

// TestSetEndpoints: paths whose endpoint stays keep their sessions, the
// others end; one endpoint leaves the peer alone again; a router
// device's peer takes one endpoint only.
func TestSetEndpoints(t *testing.T) {
	d, _, p, _ := tunRig(t)
	a, b, c := netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2"), netip.MustParseAddrPort("127.0.0.1:3")
	if err := p.SetEndpoints([]netip.AddrPort{a, b, c}); err != nil {
		t.Fatal(err)
	}
	paths := p.allPaths()
	if len(paths) != 3 || paths[0] != p || paths[1].main != p {
		t.Fatalf("paths %v", paths)
	}
	kb := session(d, paths[1], 5, 6, b)
	kc := session(d, paths[2], 7, 8, c)
	if err := p.SetEndpoints([]netip.AddrPort{a, b}); err != nil {
		t.Fatal(err)
	}
	if ps := p.allPaths(); len(ps) != 2 || ps[1] != paths[1] || ps[1].current.Load() != kb {
		t.Fatalf("b's path not kept with its session: %v", ps)
	}
	if !paths[2].isRemoved() || paths[2].current.Load() != nil || d.lookup(kc.local).kp != nil {
		t.Fatal("c's path not ended")
	}
	if err := p.SetEndpoints([]netip.AddrPort{a}); err != nil {
		t.Fatal(err)
	}
	if ps := p.allPaths(); len(ps) != 1 || !paths[1].isRemoved() {
		t.Fatalf("paths %v", ps)
	}
	if err := p.SetEndpoints([]netip.AddrPort{a, a}); err == nil {
		t.Fatal("an endpoint twice accepted")
	}
	r, err := New(Config{PrivateKey: newKey(t), Router: testRouter(t), Loops: 1, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	q, err := r.AddPeer("client", newKey(t).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.SetEndpoints([]netip.AddrPort{a, b}); err != errNotTUN {
		t.Fatalf("router device: %v", err)
	}
}

// isRemoved reports whether p was removed.
func (p *Peer) isRemoved() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.removed
}

// pathRig is tunRig's device with the peer at two endpoints, each path in
// session.
func pathRig(tb testing.TB) (*Device, *nullTUN, *Peer, [2]*keypair) {
	d, nt, p, kp := tunRig(tb)
	ep := p.endpoint.Load().AddrPort
	if err := p.SetEndpoints([]netip.AddrPort{ep, sink(tb)}); err != nil {
		tb.Fatal(err)
	}
	q := p.allPaths()[1]
	return d, nt, p, [2]*keypair{kp, session(d, q, 5, 6, q.endpoint.Load().AddrPort)}
}

// TestPathsAllocs holds a connector's paths to zero allocations: packets
// from the second path are decrypted to the TUN (their sources learned),
// and the replies read from the TUN go back on that path.
func TestPathsAllocs(t *testing.T) {
	d, nt, p, kps := pathRig(t)
	settle(t)
	l := &loop{d: d, arena: make([]byte, arenaSize), out4: d.socks4[0].newBatch()}
	l.initTUN()
	pkt := udp(t, clientIP, hostIP, string(make([]byte, 1420-28)))
	var msgs [][]byte
	for i := range tunBatchLen {
		msgs = append(msgs, sealFor(kps[1], 5, uint64(i), pkt))
	}
	src := netip.MustParseAddrPort("127.0.0.1:40000")
	const runs = 100
	if n := testing.AllocsPerRun(runs, func() {
		kps[1].replay.reset()
		l.cValid = false
		for _, m := range msgs {
			l.transport(m, src, d.now())
		}
		l.flush()
	}); n != 0 {
		t.Errorf("%v allocations per batch of %d packets to the TUN, want 0", n, tunBatchLen)
	}
	if got := nt.written.Load(); got != (runs+1)*tunBatchLen {
		t.Fatalf("%d packets written to the TUN, want %d", got, (runs+1)*tunBatchLen)
	}
	reply := udp(t, hostIP, clientIP, string(make([]byte, 1420-28)))
	mem := make([][]byte, 128)
	sizes := make([]int, 128)
	for i := range mem {
		mem[i] = make([]byte, tunOffset+1420+sizeTag)
		sizes[i] = len(reply)
	}
	paths := p.allPaths()
	before0, before1 := paths[0].Stats().TxBytes, paths[1].Stats().TxBytes
	if n := testing.AllocsPerRun(runs, func() {
		for _, m := range mem {
			copy(m[tunOffset:], reply)
		}
		l.fromTUN(p, mem, sizes, d.now())
	}); n != 0 {
		t.Errorf("%v allocations per batch of %d packets from the TUN, want 0", n, len(mem))
	}
	if got, want := paths[1].Stats().TxBytes-before1, uint64((runs+1)*len(mem)*(sizeTransportHdr+padded(len(reply), 1420)+sizeTag)); got != want {
		t.Fatalf("sent %d bytes on the client's path, want %d", got, want)
	}
	if got := paths[0].Stats().TxBytes - before0; got > uint64(10*sizeKeepalive) {
		t.Fatalf("sent %d bytes on the other path, want keepalives at most", got)
	}
}

// TestPathChoice: a packet goes on the path its destination's packets
// came on if that path is live, else on the first live path, else on the
// first with a session, else on path 0; a new list of endpoints forgets
// what was learned.
func TestPathChoice(t *testing.T) {
	pauseTimersForTest.Store(true)
	t.Cleanup(func() { pauseTimersForTest.Store(false) })
	d, _, p, kps := pathRig(t)
	paths := p.allPaths()
	now := d.now()
	heard := func(i int, at int64) { paths[i].lastRecv.Store(at) }
	heard(0, now)
	heard(1, now)
	s := p.paths.Load()
	other := netip.MustParseAddr("fd00:160::9")
	if got := p.pathTo(clientIP, now); got != paths[0] {
		t.Fatal("nothing learned: not the first live path")
	}
	s.learn(clientIP, paths[1])
	s.learn(other, paths[0])
	if p.pathTo(clientIP, now) != paths[1] || p.pathTo(other, now) != paths[0] {
		t.Fatal("learned paths not taken")
	}
	if got := s.lookup(netip.MustParseAddr("198.18.160.99")); got != nil {
		t.Fatal("an address never seen has a path")
	}
	// Path 1 silent for pathStaleAfter: stale, its destinations go on
	// path 0.
	later := now + int64(pathStaleAfter)
	heard(0, later)
	if p.pathTo(clientIP, later) != paths[0] {
		t.Fatal("a stale learned path taken")
	}
	// Both stale: the first with a session; path 0 without one: path 1.
	muchLater := later + int64(pathStaleAfter)
	if p.pathTo(clientIP, muchLater) != paths[0] {
		t.Fatal("both stale: not path 0")
	}
	paths[0].current.Store(nil)
	if p.pathTo(clientIP, muchLater) != paths[1] {
		t.Fatal("path 0 without a session: not the path with one")
	}
	paths[1].current.Store(nil)
	if p.pathTo(clientIP, muchLater) != paths[0] {
		t.Fatal("no session at all: not path 0")
	}
	paths[0].current.Store(kps[0])
	paths[1].current.Store(kps[1])
	// The table is per list of endpoints.
	if err := p.SetEndpoints([]netip.AddrPort{paths[0].endpoint.Load().AddrPort, sink(t), paths[1].endpoint.Load().AddrPort}); err != nil {
		t.Fatal(err)
	}
	if p.paths.Load().lookup(clientIP) != nil {
		t.Fatal("learned paths kept across a new list")
	}
	// Many addresses: the table stays its size, and the latest of each
	// slot wins.
	s = p.paths.Load()
	for i := range 3 * pathSlots {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		s.learn(a, s.paths[i%3])
		if s.lookup(a) != s.paths[i%3] {
			t.Fatalf("%v: not the path just learned", a)
		}
	}
}

// TestHubLeavesUnansweredToPeers: data sent and unanswered for
// KEEPALIVE_TIMEOUT + REKEY_TIMEOUT makes a connector start a new session,
// and not a hub: an edge a client has moved away from (edges sharing the
// key and the client's endpoint) must not keep sending it initiations.
func TestHubLeavesUnansweredToPeers(t *testing.T) {
	pauseTimersForTest.Store(true)
	t.Cleanup(func() { pauseTimersForTest.Store(false) })
	hub, err := New(Config{PrivateKey: newKey(t), Router: testRouter(t), Loops: 1, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	client, err := hub.AddPeer("client", newKey(t).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	session(hub, client, 1, 2, sink(t))
	// A client that still sends on a session the hub let expire: the hub
	// starts a new one (its own sessions may end before the peer's).
	stale, err := hub.AddPeer("site", newKey(t).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	session(hub, stale, 3, 4, sink(t))
	conn, _, edge, _ := tunRig(t)
	for _, c := range []struct {
		d        *Device
		p        *Peer
		initiate bool
	}{{hub, client, false}, {hub, stale, true}, {conn, edge, true}} {
		sent := c.d.now()
		now := sent + int64(keepaliveTimeout+rekeyTimeout)
		if c.p == stale {
			c.p.staleRecv.Store(now - int64(time.Second))
		}
		c.p.unanswered.Store(sent)
		c.p.lastSent.Store(now) // no keepalive due
		c.d.tick(c.p, now)
		c.p.mu.Lock()
		started := c.p.hsState == hsInitSent
		c.p.mu.Unlock()
		if started != c.initiate {
			t.Errorf("%s: handshake started %v, want %v", c.p.name, started, c.initiate)
		}
	}
}

// TestStaleIndexSpoofed plays a stranger who knows the index of a session
// the hub let expire (it is in every transport message the peer sent):
// from any address but the peer's own, the hub takes no notice; from the
// peer's endpoint (the peer itself, or a spoofer on its path) it notes
// that the peer still sends, and no more (staleRecv, for tick).
func TestStaleIndexSpoofed(t *testing.T) {
	pauseTimersForTest.Store(true)
	t.Cleanup(func() { pauseTimersForTest.Store(false) })
	hub, err := New(Config{PrivateKey: newKey(t), Router: testRouter(t), Loops: 1, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	p, err := hub.AddPeer("client", newKey(t).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	peerConn, stranger := listen(), listen()
	kp := session(hub, p, 1, 2, peerConn.LocalAddr().(*net.UDPAddr).AddrPort())
	hub.tick(p, kp.created+int64(rejectAfterTime))
	if e := hub.lookup(kp.local); e.peer != p || e.kp != nil {
		t.Fatalf("after REJECT_AFTER_TIME the index names %+v, want the peer without a session", e)
	}
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: hub.Port()}
	msg := sealFor(kp, 2, 7, []byte("on an expired session"))
	for range 20 {
		if _, err := stranger.WriteToUDP(msg, to); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if at := p.staleRecv.Load(); at != 0 {
		t.Fatal("a stranger's datagram with the expired index made the hub take the peer for alive")
	}
	if _, err := peerConn.WriteToUDP(msg, to); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.staleRecv.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the peer's own datagram on the expired session went unnoticed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
