package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Test addresses: 198.18.0.0/15 and fd00::/8 only.
var (
	testSrc4 = net.IP{198, 18, 0, 1}
	testDst4 = net.IP{198, 19, 0, 2}
	testSrc6 = net.ParseIP("fd00::1")
	testDst6 = net.ParseIP("fd00::2")
	router4  = netip.MustParseAddr("198.18.255.254")
	router6  = netip.MustParseAddr("fd00::fe")
)

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func fill(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*31 + 7)
	}
	return p
}

// tcp4Packet is IPv4 + TCP (with MSS, SACK-permitted, timestamps, window
// scale) + 64 bytes, serialized by gopacket.
func tcp4Packet(tb testing.TB) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: 1, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP, SrcIP: testSrc4, DstIP: testDst4}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 7, Ack: 9, ACK: true, PSH: true, Window: 512, Options: []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: fill(8)},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}}
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, tcp, gopacket.Payload(fill(64)))
}

func udp6Packet(tb testing.TB, n int) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: testSrc6, DstIP: testDst6}
	udp := &layers.UDP{SrcPort: 443, DstPort: 50000}
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, udp, gopacket.Payload(fill(n)))
}

func udp4Packet(tb testing.TB, n int) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: testSrc4, DstIP: testDst4}
	udp := &layers.UDP{SrcPort: 51820, DstPort: 51821}
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, udp, gopacket.Payload(fill(n)))
}

func TestParseIPv4TCP(t *testing.T) {
	b := tcp4Packet(t)
	ip, err := ParseIPv4(b)
	if err != nil {
		t.Fatal(err)
	}
	if ip.Src() != netip.MustParseAddr("198.18.0.1") || ip.Dst() != netip.MustParseAddr("198.19.0.2") ||
		ip.Protocol() != ProtoTCP || ip.TTL() != 64 || !ip.DontFragment() || ip.IsFragment() || !ip.ChecksumValid() {
		t.Fatalf("bad IPv4 view")
	}
	tcp, err := ParseTCP(ip.Payload())
	if err != nil {
		t.Fatal(err)
	}
	if tcp.SrcPort() != 40000 || tcp.DstPort() != 443 || tcp.Flags() != TCPFlagACK|TCPFlagPSH || tcp.HeaderLen() != 40 ||
		len(tcp.Payload()) != 64 || !tcp.ChecksumValid(PseudoHeaderSum(ip.Src(), ip.Dst(), ProtoTCP, uint32(len(tcp.Bytes())))) {
		t.Fatalf("bad TCP view")
	}
}

func TestParseIPv6ExtensionHeaders(t *testing.T) {
	inner := udp6Packet(t, 10)[40:]
	// hop-by-hop, destination options, routing, fragment (offset 0), AH, then UDP.
	var ext []byte
	ext = append(ext, ProtoDestOpts, 0, 1, 4, 0, 0, 0, 0)        // HBH: PadN
	ext = append(ext, ProtoRouting, 0, 1, 4, 0, 0, 0, 0)         // dest opts
	ext = append(ext, ProtoFragment, 0, 4, 0, 0, 0, 0, 0)        // routing type 4 (SRH-like), empty
	ext = append(ext, ProtoAH, 0, 0, 1, 0, 0, 0, 42)             // fragment: offset 0, M set
	ext = append(ext, ProtoUDP, 2, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8) // AH: (2+2)*4 = 16 bytes
	ext = append(ext, 0, 0, 0, 0)
	ip6 := &layers.IPv6{Version: 6, HopLimit: 9, NextHeader: layers.IPProtocolIPv6HopByHop, SrcIP: testSrc6, DstIP: testDst6, Length: uint16(len(ext) + len(inner))}
	b := serialize(t, ip6, gopacket.Payload(append(ext, inner...)))
	b[4], b[5] = byte((len(ext)+len(inner))>>8), byte(len(ext)+len(inner))
	ip, err := ParseIPv6(b)
	if err != nil {
		t.Fatal(err)
	}
	if ip.Protocol() != ProtoUDP || ip.TransportOffset() != 40+len(ext) || ip.ExtensionHeaders() != 5 ||
		!ip.IsFragment() || ip.IsNonFirstFragment() || !ip.MoreFragments() || ip.FragmentID() != 42 {
		t.Fatalf("walk: proto %d off %d n %d", ip.Protocol(), ip.TransportOffset(), ip.ExtensionHeaders())
	}
	u, err := ParseUDP(ip.Transport())
	if err != nil || u.DstPort() != 50000 {
		t.Fatal(err)
	}
	// A non-first fragment stops the walk.
	binary.BigEndian.PutUint16(b[40+26:], 100<<3)
	ip, err = ParseIPv6(b)
	if err != nil || !ip.IsNonFirstFragment() || ip.Transport() != nil || ip.FragmentOffset() != 100 || ip.Protocol() != ProtoAH {
		t.Fatalf("non-first fragment: %v", err)
	}
}

func TestErrors(t *testing.T) {
	v4 := func(b []byte) (err error) { _, err = ParseIPv4(b); return }
	v6 := func(b []byte) (err error) { _, err = ParseIPv6(b); return }
	tcp := func(b []byte) (err error) { _, err = ParseTCP(b); return }
	udp := func(b []byte) (err error) { _, err = ParseUDP(b); return }
	icmp4 := func(b []byte) (err error) { _, err = ParseICMPv4(b); return }
	icmp6 := func(b []byte) (err error) { _, err = ParseICMPv6(b); return }
	wg := func(b []byte) (err error) { _, err = ClassifyWireGuard(b); return }
	quic := func(n int) func(b []byte) error {
		return func(b []byte) (err error) { _, err = ClassifyQUIC(b, n); return }
	}
	good4 := udp4Packet(t, 8)
	good6 := udp6Packet(t, 8)
	mod := func(b []byte, f func(b []byte)) []byte {
		b = append([]byte(nil), b...)
		f(b)
		return b
	}
	extChain := func(n int, first uint8) []byte {
		b := append([]byte(nil), good6[:40]...)
		b[6] = first
		for i := 0; i < n; i++ {
			b = append(b, ProtoDestOpts, 0, 1, 4, 0, 0, 0, 0)
		}
		b[len(b)-8] = ProtoNoNext
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
		return b
	}
	wgMsg := func(typ byte, n int) []byte {
		b := make([]byte, n)
		if n > 0 {
			b[0] = typ
		}
		return b
	}
	for _, c := range []struct {
		name  string
		parse func([]byte) error
		in    []byte
		kind  error
		layer Layer
	}{
		{"ipv4 short", v4, good4[:19], ErrTruncated, LayerIPv4},
		{"ipv4 version", v4, mod(good4, func(b []byte) { b[0] = 0x65 }), ErrBadVersion, LayerIPv4},
		{"ipv4 IHL 4", v4, mod(good4, func(b []byte) { b[0] = 0x44 }), ErrBadHeaderLength, LayerIPv4},
		{"ipv4 IHL past buffer", v4, mod(good4, func(b []byte) { b[0] = 0x4f })[:40], ErrTruncated, LayerIPv4},
		{"ipv4 total < IHL", v4, mod(good4, func(b []byte) { b[3] = 19; b[2] = 0 }), ErrLengthMismatch, LayerIPv4},
		{"ipv4 total past buffer", v4, good4[:len(good4)-1], ErrTruncated, LayerIPv4},
		{"ipv4 option length 1", v4, append(mod(good4[:20], func(b []byte) { b[0] = 0x46; b[3] = 24 }), 7, 1, 0, 0), ErrBadOption, LayerIPv4},
		{"ipv4 option past header", v4, append(mod(good4[:20], func(b []byte) { b[0] = 0x46; b[3] = 24 }), 1, 7, 5, 0), ErrBadOption, LayerIPv4},
		{"ipv6 short", v6, good6[:39], ErrTruncated, LayerIPv6},
		{"ipv6 version", v6, mod(good6, func(b []byte) { b[0] = 0x40 }), ErrBadVersion, LayerIPv6},
		{"ipv6 jumbogram", v6, mod(good6, func(b []byte) { b[4], b[5], b[6] = 0, 0, 0 }), ErrLengthMismatch, LayerIPv6},
		{"ipv6 payload past buffer", v6, good6[:len(good6)-1], ErrTruncated, LayerIPv6},
		{"ipv6 extension truncated", v6, mod(good6, func(b []byte) { b[6] = ProtoRouting; b[41] = 200 }), ErrTruncated, LayerIPv6},
		{"ipv6 chain too long", v6, extChain(MaxIPv6ExtensionHeaders+1, ProtoDestOpts), ErrExtensionChainTooLong, LayerIPv6},
		{"ipv6 hop-by-hop not first", v6, mod(extChain(2, ProtoDestOpts), func(b []byte) { b[40] = ProtoHopByHop }), ErrBadExtensionOrder, LayerIPv6},
		{"tcp short", tcp, make([]byte, 19), ErrTruncated, LayerTCP},
		{"tcp data offset 4", tcp, append([]byte{12: 0x40}, make([]byte, 7)...), ErrBadHeaderLength, LayerTCP},
		{"tcp options past buffer", tcp, append([]byte{12: 0xf0}, make([]byte, 7)...), ErrTruncated, LayerTCP},
		{"udp short", udp, good4[20:27], ErrTruncated, LayerUDP},
		{"udp length 7", udp, mod(good4[20:], func(b []byte) { b[5] = 7 }), ErrLengthMismatch, LayerUDP},
		{"udp length 0", udp, mod(good4[20:], func(b []byte) { b[5] = 0 }), ErrLengthMismatch, LayerUDP},
		{"udp length past buffer", udp, good4[20 : len(good4)-1], ErrTruncated, LayerUDP},
		{"icmpv4 short", icmp4, make([]byte, 7), ErrTruncated, LayerICMPv4},
		{"icmpv6 short", icmp6, make([]byte, 7), ErrTruncated, LayerICMPv6},
		{"wireguard short", wg, []byte{4, 0, 0}, ErrTruncated, LayerWireGuard},
		{"wireguard type 0", wg, wgMsg(0, 32), ErrBadType, LayerWireGuard},
		{"wireguard type 5", wg, wgMsg(5, 32), ErrBadType, LayerWireGuard},
		{"wireguard reserved", wg, mod(wgMsg(4, 32), func(b []byte) { b[3] = 1 }), ErrReservedNonZero, LayerWireGuard},
		{"wireguard initiation 147", wg, wgMsg(1, 147), ErrLengthMismatch, LayerWireGuard},
		{"wireguard response 93", wg, wgMsg(2, 93), ErrLengthMismatch, LayerWireGuard},
		{"wireguard cookie 63", wg, wgMsg(3, 63), ErrLengthMismatch, LayerWireGuard},
		{"wireguard transport 31", wg, wgMsg(4, 31), ErrLengthMismatch, LayerWireGuard},
		{"quic empty", quic(8), nil, ErrTruncated, LayerQUIC},
		{"quic short fixed bit", quic(8), make([]byte, 20), ErrFixedBit, LayerQUIC},
		{"quic short DCID", quic(8), []byte{0x40, 1, 2}, ErrTruncated, LayerQUIC},
		{"quic short length 21", quic(21), make([]byte, 30), ErrBadConnIDLength, LayerQUIC},
		{"quic long truncated", quic(8), []byte{0xc0, 0, 0}, ErrTruncated, LayerQUIC},
		{"quic v1 fixed bit", quic(8), []byte{0x80, 0, 0, 0, 1, 0, 0}, ErrFixedBit, LayerQUIC},
		{"quic v1 DCID 21", quic(8), append([]byte{0xc0, 0, 0, 0, 1, 21}, make([]byte, 30)...), ErrBadConnIDLength, LayerQUIC},
		{"quic v2 SCID 21", quic(8), append([]byte{0xc0, 0x6b, 0x33, 0x43, 0xcf, 0, 21}, make([]byte, 30)...), ErrBadConnIDLength, LayerQUIC},
		{"quic DCID truncated", quic(8), []byte{0xc0, 0, 0, 0, 1, 8, 1, 2}, ErrTruncated, LayerQUIC},
		{"quic SCID truncated", quic(8), []byte{0xc0, 0, 0, 0, 1, 0, 4, 1}, ErrTruncated, LayerQUIC},
	} {
		err := c.parse(c.in)
		var pe *Error
		if !errors.Is(err, c.kind) || !errors.As(err, &pe) || pe.Layer != c.layer {
			t.Errorf("%s: got %v, want %v in %v", c.name, err, c.kind, c.layer)
		}
	}
}

func TestBuilderErrors(t *testing.T) {
	a4, a6 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("fd00::1")
	if _, err := AppendIPv4(nil, &IPv4Header{Src: a6, Dst: a4}, 0); !errors.Is(err, ErrBadAddress) {
		t.Error(err)
	}
	if _, err := AppendIPv4(nil, &IPv4Header{Src: a4, Dst: a4, Options: make([]byte, 41)}, 0); !errors.Is(err, ErrBadHeaderLength) {
		t.Error(err)
	}
	if _, err := AppendIPv4(nil, &IPv4Header{Src: a4, Dst: a4}, 65516); !errors.Is(err, ErrLengthMismatch) {
		t.Error(err)
	}
	if _, err := AppendIPv6(nil, &IPv6Header{Src: a4, Dst: a6}, 0); !errors.Is(err, ErrBadAddress) {
		t.Error(err)
	}
	if _, err := AppendIPv6(nil, &IPv6Header{Src: a6, Dst: a6}, 65536); !errors.Is(err, ErrLengthMismatch) {
		t.Error(err)
	}
	if _, err := AppendTCP(nil, &TCPHeader{Options: make([]byte, 41)}); !errors.Is(err, ErrBadHeaderLength) {
		t.Error(err)
	}
	if _, err := AppendUDP(nil, &UDPHeader{}, 65528); !errors.Is(err, ErrLengthMismatch) {
		t.Error(err)
	}
	if err := PutChecksum(make([]byte, 17), TCPChecksumOffset, 0); !errors.Is(err, ErrTruncated) {
		t.Error(err)
	}
	if err := PutUDPChecksum(make([]byte, 7), 0); !errors.Is(err, ErrTruncated) {
		t.Error(err)
	}
}

func TestClassifyWireGuard(t *testing.T) {
	for _, c := range []struct {
		typ  WireGuardType
		n    int
		off  int
		want uint32
	}{{1, 148, 4, 0x04030201}, {2, 92, 8, 0xa0b0c0d0}, {3, 64, 4, 77}, {4, 32, 4, 5}, {4, 1456, 4, 0xffffffff},
		// A full-sized packet through a 1420-byte MTU: its padding stops
		// at the MTU, so its length is no multiple of 16 after the header.
		{4, 16 + 1420 + 16, 4, 9}, {4, 33, 4, 10}} {
		b := fill(c.n)
		b[0], b[1], b[2], b[3] = byte(c.typ), 0, 0, 0
		binary.LittleEndian.PutUint32(b[c.off:], c.want)
		m, err := ClassifyWireGuard(b)
		if err != nil || m != (WireGuardMsg{Type: c.typ, Index: c.want}) {
			t.Errorf("type %d: %+v %v", c.typ, m, err)
		}
	}
}

func TestClassifyQUIC(t *testing.T) {
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	long := append([]byte{0xc3, 0, 0, 0, 1, 8}, dcid...)
	long = append(long, 4, 9, 9, 9, 9, 0x55)
	h, err := ClassifyQUIC(long, 0)
	if err != nil || !h.Long || h.Version != QUICVersion1 || h.DCID != ConnIDFrom(dcid) || h.SCID.Len() != 4 {
		t.Fatalf("long: %+v %v", h, err)
	}
	short := append([]byte{0x41}, dcid...)
	h, err = ClassifyQUIC(append(short, 0xaa, 0xbb), 8)
	if err != nil || h.Long || h.DCID != ConnIDFrom(dcid) || h.DCIDLen != 8 {
		t.Fatalf("short: %+v %v", h, err)
	}
	// Unknown version: connection IDs up to 255 bytes, no fixed bit.
	unk := append([]byte{0x80, 0xfa, 0xce, 0xb0, 0x0c, 40}, fill(40)...)
	unk = append(unk, 255)
	unk = append(unk, fill(255)...)
	h, err = ClassifyQUIC(unk, 8)
	if err != nil || h.DCIDLen != 40 || h.SCIDLen != 255 || h.DCID.Len() != 20 || h.DCID != ConnIDFrom(fill(40)) {
		t.Fatalf("unknown version: %+v %v", h, err)
	}
	// Version negotiation: fixed bit unused.
	vn := []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	if h, err = ClassifyQUIC(vn, 8); err != nil || h.Version != QUICVersionNegotiation {
		t.Fatalf("version negotiation: %+v %v", h, err)
	}
}

// TestChecksumKnownPackets checks our checksums against the ones gopacket
// computed when serializing.
func TestChecksumKnownPackets(t *testing.T) {
	b := tcp4Packet(t)
	ip, _ := ParseIPv4(b)
	if got := binary.BigEndian.Uint16(b[10:]); !ip.ChecksumValid() || got != func() uint16 {
		h := append([]byte(nil), ip.Header()...)
		h[10], h[11] = 0, 0
		return Checksum(h, 0)
	}() {
		t.Fatalf("IPv4 header checksum mismatch")
	}
	for _, pkt := range [][]byte{b, udp4Packet(t, 0), udp4Packet(t, 1), udp4Packet(t, 1471), udp6Packet(t, 3), udp6Packet(t, 1000)} {
		k, err := ParseFlowKey(pkt)
		if err != nil {
			t.Fatal(err)
		}
		var seg []byte
		var off int
		if k.Family == 4 {
			ip, _ := ParseIPv4(pkt)
			seg = ip.Payload()
		} else {
			ip, _ := ParseIPv6(pkt)
			seg = ip.Transport()
		}
		if k.Proto == ProtoTCP {
			off = TCPChecksumOffset
		} else {
			off = UDPChecksumOffset
		}
		want := binary.BigEndian.Uint16(seg[off:])
		c := append([]byte(nil), seg...)
		if err := PutChecksum(c, off, PseudoHeaderSum(k.SrcAddr(), k.DstAddr(), k.Proto, uint32(len(seg)))); err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint16(c[off:]); got != want {
			t.Errorf("%d-byte segment: checksum %#04x, gopacket %#04x", len(seg), got, want)
		}
	}
}

func TestDecrementTTLAndRewrite(t *testing.T) {
	b := tcp4Packet(t)
	ip, _ := ParseIPv4(b)
	if !ip.DecrementTTL() || ip.TTL() != 63 || !ip.ChecksumValid() {
		t.Fatal("DecrementTTL")
	}
	ip.SetSrc(netip.MustParseAddr("198.18.7.7"))
	ip.SetDst(netip.MustParseAddr("198.19.8.8"))
	tcp, _ := ParseTCP(ip.Payload())
	tcp.SetSrcPort(1)
	tcp.SetDstPort(2)
	if !ip.ChecksumValid() || !tcp.ChecksumValid(PseudoHeaderSum(ip.Src(), ip.Dst(), ProtoTCP, uint32(len(tcp.Bytes())))) {
		t.Fatal("checksums broken by the rewrite")
	}
	// Cross-check with gopacket's decoding of the rewritten packet.
	p := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.Default)
	if g := p.Layer(layers.LayerTypeTCP).(*layers.TCP); g.SrcPort != 1 || g.DstPort != 2 {
		t.Fatal("gopacket sees other ports")
	}
	b[8] = 1
	if ip.DecrementTTL() || ip.TTL() != 1 {
		t.Fatal("TTL 1 must not be decremented")
	}
	b6 := udp6Packet(t, 20)
	ip6, _ := ParseIPv6(b6)
	if !ip6.DecrementHopLimit() || ip6.HopLimit() != 63 {
		t.Fatal("DecrementHopLimit")
	}
	ip6.SetSrc(netip.MustParseAddr("fd00::99"))
	u, _ := ParseUDP(ip6.Transport())
	u.SetDstPort(53)
	if !u.ChecksumValid(PseudoHeaderSum(ip6.Src(), ip6.Dst(), ProtoUDP, uint32(u.Length()))) {
		t.Fatal("IPv6 UDP checksum broken by the rewrite")
	}
}

func TestFlowKey(t *testing.T) {
	k, err := ParseFlowKey(tcp4Packet(t))
	if err != nil {
		t.Fatal(err)
	}
	if k.SrcAddr() != netip.MustParseAddr("198.18.0.1") || k.SrcPort != 40000 || k.DstPort != 443 || k.Proto != ProtoTCP || k.Family != 4 {
		t.Fatalf("%+v", k)
	}
	r := k.Reverse()
	if k.Hash(1) == r.Hash(1) || k.SymmetricHash(1) != r.SymmetricHash(1) || k.Hash(1) == k.Hash(2) {
		t.Fatal("hash properties")
	}
	m := map[FlowKey]int{k: 1}
	if m[r.Reverse()] != 1 {
		t.Fatal("not usable as a map key")
	}
}

func TestICMPv4Error(t *testing.T) {
	orig := udp4Packet(t, 1400)
	dst := make([]byte, 1500)
	n, err := PutICMPv4Error(dst, router4, ICMPv4TimeExceeded, ICMPv4CodeTTLExceeded, 0, orig)
	if err != nil {
		t.Fatal(err)
	}
	if n != ICMPv4ErrorMaxLen {
		t.Fatalf("length %d, want 576", n)
	}
	p := gopacket.NewPacket(dst[:n], layers.LayerTypeIPv4, gopacket.Default)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	ic := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if !ip.SrcIP.Equal(router4.AsSlice()) || !ip.DstIP.Equal(testSrc4) || ic.TypeCode.Type() != 11 || ic.TypeCode.Code() != 0 {
		t.Fatalf("%v", p)
	}
	// gopacket recomputes the checksums on serialization; they must match ours.
	ip2 := *ip
	ic2 := *ic
	re := serialize(t, &ip2, &ic2, gopacket.Payload(ic.Payload))
	if !bytes.Equal(re, dst[:n]) {
		t.Fatalf("gopacket re-serialization differs\n%x\n%x", re, dst[:n])
	}
	if !bytes.Equal(ic.Payload, orig[:n-28]) {
		t.Fatal("quoted bytes")
	}
	// Fragmentation needed carries the MTU.
	n, err = PutICMPv4Error(dst, router4, ICMPv4DestUnreachable, ICMPv4CodeFragNeeded, 1280, udp4Packet(t, 32))
	if err != nil || n != 28+60 || binary.BigEndian.Uint16(dst[26:]) != 1280 {
		t.Fatalf("frag needed: %d %v", n, err)
	}
}

func TestICMPv6Error(t *testing.T) {
	orig := udp6Packet(t, 1400)
	dst := make([]byte, 1500)
	n, err := PutICMPv6Error(dst, router6, ICMPv6DestUnreachable, ICMPv6CodeAddrUnreachable, 0, orig)
	if err != nil || n != ICMPv6ErrorMaxLen {
		t.Fatalf("%d %v", n, err)
	}
	p := gopacket.NewPacket(dst[:n], layers.LayerTypeIPv6, gopacket.Default)
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	ic := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if !ip.DstIP.Equal(testSrc6) || ic.TypeCode.Type() != 1 || ic.TypeCode.Code() != 3 || !bytes.Equal(dst[48:n], orig[:n-48]) {
		t.Fatalf("%v", p)
	}
	ip2, ic2 := *ip, *ic
	ic2.SetNetworkLayerForChecksum(&ip2)
	if re := serialize(t, &ip2, &ic2, gopacket.Payload(ic.Payload)); !bytes.Equal(re, dst[:n]) {
		t.Fatal("gopacket computes another checksum")
	}
	// A small buffer quotes less.
	n, err = PutICMPv6Error(dst[:200], router6, ICMPv6TimeExceeded, 0, 0, orig)
	if err != nil || n != 200 {
		t.Fatalf("small buffer: %d %v", n, err)
	}
}

func TestICMPErrorNoReply(t *testing.T) {
	dst := make([]byte, 1500)
	mod4 := func(f func(b []byte)) []byte {
		b := udp4Packet(t, 40)
		f(b)
		ip, _ := ParseIPv4(b)
		h := ip.Header()
		h[10], h[11] = 0, 0
		binary.BigEndian.PutUint16(h[10:], Checksum(h, 0))
		return b
	}
	icmpErr4 := serialize(t, &layers.IPv4{Version: 4, TTL: 9, Protocol: layers.IPProtocolICMPv4, SrcIP: testSrc4, DstIP: testDst4},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 1)}, gopacket.Payload(fill(28)))
	echo4 := serialize(t, &layers.IPv4{Version: 4, TTL: 9, Protocol: layers.IPProtocolICMPv4, SrcIP: testSrc4, DstIP: testDst4},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}, gopacket.Payload(fill(28)))
	for name, b := range map[string][]byte{
		"icmp error":         icmpErr4,
		"non-first fragment": mod4(func(b []byte) { b[7] = 1 }),
		"multicast source":   mod4(func(b []byte) { b[12] = 224 }),
		"broadcast source":   mod4(func(b []byte) { copy(b[12:], []byte{255, 255, 255, 255}) }),
		"zero source":        mod4(func(b []byte) { copy(b[12:], []byte{0, 0, 0, 0}) }),
		"multicast dest":     mod4(func(b []byte) { b[16] = 239 }),
		"broadcast dest":     mod4(func(b []byte) { copy(b[16:], []byte{255, 255, 255, 255}) }),
	} {
		if _, err := PutICMPv4Error(dst, router4, ICMPv4TimeExceeded, 0, 0, b); !errors.Is(err, ErrNoReply) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := PutICMPv4Error(dst, router4, ICMPv4TimeExceeded, 0, 0, echo4); err != nil {
		t.Errorf("echo request must be answered: %v", err)
	}
	if _, err := PutICMPv4Error(dst[:40], router4, ICMPv4TimeExceeded, 0, 0, echo4); !errors.Is(err, ErrBufferTooSmall) {
		t.Errorf("small buffer: %v", err)
	}
	if _, err := PutICMPv4Error(dst, router6, ICMPv4TimeExceeded, 0, 0, echo4); !errors.Is(err, ErrBadAddress) {
		t.Errorf("IPv6 router address: %v", err)
	}

	icmp6 := func(typ uint8) []byte {
		ip := &layers.IPv6{Version: 6, HopLimit: 3, NextHeader: layers.IPProtocolICMPv6, SrcIP: testSrc6, DstIP: testDst6}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		ic.SetNetworkLayerForChecksum(ip)
		return serialize(t, ip, ic, gopacket.Payload(fill(44)))
	}
	mod6 := func(f func(b []byte)) []byte { b := udp6Packet(t, 40); f(b); return b }
	for name, b := range map[string][]byte{
		"icmpv6 error":     icmp6(ICMPv6PacketTooBig),
		"redirect":         icmp6(ICMPv6Redirect),
		"multicast source": mod6(func(b []byte) { b[8] = 0xff }),
		"unspecified src":  mod6(func(b []byte) { clear(b[8:24]) }),
		"multicast dest":   mod6(func(b []byte) { b[24] = 0xff }),
	} {
		if _, err := PutICMPv6Error(dst, router6, ICMPv6TimeExceeded, 0, 0, b); !errors.Is(err, ErrNoReply) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := PutICMPv6Error(dst, router6, ICMPv6PacketTooBig, 0, 1280, mod6(func(b []byte) { b[24] = 0xff })); err != nil {
		t.Errorf("packet too big to multicast must be sent: %v", err)
	}
	if _, err := PutICMPv6Error(dst, router6, ICMPv6TimeExceeded, 0, 0, icmp6(ICMPv6EchoRequest)); err != nil {
		t.Errorf("echo request must be answered: %v", err)
	}
	if _, err := PutICMPv6Error(dst[:60], router6, ICMPv6TimeExceeded, 0, 0, icmp6(ICMPv6EchoRequest)); !errors.Is(err, ErrBufferTooSmall) {
		t.Errorf("small buffer: %v", err)
	}
}

// TestZeroAllocs holds every parse, classify and checksum path, and their
// error paths, to zero allocations.
func TestZeroAllocs(t *testing.T) {
	tcp4 := tcp4Packet(t)
	udp6 := udp6Packet(t, 100)
	wg := make([]byte, 128)
	wg[0] = 4
	quic := append([]byte{0x41}, fill(40)...)
	dst := make([]byte, 1500)
	bad := []byte{0x46, 0, 0}
	var sink uint64
	for name, f := range map[string]func(){
		"ipv4+tcp": func() {
			ip, _ := ParseIPv4(tcp4)
			s, _ := ParseTCP(ip.Payload())
			sink += uint64(s.SrcPort()) + uint64(ip.Src().As4()[0])
		},
		"ipv6+udp": func() {
			ip, _ := ParseIPv6(udp6)
			u, _ := ParseUDP(ip.Transport())
			sink += uint64(u.DstPort()) + uint64(ip.Dst().As16()[15])
		},
		"flow key": func() {
			k, _ := ParseFlowKey(udp6)
			sink += k.Hash(1) + k.SymmetricHash(2)
		},
		"wireguard": func() { m, _ := ClassifyWireGuard(wg); sink += uint64(m.Index) },
		"quic":      func() { h, _ := ClassifyQUIC(quic, 8); sink += uint64(h.DCID.Len()) },
		"checksum":  func() { sink += uint64(Checksum(udp6, PseudoHeaderSum(router6, router6, 17, 100))) },
		"update": func() {
			sink += uint64(UpdateChecksumAddr(UpdateChecksum16(1, 2, 3), router4, router4))
		},
		"icmp error": func() {
			n, _ := PutICMPv6Error(dst, router6, ICMPv6TimeExceeded, 0, 0, udp6)
			sink += uint64(n)
		},
		"errors": func() {
			_, e1 := ParseIPv4(bad)
			_, e2 := ParseIPv6(bad)
			_, e3 := ParseTCP(bad)
			_, e4 := ClassifyWireGuard(bad)
			_, e5 := ClassifyQUIC(bad, 8)
			if e1 == nil || e2 == nil || e3 == nil || e4 == nil || e5 == nil {
				panic("no error")
			}
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs/op", name, n)
		}
	}
	_ = sink
}

func TestIPv6SetDstRoutingHeader(t *testing.T) {
	inner := udp6Packet(t, 16)[40:]
	for _, segLeft := range []byte{0, 1} {
		rt := []byte{ProtoUDP, 2, 0, segLeft, 0, 0, 0, 0}
		rt = append(rt, fill(16)...)
		ip6 := &layers.IPv6{Version: 6, HopLimit: 9, NextHeader: layers.IPProtocolIPv6Routing, SrcIP: testSrc6, DstIP: testDst6}
		b := serialize(t, ip6, gopacket.Payload(append(rt, inner...)))
		ip, err := ParseIPv6(b)
		if err != nil {
			t.Fatal(err)
		}
		before := binary.BigEndian.Uint16(ip.Transport()[6:])
		ip.SetDst(netip.MustParseAddr("fd00::77"))
		after := binary.BigEndian.Uint16(ip.Transport()[6:])
		if (before == after) != (segLeft != 0) {
			t.Errorf("segments left %d: checksum %#x -> %#x", segLeft, before, after)
		}
	}
}

func TestErrorString(t *testing.T) {
	_, err := ParseIPv4(make([]byte, 3))
	if err.Error() != "ipv4 header: truncated" {
		t.Fatalf("%q", err.Error())
	}
	_, err2 := ParseIPv4(make([]byte, 5))
	if err != err2 {
		t.Fatal("the same problem must give the same comparable error value")
	}
}
