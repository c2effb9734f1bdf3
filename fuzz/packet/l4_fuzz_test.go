package packetfuzz

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/onramp-net/onramp/dataplane/packet"
)

// gopacketTCPOptionsOK mirrors gopacket's TCP option decoding: after End
// of List it stops, NOP is one byte, every other option needs a length of
// at least 2 that fits.
func gopacketTCPOptionsOK(o []byte) bool {
	for len(o) > 0 {
		switch o[0] {
		case 0:
			return true
		case 1:
			o = o[1:]
		default:
			if len(o) < 2 || o[1] < 2 || int(o[1]) > len(o) {
				return false
			}
			o = o[o[1]:]
		}
	}
	return true
}

// FuzzTCP holds ParseTCP against gopacket's layers.TCP and checks the
// AppendTCP round trip. They legitimately differ on malformed options:
// gopacket rejects them, we do not interpret options (Linux parses them
// leniently too) and accept the segment.
func FuzzTCP(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := packet.ParseTCP(data)
		checkErr(t, err)
		var g layers.TCP
		gerr := g.DecodeFromBytes(data, gopacket.NilDecodeFeedback)
		if err == nil && gerr != nil && !gopacketTCPOptionsOK(s.Options()) {
			return
		}
		if (err == nil) != (gerr == nil) {
			t.Fatalf("ours: %v, gopacket: %v", err, gerr)
		}
		if err != nil {
			return
		}
		var flags packet.TCPFlags
		for i, on := range []bool{g.FIN, g.SYN, g.RST, g.PSH, g.ACK, g.URG, g.ECE, g.CWR, g.NS} {
			if on {
				flags |= 1 << i
			}
		}
		if uint16(g.SrcPort) != s.SrcPort() || uint16(g.DstPort) != s.DstPort() || g.Seq != s.Seq() || g.Ack != s.Ack() ||
			int(g.DataOffset)*4 != s.HeaderLen() || flags != s.Flags() || g.Window != s.Window() ||
			g.Checksum != s.Checksum() || g.Urgent != s.Urgent() ||
			!bytes.Equal(g.Contents, data[:s.HeaderLen()]) || !bytes.Equal(g.Payload, s.Payload()) {
			t.Fatalf("fields differ: gopacket %+v", g)
		}
		h := packet.TCPHeader{SrcPort: s.SrcPort(), DstPort: s.DstPort(), Seq: s.Seq(), Ack: s.Ack(), Flags: s.Flags(),
			Window: s.Window(), Urgent: s.Urgent(), Options: s.Options()}
		built, berr := packet.AppendTCP(nil, &h)
		if berr != nil {
			t.Fatal(berr)
		}
		want := append([]byte(nil), data[:s.HeaderLen()]...)
		want[12] &^= 0x0e // reserved bits are not built
		want[16], want[17] = 0, 0
		if !bytes.Equal(built, want) {
			t.Fatalf("round trip\n got %x\nwant %x", built, want)
		}
	})
}

// FuzzUDP holds ParseUDP against gopacket's layers.UDP and checks the
// AppendUDP round trip. They legitimately differ where gopacket is lenient:
// a length beyond the buffer (gopacket flags truncation and accepts; we:
// ErrTruncated) and a length of 0 (gopacket: a jumbogram taking the rest of
// the buffer; we do not support jumbograms: ErrLengthMismatch).
func FuzzUDP(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := packet.ParseUDP(data)
		checkErr(t, err)
		var g layers.UDP
		gerr := g.DecodeFromBytes(data, gopacket.NilDecodeFeedback)
		if len(data) >= 8 {
			switch n := int(binary.BigEndian.Uint16(data[4:6])); {
			case n == 0:
				wantErr(t, err, packet.ErrLengthMismatch)
				return
			case n > len(data):
				wantErr(t, err, packet.ErrTruncated)
				return
			}
		}
		if (err == nil) != (gerr == nil) {
			t.Fatalf("ours: %v, gopacket: %v", err, gerr)
		}
		if err != nil {
			return
		}
		if uint16(g.SrcPort) != u.SrcPort() || uint16(g.DstPort) != u.DstPort() || int(g.Length) != u.Length() ||
			g.Checksum != u.Checksum() || !bytes.Equal(g.Payload, u.Payload()) {
			t.Fatalf("fields differ: gopacket %+v", g)
		}
		built, berr := packet.AppendUDP(nil, &packet.UDPHeader{SrcPort: u.SrcPort(), DstPort: u.DstPort()}, len(u.Payload()))
		if berr != nil || !bytes.Equal(built[:6], data[:6]) || built[6]|built[7] != 0 {
			t.Fatalf("round trip %x vs %x: %v", built, data[:8], berr)
		}
	})
}

// FuzzICMPv4 holds ParseICMPv4 against gopacket's layers.ICMPv4; both need
// the 8-byte header.
func FuzzICMPv4(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := packet.ParseICMPv4(data)
		checkErr(t, err)
		var g layers.ICMPv4
		gerr := g.DecodeFromBytes(data, gopacket.NilDecodeFeedback)
		if (err == nil) != (gerr == nil) {
			t.Fatalf("ours: %v, gopacket: %v", err, gerr)
		}
		if err != nil {
			wantErr(t, err, packet.ErrTruncated)
			return
		}
		if g.TypeCode.Type() != m.Type() || g.TypeCode.Code() != m.Code() || g.Checksum != m.Checksum() ||
			g.Id != m.ID() || g.Seq != m.Seq() || !bytes.Equal(g.Payload, m.Body()) {
			t.Fatalf("fields differ: gopacket %+v", g)
		}
		if m.ChecksumValid() != (refSum(data, 0) == 0xffff) {
			t.Fatal("ChecksumValid disagrees with the reference")
		}
		built := packet.AppendICMPv4(nil, &packet.ICMPHeader{Type: m.Type(), Code: m.Code(), Rest: m.Rest()})
		built = append(built, m.Body()...)
		if err := packet.PutChecksum(built, 2, 0); err != nil || refSum(built, 0) != 0xffff {
			t.Fatalf("built checksum: %v", err)
		}
		if built[2], built[3] = data[2], data[3]; !bytes.Equal(built, data) {
			t.Fatal("round trip differs")
		}
	})
}

// FuzzICMPv6 holds ParseICMPv6 against gopacket's layers.ICMPv6. They
// differ on 4 to 7 bytes: gopacket decodes the 4-byte type/code/checksum
// alone, we require the 8-byte header every RFC 4443 message has (Linux
// pulls 8 bytes too): ErrTruncated.
func FuzzICMPv6(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := packet.ParseICMPv6(data)
		checkErr(t, err)
		var g layers.ICMPv6
		gerr := g.DecodeFromBytes(data, gopacket.NilDecodeFeedback)
		if len(data) >= 4 && len(data) < 8 {
			wantErr(t, err, packet.ErrTruncated)
			return
		}
		if (err == nil) != (gerr == nil) {
			t.Fatalf("ours: %v, gopacket: %v", err, gerr)
		}
		if err != nil {
			return
		}
		if g.TypeCode.Type() != m.Type() || g.TypeCode.Code() != m.Code() || g.Checksum != m.Checksum() ||
			!bytes.Equal(g.Payload[:4], data[4:8]) || binary.BigEndian.Uint32(g.Payload) != m.Rest() ||
			!bytes.Equal(g.Payload[4:], m.Body()) {
			t.Fatalf("fields differ: gopacket %+v", g)
		}
		if m.IsError() != (m.Type() < 128) {
			t.Fatal("IsError")
		}
	})
}
