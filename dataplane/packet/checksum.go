package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Sum returns the 16-bit one's-complement sum of b (RFC 1071), added to
// initial and folded to 16 bits, without the final complement. initial is a
// partial sum such as [PseudoHeaderSum] or an earlier Sum over a preceding
// even-length chunk; any uint32 is accepted. An odd trailing byte is padded
// with a zero byte, as RFC 1071 prescribes.
func Sum(b []byte, initial uint32) uint32 {
	s := sumLE(b)
	// sumLE summed little-endian lanes; swapping the bytes of the folded
	// lane sum gives the big-endian (network order) sum.
	s16 := bits.ReverseBytes16(uint16(fold64(s)))
	return fold32(uint64(s16) + uint64(initial))
}

// Checksum returns the Internet checksum of b: the complement of
// Sum(b, initial). Written into a header whose checksum field was zero when
// b was summed, it makes the header sum to 0xffff.
func Checksum(b []byte, initial uint32) uint16 {
	return ^uint16(Sum(b, initial))
}

// sumLE returns an unfolded one's-complement sum of b read as little-endian
// 64-bit words; the 16-bit lanes of the result hold byte-swapped sums.
func sumLE(b []byte) uint64 {
	var s, c uint64
	for len(b) >= 64 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:8]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:16]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:24]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:32]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[32:40]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[40:48]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[48:56]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[56:64]), c)
		b = b[64:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		s, c = bits.Add64(s, uint64(binary.LittleEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		s, c = bits.Add64(s, uint64(binary.LittleEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		// The odd byte sits at an even offset: the low byte of a
		// little-endian lane, i.e. the high byte in network order.
		s, c = bits.Add64(s, uint64(b[0]), c)
	}
	s, c = bits.Add64(s, 0, c)
	return s + c
}

// fold64 folds a 64-bit one's-complement sum to 16 bits.
func fold64(s uint64) uint32 {
	s = (s >> 32) + (s & 0xffffffff) // at most 33 bits
	s = (s >> 32) + (s & 0xffffffff) // at most 32 bits, no carry left
	return fold32(s)
}

// fold32 folds a sum below 2^33 to 16 bits.
func fold32(s uint64) uint32 {
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint32(s)
}

// PseudoHeaderSum returns the folded sum of the TCP/UDP/ICMPv6
// pseudo-header (RFC 793 / RFC 768 for IPv4, RFC 8200 section 8.1 for
// IPv6): source and destination address, protocol and upper-layer length.
// src and dst must be of the same family; an IPv4-mapped IPv6 address counts
// as IPv6. Pass the result as initial to [Sum] or [Checksum].
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, length uint32) uint32 {
	var s uint64
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s = uint64(binary.BigEndian.Uint32(a[:])) + uint64(binary.BigEndian.Uint32(b[:]))
	} else {
		a, b := src.As16(), dst.As16()
		s = uint64(binary.BigEndian.Uint32(a[0:4])) + uint64(binary.BigEndian.Uint32(a[4:8])) +
			uint64(binary.BigEndian.Uint32(a[8:12])) + uint64(binary.BigEndian.Uint32(a[12:16])) +
			uint64(binary.BigEndian.Uint32(b[0:4])) + uint64(binary.BigEndian.Uint32(b[4:8])) +
			uint64(binary.BigEndian.Uint32(b[8:12])) + uint64(binary.BigEndian.Uint32(b[12:16]))
	}
	s += uint64(proto) + uint64(length>>16) + uint64(length&0xffff)
	return fold64(s)
}

// UpdateChecksum16 returns checksum csum after a 16-bit word of the covered
// data changed from old to new (RFC 1624 equation 3). The word must sit at
// an even offset of the checksummed data.
func UpdateChecksum16(csum, old, new uint16) uint16 {
	s := uint64(^csum) + uint64(^old) + uint64(new)
	return ^uint16(fold32(s))
}

// UpdateChecksum32 is [UpdateChecksum16] for a 32-bit word at an even
// offset.
func UpdateChecksum32(csum uint16, old, new uint32) uint16 {
	s := uint64(^csum) + uint64(^old>>16) + uint64(^old&0xffff) + uint64(new>>16) + uint64(new&0xffff)
	return ^uint16(fold32(s))
}

// UpdateChecksumAddr is [UpdateChecksum16] for an address at an even offset
// that changed from old to new. old and new must be of the same family (4
// or 16 bytes); IPv4-mapped addresses count as IPv6.
func UpdateChecksumAddr(csum uint16, old, new netip.Addr) uint16 {
	if old.Is4() {
		a, b := old.As4(), new.As4()
		return UpdateChecksum32(csum, binary.BigEndian.Uint32(a[:]), binary.BigEndian.Uint32(b[:]))
	}
	a, b := old.As16(), new.As16()
	s := uint64(^csum)
	for i := 0; i < 16; i += 4 {
		o, n := binary.BigEndian.Uint32(a[i:]), binary.BigEndian.Uint32(b[i:])
		s += uint64(^o>>16) + uint64(^o&0xffff) + uint64(n>>16) + uint64(n&0xffff)
	}
	return ^uint16(fold32(s))
}
