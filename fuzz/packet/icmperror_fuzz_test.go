package packetfuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/onramp-net/onramp/dataplane/packet"
)

var (
	router4 = netip.MustParseAddr("198.18.255.254")
	router6 = netip.MustParseAddr("fd00::fe")
)

// refNoReply4 is RFC 1812 section 4.3.2.7 written out on the raw bytes of a
// packet our parser accepted.
func refNoReply4(b []byte) bool {
	ihl := int(b[0]&0x0f) * 4
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		return true
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	if src.IsLoopback() || src.IsMulticast() || b[12] == 0 || b[12] >= 240 {
		return true
	}
	if dst.IsMulticast() || dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return true
	}
	if b[9] == 1 {
		tl := int(binary.BigEndian.Uint16(b[2:4]))
		if tl == ihl {
			return true
		}
		switch b[ihl] {
		case 3, 4, 5, 11, 12:
			return true
		}
	}
	return false
}

// FuzzICMPError builds ICMPv4 and ICMPv6 errors about arbitrary offending
// packets into buffers of arbitrary size, and checks with gopacket and the
// reference checksum: addresses, type and code, checksums, the quoted
// bytes, the size limits, and that forbidden replies are refused.
func FuzzICMPError(f *testing.F) {
	f.Fuzz(func(t *testing.T, orig []byte, typ, code uint8, rest uint32, dstLen uint16) {
		dst := make([]byte, int(dstLen)%1600)
		if len(orig) == 0 {
			return
		}
		switch orig[0] >> 4 {
		case 4:
			n, err := packet.PutICMPv4Error(dst, router4, typ, code, rest, orig)
			checkErr(t, err)
			ip, perr := packet.ParseIPv4(orig)
			if perr != nil {
				if err != perr {
					t.Fatalf("got %v, want the parse error %v", err, perr)
				}
				return
			}
			if refNoReply4(ip.Bytes()) {
				wantErr(t, err, packet.ErrNoReply)
				return
			}
			want := min(ip.TotalLen(), 576-28, len(dst)-28)
			if want < min(ip.TotalLen(), ip.HeaderLen()+8) {
				wantErr(t, err, packet.ErrBufferTooSmall)
				return
			}
			if err != nil || n != 28+want || n > 576 {
				t.Fatalf("n %d err %v, want %d", n, err, 28+want)
			}
			p := gopacket.NewPacket(dst[:n], layers.LayerTypeIPv4, gopacket.Default)
			g4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			gi, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if g4 == nil || gi == nil {
				t.Fatalf("gopacket cannot decode the reply: %v", p)
			}
			if !g4.SrcIP.Equal(net.IP(router4.AsSlice())) || !g4.DstIP.Equal(net.IP(orig[12:16])) ||
				g4.Protocol != layers.IPProtocolICMPv4 || g4.TTL != 64 || int(g4.Length) != n ||
				refSum(dst[:20], 0) != 0xffff {
				t.Fatalf("bad IPv4 header %+v", g4)
			}
			if gi.TypeCode.Type() != typ || gi.TypeCode.Code() != code || refSum(dst[20:n], 0) != 0xffff ||
				binary.BigEndian.Uint32(dst[24:28]) != rest || !bytes.Equal(gi.Payload, orig[:want]) {
				t.Fatalf("bad ICMPv4 %+v", gi)
			}
		case 6:
			n, err := packet.PutICMPv6Error(dst, router6, typ, code, rest, orig)
			checkErr(t, err)
			ip, perr := packet.ParseIPv6(orig)
			if perr != nil {
				if err != perr {
					t.Fatalf("got %v, want the parse error %v", err, perr)
				}
				return
			}
			src, dstAddr := ip.Src(), ip.Dst()
			tr := ip.Transport()
			noReply := ip.IsNonFirstFragment() || src.IsUnspecified() || src.IsMulticast() ||
				dstAddr.IsMulticast() && typ != 2 && !(typ == 4 && code == 2) ||
				ip.Protocol() == 58 && (len(tr) == 0 || tr[0] < 128 || tr[0] == 137)
			if noReply {
				wantErr(t, err, packet.ErrNoReply)
				return
			}
			want := min(len(ip.Bytes()), 1280-48, len(dst)-48)
			if want < min(len(ip.Bytes()), 48) {
				wantErr(t, err, packet.ErrBufferTooSmall)
				return
			}
			if err != nil || n != 48+want || n > 1280 {
				t.Fatalf("n %d err %v, want %d", n, err, 48+want)
			}
			p := gopacket.NewPacket(dst[:n], layers.LayerTypeIPv6, gopacket.Default)
			g6, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			gi, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			if g6 == nil || gi == nil {
				t.Fatalf("gopacket cannot decode the reply: %v", p)
			}
			if !g6.SrcIP.Equal(net.IP(router6.AsSlice())) || !g6.DstIP.Equal(net.IP(orig[8:24])) ||
				g6.NextHeader != layers.IPProtocolICMPv6 || g6.HopLimit != 64 || int(g6.Length) != n-40 {
				t.Fatalf("bad IPv6 header %+v", g6)
			}
			if gi.TypeCode.Type() != typ || gi.TypeCode.Code() != code ||
				refSum(dst[40:n], refPseudo(dst[8:24], dst[24:40], 58, uint32(n-40))) != 0xffff ||
				binary.BigEndian.Uint32(dst[44:48]) != rest || !bytes.Equal(dst[48:n], orig[:want]) {
				t.Fatalf("bad ICMPv6 %+v", gi)
			}
		default:
			_, err4 := packet.PutICMPv4Error(dst, router4, typ, code, rest, orig)
			_, err6 := packet.PutICMPv6Error(dst, router6, typ, code, rest, orig)
			if !errors.Is(err4, packet.ErrTruncated) && !errors.Is(err4, packet.ErrBadVersion) ||
				!errors.Is(err6, packet.ErrTruncated) && !errors.Is(err6, packet.ErrBadVersion) {
				t.Fatalf("not IP: %v, %v", err4, err6)
			}
		}
	})
}
