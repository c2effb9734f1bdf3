package packetfuzz

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/onramp-net/onramp/dataplane/packet"
)

// FuzzFlowKey checks ParseFlowKey against gopacket's network and transport
// flows on packets both decode completely (no gopacket error layer, not a
// fragment; ports only when the IP layer carries TCP or UDP directly, see
// below), and the key's invariants: Reverse is an involution, the
// symmetric hash is equal in both directions, equal keys hash alike.
func FuzzFlowKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		k, err := packet.ParseFlowKey(data)
		checkErr(t, err)
		if err != nil {
			return
		}
		r := k.Reverse()
		if r.Reverse() != k || r.SymmetricHash(seed) != k.SymmetricHash(seed) {
			t.Fatal("reverse / symmetric hash broken")
		}
		k2 := k
		if k2.Hash(seed) != k.Hash(seed) {
			t.Fatal("hash not deterministic")
		}
		if k.SrcAddr().Is4() != (k.Family == 4) || k.SrcAddr().Is6() != (k.Family == 6) {
			t.Fatal("family")
		}

		first := layers.LayerTypeIPv4
		if k.Family == 6 {
			first = layers.LayerTypeIPv6
		}
		p := gopacket.NewPacket(data, first, gopacket.DecodeOptions{Lazy: false, NoCopy: true})
		if p.ErrorLayer() != nil || p.NetworkLayer() == nil {
			return // gopacket is stricter on options; see FuzzIPv4 / FuzzIPv6
		}
		// Fragments: no ports to compare (gopacket adds no fragment
		// layer when a fragment has an empty payload, so ask the header).
		if ip4, ok := p.NetworkLayer().(*layers.IPv4); ok && (ip4.Flags&layers.IPv4MoreFragments != 0 || ip4.FragOffset != 0) {
			return
		}
		if p.Layer(gopacket.LayerTypeFragment) != nil || p.Layer(layers.LayerTypeIPv6Fragment) != nil {
			return
		}
		nf := p.NetworkLayer().NetworkFlow()
		if !net.IP(nf.Src().Raw()).Equal(net.IP(k.SrcAddr().AsSlice())) || !net.IP(nf.Dst().Raw()).Equal(net.IP(k.DstAddr().AsSlice())) {
			t.Fatalf("addresses: gopacket %v, ours %v -> %v", nf, k.SrcAddr(), k.DstAddr())
		}
		// The key is the outer 5-tuple: compare ports only when the IP
		// layer itself carries TCP or UDP. gopacket decodes by protocol
		// number whatever the family (protocol 43 inside IPv4 becomes an
		// IPv6 routing header, an IPv6 extension header cannot follow an
		// IPv4 header) and through tunnels (IPIP, 6in4, GRE), so its
		// transport layer may belong to something else.
		if k.Proto != packet.ProtoTCP && k.Proto != packet.ProtoUDP {
			return
		}
		switch tl := p.TransportLayer().(type) {
		default:
			t.Fatalf("gopacket transport %T, ours %+v", tl, k)
		case *layers.TCP:
			if k.Proto != packet.ProtoTCP || uint16(tl.SrcPort) != k.SrcPort || uint16(tl.DstPort) != k.DstPort {
				t.Fatalf("TCP ports: gopacket %d->%d, ours %+v", tl.SrcPort, tl.DstPort, k)
			}
		case *layers.UDP:
			if k.Proto != packet.ProtoUDP || uint16(tl.SrcPort) != k.SrcPort || uint16(tl.DstPort) != k.DstPort {
				t.Fatalf("UDP ports: gopacket %d->%d, ours %+v", tl.SrcPort, tl.DstPort, k)
			}
		}
	})
}
