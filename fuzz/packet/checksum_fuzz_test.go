package packetfuzz

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// FuzzChecksum holds Sum, Checksum and PseudoHeaderSum against the naive
// byte-pair reference, and checks that summing in two chunks split at an
// even offset equals summing at once.
func FuzzChecksum(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, initial uint32, split uint16) {
		if got, want := packet.Sum(data, initial), refSum(data, initial); got != want {
			t.Fatalf("Sum(%d bytes, %#x) = %#x, want %#x", len(data), initial, got, want)
		}
		if got, want := packet.Checksum(data, initial), refChecksum(data, initial); got != want {
			t.Fatalf("Checksum = %#x, want %#x", got, want)
		}
		if len(data) > 0 {
			k := int(split) % (len(data) + 1) &^ 1
			if got, want := packet.Sum(data[k:], packet.Sum(data[:k], initial)), refSum(data, initial); got != want {
				t.Fatalf("split at %d: %#x, want %#x", k, got, want)
			}
		}
		if len(data) >= 32 {
			proto, length := data[0], binary.BigEndian.Uint32(data[1:5])
			s4, d4 := netip.AddrFrom4([4]byte(data[0:4])), netip.AddrFrom4([4]byte(data[4:8]))
			if got, want := packet.PseudoHeaderSum(s4, d4, proto, length&0xffff), refPseudo(data[0:4], data[4:8], proto, length&0xffff); got != want {
				t.Fatalf("v4 pseudo %#x, want %#x", got, want)
			}
			s6, d6 := netip.AddrFrom16([16]byte(data[0:16])), netip.AddrFrom16([16]byte(data[16:32]))
			if got, want := packet.PseudoHeaderSum(s6, d6, proto, length), refPseudo(data[0:16], data[16:32], proto, length); got != want {
				t.Fatalf("v6 pseudo %#x, want %#x", got, want)
			}
		}
		// A written checksum makes the data verify.
		if len(data) >= 2 {
			b := append([]byte(nil), data...)
			b[0], b[1] = 0, 0
			binary.BigEndian.PutUint16(b, packet.Checksum(b, initial))
			if refSum(b, initial) != 0xffff {
				t.Fatal("written checksum does not verify")
			}
		}
	})
}

// FuzzChecksumUpdate holds the RFC 1624 incremental updates against a full
// recomputation: a 16-bit word, a 32-bit word, and 4- and 16-byte addresses
// at an even offset. Results are compared as one's complement numbers
// (0x0000 and 0xffff both verify when the rest of the data is not all
// zero), and the updated data must verify.
func FuzzChecksumUpdate(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, off uint16, neu uint32) {
		if len(data) < 20 {
			return
		}
		b := append([]byte(nil), data...)
		b[0], b[1] = 0, 0
		c := refChecksum(b, 0)
		binary.BigEndian.PutUint16(b, c)
		o := 2 + int(off)%(len(b)-2-16)&^1 // even, room for 16 bytes, not the checksum

		check := func(name string, got uint16) {
			t.Helper()
			x := append([]byte(nil), b...)
			x[0], x[1] = 0, 0
			want := refChecksum(x, 0)
			if !sameOnesComplement(got, want) {
				t.Fatalf("%s: incremental %#x, recomputed %#x", name, got, want)
			}
			x[0], x[1] = byte(got>>8), byte(got)
			if refSum(x, 0) != 0xffff && refSum(x[2:], 0) != 0 {
				t.Fatalf("%s: updated data does not verify", name)
			}
			binary.BigEndian.PutUint16(b, got)
		}

		old16 := binary.BigEndian.Uint16(b[o:])
		binary.BigEndian.PutUint16(b[o:], uint16(neu))
		check("16", packet.UpdateChecksum16(binary.BigEndian.Uint16(b), old16, uint16(neu)))

		old32 := binary.BigEndian.Uint32(b[o:])
		binary.BigEndian.PutUint32(b[o:], neu^0x5a5a5a5a)
		check("32", packet.UpdateChecksum32(binary.BigEndian.Uint16(b), old32, neu^0x5a5a5a5a))

		old4 := netip.AddrFrom4([4]byte(b[o : o+4]))
		new4 := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, neu*2654435761)))
		copy(b[o:], new4.AsSlice())
		check("addr4", packet.UpdateChecksumAddr(binary.BigEndian.Uint16(b), old4, new4))

		old6 := netip.AddrFrom16([16]byte(b[o : o+16]))
		var n6 [16]byte
		for i := range n6 {
			n6[i] = byte(neu>>(i%4*8)) + byte(i)
		}
		copy(b[o:], n6[:])
		check("addr6", packet.UpdateChecksumAddr(binary.BigEndian.Uint16(b), old6, netip.AddrFrom16(n6)))
	})
}

// l4Valid returns the reference check of the transport checksum of t
// (TCP, UDP or ICMPv6) under the pseudo-header of src and dst, and whether
// t could be checked.
func l4Valid(proto uint8, t []byte, src, dst []byte) (valid, ok bool) {
	switch proto {
	case packet.ProtoTCP:
		if u, err := packet.ParseTCP(t); err == nil {
			return refSum(u.Bytes(), refPseudo(src, dst, proto, uint32(len(u.Bytes())))) == 0xffff, true
		}
	case packet.ProtoUDP:
		if u, err := packet.ParseUDP(t); err == nil {
			if u.Checksum() == 0 && len(src) == 4 {
				return true, true
			}
			return refSum(u.Bytes(), refPseudo(src, dst, proto, uint32(u.Length()))) == 0xffff, true
		}
	case packet.ProtoICMPv6:
		if len(src) == 16 && len(t) >= 4 {
			return refSum(t, refPseudo(src, dst, proto, uint32(len(t)))) == 0xffff, true
		}
	}
	return false, false
}

// fixL4 writes a correct transport checksum with the reference (keeping an
// IPv4 UDP checksum of 0).
func fixL4(proto uint8, t []byte, src, dst []byte) {
	off := -1
	switch proto {
	case packet.ProtoTCP:
		if s, err := packet.ParseTCP(t); err == nil {
			t, off = s.Bytes(), 16
		}
	case packet.ProtoUDP:
		if u, err := packet.ParseUDP(t); err == nil && !(u.Checksum() == 0 && len(src) == 4) {
			t, off = u.Bytes(), 6
		}
	case packet.ProtoICMPv6:
		if len(src) == 16 && len(t) >= 4 {
			off = 2
		}
	}
	if off < 0 {
		return
	}
	t[off], t[off+1] = 0, 0
	c := refChecksum(t, refPseudo(src, dst, proto, uint32(len(t))))
	if c == 0 && proto == packet.ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(t[off:], c)
}

// FuzzRewrite makes the checksums of a packet valid with the reference,
// then applies the router and NAT rewrites (TTL or hop-limit decrement,
// source and destination address, source and destination port) and checks
// with the reference that every checksum still verifies.
func FuzzRewrite(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, addr uint32, sport, dport uint16) {
		b := append([]byte(nil), data...)
		if len(b) == 0 {
			return
		}
		switch b[0] >> 4 {
		case 4:
			ip, err := packet.ParseIPv4(b)
			if err != nil {
				return
			}
			hdr := ip.Header()
			hdr[10], hdr[11] = 0, 0
			binary.BigEndian.PutUint16(hdr[10:], refChecksum(hdr, 0))
			fragment := ip.IsFragment()
			if !fragment {
				fixL4(ip.Protocol(), ip.Transport(), hdr[12:16], hdr[16:20])
			}
			ttl := ip.TTL()
			if ip.DecrementTTL() != (ttl > 1) || ttl > 1 && ip.TTL() != ttl-1 || ttl <= 1 && ip.TTL() != ttl {
				t.Fatalf("DecrementTTL from %d gave %d", ttl, ip.TTL())
			}
			ip.SetSrc(netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, addr))))
			ip.SetDst(netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, ^addr))))
			setPorts(ip.Protocol(), ip.Transport(), sport, dport)
			if refSum(hdr, 0) != 0xffff {
				t.Fatal("IPv4 header checksum broken by the rewrite")
			}
			if !fragment {
				if valid, ok := l4Valid(ip.Protocol(), ip.Transport(), hdr[12:16], hdr[16:20]); ok && !valid {
					t.Fatal("transport checksum broken by the rewrite")
				}
			}
		case 6:
			ip, err := packet.ParseIPv6(b)
			if err != nil {
				return
			}
			hdr := ip.Header()
			fragment := ip.IsFragment()
			if !fragment {
				fixL4(ip.Protocol(), ip.Transport(), hdr[8:24], hdr[24:40])
			}
			hl := ip.HopLimit()
			if ip.DecrementHopLimit() != (hl > 1) || (hl > 1 && ip.HopLimit() != hl-1) {
				t.Fatal("DecrementHopLimit")
			}
			a := ip.Src().As16()
			binary.BigEndian.PutUint32(a[12:], addr)
			ip.SetSrc(netip.AddrFrom16(a))
			a[0] ^= 0xff
			// With a routing header that has segments left, the
			// pseudo-header holds the final destination and SetDst
			// leaves the transport alone: verify against the old
			// destination then, which stood in for the final one.
			pseudoDst := append([]byte(nil), hdr[24:40]...)
			before := append([]byte(nil), ip.Transport()...)
			ip.SetDst(netip.AddrFrom16(a))
			if !bytes.Equal(before, ip.Transport()) {
				pseudoDst = hdr[24:40]
			}
			setPorts(ip.Protocol(), ip.Transport(), sport, dport)
			if !fragment {
				if valid, ok := l4Valid(ip.Protocol(), ip.Transport(), hdr[8:24], pseudoDst); ok && !valid {
					t.Fatal("transport checksum broken by the rewrite")
				}
			}
		}
	})
}

func setPorts(proto uint8, t []byte, sport, dport uint16) {
	switch proto {
	case packet.ProtoTCP:
		if s, err := packet.ParseTCP(t); err == nil {
			s.SetSrcPort(sport)
			s.SetDstPort(dport)
		}
	case packet.ProtoUDP:
		if u, err := packet.ParseUDP(t); err == nil {
			u.SetSrcPort(sport)
			u.SetDstPort(dport)
		}
	}
}
