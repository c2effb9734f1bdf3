package packetfuzz

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/onramp-net/onramp/dataplane/packet"
)

// buildOurs builds IP + transport + payload with the package builders and
// checksum helpers. proto picks the transport: TCP, UDP, ICMPv4 (IPv4) or
// ICMPv6 (IPv6) headers are built; any other protocol carries pl raw.
func buildOurs(t *testing.T, v4 bool, proto, tos uint8, flags uint16, ttl uint8, src, dst netip.Addr,
	sport, dport uint16, opts, pl []byte) []byte {
	var l4 []byte
	var err error
	switch proto {
	case packet.ProtoTCP:
		l4, err = packet.AppendTCP(nil, &packet.TCPHeader{SrcPort: sport, DstPort: dport, Seq: uint32(sport) << 7, Ack: 99,
			Flags: packet.TCPFlags(flags) & 0x1ff, Window: 1000, Urgent: dport, Options: opts})
	case packet.ProtoUDP:
		l4, err = packet.AppendUDP(nil, &packet.UDPHeader{SrcPort: sport, DstPort: dport}, len(pl))
	case packet.ProtoICMPv4:
		if v4 {
			l4 = packet.AppendICMPv4(nil, &packet.ICMPHeader{Type: uint8(sport), Code: uint8(dport), Rest: uint32(sport)<<16 | uint32(dport)})
		}
	case packet.ProtoICMPv6:
		if !v4 {
			l4 = packet.AppendICMPv6(nil, &packet.ICMPHeader{Type: uint8(sport), Code: uint8(dport), Rest: uint32(sport)<<16 | uint32(dport)})
		}
	}
	if err != nil {
		return nil
	}
	l4 = append(l4, pl...)
	pseudo := packet.PseudoHeaderSum(src, dst, proto, uint32(len(l4)))
	switch {
	case proto == packet.ProtoTCP:
		err = packet.PutChecksum(l4, packet.TCPChecksumOffset, pseudo)
	case proto == packet.ProtoUDP:
		err = packet.PutUDPChecksum(l4, pseudo)
	case proto == packet.ProtoICMPv4 && v4:
		err = packet.PutChecksum(l4, 2, 0)
	case proto == packet.ProtoICMPv6 && !v4:
		err = packet.PutChecksum(l4, 2, pseudo)
	}
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	if v4 {
		b, err = packet.AppendIPv4(nil, &packet.IPv4Header{TOS: tos, ID: sport ^ dport, Flags: flags & packet.IPv4FlagDF,
			TTL: ttl, Protocol: proto, Src: src, Dst: dst}, len(l4))
	} else {
		b, err = packet.AppendIPv6(nil, &packet.IPv6Header{TrafficClass: tos, FlowLabel: uint32(flags) << 4, NextHeader: proto,
			HopLimit: ttl, Src: src, Dst: dst}, len(l4))
	}
	if err != nil {
		return nil
	}
	return append(b, l4...)
}

// buildGopacket serializes the same packet with gopacket.
func buildGopacket(t *testing.T, v4 bool, proto, tos uint8, flags uint16, ttl uint8, src, dst netip.Addr,
	sport, dport uint16, pl []byte) []byte {
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if v4 {
		ip := &layers.IPv4{Version: 4, TOS: tos, Id: sport ^ dport, Flags: layers.IPv4Flag((flags & packet.IPv4FlagDF) >> 13), TTL: ttl,
			Protocol: layers.IPProtocol(proto), SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ls, nl = append(ls, ip), ip
	} else {
		ip := &layers.IPv6{Version: 6, TrafficClass: tos, FlowLabel: uint32(flags) << 4 & 0xfffff, NextHeader: layers.IPProtocol(proto),
			HopLimit: ttl, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ls, nl = append(ls, ip), ip
	}
	f := flags & 0x1ff
	switch {
	case proto == packet.ProtoTCP:
		tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: uint32(sport) << 7, Ack: 99,
			FIN: f&1 != 0, SYN: f&2 != 0, RST: f&4 != 0, PSH: f&8 != 0, ACK: f&16 != 0, URG: f&32 != 0, ECE: f&64 != 0,
			CWR: f&128 != 0, NS: f&256 != 0, Window: 1000, Urgent: dport}
		tc.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tc)
	case proto == packet.ProtoUDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u)
	case proto == packet.ProtoICMPv4 && v4:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(uint8(sport), uint8(dport)), Id: sport, Seq: dport})
	case proto == packet.ProtoICMPv6 && !v4:
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(uint8(sport), uint8(dport))}
		ic.SetNetworkLayerForChecksum(nl)
		ls = append(ls, ic)
		pl = append(binary.BigEndian.AppendUint32(nil, uint32(sport)<<16|uint32(dport)), pl...)
	}
	ls = append(ls, gopacket.Payload(pl))
	return serialize(t, ls...)
}

// FuzzBuild builds packets with AppendIPv4/AppendIPv6, AppendTCP/AppendUDP/
// AppendICMPv4/AppendICMPv6 and the checksum helpers, compares them byte for
// byte with gopacket's serialization (without options, which gopacket
// takes as structured lists), and parses them back. One legitimate
// difference: gopacket writes a computed UDP checksum of 0 as 0, RFC 768
// (and we) as 0xffff.
func FuzzBuild(f *testing.F) {
	f.Fuzz(func(t *testing.T, v4 bool, proto, tos uint8, flags uint16, ttl uint8, a, b uint32, sport, dport uint16, opts, pl []byte) {
		if len(pl) > 2000 || len(opts) > 40 {
			return
		}
		var src, dst netip.Addr
		if v4 {
			src = netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, a)))
			dst = netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, b)))
		} else {
			var s, d [16]byte
			s[0], d[0] = 0xfd, 0xfd
			binary.BigEndian.PutUint32(s[12:], a)
			binary.BigEndian.PutUint32(d[12:], b)
			src, dst = netip.AddrFrom16(s), netip.AddrFrom16(d)
		}
		if !v4 {
			switch proto {
			case packet.ProtoHopByHop, packet.ProtoRouting, packet.ProtoFragment, packet.ProtoDestOpts, packet.ProtoAH, 135, 139, 140:
				proto = packet.ProtoNoNext // a raw payload behind an extension-header number would be walked as one
			}
		}
		if proto == packet.ProtoTCP {
			// Options only where gopacket sees none; otherwise they
			// are round-tripped below.
		} else {
			opts = nil
		}
		ours := buildOurs(t, v4, proto, tos, flags, ttl, src, dst, sport, dport, opts, pl)
		if ours == nil {
			t.Fatal("build failed")
		}
		if len(opts) == 0 {
			theirs := buildGopacket(t, v4, proto, tos, flags, ttl, src, dst, sport, dport, pl)
			if !bytes.Equal(ours, theirs) {
				ipl := 20
				if !v4 {
					ipl = 40
				}
				if proto == packet.ProtoUDP && len(theirs) == len(ours) && theirs[ipl+6] == 0 && theirs[ipl+7] == 0 &&
					ours[ipl+6] == 0xff && ours[ipl+7] == 0xff {
					theirs[ipl+6], theirs[ipl+7] = 0xff, 0xff
				}
				if !bytes.Equal(ours, theirs) {
					t.Fatalf("ours and gopacket differ\n ours %x\ntheir %x", ours, theirs)
				}
			}
		}
		// Parse back.
		k, err := packet.ParseFlowKey(ours)
		if err != nil || k.SrcAddr() != src || k.DstAddr() != dst || k.Proto != proto {
			t.Fatalf("flow key %+v: %v", k, err)
		}
		var tr []byte
		if v4 {
			ip, err := packet.ParseIPv4(ours)
			if err != nil || !ip.ChecksumValid() || ip.TTL() != ttl || ip.TOS() != tos {
				t.Fatalf("reparse IPv4: %v", err)
			}
			tr = ip.Transport()
		} else {
			ip, err := packet.ParseIPv6(ours)
			if err != nil || ip.HopLimit() != ttl || ip.TrafficClass() != tos {
				t.Fatalf("reparse IPv6: %v", err)
			}
			tr = ip.Transport()
		}
		pseudo := packet.PseudoHeaderSum(src, dst, proto, uint32(len(tr)))
		switch proto {
		case packet.ProtoTCP:
			s, err := packet.ParseTCP(tr)
			if err != nil || !s.ChecksumValid(pseudo) || s.SrcPort() != sport || s.DstPort() != dport ||
				!bytes.Equal(s.Payload(), pl) || !bytes.Equal(s.Options()[:len(opts)], opts) {
				t.Fatalf("reparse TCP: %v", err)
			}
		case packet.ProtoUDP:
			u, err := packet.ParseUDP(tr)
			if err != nil || !u.ChecksumValid(pseudo) || u.Checksum() == 0 || u.SrcPort() != sport || u.DstPort() != dport ||
				!bytes.Equal(u.Payload(), pl) {
				t.Fatalf("reparse UDP: %v", err)
			}
		}
	})
}
