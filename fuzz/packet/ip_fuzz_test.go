package packetfuzz

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/onramp-net/onramp/dataplane/packet"
)

// ipv4OptionLen2 reports whether the option list, walked by our rule, holds
// an option of length 2, which gopacket rejects ("must be greater than 2")
// and RFC 791 and Linux's ip_options_compile accept.
func ipv4OptionLen2(o []byte) bool {
	for len(o) > 0 {
		switch o[0] {
		case 0:
			return false
		case 1:
			o = o[1:]
		default:
			if len(o) < 2 || int(o[1]) < 2 || int(o[1]) > len(o) {
				return false
			}
			if o[1] == 2 {
				return true
			}
			o = o[o[1]:]
		}
	}
	return false
}

// FuzzIPv4 holds ParseIPv4 against gopacket's layers.IPv4, and checks the
// AppendIPv4 round trip. Where the two legitimately differ:
//   - gopacket does not check the version nibble; we reject with
//     ErrBadVersion;
//   - gopacket takes a total length of 0 as "TSO, use the buffer length";
//     we reject it (ErrLengthMismatch);
//   - gopacket accepts a total length beyond the buffer (it flags the
//     packet truncated); we reject with ErrTruncated;
//   - gopacket rejects an option of length 2; we accept it as RFC 791 and
//     Linux do.
func FuzzIPv4(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		ip, err := packet.ParseIPv4(data)
		checkErr(t, err)
		var g layers.IPv4
		gerr := g.DecodeFromBytes(data, gopacket.NilDecodeFeedback)

		if len(data) >= 20 {
			hl := int(data[0]&0x0f) * 4
			tl := int(binary.BigEndian.Uint16(data[2:4]))
			switch {
			case data[0]>>4 != 4:
				wantErr(t, err, packet.ErrBadVersion)
				return
			case tl == 0:
				if err == nil {
					t.Fatal("accepted total length 0")
				}
				return
			case tl > len(data):
				if gerr == nil {
					wantErr(t, err, packet.ErrTruncated)
				} else if err == nil {
					t.Fatal("accepted a packet longer than the buffer")
				}
				return
			case err == nil && gerr != nil && hl >= 20 && hl <= len(data) && ipv4OptionLen2(data[20:hl]):
				return
			}
		}
		if (err == nil) != (gerr == nil) {
			t.Fatalf("ours: %v, gopacket: %v", err, gerr)
		}
		if err != nil {
			return
		}
		if g.Version != 4 || int(g.IHL)*4 != ip.HeaderLen() || g.TOS != ip.TOS() || int(g.Length) != ip.TotalLen() ||
			g.Id != ip.ID() || uint8(g.Flags) != ip.Flags() || g.FragOffset != ip.FragmentOffset() || g.TTL != ip.TTL() ||
			uint8(g.Protocol) != ip.Protocol() || g.Checksum != ip.Checksum() ||
			!g.SrcIP.Equal(net.IP(ip.Src().AsSlice())) || !g.DstIP.Equal(net.IP(ip.Dst().AsSlice())) ||
			!bytes.Equal(g.Contents, ip.Header()) || !bytes.Equal(g.Payload, ip.Payload()) {
			t.Fatalf("fields differ: gopacket %+v", g)
		}
		if ip.IsFragment() != (g.NextLayerType() == gopacket.LayerTypeFragment) {
			t.Fatal("fragment disagreement")
		}
		if ip.ChecksumValid() != (refSum(ip.Header(), 0) == 0xffff) {
			t.Fatal("ChecksumValid disagrees with the reference")
		}

		// Round trip: rebuild the header from the parsed fields.
		h := packet.IPv4Header{
			TOS: ip.TOS(), ID: ip.ID(), Flags: uint16(ip.Flags()) << 13, FragOff: ip.FragmentOffset(),
			TTL: ip.TTL(), Protocol: ip.Protocol(), Src: ip.Src(), Dst: ip.Dst(), Options: ip.Options(),
		}
		built, berr := packet.AppendIPv4([]byte{0xaa}, &h, len(ip.Payload()))
		if berr != nil {
			t.Fatalf("AppendIPv4: %v", berr)
		}
		built = built[1:]
		want := append([]byte(nil), ip.Header()...)
		want[6] &^= 0x80 // the reserved flag is not built
		want[10], want[11] = built[10], built[11]
		if !bytes.Equal(built, want) {
			t.Fatalf("round trip header\n got %x\nwant %x", built, want)
		}
		if refSum(built, 0) != 0xffff {
			t.Fatal("built header checksum invalid")
		}
		ip2, err := packet.ParseIPv4(append(built, ip.Payload()...))
		if err != nil || ip2.TotalLen() != ip.TotalLen() || !bytes.Equal(ip2.Payload(), ip.Payload()) {
			t.Fatalf("reparse: %v", err)
		}
	})
}

// gopacketHBHOptionsOK mirrors gopacket's hop-by-hop option decoding
// (decodeIPv6HeaderTLVOption): it reads options from the whole remaining
// payload, needs two bytes even for Pad1, and fails on a jumbogram option
// when the payload length is not zero.
func gopacketHBHOptionsOK(payload []byte) bool {
	if len(payload) < 2 {
		return true // the header itself is truncated: both reject
	}
	end := (int(payload[1]) + 1) * 8
	for off := 2; off < end; {
		d := payload[off:]
		if len(d) < 2 {
			return false
		}
		if d[0] == 0 {
			off++
			continue
		}
		if d[0] == 0xc2 || len(d) < int(d[1])+2 {
			return false
		}
		off += int(d[1]) + 2
	}
	return true
}

// gopacketWalk walks an IPv6 packet with gopacket: layers.IPv6 (which
// consumes a leading hop-by-hop header), then IPv6ExtensionSkipper over the
// routing and destination-options headers, the extension headers both
// implementations treat alike. It stops at the first other header and
// reports whether that is one of the headers the two treat differently
// (fragment: gopacket's skipper reads its reserved byte as a length; AH:
// a different length unit; mobility, HIP, shim6: unknown to gopacket; a
// hop-by-hop header not first: RFC 8200 forbids it, gopacket skips it).
func gopacketWalk(data []byte) (g layers.IPv6, proto uint8, off, n int, differ bool, err error) {
	if err = g.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
		return
	}
	nh := uint8(g.NextHeader)
	off = 40
	if g.HopByHop != nil {
		nh = uint8(g.HopByHop.NextHeader)
		off += g.HopByHop.ActualLength
		n = 1
	}
	p := g.Payload
	for {
		switch nh {
		case packet.ProtoRouting, packet.ProtoDestOpts:
			n++
			if n > packet.MaxIPv6ExtensionHeaders {
				return g, nh, off, n, false, nil
			}
			var s layers.IPv6ExtensionSkipper
			if err = s.DecodeFromBytes(p, gopacket.NilDecodeFeedback); err != nil {
				return
			}
			off += len(s.Contents)
			p = s.Payload
			nh = uint8(s.NextHeader)
		case packet.ProtoHopByHop, packet.ProtoFragment, packet.ProtoAH, 135, 139, 140:
			return g, nh, off, n, true, nil
		default:
			return g, nh, off, n, false, nil
		}
	}
}

// FuzzIPv6 holds ParseIPv6, extension-header walk included, against
// gopacket. Where the two legitimately differ:
//   - gopacket does not check the version nibble (we: ErrBadVersion);
//   - gopacket accepts a payload length beyond the buffer (flagged
//     truncated; we: ErrTruncated);
//   - payload length 0: gopacket rejects it unless a hop-by-hop jumbogram
//     option is present; we, like Linux, accept it as an empty payload and
//     reject jumbograms;
//   - with a hop-by-hop header and bytes after the payload, gopacket cuts
//     the payload after the hop-by-hop header to the payload length, so it
//     overruns by the header's length (a gopacket bug);
//   - gopacket interprets hop-by-hop options (see gopacketHBHOptionsOK); we
//     do not;
//   - the headers gopacketWalk reports as treated differently, and our
//     bound of MaxIPv6ExtensionHeaders.
func FuzzIPv6(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		ip, err := packet.ParseIPv6(data)
		checkErr(t, err)
		if len(data) >= 40 {
			plen := int(binary.BigEndian.Uint16(data[4:6]))
			switch {
			case data[0]>>4 != 6:
				wantErr(t, err, packet.ErrBadVersion)
				return
			case plen == 0:
				switch data[6] {
				case packet.ProtoHopByHop:
					wantErr(t, err, packet.ErrLengthMismatch)
				case packet.ProtoRouting, packet.ProtoFragment, packet.ProtoDestOpts, packet.ProtoAH, 135, 139, 140:
					wantErr(t, err, packet.ErrTruncated) // an extension header in an empty payload
				default:
					if err != nil || ip.PayloadLen() != 0 || ip.TransportOffset() != 40 {
						t.Fatalf("empty payload: %v", err)
					}
				}
				return
			case 40+plen > len(data):
				wantErr(t, err, packet.ErrTruncated)
				return
			case data[6] == packet.ProtoHopByHop && (40+plen != len(data) || !gopacketHBHOptionsOK(data[40:])):
				return
			}
		}
		g, proto, off, n, differ, gerr := gopacketWalk(data)
		if n > packet.MaxIPv6ExtensionHeaders {
			wantErr(t, err, packet.ErrExtensionChainTooLong)
			return
		}
		if gerr != nil {
			if err == nil {
				t.Fatalf("we accept, gopacket: %v", gerr)
			}
			return
		}
		if differ {
			if proto == packet.ProtoHopByHop {
				wantErr(t, err, packet.ErrBadExtensionOrder)
			} else if err == nil && ip.TransportOffset() <= off && !(proto == packet.ProtoFragment && ip.TransportOffset() == off+8) {
				t.Fatalf("walk stopped at %d before the header at %d", ip.TransportOffset(), off)
			}
			// Fields of the fixed header must still agree when we accept.
			if err != nil {
				return
			}
		} else {
			if err != nil {
				t.Fatalf("ours: %v, gopacket accepts", err)
			}
			if ip.Protocol() != proto || ip.TransportOffset() != off || ip.ExtensionHeaders() != n {
				t.Fatalf("walk: ours proto %d off %d n %d, gopacket proto %d off %d n %d",
					ip.Protocol(), ip.TransportOffset(), ip.ExtensionHeaders(), proto, off, n)
			}
		}
		if g.Version != 6 || g.TrafficClass != ip.TrafficClass() || g.FlowLabel != ip.FlowLabel() ||
			int(g.Length) != ip.PayloadLen() || uint8(g.NextHeader) != ip.NextHeader() || g.HopLimit != ip.HopLimit() ||
			!g.SrcIP.Equal(net.IP(ip.Src().AsSlice())) || !g.DstIP.Equal(net.IP(ip.Dst().AsSlice())) {
			t.Fatalf("fields differ: gopacket %+v", g)
		}
		// Round trip of the fixed header.
		h := packet.IPv6Header{TrafficClass: ip.TrafficClass(), FlowLabel: ip.FlowLabel(), NextHeader: ip.NextHeader(),
			HopLimit: ip.HopLimit(), Src: ip.Src(), Dst: ip.Dst()}
		built, berr := packet.AppendIPv6(nil, &h, ip.PayloadLen())
		if berr != nil || !bytes.Equal(built, ip.Header()) {
			t.Fatalf("round trip: %v\n got %x\nwant %x", berr, built, ip.Header())
		}
	})
}
