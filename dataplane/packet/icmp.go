package packet

import (
	"encoding/binary"
	"net/netip"
)

// ICMP header length: type, code, checksum and the 4-byte rest of header.
const ICMPHeaderLen = 8

// ICMPv4 types used by routers (RFC 792).
const (
	ICMPv4EchoReply       uint8 = 0
	ICMPv4DestUnreachable uint8 = 3
	ICMPv4SourceQuench    uint8 = 4
	ICMPv4Redirect        uint8 = 5
	ICMPv4EchoRequest     uint8 = 8
	ICMPv4TimeExceeded    uint8 = 11
	ICMPv4ParamProblem    uint8 = 12
)

// ICMPv4 destination-unreachable codes (RFC 792, RFC 1812).
const (
	ICMPv4CodeNetUnreachable   uint8 = 0
	ICMPv4CodeHostUnreachable  uint8 = 1
	ICMPv4CodePortUnreachable  uint8 = 3
	ICMPv4CodeFragNeeded       uint8 = 4 // rest of header: next-hop MTU in the low 16 bits
	ICMPv4CodeAdminProhibited  uint8 = 13
	ICMPv4CodeTTLExceeded      uint8 = 0 // with ICMPv4TimeExceeded
	ICMPv4CodeReassemblyExceed uint8 = 1 // with ICMPv4TimeExceeded
)

// ICMPv6 types (RFC 4443). Types below 128 are errors.
const (
	ICMPv6DestUnreachable uint8 = 1
	ICMPv6PacketTooBig    uint8 = 2 // rest of header: the MTU
	ICMPv6TimeExceeded    uint8 = 3
	ICMPv6ParamProblem    uint8 = 4 // rest of header: the pointer
	ICMPv6EchoRequest     uint8 = 128
	ICMPv6EchoReply       uint8 = 129
	ICMPv6Redirect        uint8 = 137
)

// ICMPv6 codes used by routers.
const (
	ICMPv6CodeNoRoute          uint8 = 0 // with ICMPv6DestUnreachable
	ICMPv6CodeAdminProhibited  uint8 = 1
	ICMPv6CodeAddrUnreachable  uint8 = 3
	ICMPv6CodePortUnreachable  uint8 = 4
	ICMPv6CodeHopLimitExceeded uint8 = 0 // with ICMPv6TimeExceeded
	ICMPv6CodeUnrecognizedOpt  uint8 = 2 // with ICMPv6ParamProblem
)

// Size limits of ICMP error packets.
const (
	// ICMPv4ErrorMaxLen is the largest ICMPv4 error packet: RFC 1812
	// section 4.3.2.3 quotes as much of the offending packet as fits in
	// 576 bytes.
	ICMPv4ErrorMaxLen = 576
	// ICMPv6ErrorMaxLen is the largest ICMPv6 error packet: the IPv6
	// minimum MTU (RFC 4443 section 2.4 (c)).
	ICMPv6ErrorMaxLen = 1280
)

var (
	errICMPv4Short = newErr(LayerICMPv4, "header", ErrTruncated)
	errICMPv6Short = newErr(LayerICMPv6, "header", ErrTruncated)
)

// ICMPv4 is a view of a parsed ICMPv4 message. It aliases the parsed buffer.
type ICMPv4 struct {
	b []byte
}

// ParseICMPv4 parses the ICMPv4 message that fills b (pass the IP payload).
// It checks only that the 8-byte header is present; the checksum is not
// verified (see [ICMPv4.ChecksumValid]).
func ParseICMPv4(b []byte) (ICMPv4, error) {
	if len(b) < ICMPHeaderLen {
		return ICMPv4{}, errICMPv4Short
	}
	return ICMPv4{b: b}, nil
}

// Bytes returns the message.
func (m ICMPv4) Bytes() []byte { return m.b }

// Type returns the type.
func (m ICMPv4) Type() uint8 { return m.b[0] }

// Code returns the code.
func (m ICMPv4) Code() uint8 { return m.b[1] }

// Checksum returns the checksum field.
func (m ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(m.b[2:4]) }

// Rest returns the 4-byte rest-of-header field (identifier and sequence
// for echo, next-hop MTU, pointer, gateway).
func (m ICMPv4) Rest() uint32 { return binary.BigEndian.Uint32(m.b[4:8]) }

// ID returns the echo identifier (the high half of Rest).
func (m ICMPv4) ID() uint16 { return binary.BigEndian.Uint16(m.b[4:6]) }

// Seq returns the echo sequence number (the low half of Rest).
func (m ICMPv4) Seq() uint16 { return binary.BigEndian.Uint16(m.b[6:8]) }

// Body returns the bytes after the 8-byte header.
func (m ICMPv4) Body() []byte { return m.b[ICMPHeaderLen:] }

// IsError reports whether the type is an error message (destination
// unreachable, source quench, redirect, time exceeded, parameter problem).
func (m ICMPv4) IsError() bool { return icmpv4IsError(m.b[0]) }

func icmpv4IsError(t uint8) bool {
	switch t {
	case ICMPv4DestUnreachable, ICMPv4SourceQuench, ICMPv4Redirect, ICMPv4TimeExceeded, ICMPv4ParamProblem:
		return true
	}
	return false
}

// ChecksumValid reports whether the checksum over the message is correct.
func (m ICMPv4) ChecksumValid() bool { return Sum(m.b, 0) == 0xffff }

// ICMPv6 is a view of a parsed ICMPv6 message. It aliases the parsed buffer.
type ICMPv6 struct {
	b []byte
}

// ParseICMPv6 parses the ICMPv6 message that fills b (pass the upper-layer
// bytes). It checks only that the 8-byte header is present (every RFC 4443
// message has the 4-byte field after the checksum); the checksum is not
// verified (see [ICMPv6.ChecksumValid]).
func ParseICMPv6(b []byte) (ICMPv6, error) {
	if len(b) < ICMPHeaderLen {
		return ICMPv6{}, errICMPv6Short
	}
	return ICMPv6{b: b}, nil
}

// Bytes returns the message.
func (m ICMPv6) Bytes() []byte { return m.b }

// Type returns the type.
func (m ICMPv6) Type() uint8 { return m.b[0] }

// Code returns the code.
func (m ICMPv6) Code() uint8 { return m.b[1] }

// Checksum returns the checksum field.
func (m ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(m.b[2:4]) }

// Rest returns the 4-byte field after the checksum (MTU, pointer, or
// identifier and sequence for echo).
func (m ICMPv6) Rest() uint32 { return binary.BigEndian.Uint32(m.b[4:8]) }

// Body returns the bytes after the 8-byte header.
func (m ICMPv6) Body() []byte { return m.b[ICMPHeaderLen:] }

// IsError reports whether the type is an error message (below 128).
func (m ICMPv6) IsError() bool { return m.b[0] < 128 }

// ChecksumValid reports whether the checksum is correct given the
// pseudo-header sum (see [PseudoHeaderSum] with ProtoICMPv6).
func (m ICMPv6) ChecksumValid(pseudo uint32) bool { return Sum(m.b, pseudo) == 0xffff }

// ICMPHeader describes an ICMPv4 or ICMPv6 header for [AppendICMPv4] and
// [AppendICMPv6].
type ICMPHeader struct {
	Type, Code uint8
	Rest       uint32 // the 4 bytes after the checksum
}

// AppendICMPv4 appends the 8-byte header h with a zero checksum and returns
// the extended slice. Append the body, then call [PutChecksum] with offset
// 2 and pseudo-header sum 0.
func AppendICMPv4(b []byte, h *ICMPHeader) []byte {
	b = append(b, h.Type, h.Code, 0, 0)
	return binary.BigEndian.AppendUint32(b, h.Rest)
}

// AppendICMPv6 appends the 8-byte header h with a zero checksum and returns
// the extended slice. Append the body, then call [PutChecksum] with offset
// 2 and the pseudo-header sum for ProtoICMPv6.
func AppendICMPv6(b []byte, h *ICMPHeader) []byte { return AppendICMPv4(b, h) }

var (
	errICMPv4ErrSrc    = newErr(LayerICMPv4, "router address", ErrBadAddress)
	errICMPv4ErrBuf    = newErr(LayerICMPv4, "destination buffer", ErrBufferTooSmall)
	errICMPv4NoFrag    = newErr(LayerICMPv4, "offending packet is a non-first fragment", ErrNoReply)
	errICMPv4NoSrc     = newErr(LayerICMPv4, "offending source is not a unicast host", ErrNoReply)
	errICMPv4NoDst     = newErr(LayerICMPv4, "offending destination is multicast or broadcast", ErrNoReply)
	errICMPv4NoICMPErr = newErr(LayerICMPv4, "offending packet is an ICMP error", ErrNoReply)
	errICMPv6ErrSrc    = newErr(LayerICMPv6, "router address", ErrBadAddress)
	errICMPv6ErrBuf    = newErr(LayerICMPv6, "destination buffer", ErrBufferTooSmall)
	errICMPv6NoFrag    = newErr(LayerICMPv6, "offending packet is a non-first fragment", ErrNoReply)
	errICMPv6NoSrc     = newErr(LayerICMPv6, "offending source is unspecified or multicast", ErrNoReply)
	errICMPv6NoDst     = newErr(LayerICMPv6, "offending destination is multicast", ErrNoReply)
	errICMPv6NoICMPErr = newErr(LayerICMPv6, "offending packet is an ICMPv6 error or redirect", ErrNoReply)
)

// PutICMPv4Error writes into dst an IPv4 packet from the router address src
// to the source of orig carrying an ICMPv4 error (typ, code, rest: e.g.
// [ICMPv4TimeExceeded] code 0 rest 0, or [ICMPv4DestUnreachable]
// [ICMPv4CodeFragNeeded] rest = next-hop MTU) that quotes the offending
// IPv4 packet orig: as much of it as fits in ICMPv4ErrorMaxLen (RFC 1812
// section 4.3.2.3), and at least its header and 8 bytes (RFC 792). The
// reply has TOS 0xc0 (internetwork control), DF, TTL 64 and valid
// checksums. It returns the length written. dst must not overlap orig.
//
// It returns the parse error if orig is not a valid IPv4 packet, an error
// wrapping ErrNoReply — writing nothing — if RFC 1812 section 4.3.2.7
// forbids a reply (orig is an ICMP error or an ICMP message too short to
// tell, a non-first fragment, from a source that is not a unicast host, or
// to a multicast or limited-broadcast destination), ErrBadAddress if src
// is not IPv4, and ErrBufferTooSmall if dst cannot hold the header and
// 8 bytes of orig's payload.
func PutICMPv4Error(dst []byte, src netip.Addr, typ, code uint8, rest uint32, orig []byte) (int, error) {
	if !src.Is4() {
		return 0, errICMPv4ErrSrc
	}
	ip, err := ParseIPv4(orig)
	if err != nil {
		return 0, err
	}
	if ip.IsNonFirstFragment() {
		return 0, errICMPv4NoFrag
	}
	if s := ip.b[12]; s == 0 || s == 127 || s >= 224 {
		return 0, errICMPv4NoSrc // this network, loopback, multicast, class E, broadcast
	}
	if d := ip.b[16]; d >= 224 && d < 240 || binary.BigEndian.Uint32(ip.b[16:20]) == 0xffffffff {
		return 0, errICMPv4NoDst
	}
	if ip.Protocol() == ProtoICMPv4 {
		if p := ip.Payload(); len(p) == 0 || icmpv4IsError(p[0]) {
			return 0, errICMPv4NoICMPErr
		}
	}
	q := min(len(ip.b), ICMPv4ErrorMaxLen-IPv4MinHeaderLen-ICMPHeaderLen, len(dst)-IPv4MinHeaderLen-ICMPHeaderLen)
	if q < min(len(ip.b), ip.HeaderLen()+8) {
		return 0, errICMPv4ErrBuf
	}
	n := IPv4MinHeaderLen + ICMPHeaderLen + q
	h := dst[:IPv4MinHeaderLen]
	h[0], h[1] = 0x45, 0xc0
	binary.BigEndian.PutUint16(h[2:], uint16(n))
	h[4], h[5], h[6], h[7] = 0, 0, 0x40, 0
	h[8], h[9], h[10], h[11] = 64, ProtoICMPv4, 0, 0
	a := src.As4()
	copy(h[12:16], a[:])
	copy(h[16:20], ip.b[12:16])
	binary.BigEndian.PutUint16(h[10:], Checksum(h, 0))
	m := dst[IPv4MinHeaderLen:n]
	m[0], m[1], m[2], m[3] = typ, code, 0, 0
	binary.BigEndian.PutUint32(m[4:], rest)
	copy(m[ICMPHeaderLen:], ip.b[:q])
	binary.BigEndian.PutUint16(m[2:], Checksum(m, 0))
	return n, nil
}

// PutICMPv6Error writes into dst an IPv6 packet from the router address src
// to the source of orig carrying an ICMPv6 error (typ, code, rest: e.g.
// [ICMPv6TimeExceeded] code 0, [ICMPv6DestUnreachable], or
// [ICMPv6PacketTooBig] with rest = MTU) that quotes as much of the offending
// IPv6 packet orig as fits in ICMPv6ErrorMaxLen (RFC 4443 section 2.4 (c))
// and in dst. The reply has hop limit 64 and a valid checksum. It returns
// the length written. dst must not overlap orig.
//
// It returns the parse error if orig is not a valid IPv6 packet, an error
// wrapping ErrNoReply — writing nothing — if RFC 4443 section 2.4 (e)
// forbids a reply (orig is an ICMPv6 error, a redirect or an ICMPv6 message
// too short to tell, a non-first fragment, from the unspecified or a
// multicast source, or to a multicast destination unless typ is
// [ICMPv6PacketTooBig] or [ICMPv6ParamProblem] code 2), ErrBadAddress if
// src is not IPv6, and ErrBufferTooSmall if dst cannot hold the headers and
// 48 bytes of orig.
func PutICMPv6Error(dst []byte, src netip.Addr, typ, code uint8, rest uint32, orig []byte) (int, error) {
	if !src.Is6() {
		return 0, errICMPv6ErrSrc
	}
	ip, err := ParseIPv6(orig)
	if err != nil {
		return 0, err
	}
	if ip.IsNonFirstFragment() {
		return 0, errICMPv6NoFrag
	}
	if s := ip.Src(); s.IsUnspecified() || s.IsMulticast() {
		return 0, errICMPv6NoSrc
	}
	if ip.b[24] == 0xff && typ != ICMPv6PacketTooBig && !(typ == ICMPv6ParamProblem && code == ICMPv6CodeUnrecognizedOpt) {
		return 0, errICMPv6NoDst
	}
	if ip.Protocol() == ProtoICMPv6 {
		if t := ip.Transport(); len(t) == 0 || t[0] < 128 || t[0] == ICMPv6Redirect {
			return 0, errICMPv6NoICMPErr
		}
	}
	const hdrs = IPv6HeaderLen + ICMPHeaderLen
	q := min(len(ip.b), ICMPv6ErrorMaxLen-hdrs, len(dst)-hdrs)
	if q < min(len(ip.b), hdrs) {
		return 0, errICMPv6ErrBuf
	}
	n := hdrs + q
	h := dst[:IPv6HeaderLen]
	binary.BigEndian.PutUint32(h[0:4], 6<<28)
	binary.BigEndian.PutUint16(h[4:6], uint16(ICMPHeaderLen+q))
	h[6], h[7] = ProtoICMPv6, 64
	a := src.As16()
	copy(h[8:24], a[:])
	copy(h[24:40], ip.b[8:24])
	m := dst[IPv6HeaderLen:n]
	m[0], m[1], m[2], m[3] = typ, code, 0, 0
	binary.BigEndian.PutUint32(m[4:], rest)
	copy(m[ICMPHeaderLen:], ip.b[:q])
	pseudo := PseudoHeaderSum(src, ip.Src(), ProtoICMPv6, uint32(ICMPHeaderLen+q))
	binary.BigEndian.PutUint16(m[2:], Checksum(m, pseudo))
	return n, nil
}
