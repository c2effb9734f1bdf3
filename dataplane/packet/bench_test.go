package packet

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var benchSink uint64

func BenchmarkParseIPv4TCP(b *testing.B) {
	pkt := tcp4Packet(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		ip, err := ParseIPv4(pkt)
		if err != nil {
			b.Fatal(err)
		}
		t, err := ParseTCP(ip.Payload())
		if err != nil {
			b.Fatal(err)
		}
		benchSink += uint64(t.SrcPort()) + uint64(t.DstPort()) + uint64(ip.Protocol())
	}
}

func BenchmarkParseIPv6UDP(b *testing.B) {
	pkt := udp6Packet(b, 100)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		ip, err := ParseIPv6(pkt)
		if err != nil {
			b.Fatal(err)
		}
		u, err := ParseUDP(ip.Transport())
		if err != nil {
			b.Fatal(err)
		}
		benchSink += uint64(u.SrcPort()) + uint64(u.DstPort()) + uint64(ip.Protocol())
	}
}

// BenchmarkGopacketIPv4TCP is the peer of BenchmarkParseIPv4TCP: the same
// packet through gopacket's DecodingLayerParser, its fastest decoding path.
func BenchmarkGopacketIPv4TCP(b *testing.B) {
	pkt := tcp4Packet(b)
	var ip4 layers.IPv4
	var tcp layers.TCP
	var pl gopacket.Payload
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, &ip4, &tcp, &pl)
	p.IgnoreUnsupported = true // TCP port 443 asks for a TLS decoder
	decoded := make([]gopacket.LayerType, 0, 4)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if err := p.DecodeLayers(pkt, &decoded); err != nil {
			b.Fatal(err)
		}
		benchSink += uint64(tcp.SrcPort) + uint64(tcp.DstPort) + uint64(ip4.Protocol)
	}
}

// BenchmarkGopacketIPv6UDP is the peer of BenchmarkParseIPv6UDP.
func BenchmarkGopacketIPv6UDP(b *testing.B) {
	pkt := udp6Packet(b, 100)
	var ip6 layers.IPv6
	var udp layers.UDP
	var pl gopacket.Payload
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeIPv6, &ip6, &udp, &pl)
	p.IgnoreUnsupported = true
	decoded := make([]gopacket.LayerType, 0, 4)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if err := p.DecodeLayers(pkt, &decoded); err != nil {
			b.Fatal(err)
		}
		benchSink += uint64(udp.SrcPort) + uint64(udp.DstPort) + uint64(ip6.NextHeader)
	}
}

func BenchmarkFlowKeyHash(b *testing.B) {
	pkt := udp6Packet(b, 100)
	b.ReportAllocs()
	for b.Loop() {
		k, err := ParseFlowKey(pkt)
		if err != nil {
			b.Fatal(err)
		}
		benchSink += k.SymmetricHash(0x5eed)
	}
}

func BenchmarkClassifyWireGuardData(b *testing.B) {
	msg := make([]byte, 16+1280+16)
	msg[0] = byte(WireGuardTransport)
	msg[4] = 0x2a
	b.ReportAllocs()
	for b.Loop() {
		m, err := ClassifyWireGuard(msg)
		if err != nil {
			b.Fatal(err)
		}
		benchSink += uint64(m.Index)
	}
}

func BenchmarkClassifyQUICShort(b *testing.B) {
	pkt := append([]byte{0x43}, fill(1200)...)
	b.ReportAllocs()
	for b.Loop() {
		h, err := ClassifyQUIC(pkt, 8)
		if err != nil {
			b.Fatal(err)
		}
		benchSink += uint64(h.DCID.Len())
	}
}

func benchChecksum(b *testing.B, n int) {
	buf := fill(n)
	b.ReportAllocs()
	b.SetBytes(int64(n))
	for b.Loop() {
		benchSink += uint64(Checksum(buf, 0))
	}
}

func BenchmarkChecksum64(b *testing.B)   { benchChecksum(b, 64) }
func BenchmarkChecksum1500(b *testing.B) { benchChecksum(b, 1500) }

func BenchmarkUpdateChecksum(b *testing.B) {
	o, n := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.19.0.2")
	c := uint16(0x1234)
	b.ReportAllocs()
	for b.Loop() {
		c = UpdateChecksumAddr(c, o, n)
		c = UpdateChecksum16(c, 40000, 443)
	}
	benchSink += uint64(c)
}

func BenchmarkRewriteIPv4TCP(b *testing.B) {
	pkt := tcp4Packet(b)
	a1, a2 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.9.9")
	ip, _ := ParseIPv4(pkt)
	t, _ := ParseTCP(ip.Payload())
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		pkt[8] = 64
		ip.DecrementTTL()
		if i&1 == 0 {
			ip.SetSrc(a2)
		} else {
			ip.SetSrc(a1)
		}
		t.SetSrcPort(uint16(i))
		i++
	}
}

func BenchmarkICMPv4Error(b *testing.B) {
	orig := udp4Packet(b, 1400)
	dst := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		n, err := PutICMPv4Error(dst, router4, ICMPv4TimeExceeded, 0, 0, orig)
		if err != nil {
			b.Fatal(err)
		}
		benchSink += uint64(n)
	}
}
