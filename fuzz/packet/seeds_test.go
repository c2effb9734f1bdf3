package packetfuzz

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var updateCorpus = flag.Bool("update-corpus", false, "regenerate testdata/fuzz seed corpora from gopacket-serialized packets")

// Test addresses: 198.18.0.0/15 and fd00::/8 only.
var (
	v4a = net.IP{198, 18, 0, 1}
	v4b = net.IP{198, 19, 255, 7}
	v6a = net.ParseIP("fd00::1")
	v6b = net.ParseIP("fd00:beef::2")
)

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func payload(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7)
	}
	return p
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Id: 0x1234, Flags: layers.IPv4DontFragment, Protocol: proto, SrcIP: v4a, DstIP: v4b}
}

func ip6(nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: nh, FlowLabel: 0xabcde, TrafficClass: 0x20, SrcIP: v6a, DstIP: v6b}
}

func tcpLayer() *layers.TCP {
	return &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 1000, Ack: 2000, SYN: true, ACK: true, Window: 65535,
		Options: []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: payload(8, 3)},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
		}}
}

// Packet samples, serialized by gopacket.

func ipv4TCP(tb testing.TB) []byte {
	ip, t := ip4(layers.IPProtocolTCP), tcpLayer()
	t.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, t, gopacket.Payload(payload(64, 1)))
}

func ipv4UDP(tb testing.TB, n int) []byte {
	ip := ip4(layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: 51820, DstPort: 51820}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, u, gopacket.Payload(payload(n, 2)))
}

func ipv4Options(tb testing.TB) []byte {
	ip := ip4(layers.IPProtocolUDP)
	ip.Options = []layers.IPv4Option{
		{OptionType: 7, OptionLength: 11, OptionData: []byte{4, 0, 0, 0, 0, 0, 0, 0, 0}}, // record route
		{OptionType: 0},
	}
	u := &layers.UDP{SrcPort: 53, DstPort: 5353}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, u, gopacket.Payload(payload(20, 5)))
}

func ipv4Fragment(tb testing.TB, first bool) []byte {
	ip := ip4(layers.IPProtocolUDP)
	ip.Flags = layers.IPv4MoreFragments
	if !first {
		ip.FragOffset = 185
		ip.Flags = 0
	}
	return serialize(tb, ip, gopacket.Payload(payload(48, 6)))
}

func ipv4ICMPEcho(tb testing.TB) []byte {
	ip := ip4(layers.IPProtocolICMPv4)
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 9}
	return serialize(tb, ip, ic, gopacket.Payload(payload(56, 7)))
}

func ipv4ICMPError(tb testing.TB) []byte {
	ip := ip4(layers.IPProtocolICMPv4)
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeTimeExceeded, 0)}
	return serialize(tb, ip, ic, gopacket.Payload(ipv4UDP(tb, 8)[:28]))
}

func ipv6UDP(tb testing.TB, n int) []byte {
	ip := ip6(layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: 443, DstPort: 50000}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, u, gopacket.Payload(payload(n, 8)))
}

func ipv6TCP(tb testing.TB) []byte {
	ip, t := ip6(layers.IPProtocolTCP), tcpLayer()
	t.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, t, gopacket.Payload(payload(100, 9)))
}

func ipv6ICMPEcho(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	echo := &layers.ICMPv6Echo{Identifier: 3, SeqNumber: 4}
	return serialize(tb, ip, ic, echo, gopacket.Payload(payload(32, 10)))
}

func ipv6HopByHopUDP(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolIPv6HopByHop)
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolUDP
	hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 0x3e, OptionLength: 4, OptionData: []byte{0, 0, 1, 2}}} // experimental, skippable
	u := &layers.UDP{SrcPort: 1, DstPort: 2}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, hbh, u, gopacket.Payload(payload(12, 11)))
}

func ipv6DestOptsTCP(tb testing.TB) []byte {
	ip := ip6(layers.IPProtocolIPv6Destination)
	d := &layers.IPv6Destination{}
	d.NextHeader = layers.IPProtocolTCP
	d.Options = []*layers.IPv6DestinationOption{{OptionType: 0x1e, OptionLength: 4, OptionData: []byte{1, 2, 3, 4}}}
	t := tcpLayer()
	t.SetNetworkLayerForChecksum(ip)
	return serialize(tb, ip, d, t, gopacket.Payload(payload(10, 12)))
}

// ipv6Fragment builds a fragment by hand: gopacket does not serialize the
// fragment header.
func ipv6Fragment(tb testing.TB, offset uint16, more bool, next byte, body []byte) []byte {
	frag := make([]byte, 8)
	frag[0] = next
	w := offset << 3
	if more {
		w |= 1
	}
	binary.BigEndian.PutUint16(frag[2:], w)
	binary.BigEndian.PutUint32(frag[4:], 0xdeadbeef)
	ip := ip6(layers.IPProtocolIPv6Fragment)
	return serialize(tb, ip, gopacket.Payload(append(frag, body...)))
}

func ipv6Routing(tb testing.TB) []byte {
	rt := make([]byte, 24) // type 0 with one address; gopacket decodes type 0 only
	rt[0], rt[1], rt[2], rt[3] = byte(layers.IPProtocolUDP), 2, 0, 1
	copy(rt[8:], v6b)
	u := ipv6UDP(tb, 16)[40:]
	ip := ip6(layers.IPProtocolIPv6Routing)
	return serialize(tb, ip, gopacket.Payload(append(rt, u...)))
}

func ipv6AH(tb testing.TB) []byte {
	ah := make([]byte, 24) // payload len (24/4)-2 = 4
	ah[0], ah[1] = byte(layers.IPProtocolTCP), 4
	t := ipv6TCP(tb)[40:]
	ip := ip6(layers.IPProtocolAH)
	return serialize(tb, ip, gopacket.Payload(append(ah, t...)))
}

// Classifier payloads.

func wgMsg(typ byte, n int, idx uint32) []byte {
	p := payload(n, typ*17)
	p[0], p[1], p[2], p[3] = typ, 0, 0, 0
	switch typ {
	case 1, 3, 4:
		binary.LittleEndian.PutUint32(p[4:], idx)
	case 2:
		binary.LittleEndian.PutUint32(p[8:], idx)
	}
	return p
}

func quicLong(first byte, version uint32, dcid, scid []byte, rest int) []byte {
	p := []byte{first}
	p = binary.BigEndian.AppendUint32(p, version)
	p = append(p, byte(len(dcid)))
	p = append(p, dcid...)
	p = append(p, byte(len(scid)))
	p = append(p, scid...)
	return append(p, payload(rest, 0x33)...)
}

func quicShort(dcid []byte, rest int) []byte {
	return append(append([]byte{0x41}, dcid...), payload(rest, 0x44)...)
}

func ipPackets(tb testing.TB) [][]byte {
	return [][]byte{
		ipv4TCP(tb), ipv4UDP(tb, 0), ipv4UDP(tb, 200), ipv4Options(tb), ipv4Fragment(tb, true), ipv4Fragment(tb, false),
		ipv4ICMPEcho(tb), ipv4ICMPError(tb),
		ipv6UDP(tb, 33), ipv6TCP(tb), ipv6ICMPEcho(tb), ipv6HopByHopUDP(tb), ipv6DestOptsTCP(tb), ipv6Routing(tb), ipv6AH(tb),
		ipv6Fragment(tb, 0, true, byte(layers.IPProtocolUDP), ipv6UDP(tb, 24)[40:]),
		ipv6Fragment(tb, 100, false, byte(layers.IPProtocolUDP), payload(40, 13)),
	}
}

func wgPayloads() [][]byte {
	return [][]byte{wgMsg(1, 148, 0x01020304), wgMsg(2, 92, 0xa1b2c3d4), wgMsg(3, 64, 77), wgMsg(4, 32, 5), wgMsg(4, 48, 6), wgMsg(4, 1456, 7)}
}

func quicPayloads() [][]byte {
	id8 := payload(8, 0x80)
	return [][]byte{
		quicLong(0xc3, 1, id8, id8, 1200),
		quicLong(0xd0, 0x6b3343cf, payload(20, 1), nil, 40),
		quicLong(0x80, 0, id8, payload(4, 2), 8),                       // version negotiation
		quicLong(0xc0, 0x1a2a3a4a, payload(40, 3), payload(255, 4), 0), // unknown version, long IDs
		quicShort(id8, 40),
		quicShort(payload(20, 5), 1),
	}
}

// A corpus entry is a list of typed arguments.
type entry []any

func encodeEntry(e entry) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range e {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		case uint8:
			fmt.Fprintf(&b, "byte(%d)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case uint32:
			fmt.Fprintf(&b, "uint32(%d)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		case int:
			fmt.Fprintf(&b, "int(%d)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		default:
			panic(fmt.Sprintf("unsupported corpus type %T", v))
		}
	}
	return b.Bytes()
}

func writeCorpus(t *testing.T, target string, es []entry) {
	dir := filepath.Join("testdata", "fuzz", target)
	// Replace the generated seeds only; inputs found by fuzzing stay.
	old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		name := filepath.Join(dir, fmt.Sprintf("seed-%02d", i))
		if err := os.WriteFile(name, encodeEntry(e), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func bytesEntries(ps [][]byte, extra ...any) []entry {
	es := make([]entry, 0, len(ps))
	for _, p := range ps {
		es = append(es, append(entry{p}, extra...))
	}
	return es
}

// TestSeedCorpus regenerates the seed corpora with -update-corpus.
func TestSeedCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to regenerate testdata/fuzz")
	}
	ips := ipPackets(t)
	var v4, v6 [][]byte
	for _, p := range ips {
		if p[0]>>4 == 4 {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	var tcps, udps, icmp4s, icmp6s [][]byte
	tcps = append(tcps, ipv4TCP(t)[20:], ipv6TCP(t)[40:])
	udps = append(udps, ipv4UDP(t, 0)[20:], ipv4UDP(t, 100)[20:], ipv6UDP(t, 7)[40:])
	icmp4s = append(icmp4s, ipv4ICMPEcho(t)[20:], ipv4ICMPError(t)[20:])
	icmp6s = append(icmp6s, ipv6ICMPEcho(t)[40:])

	writeCorpus(t, "FuzzIPv4", bytesEntries(v4))
	writeCorpus(t, "FuzzIPv6", bytesEntries(v6))
	writeCorpus(t, "FuzzTCP", bytesEntries(tcps))
	writeCorpus(t, "FuzzUDP", bytesEntries(udps))
	writeCorpus(t, "FuzzICMPv4", bytesEntries(icmp4s))
	writeCorpus(t, "FuzzICMPv6", bytesEntries(icmp6s))
	writeCorpus(t, "FuzzFlowKey", bytesEntries(ips, uint64(0x5eed)))
	writeCorpus(t, "FuzzRewrite", bytesEntries(ips, uint32(0xc6120063), uint16(1024), uint16(8080)))
	writeCorpus(t, "FuzzICMPError", bytesEntries(ips, uint8(11), uint8(0), uint32(0), uint16(1500)))
	writeCorpus(t, "FuzzChecksum", bytesEntries(append(ips, []byte{0xff}, []byte{0, 1, 0xff, 0xfe, 7}), uint32(0), uint16(20)))
	writeCorpus(t, "FuzzChecksumUpdate", bytesEntries(ips, uint16(10), uint32(0xdeadbeef)))
	writeCorpus(t, "FuzzWireGuard", bytesEntries(wgPayloads()))
	writeCorpus(t, "FuzzQUIC", bytesEntries(quicPayloads(), uint8(8)))
	writeCorpus(t, "FuzzBuild", []entry{
		{true, uint8(17), uint8(0), uint16(7), uint8(64), uint32(0xc6120001), uint32(0xc613ff07), uint16(51820), uint16(443), []byte{}, []byte("hello")},
		{false, uint8(6), uint8(0x20), uint16(0), uint8(1), uint32(0xabcde), uint32(2), uint16(40000), uint16(22), []byte{2, 4, 5, 0xb4}, payload(100, 1)},
		{true, uint8(1), uint8(0xc0), uint16(0x4000), uint8(255), uint32(0xc6120001), uint32(0xc6120002), uint16(8), uint16(0), []byte{1, 1, 1}, payload(56, 2)},
		{false, uint8(58), uint8(0), uint16(0), uint8(64), uint32(1), uint32(2), uint16(128), uint16(0), []byte{}, payload(32, 3)},
	})
}
