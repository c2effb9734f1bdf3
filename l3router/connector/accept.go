package connector

import (
	"encoding/binary"
	"net/netip"
)

// What the connector forwards from the edge. The WireGuard device checks a
// packet's source (the edge peer's allowed IPs, the routes); the TUN then
// hands the packet to the host's routing table, which would forward it
// anywhere the host reaches: the host itself, its other networks, the
// internet. So the connector writes to the TUN only packets whose
// destination is
//
//   - in its subnets: the LAN it advertises, or
//   - one of its own addresses: the host as a member of the network (the
//     answers to what it sends from its virtual address, ICMP errors
//     about those, and what clients send it; the edge's ACL decides who
//     may).
//
// Everything else is dropped and counted (Stats.DroppedDestination). That
// includes destinations in the routes (the client pools, other sites):
// the edge routes those itself, and one coming back from it would only
// loop into the tunnel again. ICMP errors from the edge router about a
// LAN host's packet go to that host, in the subnets.

// acceptSet is the set of destinations the connector accepts from the
// edge: a few prefixes as masked integers, checked in a loop without
// allocating (subnets are few; a connector advertising hundreds would
// want a trie).
type acceptSet struct {
	v4 []prefix4
	v6 []prefix6
}

type prefix4 struct{ addr, mask uint32 }

type prefix6 struct{ hi, lo, mhi, mlo uint64 }

// newAcceptSet returns the set of the prefixes of every list.
func newAcceptSet(lists ...[]netip.Prefix) *acceptSet {
	s := &acceptSet{}
	for _, ps := range lists {
		for _, p := range ps {
			p = p.Masked()
			if p.Addr().Is4() {
				a := p.Addr().As4()
				mask := ^uint32(0)
				if p.Bits() < 32 {
					mask = ^(^uint32(0) >> p.Bits())
				}
				s.v4 = append(s.v4, prefix4{addr: binary.BigEndian.Uint32(a[:]), mask: mask})
				continue
			}
			a := p.Addr().As16()
			hiBits, loBits := min(p.Bits(), 64), max(p.Bits()-64, 0)
			s.v6 = append(s.v6, prefix6{
				hi: binary.BigEndian.Uint64(a[:8]), lo: binary.BigEndian.Uint64(a[8:]),
				mhi: maskBits(hiBits), mlo: maskBits(loBits),
			})
		}
	}
	return s
}

// maskBits is a 64-bit mask of the n leading bits.
func maskBits(n int) uint64 {
	if n == 0 {
		return 0
	}
	return ^(^uint64(0) >> n)
}

// accepts reports whether the destination of the IP packet pkt is in the
// set. A packet too short for its header's destination is not.
func (s *acceptSet) accepts(pkt []byte) bool {
	if len(pkt) == 0 {
		return false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return false
		}
		d := binary.BigEndian.Uint32(pkt[16:20])
		for _, p := range s.v4 {
			if d&p.mask == p.addr {
				return true
			}
		}
	case 6:
		if len(pkt) < 40 {
			return false
		}
		hi, lo := binary.BigEndian.Uint64(pkt[24:32]), binary.BigEndian.Uint64(pkt[32:40])
		for _, p := range s.v6 {
			if hi&p.mhi == p.hi && lo&p.mlo == p.lo {
				return true
			}
		}
	}
	return false
}
