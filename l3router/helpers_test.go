package l3router

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// Test addresses: 198.18.0.0/15 and fd00::/8 only.
var (
	routerV4 = netip.MustParseAddr("198.18.0.1")
	routerV6 = netip.MustParseAddr("fd00::1")

	aliceV4 = netip.MustParseAddr("198.18.1.2")
	aliceV6 = netip.MustParseAddr("fd00:1::2")
	bobV4   = netip.MustParseAddr("198.18.1.3")
	bobV6   = netip.MustParseAddr("fd00:1::3")

	lanA4    = netip.MustParsePrefix("198.19.10.0/24")
	lanA6    = netip.MustParsePrefix("fd00:10::/64")
	hostA4   = netip.MustParseAddr("198.19.10.7")
	hostA6   = netip.MustParseAddr("fd00:10::7")
	nowhere4 = netip.MustParseAddr("198.19.99.1")
	nowhere6 = netip.MustParseAddr("fd00:99::1")
)

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// testConfig has clients alice and bob and connector conn-a.
func testConfig() Config {
	return Config{
		Address4: routerV4,
		Address6: routerV6,
		ICMPRate: -1,
		Peers: []PeerConfig{
			{Name: "alice", Kind: KindClient, Groups: []string{"eng"}, Routes: []netip.Prefix{host(aliceV4), host(aliceV6)}},
			{Name: "bob", Kind: KindClient, Groups: []string{"sales"}, Routes: []netip.Prefix{host(bobV4), host(bobV6)}},
			{Name: "conn-a", Kind: KindConnector, Routes: []netip.Prefix{lanA4, lanA6}},
		},
	}
}

func newTestRouter(t testing.TB, mod func(*Config)) *Router {
	t.Helper()
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// udpPacket returns an IPv4 or IPv6 UDP packet of total length size (at
// least the headers) with the given TTL or hop limit.
func udpPacket(t testing.TB, src, dst netip.Addr, ttl uint8, size int) []byte {
	t.Helper()
	var b []byte
	var err error
	hl := 20
	if src.Is6() {
		hl = 40
	}
	payload := max(size-hl-8, 0)
	if src.Is4() {
		b, err = packet.AppendIPv4(nil, &packet.IPv4Header{TTL: ttl, Protocol: packet.ProtoUDP, Src: src, Dst: dst, Flags: packet.IPv4FlagDF}, 8+payload)
	} else {
		b, err = packet.AppendIPv6(nil, &packet.IPv6Header{NextHeader: packet.ProtoUDP, HopLimit: ttl, Src: src, Dst: dst}, 8+payload)
	}
	if err != nil {
		t.Fatal(err)
	}
	start := len(b)
	b, err = packet.AppendUDP(b, &packet.UDPHeader{SrcPort: 40000, DstPort: 53}, payload)
	if err != nil {
		t.Fatal(err)
	}
	for i := range payload {
		b = append(b, byte(i))
	}
	if err := packet.PutUDPChecksum(b[start:], packet.PseudoHeaderSum(src, dst, packet.ProtoUDP, uint32(len(b)-start))); err != nil {
		t.Fatal(err)
	}
	return b
}

// tcpPacket returns a TCP SYN to dport.
func tcpPacket(t testing.TB, src, dst netip.Addr, dport uint16) []byte {
	t.Helper()
	var b []byte
	var err error
	if src.Is4() {
		b, err = packet.AppendIPv4(nil, &packet.IPv4Header{TTL: 64, Protocol: packet.ProtoTCP, Src: src, Dst: dst}, 20)
	} else {
		b, err = packet.AppendIPv6(nil, &packet.IPv6Header{NextHeader: packet.ProtoTCP, HopLimit: 64, Src: src, Dst: dst}, 20)
	}
	if err != nil {
		t.Fatal(err)
	}
	start := len(b)
	if b, err = packet.AppendTCP(b, &packet.TCPHeader{SrcPort: 40001, DstPort: dport, Flags: 0x002, Window: 65535}); err != nil {
		t.Fatal(err)
	}
	if err := packet.PutChecksum(b[start:], packet.TCPChecksumOffset, packet.PseudoHeaderSum(src, dst, packet.ProtoTCP, 20)); err != nil {
		t.Fatal(err)
	}
	return b
}

// attachAll attaches every configured peer to the router under its name,
// as the device attaches its peers: Route then names destinations by
// PeerID.
func attachAll(t testing.TB, r *Router) {
	t.Helper()
	r.mu.Lock()
	names := make([]PeerID, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	r.mu.Unlock()
	for _, n := range names {
		if err := r.Attach(n, n); err != nil {
			t.Fatal(err)
		}
	}
}

// sender returns the peer that owns p's source address (nil if none, or
// if p is no IP packet): the peer the device would have decrypted p from.
func sender(r *Router, p []byte) any {
	var src netip.Addr
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		src = netip.AddrFrom4([4]byte(p[12:16]))
	case len(p) >= 40 && p[0]>>4 == 6:
		src = netip.AddrFrom16([16]byte(p[8:24]))
	default:
		return nil
	}
	if id, ok := r.Lookup(src); ok {
		return id
	}
	return nil
}

// pass routes copies of pkts, each from the peer that owns its source
// (see sender), and returns what the device would send: the forwarded
// packets (cut to their IP length) and the ICMP errors.
func pass(t testing.TB, r *Router, pkts ...[]byte) [][]byte {
	t.Helper()
	attachAll(t, r)
	var out [][]byte
	var d Decision
	for _, p := range pkts {
		b := bytes.Clone(p)
		r.Route(b, sender(r, b), &d)
		switch d.Action {
		case ActForward:
			if _, ok := d.To.(PeerID); !ok {
				t.Fatalf("forwarded to %v, not an attached peer", d.To)
			}
			out = append(out, b[:d.Len])
		case ActReply:
			reply := make([]byte, r.mtu)
			if n := r.PutReply(reply, &d); n > 0 {
				out = append(out, reply[:n])
			}
		}
	}
	return out
}

// icmpOf parses p as an ICMP error and returns the IP source and
// destination, type, code, rest and the quoted packet.
func icmpOf(t testing.TB, p []byte) (src, dst netip.Addr, typ, code uint8, rest uint32, quoted []byte) {
	t.Helper()
	switch p[0] >> 4 {
	case 4:
		ip, err := packet.ParseIPv4(p)
		if err != nil || !ip.ChecksumValid() || ip.Protocol() != packet.ProtoICMPv4 {
			t.Fatalf("not an ICMPv4 packet: %v %x", err, p)
		}
		m, err := packet.ParseICMPv4(ip.Payload())
		if err != nil || !m.ChecksumValid() {
			t.Fatalf("bad ICMPv4: %v", err)
		}
		return ip.Src(), ip.Dst(), m.Type(), m.Code(), m.Rest(), m.Body()
	default:
		ip, err := packet.ParseIPv6(p)
		if err != nil || ip.Protocol() != packet.ProtoICMPv6 {
			t.Fatalf("not an ICMPv6 packet: %v %x", err, p)
		}
		m, err := packet.ParseICMPv6(ip.Transport())
		if err != nil || !m.ChecksumValid(packet.PseudoHeaderSum(ip.Src(), ip.Dst(), packet.ProtoICMPv6, uint32(len(ip.Transport())))) {
			t.Fatalf("bad ICMPv6: %v", err)
		}
		return ip.Src(), ip.Dst(), m.Type(), m.Code(), m.Rest(), m.Body()
	}
}
