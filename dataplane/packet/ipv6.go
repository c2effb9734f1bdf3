package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 header constants.
const (
	IPv6HeaderLen = 40
	// MaxIPv6ExtensionHeaders bounds the extension headers ParseIPv6
	// walks; a longer chain is ErrExtensionChainTooLong.
	MaxIPv6ExtensionHeaders = 8
)

var (
	errIPv6Short       = newErr(LayerIPv6, "header", ErrTruncated)
	errIPv6Version     = newErr(LayerIPv6, "version", ErrBadVersion)
	errIPv6Jumbo       = newErr(LayerIPv6, "payload length", ErrLengthMismatch)
	errIPv6PayShort    = newErr(LayerIPv6, "payload length", ErrTruncated)
	errIPv6ExtShort    = newErr(LayerIPv6, "extension header", ErrTruncated)
	errIPv6ExtChain    = newErr(LayerIPv6, "extension header", ErrExtensionChainTooLong)
	errIPv6ExtHopByHop = newErr(LayerIPv6, "hop-by-hop header", ErrBadExtensionOrder)
)

// IPv6 is a view of a parsed IPv6 packet cut to 40 + payload length bytes,
// with its extension-header chain walked. It aliases the parsed buffer.
type IPv6 struct {
	b []byte // header and payload
	// meta packs what the walk found, so that the view is returned in
	// registers: bits 0-15 the offset of the upper-layer header (or of
	// ESP / no-next), 16-31 the offset of the fragment header (0 if none),
	// 32-47 the offset of the first routing header (0 if none), 48-55 the
	// upper-layer protocol, 56-63 the number of extension headers walked.
	meta uint64
}

func (ip IPv6) tOff() int    { return int(uint16(ip.meta)) }
func (ip IPv6) fragOff() int { return int(uint16(ip.meta >> 16)) }
func (ip IPv6) rtOff() int   { return int(uint16(ip.meta >> 32)) }

func ipv6Meta(tOff, fragOff, rtOff int, proto uint8, nExt int) uint64 {
	return uint64(tOff) | uint64(fragOff)<<16 | uint64(rtOff)<<32 | uint64(proto)<<48 | uint64(nExt)<<56
}

// ParseIPv6 parses the IPv6 packet at the start of b. It checks the version
// and that 40 + payload length <= len(b) (a payload length of 0 with a
// hop-by-hop header, a jumbogram, is ErrLengthMismatch: jumbograms are not
// supported; with another next header it is an empty payload), then walks
// the extension headers — hop-by-hop (first only), routing, fragment,
// destination options, authentication (AH) and the mobility, HIP and shim6
// headers — up to MaxIPv6ExtensionHeaders, stopping at the first other next
// header value (the upper-layer protocol, ESP or no-next-header) or after a
// fragment header with a non-zero offset. Each walked header must fit in the
// payload. Option contents are not interpreted.
func ParseIPv6(b []byte) (IPv6, error) {
	// Fast path, small enough to inline: no extension header.
	if len(b) >= IPv6HeaderLen && b[0]>>4 == 6 && ipv6ExtHeaders[b[6]>>6]&(1<<(b[6]&63)) == 0 {
		if n := IPv6HeaderLen + int(binary.BigEndian.Uint16(b[4:6])); n <= len(b) {
			return IPv6{b: b[:n:n], meta: IPv6HeaderLen | uint64(b[6])<<48}, nil
		}
	}
	return parseIPv6(b)
}

// ipv6ExtHeaders is the set of next-header values ParseIPv6 walks.
var ipv6ExtHeaders = func() (set [4]uint64) {
	for _, nh := range []uint8{ProtoHopByHop, ProtoRouting, ProtoFragment, ProtoDestOpts, ProtoAH, 135, 139, 140} {
		set[nh>>6] |= 1 << (nh & 63)
	}
	return set
}()

// parseIPv6 is ParseIPv6 for every case.
func parseIPv6(b []byte) (IPv6, error) {
	if len(b) < IPv6HeaderLen {
		return IPv6{}, errIPv6Short
	}
	if b[0]>>4 != 6 {
		return IPv6{}, errIPv6Version
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	if plen == 0 && b[6] == ProtoHopByHop {
		return IPv6{}, errIPv6Jumbo
	}
	if IPv6HeaderLen+plen > len(b) {
		return IPv6{}, errIPv6PayShort
	}
	b = b[: IPv6HeaderLen+plen : IPv6HeaderLen+plen]
	nh := b[6]
	off := IPv6HeaderLen
	var fragOff, rtOff, nExt int
	for {
		var hlen int
		switch nh {
		case ProtoHopByHop, ProtoRouting, ProtoDestOpts, 135, 139, 140:
			if nh == ProtoHopByHop && off != IPv6HeaderLen {
				return IPv6{}, errIPv6ExtHopByHop
			}
			if off+2 > len(b) {
				return IPv6{}, errIPv6ExtShort
			}
			hlen = (int(b[off+1]) + 1) * 8
		case ProtoAH:
			if off+2 > len(b) {
				return IPv6{}, errIPv6ExtShort
			}
			hlen = (int(b[off+1]) + 2) * 4
		case ProtoFragment:
			hlen = 8
		default:
			return IPv6{b: b, meta: ipv6Meta(off, fragOff, rtOff, nh, nExt)}, nil
		}
		if nExt == MaxIPv6ExtensionHeaders {
			return IPv6{}, errIPv6ExtChain
		}
		if off+hlen > len(b) {
			return IPv6{}, errIPv6ExtShort
		}
		nExt++
		next := b[off]
		if nh == ProtoRouting && rtOff == 0 {
			rtOff = off
		}
		if nh == ProtoFragment {
			fragOff = off
			if binary.BigEndian.Uint16(b[off+2:off+4])&^7 != 0 {
				// A non-first fragment: what follows is not a header.
				return IPv6{b: b, meta: ipv6Meta(off+hlen, fragOff, rtOff, next, nExt)}, nil
			}
		}
		off += hlen
		nh = next
	}
}

// Bytes returns the packet, header and payload, cut to 40 + payload length.
func (ip IPv6) Bytes() []byte { return ip.b }

// Header returns the fixed 40-byte header.
func (ip IPv6) Header() []byte { return ip.b[:IPv6HeaderLen] }

// Payload returns the bytes after the fixed header, extension headers
// included.
func (ip IPv6) Payload() []byte { return ip.b[IPv6HeaderLen:] }

// TrafficClass returns the traffic class.
func (ip IPv6) TrafficClass() uint8 { return uint8(binary.BigEndian.Uint16(ip.b[0:2]) >> 4) }

// FlowLabel returns the 20-bit flow label.
func (ip IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(ip.b[0:4]) & 0xfffff }

// PayloadLen returns the payload length field.
func (ip IPv6) PayloadLen() int { return len(ip.b) - IPv6HeaderLen }

// NextHeader returns the next header field of the fixed header.
func (ip IPv6) NextHeader() uint8 { return ip.b[6] }

// HopLimit returns the hop limit.
func (ip IPv6) HopLimit() uint8 { return ip.b[7] }

// Src returns the source address.
func (ip IPv6) Src() netip.Addr { return netip.AddrFrom16([16]byte(ip.b[8:24])) }

// Dst returns the destination address.
func (ip IPv6) Dst() netip.Addr { return netip.AddrFrom16([16]byte(ip.b[24:40])) }

// ExtensionHeaders returns how many extension headers were walked.
func (ip IPv6) ExtensionHeaders() int { return int(ip.meta >> 56) }

// Protocol returns the next header value that ended the walk: the
// upper-layer protocol, ProtoESP, ProtoNoNext, or for a non-first fragment
// the fragment header's next header.
func (ip IPv6) Protocol() uint8 { return uint8(ip.meta >> 48) }

// TransportOffset returns the offset in Bytes where the walk stopped.
func (ip IPv6) TransportOffset() int { return ip.tOff() }

// Transport returns the upper-layer header and payload, or nil for a
// non-first fragment.
func (ip IPv6) Transport() []byte {
	if ip.IsNonFirstFragment() {
		return nil
	}
	return ip.b[ip.tOff():]
}

// IsFragment reports whether the packet has a fragment header.
func (ip IPv6) IsFragment() bool { return ip.fragOff() != 0 }

// IsNonFirstFragment reports whether the packet has a fragment header with a
// non-zero offset.
func (ip IPv6) IsNonFirstFragment() bool { return ip.FragmentOffset() != 0 }

// FragmentOffset returns the fragment offset in 8-byte units (0 without a
// fragment header).
func (ip IPv6) FragmentOffset() uint16 {
	if ip.fragOff() == 0 {
		return 0
	}
	return binary.BigEndian.Uint16(ip.b[ip.fragOff()+2:]) >> 3
}

// MoreFragments reports whether the fragment header has the M flag.
func (ip IPv6) MoreFragments() bool {
	return ip.fragOff() != 0 && ip.b[ip.fragOff()+3]&1 != 0
}

// FragmentID returns the fragment header's identification (0 without one).
func (ip IPv6) FragmentID() uint32 {
	if ip.fragOff() == 0 {
		return 0
	}
	return binary.BigEndian.Uint32(ip.b[ip.fragOff()+4:])
}

// DecrementHopLimit lowers the hop limit by one. IPv6 has no header
// checksum. It returns false, leaving the packet unchanged, when the hop
// limit is 0 or 1: the packet must not be forwarded and the router answers
// with [ICMPv6TimeExceeded].
func (ip IPv6) DecrementHopLimit() bool {
	if ip.b[7] <= 1 {
		return false
	}
	ip.b[7]--
	return true
}

// SetSrc rewrites the source address and fixes, incrementally, the TCP,
// UDP or ICMPv6 checksum covering the pseudo-header when the upper-layer
// header is present. a must be an IPv6 address (not IPv4).
func (ip IPv6) SetSrc(a netip.Addr) { ip.setAddr(8, a, true) }

// SetDst is [IPv6.SetSrc] for the destination address. With a routing
// header whose segments-left field is not zero the pseudo-header holds the
// final destination, not this field (RFC 8200 section 8.1), so SetDst then
// leaves the transport checksum alone.
func (ip IPv6) SetDst(a netip.Addr) {
	ip.setAddr(24, a, ip.rtOff() == 0 || ip.b[ip.rtOff()+3] == 0)
}

func (ip IPv6) setAddr(off int, a netip.Addr, fixL4 bool) {
	old := netip.AddrFrom16([16]byte(ip.b[off : off+16]))
	n := a.As16()
	copy(ip.b[off:off+16], n[:])
	if fixL4 {
		fixTransportAddr(ip.Protocol(), ip.Transport(), old, netip.AddrFrom16(n))
	}
}

// IPv6Header describes an IPv6 header for [AppendIPv6].
type IPv6Header struct {
	TrafficClass uint8
	FlowLabel    uint32 // 20 bits
	NextHeader   uint8
	HopLimit     uint8
	Src, Dst     netip.Addr // IPv6 (an IPv4-mapped address is written as such)
}

var (
	errIPv6BuildAddr = newErr(LayerIPv6, "address", ErrBadAddress)
	errIPv6BuildLen  = newErr(LayerIPv6, "payload length", ErrLengthMismatch)
)

// AppendIPv6 appends the fixed header h for payloadLen bytes of payload
// (extension headers included) and returns the extended slice. It fails,
// returning b unchanged, if an address is not IPv6 or payloadLen is not in
// 0..65535.
func AppendIPv6(b []byte, h *IPv6Header, payloadLen int) ([]byte, error) {
	if !h.Src.Is6() || !h.Dst.Is6() {
		return b, errIPv6BuildAddr
	}
	if payloadLen < 0 || payloadLen > 0xffff {
		return b, errIPv6BuildLen
	}
	w := uint32(6)<<28 | uint32(h.TrafficClass)<<20 | h.FlowLabel&0xfffff
	src, dst := h.Src.As16(), h.Dst.As16()
	b = binary.BigEndian.AppendUint32(b, w)
	b = append(b, byte(payloadLen>>8), byte(payloadLen), h.NextHeader, h.HopLimit)
	b = append(b, src[:]...)
	return append(b, dst[:]...), nil
}
