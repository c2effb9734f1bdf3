package hub

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/onramp-net/onramp/dataplane/packet"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// node is a client's or connector's wireguard-go device with a channel
// TUN, peered with the hub over UDP on 127.0.0.1 the way the printed
// configurations say: the edge as the one peer, with a persistent
// keepalive (which also makes the device say hello at once, so that the
// edge learns a connector's endpoint before it has anything to send).
type node struct {
	name string
	dev  *device.Device
	ct   *tuntest.ChannelTUN
	peer Peer
}

func newNode(t *testing.T, h *Hub, priv l3config.Key, p Peer, allowed []netip.Prefix) *node {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	dev := device.NewDevice(ct.TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, p.Name+": "))
	t.Cleanup(dev.Close)
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=0\npublic_key=%s\nendpoint=127.0.0.1:%d\npersistent_keepalive_interval=25\n", priv.Hex(), h.PublicKey().Hex(), h.Port())
	for _, a := range allowed {
		fmt.Fprintf(&b, "allowed_ip=%v\n", a)
	}
	if err := dev.IpcSet(b.String()); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	return &node{name: p.Name, dev: dev, ct: ct, peer: p}
}

func (n *node) send(t *testing.T, p []byte) {
	t.Helper()
	select {
	case n.ct.Outbound <- bytes.Clone(p):
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: TUN not read", n.name)
	}
}

// expect waits for a packet matching match at the node's TUN.
func (n *node) expect(t *testing.T, what string, match func([]byte) bool) []byte {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case p := <-n.ct.Inbound:
			if match(p) {
				return p
			}
		case <-deadline:
			t.Fatalf("%s at %s: nothing arrived", what, n.name)
		}
	}
}

// expectNone checks that nothing matching match arrives for d.
func (n *node) expectNone(t *testing.T, what string, d time.Duration, match func([]byte) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case p := <-n.ct.Inbound:
			if match(p) {
				t.Fatalf("%s at %s: arrived", what, n.name)
			}
		case <-deadline:
			return
		}
	}
}

// udpPacket returns a UDP packet from src to dst whose payload is tag.
func udpPacket(t *testing.T, src, dst netip.Addr, tag string) []byte {
	t.Helper()
	var b []byte
	var err error
	n := 8 + len(tag)
	if src.Is4() {
		b, err = packet.AppendIPv4(nil, &packet.IPv4Header{TTL: 64, Protocol: packet.ProtoUDP, Src: src, Dst: dst}, n)
	} else {
		b, err = packet.AppendIPv6(nil, &packet.IPv6Header{NextHeader: packet.ProtoUDP, HopLimit: 64, Src: src, Dst: dst}, n)
	}
	if err != nil {
		t.Fatal(err)
	}
	start := len(b)
	if b, err = packet.AppendUDP(b, &packet.UDPHeader{SrcPort: 40000, DstPort: 7}, len(tag)); err != nil {
		t.Fatal(err)
	}
	b = append(b, tag...)
	if err := packet.PutUDPChecksum(b[start:], packet.PseudoHeaderSum(src, dst, packet.ProtoUDP, uint32(n))); err != nil {
		t.Fatal(err)
	}
	return b
}

// isUDP matches the UDP packet from src to dst carrying tag.
func isUDP(src, dst netip.Addr, tag string) func([]byte) bool {
	return func(p []byte) bool {
		k, err := packet.ParseFlowKey(p)
		return err == nil && k.Proto == packet.ProtoUDP && k.SrcAddr() == src && k.DstAddr() == dst && bytes.HasSuffix(p, []byte(tag))
	}
}

// isICMP matches an ICMP packet from src to dst.
func isICMP(src, dst netip.Addr) func([]byte) bool {
	return func(p []byte) bool {
		k, err := packet.ParseFlowKey(p)
		return err == nil && (k.Proto == packet.ProtoICMPv4 || k.Proto == packet.ProtoICMPv6) && k.SrcAddr() == src && k.DstAddr() == dst
	}
}

type rig struct {
	store          *Store
	hub            *Hub
	alice, bob, ca *node
	host4, host6   netip.Addr // hosts behind the connector
}

// newRig starts a hub with clients alice (group eng) and bob and connector
// site-a (198.18.30.0/24, fd00:30::/64), all recorded in a store.
func newRig(t *testing.T, acl l3router.ACLConfig) *rig {
	t.Helper()
	s, _ := openTestStore(t, testPools)
	edgeKey, err := s.EdgeKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]l3config.Key{}
	add := func(p Peer, priv l3config.Key) {
		keys[p.Name] = priv
		mustAdd(t, s, p)
	}
	ak, bk := newKey(t), newKey(t)
	add(Peer{Name: "alice", Kind: l3router.KindClient, PublicKey: ak.PublicKey(), Groups: []string{"eng"}}, ak)
	add(Peer{Name: "bob", Kind: l3router.KindClient, PublicKey: bk.PublicKey()}, bk)
	ck := newKey(t)
	ca := connector(t, "site-a", "198.18.30.0/24", "fd00:30::/64")
	ca.PublicKey = ck.PublicKey()
	add(ca, ck)
	peers, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{PrivateKey: edgeKey, Pools: testPools, ACL: acl, Logger: slog.New(slog.DiscardHandler)}, peers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	r := &rig{store: s, hub: h, host4: netip.MustParseAddr("198.18.30.7"), host6: netip.MustParseAddr("fd00:30::7")}
	for _, p := range peers {
		// What the printed configurations route to the edge: the pools
		// and the (other) connectors' subnets.
		n := newNode(t, h, keys[p.Name], p, append(testPools.Prefixes(), Subnets(peers, p.Name)...))
		switch p.Name {
		case "alice":
			r.alice = n
		case "bob":
			r.bob = n
		case "site-a":
			r.ca = n
		}
	}
	// Every node's keepalive starts a handshake; the hub can send to a
	// peer only once it knows its endpoint, so wait for all of them
	// (a loaded machine may take a while).
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := h.Stats()
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, p := range st.Peers {
			if !p.LastHandshake.IsZero() {
				done++
			}
		}
		if done == len(peers) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d peers completed a handshake with the hub in 20s", done, len(peers))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// roundTrip checks that c reaches the hosts behind site-a and their
// answers come back, over IPv4 and IPv6.
func (r *rig) roundTrip(t *testing.T, c *node, tag string) {
	t.Helper()
	for _, pair := range [][2]netip.Addr{{c.peer.Address4, r.host4}, {c.peer.Address6, r.host6}} {
		r.sendTo(t, c, r.ca, pair[0], pair[1], tag)
		r.sendTo(t, r.ca, c, pair[1], pair[0], tag+" reply")
	}
}

func (r *rig) sendTo(t *testing.T, from, to *node, src, dst netip.Addr, tag string) {
	t.Helper()
	from.send(t, udpPacket(t, src, dst, tag))
	to.expect(t, tag, isUDP(src, dst, tag))
}

func TestHub(t *testing.T) {
	r := newRig(t, l3router.ACLConfig{})
	h := r.hub

	r.roundTrip(t, r.alice, "alice 1")
	r.roundTrip(t, r.bob, "bob 1")

	// Client to client is denied by the built-in policy and counted.
	r.alice.send(t, udpPacket(t, r.alice.peer.Address4, r.bob.peer.Address4, "to bob"))
	r.bob.expectNone(t, "alice's packet", 300*time.Millisecond, isUDP(r.alice.peer.Address4, r.bob.peer.Address4, "to bob"))
	st, err := h.Stats()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]PeerStats{}
	for _, p := range st.Peers {
		byName[p.Name] = p
	}
	if len(st.Peers) != 3 {
		t.Fatalf("stats of %d peers: %+v", len(st.Peers), st.Peers)
	}
	as := byName["alice"]
	if as.Router.Drops[l3router.DropACL] != 1 || as.Router.RxPackets != 3 || as.Router.TxPackets != 2 {
		t.Fatalf("alice's counters %+v", as.Router)
	}
	if as.LastHandshake.IsZero() || time.Since(as.LastHandshake) > time.Minute || !strings.HasPrefix(as.Endpoint, "127.0.0.1:") || as.WireRxBytes == 0 {
		t.Fatalf("alice's device stats: handshake %v endpoint %q rx %d", as.LastHandshake, as.Endpoint, as.WireRxBytes)
	}
	if byName["site-a"].Kind != l3router.KindConnector || byName["site-a"].Router.RxPackets != 4 {
		t.Fatalf("site-a stats %+v", byName["site-a"])
	}

	// The same counters on /metrics: the clients' by kind, the
	// connector's also of its own.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.Collector())
	want := `
# HELP onramp_edge_l3_drops_total Packets from L3 peers of a kind the edge router dropped, by reason.
# TYPE onramp_edge_l3_drops_total counter
` + dropLines("onramp_edge_l3_drops_total", "", "client", 1) + dropLines("onramp_edge_l3_drops_total", "", "connector", 0) + `
# HELP onramp_edge_l3_peer_drops_total Packets from an L3 connector the edge router dropped, by reason.
# TYPE onramp_edge_l3_peer_drops_total counter
` + dropLines("onramp_edge_l3_peer_drops_total", "site-a", "connector", 0)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "onramp_edge_l3_drops_total", "onramp_edge_l3_peer_drops_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "onramp_edge_l3_peer_rx_packets_total", "onramp_edge_l3_peer_last_handshake_seconds"); err != nil || n != 2 {
		t.Fatalf("per-connector series %d, %v: want site-a's two", n, err)
	}
	if v := gathered(t, reg, "onramp_edge_l3_rx_packets_total", "client"); v != float64(as.Router.RxPackets+byName["bob"].Router.RxPackets) {
		t.Fatalf("client rx packets %v, want alice's and bob's", v)
	}
	// Every peer's handshake was processed (not under load: no cookies).
	if hs := st.Handshakes; hs.Processed < 3 || hs.Cookies != 0 {
		t.Fatalf("handshake stats %+v, want at least one processed per peer", hs)
	}
	if n, err := testutil.GatherAndCount(reg, "onramp_edge_l3_handshake_messages_total", "onramp_edge_l3_handshake_limited_sources"); err != nil || n != 7 {
		t.Fatalf("handshake series %d, %v: want 6 results and the sources", n, err)
	}
	if v := gathered(t, reg, "onramp_edge_l3_handshakes_completed_total"); v < 3 {
		t.Fatalf("%v handshakes completed, want one per peer at least", v)
	}
	if n, err := testutil.GatherAndCount(reg, "onramp_edge_l3_staged_drops_total", "onramp_edge_l3_staged_packets", "onramp_edge_l3_staged_bytes"); err != nil || n != 6 {
		t.Fatalf("staging series %d, %v: want 4 reasons, the packets and the bytes", n, err)
	}
	if n, err := testutil.GatherAndCount(reg, "onramp_edge_l3_handshake_rejected_total"); err != nil || n != 5 {
		t.Fatalf("handshake refusal series %d, %v: want one per reason (5)", n, err)
	}

	// Garbage on the UDP port and a packet of bob spoofing alice's address
	// are dropped; the others' flows go on.
	u, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(h.Port()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		_, _ = u.Write(bytes.Repeat([]byte{byte(i)}, 1+i*20))
		_, _ = u.Write(append([]byte{4, 0, 0, 0}, bytes.Repeat([]byte{0xee}, 40+i)...)) // a bogus transport data message
	}
	u.Close()
	r.bob.send(t, udpPacket(t, r.alice.peer.Address4, r.host4, "spoofed"))
	r.ca.expectNone(t, "bob's spoofed packet", 300*time.Millisecond, isUDP(r.alice.peer.Address4, r.host4, "spoofed"))
	r.roundTrip(t, r.alice, "alice 2")
	r.roundTrip(t, r.bob, "bob 2")

	// A connector whose subnet overlaps site-a's is refused, changing nothing.
	bad := connector(t, "site-b", "198.18.30.128/25")
	bad.Address4, bad.Address6 = netip.MustParseAddr("198.18.96.200"), netip.MustParseAddr("fd00:96::200")
	if err := h.AddPeer(bad); !errors.Is(err, ErrOverlap) || !strings.Contains(err.Error(), `overlaps 198.18.30.0/24 of "site-a"`) {
		t.Fatalf("overlapping connector: %v", err)
	}
	if dup := r.alice.peer; !errors.Is(h.AddPeer(dup), ErrExists) {
		t.Fatal("alice added twice")
	}
	r.roundTrip(t, r.alice, "alice 3")

	// Removing alice cuts her at once; bob keeps working.
	if _, err := h.RemovePeer("alice"); err != nil {
		t.Fatal(err)
	}
	r.alice.send(t, udpPacket(t, r.alice.peer.Address4, r.host4, "after removal"))
	r.ca.expectNone(t, "removed alice's packet", 500*time.Millisecond, isUDP(r.alice.peer.Address4, r.host4, "after removal"))
	// The LAN's packets to her address are answered: no route.
	router4, router6 := testPools.Router()
	r.ca.send(t, udpPacket(t, r.host4, r.alice.peer.Address4, "to removed alice"))
	r.ca.expect(t, "ICMP unreachable", isICMP(router4, r.host4))
	r.ca.send(t, udpPacket(t, r.host6, r.alice.peer.Address6, "to removed alice"))
	r.ca.expect(t, "ICMPv6 unreachable", isICMP(router6, r.host6))
	r.roundTrip(t, r.bob, "bob 3")
	if st, _ := h.Stats(); len(st.Peers) != 2 || st.Peers[0].Name != "bob" {
		t.Fatalf("stats after removal: %+v", st.Peers)
	}
	// Her counters stay in the clients' totals.
	if v := gathered(t, reg, "onramp_edge_l3_drops_total", "client", "acl"); v != 1 {
		t.Fatalf("clients' acl drops after alice's removal: %v, want her 1", v)
	}
	if _, err := h.RemovePeer("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second removal: %v", err)
	}
	// The router forgot her too: no counters or slot left behind.
	if _, ok := h.Router().Stats().Peers["alice"]; ok {
		t.Fatal("the router still holds removed alice")
	}

	// alice comes back with a new key (same name, a freed address): the
	// new key works, the old one stays cut.
	if _, err := r.store.Remove(l3router.KindClient, "alice"); err != nil {
		t.Fatal(err)
	}
	nk := newKey(t)
	a2, err := r.store.Add(Peer{Name: "alice", Kind: l3router.KindClient, PublicKey: nk.PublicKey(), Groups: []string{"eng"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddPeer(a2); err != nil {
		t.Fatal(err)
	}
	peers, _ := r.store.List()
	alice2 := newNode(t, h, nk, a2, append(testPools.Prefixes(), Subnets(peers, "")...))
	r.roundTrip(t, alice2, "alice again")
	r.alice.send(t, udpPacket(t, r.alice.peer.Address4, r.host4, "old key"))
	r.ca.expectNone(t, "old key's packet", 300*time.Millisecond, isUDP(r.alice.peer.Address4, r.host4, "old key"))
}

// gathered returns the value of the sample of metric name in reg whose
// label values (in the order of the label names) are values.
func gathered(t *testing.T, reg prometheus.Gatherer, name string, values ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(values) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetValue() != values[i] {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no sample %s%q", name, values)
	return 0
}

// dropLines is the expected exposition of drop counters of metric name,
// of a peer (or, "", of a kind), all zero but acl.
func dropLines(name, peer, kind string, acl int) string {
	var b strings.Builder
	for r := range l3router.NumDropReasons {
		v := 0
		if r == l3router.DropACL {
			v = acl
		}
		if peer == "" {
			fmt.Fprintf(&b, "%s{kind=%q,reason=%q} %d\n", name, kind, r.String(), v)
		} else {
			fmt.Fprintf(&b, "%s{kind=%q,peer=%q,reason=%q} %d\n", name, kind, peer, r.String(), v)
		}
	}
	return b.String()
}

// TestHubACL: rules may name groups and peers before they exist; a
// rejected packet is answered with ICMP administratively prohibited.
func TestHubACL(t *testing.T) {
	acl := l3router.ACLConfig{BuiltinDeny: "reject", Rules: []l3router.RuleConfig{
		{Action: "reject", From: l3router.Selector{Groups: []string{"eng"}}, To: l3router.Selector{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.30.7/32")}}},
		{Action: "allow", From: l3router.Selector{Peers: []l3router.PeerID{"carol"}}, To: l3router.Selector{Groups: []string{"contractors"}}},
	}}
	r := newRig(t, acl)
	router4, _ := testPools.Router()
	// alice (eng) is rejected to 198.18.30.7 but reaches the rest of the subnet.
	r.alice.send(t, udpPacket(t, r.alice.peer.Address4, r.host4, "denied"))
	r.alice.expect(t, "ICMP admin prohibited", func(p []byte) bool {
		if !isICMP(router4, r.alice.peer.Address4)(p) {
			return false
		}
		m, err := packet.ParseICMPv4(p[20:])
		return err == nil && m.Type() == packet.ICMPv4DestUnreachable && m.Code() == packet.ICMPv4CodeAdminProhibited
	})
	r.sendTo(t, r.alice, r.ca, r.alice.peer.Address6, r.host6, "v6 allowed")
	// bob is not in eng.
	r.roundTrip(t, r.bob, "bob")
	st, _ := r.hub.Stats()
	if st.Peers[0].Name != "alice" || st.Peers[0].Router.Drops[l3router.DropACL] != 1 {
		t.Fatalf("alice's drops %+v", st.Peers[0].Router.Drops)
	}
	// Nonexistent peers and groups in the rules leave no trace in the stats.
	if len(st.Peers) != 3 {
		t.Fatalf("stats list %d peers", len(st.Peers))
	}
}

// The router's queue length comes from the hub's configuration.
