package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header constants.
const (
	IPv4MinHeaderLen = 20 // header without options
	IPv4MaxHeaderLen = 60 // IHL 15
)

// IPv4 flag bits, as they appear in the top three bits of the flags/fragment
// offset word.
const (
	IPv4FlagMF = 1 << 13 // more fragments
	IPv4FlagDF = 1 << 14 // don't fragment
)

// IP protocol numbers used in this package.
const (
	ProtoHopByHop uint8 = 0
	ProtoICMPv4   uint8 = 1
	ProtoTCP      uint8 = 6
	ProtoUDP      uint8 = 17
	ProtoRouting  uint8 = 43
	ProtoFragment uint8 = 44
	ProtoESP      uint8 = 50
	ProtoAH       uint8 = 51
	ProtoICMPv6   uint8 = 58
	ProtoNoNext   uint8 = 59
	ProtoDestOpts uint8 = 60
)

var (
	errIPv4Short      = newErr(LayerIPv4, "header", ErrTruncated)
	errIPv4Version    = newErr(LayerIPv4, "version", ErrBadVersion)
	errIPv4IHL        = newErr(LayerIPv4, "IHL", ErrBadHeaderLength)
	errIPv4IHLShort   = newErr(LayerIPv4, "options", ErrTruncated)
	errIPv4TotalLen   = newErr(LayerIPv4, "total length", ErrLengthMismatch)
	errIPv4TotalShort = newErr(LayerIPv4, "total length", ErrTruncated)
	errIPv4OptLen     = newErr(LayerIPv4, "option length", ErrBadOption)
)

// IPv4 is a view of a parsed IPv4 packet: the header and the payload, cut to
// the total length. It aliases the parsed buffer.
type IPv4 struct {
	b []byte // header and payload, len(b) == total length
}

// ParseIPv4 parses the IPv4 packet at the start of b. It checks the version,
// that 5 <= IHL, that IHL*4 <= total length <= len(b), and that options are
// well-formed type-length-value items (an option length below 2 or running
// past the header is ErrBadOption); bytes after the total length (link
// padding) are ignored. It does not verify the header checksum (see
// [IPv4.ChecksumValid]) and it accepts fragments, which the view reports.
func ParseIPv4(b []byte) (IPv4, error) {
	// Fast path, small enough to inline: version 4, no options, total
	// length within the buffer.
	if len(b) >= IPv4MinHeaderLen && b[0] == 0x45 {
		if tlen := int(binary.BigEndian.Uint16(b[2:4])); tlen >= IPv4MinHeaderLen && tlen <= len(b) {
			return IPv4{b: b[:tlen:tlen]}, nil
		}
	}
	return parseIPv4(b)
}

// parseIPv4 is ParseIPv4 for every case.
func parseIPv4(b []byte) (IPv4, error) {
	if len(b) < IPv4MinHeaderLen {
		return IPv4{}, errIPv4Short
	}
	if b[0]>>4 != 4 {
		return IPv4{}, errIPv4Version
	}
	hlen := int(b[0]&0x0f) * 4
	if hlen < IPv4MinHeaderLen {
		return IPv4{}, errIPv4IHL
	}
	if hlen > len(b) {
		return IPv4{}, errIPv4IHLShort
	}
	tlen := int(binary.BigEndian.Uint16(b[2:4]))
	if tlen < hlen {
		return IPv4{}, errIPv4TotalLen
	}
	if tlen > len(b) {
		return IPv4{}, errIPv4TotalShort
	}
	if err := checkIPv4Options(b[IPv4MinHeaderLen:hlen]); err != nil {
		return IPv4{}, err
	}
	return IPv4{b: b[:tlen:tlen]}, nil
}

// checkIPv4Options validates the option TLVs (RFC 791): type 0 ends the
// list, type 1 is a single byte, every other option has a length byte that
// counts the type and length bytes and fits in the header.
func checkIPv4Options(o []byte) error {
	for len(o) > 0 {
		switch o[0] {
		case 0:
			return nil
		case 1:
			o = o[1:]
		default:
			if len(o) < 2 {
				return errIPv4OptLen
			}
			n := int(o[1])
			if n < 2 || n > len(o) {
				return errIPv4OptLen
			}
			o = o[n:]
		}
	}
	return nil
}

// Bytes returns the packet, header and payload, cut to the total length.
func (ip IPv4) Bytes() []byte { return ip.b }

// Header returns the header including options.
func (ip IPv4) Header() []byte { return ip.b[:ip.HeaderLen()] }

// HeaderLen returns the header length in bytes (IHL*4).
func (ip IPv4) HeaderLen() int { return int(ip.b[0]&0x0f) * 4 }

// Options returns the option bytes (empty without options).
func (ip IPv4) Options() []byte { return ip.b[IPv4MinHeaderLen:ip.HeaderLen()] }

// Payload returns the bytes after the header up to the total length.
func (ip IPv4) Payload() []byte { return ip.b[ip.HeaderLen():] }

// TOS returns the type-of-service (DSCP and ECN) byte.
func (ip IPv4) TOS() uint8 { return ip.b[1] }

// TotalLen returns the total length field.
func (ip IPv4) TotalLen() int { return len(ip.b) }

// ID returns the identification field.
func (ip IPv4) ID() uint16 { return binary.BigEndian.Uint16(ip.b[4:6]) }

// Flags returns the three flag bits (reserved, DF, MF) in the low bits.
func (ip IPv4) Flags() uint8 { return ip.b[6] >> 5 }

// DontFragment reports whether DF is set.
func (ip IPv4) DontFragment() bool { return ip.b[6]&0x40 != 0 }

// MoreFragments reports whether MF is set.
func (ip IPv4) MoreFragments() bool { return ip.b[6]&0x20 != 0 }

// FragmentOffset returns the fragment offset in 8-byte units.
func (ip IPv4) FragmentOffset() uint16 { return binary.BigEndian.Uint16(ip.b[6:8]) & 0x1fff }

// IsFragment reports whether the packet is a fragment (MF set or a
// non-zero offset).
func (ip IPv4) IsFragment() bool { return binary.BigEndian.Uint16(ip.b[6:8])&0x3fff != 0 }

// IsNonFirstFragment reports whether the packet is a fragment with a
// non-zero offset, which carries no transport header.
func (ip IPv4) IsNonFirstFragment() bool { return binary.BigEndian.Uint16(ip.b[6:8])&0x1fff != 0 }

// TTL returns the time-to-live.
func (ip IPv4) TTL() uint8 { return ip.b[8] }

// Protocol returns the protocol field.
func (ip IPv4) Protocol() uint8 { return ip.b[9] }

// Checksum returns the header checksum field.
func (ip IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(ip.b[10:12]) }

// ChecksumValid reports whether the header checksum is correct.
func (ip IPv4) ChecksumValid() bool { return Sum(ip.Header(), 0) == 0xffff }

// Src returns the source address.
func (ip IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(ip.b[12:16])) }

// Dst returns the destination address.
func (ip IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(ip.b[16:20])) }

// Transport returns the transport header and payload: the IPv4 payload,
// or nil for a non-first fragment.
func (ip IPv4) Transport() []byte {
	if ip.IsNonFirstFragment() {
		return nil
	}
	return ip.Payload()
}

// DecrementTTL lowers the TTL by one and fixes the header checksum
// incrementally (RFC 1624). It returns false, leaving the packet unchanged,
// when the TTL is 0 or 1: the packet must not be forwarded and the router
// answers with [ICMPv4TimeExceeded].
func (ip IPv4) DecrementTTL() bool {
	ttl := ip.b[8]
	if ttl <= 1 {
		return false
	}
	old := binary.BigEndian.Uint16(ip.b[8:10])
	ip.b[8] = ttl - 1
	ip.setChecksum(UpdateChecksum16(ip.Checksum(), old, old-0x0100))
	return true
}

func (ip IPv4) setChecksum(c uint16) { binary.BigEndian.PutUint16(ip.b[10:12], c) }

// SetSrc rewrites the source address and fixes, incrementally, the header
// checksum and the TCP or UDP checksum that covers the pseudo-header (when
// the packet is not a non-first fragment and the transport checksum field
// is present). a must be an IPv4 address.
func (ip IPv4) SetSrc(a netip.Addr) { ip.setAddr(12, a) }

// SetDst is [IPv4.SetSrc] for the destination address.
func (ip IPv4) SetDst(a netip.Addr) { ip.setAddr(16, a) }

func (ip IPv4) setAddr(off int, a netip.Addr) {
	old := netip.AddrFrom4([4]byte(ip.b[off : off+4]))
	n := a.As4()
	copy(ip.b[off:off+4], n[:])
	ip.setChecksum(UpdateChecksumAddr(ip.Checksum(), old, a))
	fixTransportAddr(ip.Protocol(), ip.Transport(), old, a)
}

// fixTransportAddr updates the TCP or UDP checksum in t for a pseudo-header
// address change from old to new.
func fixTransportAddr(proto uint8, t []byte, old, new netip.Addr) {
	switch proto {
	case ProtoTCP:
		if len(t) >= 18 {
			c := binary.BigEndian.Uint16(t[16:18])
			binary.BigEndian.PutUint16(t[16:18], UpdateChecksumAddr(c, old, new))
		}
	case ProtoUDP:
		if len(t) >= 8 {
			c := binary.BigEndian.Uint16(t[6:8])
			if c == 0 && new.Is4() {
				return // IPv4 UDP without checksum stays without.
			}
			binary.BigEndian.PutUint16(t[6:8], udpNonZero(UpdateChecksumAddr(c, old, new)))
		}
	case ProtoICMPv6:
		if new.Is6() && len(t) >= 4 {
			c := binary.BigEndian.Uint16(t[2:4])
			binary.BigEndian.PutUint16(t[2:4], UpdateChecksumAddr(c, old, new))
		}
	}
}

// udpNonZero maps a computed UDP checksum of 0 to 0xffff (RFC 768): 0 on
// the wire means "no checksum".
func udpNonZero(c uint16) uint16 {
	if c == 0 {
		return 0xffff
	}
	return c
}

// IPv4Header describes an IPv4 header for [AppendIPv4].
type IPv4Header struct {
	TOS      uint8
	ID       uint16
	Flags    uint16 // IPv4FlagDF, IPv4FlagMF; other bits are ignored
	FragOff  uint16 // in 8-byte units, 13 bits
	TTL      uint8
	Protocol uint8
	Src, Dst netip.Addr // IPv4
	Options  []byte     // zero-padded to a multiple of 4, at most 40 bytes
}

var (
	errIPv4BuildAddr = newErr(LayerIPv4, "address", ErrBadAddress)
	errIPv4BuildOpts = newErr(LayerIPv4, "options", ErrBadHeaderLength)
	errIPv4BuildLen  = newErr(LayerIPv4, "total length", ErrLengthMismatch)
)

// AppendIPv4 appends the header h for a packet carrying payloadLen bytes
// after the header, with the header checksum computed, and returns the
// extended slice. It fails, returning b unchanged, if an address is not
// IPv4, the options exceed 40 bytes or the total length exceeds 65535.
func AppendIPv4(b []byte, h *IPv4Header, payloadLen int) ([]byte, error) {
	if !h.Src.Is4() || !h.Dst.Is4() {
		return b, errIPv4BuildAddr
	}
	olen := (len(h.Options) + 3) &^ 3
	if olen > IPv4MaxHeaderLen-IPv4MinHeaderLen {
		return b, errIPv4BuildOpts
	}
	hlen := IPv4MinHeaderLen + olen
	if payloadLen < 0 || hlen+payloadLen > 0xffff {
		return b, errIPv4BuildLen
	}
	start := len(b)
	src, dst := h.Src.As4(), h.Dst.As4()
	b = append(b,
		0x40|byte(hlen/4), h.TOS, byte((hlen+payloadLen)>>8), byte(hlen+payloadLen),
		byte(h.ID>>8), byte(h.ID), byte((h.Flags&(IPv4FlagDF|IPv4FlagMF)|h.FragOff&0x1fff)>>8), byte(h.FragOff),
		h.TTL, h.Protocol, 0, 0)
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	b = append(b, h.Options...)
	for i := len(h.Options); i < olen; i++ {
		b = append(b, 0)
	}
	c := Checksum(b[start:], 0)
	binary.BigEndian.PutUint16(b[start+10:], c)
	return b, nil
}
