//go:build linux

package wg

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/packet"
	"github.com/onramp-net/onramp/l3router"
)

// The router's decisions as stock WireGuard peers see them through the
// device: forwarding both ways over IPv4 and IPv6, the ACL's drops,
// rejects and rules, and the ICMP errors (no route, TTL exceeded, ACL
// reject) that come back to the sender on its own session.

var (
	routeRouter4 = netip.MustParseAddr("198.18.160.1")
	routeRouter6 = netip.MustParseAddr("fd00:160::1")
	aliceIP4     = netip.MustParseAddr("198.18.160.2")
	aliceIP6     = netip.MustParseAddr("fd00:160::2")
	bobIP4       = netip.MustParseAddr("198.18.160.3")
	bobIP6       = netip.MustParseAddr("fd00:160::3")
	lanHost4     = netip.MustParseAddr("198.18.30.7")
	lanHost6     = netip.MustParseAddr("fd00:30::7")
	nowhere4     = netip.MustParseAddr("198.18.99.1")
	nowhere6     = netip.MustParseAddr("fd00:99::1")
)

// routeWorld is a device whose router has clients alice and bob and the
// connector conn-a (198.18.30.0/24, fd00:30::/64), and a stock
// wireguard-go node for each, routing everything through the device.
type routeWorld struct {
	dev              *Device
	router           *l3router.Router
	alice, bob, conn *node
}

func newRouteWorld(t *testing.T) *routeWorld {
	t.Helper()
	router, err := l3router.New(l3router.Config{
		Address4: routeRouter4, Address6: routeRouter6, ICMPRate: -1,
		Peers: []l3router.PeerConfig{
			{Name: "alice", Kind: l3router.KindClient, Routes: []netip.Prefix{netip.PrefixFrom(aliceIP4, 32), netip.PrefixFrom(aliceIP6, 128)}},
			{Name: "bob", Kind: l3router.KindClient, Routes: []netip.Prefix{netip.PrefixFrom(bobIP4, 32), netip.PrefixFrom(bobIP6, 128)}},
			{Name: "conn-a", Kind: l3router.KindConnector, Routes: []netip.Prefix{netip.MustParsePrefix("198.18.30.0/24"), netip.MustParsePrefix("fd00:30::/64")}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{PrivateKey: newKey(t), Router: router, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	w := &routeWorld{dev: d, router: router}
	for name, n := range map[string]**node{"alice": &w.alice, "bob": &w.bob, "conn-a": &w.conn} {
		k := newKey(t)
		if _, err := d.AddPeer(l3router.PeerID(name), k.PublicKey()); err != nil {
			t.Fatal(err)
		}
		*n = newNode(t, d, name, k, true, "127.0.0.1")
		// IPv6 through the device too.
		pub := d.PublicKey()
		if err := (*n).dev.IpcSet("public_key=" + hex.EncodeToString(pub[:]) + "\nallowed_ip=::/0\n"); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// ipUDP is a UDP packet of either family with the given TTL or hop limit,
// ending in tag.
func ipUDP(t *testing.T, src, dst netip.Addr, ttl uint8, tag string) []byte {
	t.Helper()
	n := 8 + len(tag)
	var b []byte
	var err error
	if src.Is4() {
		b, err = packet.AppendIPv4(nil, &packet.IPv4Header{TTL: ttl, Protocol: packet.ProtoUDP, Src: src, Dst: dst}, n)
	} else {
		b, err = packet.AppendIPv6(nil, &packet.IPv6Header{NextHeader: packet.ProtoUDP, HopLimit: ttl, Src: src, Dst: dst}, n)
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

// arrival waits up to d for a packet at n's TUN for which match is true,
// skipping others; nil if none came.
func (n *node) arrival(d time.Duration, match func([]byte) bool) []byte {
	deadline := time.After(d)
	for {
		select {
		case p := <-n.ct.Inbound:
			if match(p) {
				return p
			}
		case <-deadline:
			return nil
		}
	}
}

func carries(tag string) func([]byte) bool {
	return func(p []byte) bool { return bytes.HasSuffix(p, []byte(tag)) }
}

// icmpError is an ICMP error as the sender gets it.
type icmpError struct {
	src, dst  netip.Addr
	typ, code uint8
	quoted    []byte
}

// icmpTo waits for an ICMP error to dst at n and parses it, checking its
// checksums.
func (n *node) icmpTo(t *testing.T, dst netip.Addr) icmpError {
	t.Helper()
	p := n.arrival(5*time.Second, func(p []byte) bool {
		k, err := packet.ParseFlowKey(p)
		return err == nil && (k.Proto == packet.ProtoICMPv4 || k.Proto == packet.ProtoICMPv6) && k.DstAddr() == dst
	})
	if p == nil {
		t.Fatalf("no ICMP error to %v at %s", dst, n.name)
	}
	if dst.Is4() {
		ip, err := packet.ParseIPv4(p)
		if err != nil || !ip.ChecksumValid() {
			t.Fatalf("ICMPv4 error: %v", err)
		}
		m, err := packet.ParseICMPv4(ip.Payload())
		if err != nil || !m.ChecksumValid() {
			t.Fatalf("ICMPv4 error: %v, checksum valid %v", err, err == nil && m.ChecksumValid())
		}
		return icmpError{ip.Src(), ip.Dst(), m.Type(), m.Code(), m.Body()}
	}
	ip, err := packet.ParseIPv6(p)
	if err != nil {
		t.Fatalf("ICMPv6 error: %v", err)
	}
	m, err := packet.ParseICMPv6(ip.Transport())
	if err != nil || !m.ChecksumValid(packet.PseudoHeaderSum(ip.Src(), ip.Dst(), packet.ProtoICMPv6, uint32(len(ip.Transport())))) {
		t.Fatalf("ICMPv6 error: %v", err)
	}
	return icmpError{ip.Src(), ip.Dst(), m.Type(), m.Code(), m.Body()}
}

func hopLimitOf(p []byte) uint8 {
	if p[0]>>4 == 4 {
		return p[8]
	}
	return p[7]
}

func TestRouting(t *testing.T) {
	w := newRouteWorld(t) // the nodes' keepalives start their sessions
	stats := func(name string) l3router.PeerStats { return w.router.Stats().Peers[l3router.PeerID(name)] }

	t.Run("client to subnet", func(t *testing.T) {
		for _, c := range [][2]netip.Addr{{aliceIP4, lanHost4}, {aliceIP6, lanHost6}} {
			in := ipUDP(t, c[0], c[1], 64, "to the LAN from "+c[0].String())
			w.alice.send(t, in)
			got := w.conn.arrival(10*time.Second, carries("to the LAN from "+c[0].String()))
			if got == nil {
				t.Fatalf("%v -> %v: not at conn-a", c[0], c[1])
			}
			if hopLimitOf(got) != 63 || len(got) != len(in) {
				t.Fatalf("%v: hop limit %d, %d bytes; want 63, %d", c[1], hopLimitOf(got), len(got), len(in))
			}
			if ip, err := packet.ParseIPv4(got); c[0].Is4() && (err != nil || !ip.ChecksumValid()) {
				t.Fatal("bad IPv4 header checksum")
			}
		}
	})
	t.Run("subnet to client", func(t *testing.T) {
		for _, c := range [][2]netip.Addr{{lanHost4, aliceIP4}, {lanHost6, aliceIP6}} {
			w.conn.send(t, ipUDP(t, c[0], c[1], 64, "to alice from "+c[0].String()))
			got := w.alice.arrival(5*time.Second, carries("to alice from "+c[0].String()))
			if got == nil || hopLimitOf(got) != 63 {
				t.Fatalf("%v -> %v: %x", c[0], c[1], got)
			}
		}
	})
	t.Run("client to client denied", func(t *testing.T) {
		before := stats("alice").Drops[l3router.DropACL]
		w.alice.send(t, ipUDP(t, aliceIP4, bobIP4, 64, "alice to bob"))
		if p := w.bob.arrival(300*time.Millisecond, carries("alice to bob")); p != nil {
			t.Fatal("client to client forwarded under the default policy")
		}
		if got := stats("alice").Drops[l3router.DropACL]; got != before+1 {
			t.Fatalf("alice's acl drops %d -> %d, want one more", before, got)
		}
	})
	t.Run("client to client rejected", func(t *testing.T) {
		if err := w.router.SetACL(l3router.ACLConfig{BuiltinDeny: "reject"}); err != nil {
			t.Fatal(err)
		}
		for _, c := range [][2]netip.Addr{{aliceIP4, bobIP4}, {aliceIP6, bobIP6}} {
			w.alice.send(t, ipUDP(t, c[0], c[1], 64, "rejected"))
			e := w.alice.icmpTo(t, c[0])
			if c[0].Is4() && (e.typ != packet.ICMPv4DestUnreachable || e.code != packet.ICMPv4CodeAdminProhibited) ||
				c[0].Is6() && (e.typ != packet.ICMPv6DestUnreachable || e.code != packet.ICMPv6CodeAdminProhibited) {
				t.Fatalf("%v: type %d code %d, want administratively prohibited", c[1], e.typ, e.code)
			}
		}
	})
	t.Run("client to client allowed", func(t *testing.T) {
		err := w.router.SetACL(l3router.ACLConfig{Rules: []l3router.RuleConfig{
			{Action: "allow", From: l3router.Selector{Peers: []l3router.PeerID{"alice"}}, To: l3router.Selector{Peers: []l3router.PeerID{"bob"}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		w.alice.send(t, ipUDP(t, aliceIP6, bobIP6, 64, "allowed to bob"))
		if w.bob.arrival(5*time.Second, carries("allowed to bob")) == nil {
			t.Fatal("not at bob")
		}
	})
	t.Run("no route", func(t *testing.T) {
		for _, c := range []struct {
			src, dst, router netip.Addr
			typ, code, hdr   uint8
		}{
			{aliceIP4, nowhere4, routeRouter4, packet.ICMPv4DestUnreachable, packet.ICMPv4CodeNetUnreachable, 28},
			{aliceIP6, nowhere6, routeRouter6, packet.ICMPv6DestUnreachable, packet.ICMPv6CodeNoRoute, 48},
		} {
			in := ipUDP(t, c.src, c.dst, 64, "nowhere")
			w.alice.send(t, in)
			e := w.alice.icmpTo(t, c.src)
			if e.src != c.router || e.typ != c.typ || e.code != c.code {
				t.Fatalf("%v: from %v type %d code %d, want from %v type %d code %d", c.dst, e.src, e.typ, e.code, c.router, c.typ, c.code)
			}
			if !bytes.Equal(e.quoted[:c.hdr], in[:c.hdr]) {
				t.Fatalf("quoted header:\n%x\nwant\n%x", e.quoted[:c.hdr], in[:c.hdr])
			}
		}
	})
	t.Run("ttl 1", func(t *testing.T) {
		for _, c := range [][2]netip.Addr{{aliceIP4, lanHost4}, {aliceIP6, lanHost6}} {
			w.alice.send(t, ipUDP(t, c[0], c[1], 1, "ttl 1"))
			e := w.alice.icmpTo(t, c[0])
			if c[0].Is4() && e.typ != packet.ICMPv4TimeExceeded || c[0].Is6() && e.typ != packet.ICMPv6TimeExceeded || e.code != 0 {
				t.Fatalf("%v: type %d code %d, want time exceeded", c[1], e.typ, e.code)
			}
		}
	})
	t.Run("malformed", func(t *testing.T) {
		before := w.router.Stats().Unattributed[l3router.DropMalformed]
		good := ipUDP(t, aliceIP4, lanHost4, 64, "a good one")
		badSum := bytes.Clone(good)
		badSum[10] ^= 0x55
		truncUDP := bytes.Clone(good[:24]) // UDP header cut short
		truncUDP[2], truncUDP[3] = 0, 24
		truncUDP[10], truncUDP[11] = 0, 0
		sum := packet.Checksum(truncUDP[:20], 0)
		truncUDP[10], truncUDP[11] = byte(sum>>8), byte(sum)
		v6bad := ipUDP(t, aliceIP6, lanHost6, 64, "a bad one")
		v6bad[6] = packet.ProtoDestOpts // a destination-options header made of the UDP bytes
		v6bad[41] = 0xff                // 2048 bytes long: longer than the packet
		for i, p := range [][]byte{badSum, truncUDP, v6bad} {
			w.alice.send(t, p)
			mark := ipUDP(t, aliceIP4, lanHost4, 64, "after malformed "+string(rune('a'+i)))
			w.alice.send(t, mark)
			if w.conn.arrival(5*time.Second, carries("after malformed "+string(rune('a'+i)))) == nil {
				t.Fatal("the good flow stopped")
			}
		}
		if got := w.router.Stats().Unattributed[l3router.DropMalformed] - before; got != 3 {
			t.Fatalf("malformed drops %d, want 3", got)
		}
	})
	s := w.router.Stats()
	t.Logf("router: %+v", s)
	if s.ICMPErrors < 6 {
		t.Errorf("%d ICMP errors counted, want at least the 6 received", s.ICMPErrors)
	}
}
