package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// FlowKey is the 5-tuple of a packet: addresses, protocol and ports. It is a
// comparable value usable as a map key. IPv4 addresses are stored
// IPv4-mapped (::ffff:a.b.c.d) with Family 4. Ports are zero for protocols
// other than TCP and UDP and for non-first fragments.
type FlowKey struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
	Family           uint8 // 4 or 6
}

var (
	errFlowVersion = newErr(LayerIPv4, "version", ErrBadVersion)
	errFlowEmpty   = newErr(LayerIPv4, "header", ErrTruncated)
)

// ParseFlowKey returns the flow key of the IP packet at the start of b,
// IPv4 or IPv6 by the version nibble. It returns the IP parse error, or
// the TCP or UDP parse error if the ports cannot be read from a packet that
// is not a non-first fragment.
func ParseFlowKey(b []byte) (k FlowKey, err error) {
	if len(b) == 0 {
		return k, errFlowEmpty
	}
	switch b[0] >> 4 {
	case 4:
		ip, err := ParseIPv4(b)
		if err != nil {
			return k, err
		}
		err = k.fromIPv4(ip)
		return k, err
	case 6:
		ip, err := ParseIPv6(b)
		if err != nil {
			return k, err
		}
		err = k.fromIPv6(ip)
		return k, err
	}
	return k, errFlowVersion
}

// FlowKeyIPv4 returns the flow key of a parsed IPv4 packet; see
// [ParseFlowKey].
func FlowKeyIPv4(ip IPv4) (k FlowKey, err error) {
	err = k.fromIPv4(ip)
	return k, err
}

// FlowKeyIPv6 returns the flow key of a parsed IPv6 packet; see
// [ParseFlowKey]. Proto is the upper-layer protocol after the extension
// headers.
func FlowKeyIPv6(ip IPv6) (k FlowKey, err error) {
	err = k.fromIPv6(ip)
	return k, err
}

func (k *FlowKey) fromIPv4(ip IPv4) error {
	k.Proto, k.Family = ip.Protocol(), 4
	binary.BigEndian.PutUint64(k.Src[4:12], 0xffff)
	binary.BigEndian.PutUint64(k.Dst[4:12], 0xffff)
	copy(k.Src[12:], ip.b[12:16])
	copy(k.Dst[12:], ip.b[16:20])
	return k.setPorts(ip.Transport(), ip.IsNonFirstFragment())
}

func (k *FlowKey) fromIPv6(ip IPv6) error {
	k.Proto, k.Family = ip.Protocol(), 6
	k.Src = [16]byte(ip.b[8:24])
	k.Dst = [16]byte(ip.b[24:40])
	return k.setPorts(ip.Transport(), ip.IsNonFirstFragment())
}

func (k *FlowKey) setPorts(t []byte, nonFirst bool) error {
	if nonFirst {
		return nil
	}
	switch k.Proto {
	case ProtoTCP:
		s, err := ParseTCP(t)
		if err != nil {
			return err
		}
		k.SrcPort, k.DstPort = s.SrcPort(), s.DstPort()
	case ProtoUDP:
		u, err := ParseUDP(t)
		if err != nil {
			return err
		}
		k.SrcPort, k.DstPort = u.SrcPort(), u.DstPort()
	}
	return nil
}

// SrcAddr returns the source address (IPv4 for Family 4).
func (k FlowKey) SrcAddr() netip.Addr { return k.addr(&k.Src) }

// DstAddr returns the destination address (IPv4 for Family 4).
func (k FlowKey) DstAddr() netip.Addr { return k.addr(&k.Dst) }

func (k FlowKey) addr(a *[16]byte) netip.Addr {
	if k.Family == 4 {
		return netip.AddrFrom4([4]byte(a[12:]))
	}
	return netip.AddrFrom16(*a)
}

// Reverse returns the key of the opposite direction.
func (k FlowKey) Reverse() FlowKey {
	k.Src, k.Dst = k.Dst, k.Src
	k.SrcPort, k.DstPort = k.DstPort, k.SrcPort
	return k
}

// Hash constants: odd 64-bit constants from wyhash.
const (
	hashK0 = 0xa0761d6478bd642f
	hashK1 = 0xe7037ed1a0b428db
	hashK2 = 0x8ebc6af09c88c6e3
	hashK3 = 0x589965cc75374cc3
)

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// Hash returns a keyed 64-bit hash of k: a fast multiply-fold mix (in the
// manner of wyhash), not a cryptographic MAC. Different seeds give
// independent-looking hashes; pick a random seed per process to resist
// chosen collisions cheaply.
func (k FlowKey) Hash(seed uint64) uint64 {
	return hashWords(
		binary.LittleEndian.Uint64(k.Src[0:8]), binary.LittleEndian.Uint64(k.Src[8:16]),
		binary.LittleEndian.Uint64(k.Dst[0:8]), binary.LittleEndian.Uint64(k.Dst[8:16]),
		uint64(k.SrcPort)<<16|uint64(k.DstPort), seed^uint64(k.Proto)<<8^uint64(k.Family))
}

func hashWords(s0, s1, d0, d1, ports, seed uint64) uint64 {
	h := mum(s0^hashK0, s1^seed^hashK1)
	h = mum(h^d0^hashK2, d1^hashK1)
	h = mum(h^ports^hashK3, seed^hashK0)
	return mum(h^hashK1, h^hashK2)
}

// SymmetricHash is [FlowKey.Hash] of whichever of k and k.Reverse() has the
// smaller (address, port) source endpoint, so both directions of a flow
// hash alike.
func (k FlowKey) SymmetricHash(seed uint64) uint64 {
	s0, s1 := binary.LittleEndian.Uint64(k.Src[0:8]), binary.LittleEndian.Uint64(k.Src[8:16])
	d0, d1 := binary.LittleEndian.Uint64(k.Dst[0:8]), binary.LittleEndian.Uint64(k.Dst[8:16])
	sp, dp := k.SrcPort, k.DstPort
	// Order endpoints by (address, port) in network byte order.
	bs0, bd0 := bits.ReverseBytes64(s0), bits.ReverseBytes64(d0)
	bs1, bd1 := bits.ReverseBytes64(s1), bits.ReverseBytes64(d1)
	if bs0 > bd0 || bs0 == bd0 && (bs1 > bd1 || bs1 == bd1 && sp > dp) {
		s0, s1, d0, d1, sp, dp = d0, d1, s0, s1, dp, sp
	}
	return hashWords(s0, s1, d0, d1, uint64(sp)<<16|uint64(dp), seed^uint64(k.Proto)<<8^uint64(k.Family))
}
