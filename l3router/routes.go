package l3router

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

// route is a prefix and the peer that owns it.
type route struct {
	prefix netip.Prefix // masked
	owner  *peer
}

// routeTable is the control-plane list of routes. It is not safe for
// concurrent use (the Router guards it with its mutex); the data path uses
// the immutable fib compiled from it.
type routeTable struct {
	routes []route
}

// checkPrefix returns p masked, or an error if it is invalid or IPv4-mapped.
func checkPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, fmt.Errorf("prefix %v: invalid: %w", p, ErrBadPrefix)
	}
	if p.Addr().Is4In6() {
		return p, fmt.Errorf("prefix %v: IPv4-mapped IPv6, write it as IPv4: %w", p, ErrBadPrefix)
	}
	if p.Addr().Zone() != "" {
		return p, fmt.Errorf("prefix %v: has a zone: %w", p, ErrBadPrefix)
	}
	if m := p.Masked(); m != p {
		return p, fmt.Errorf("prefix %v: host bits set, did you mean %v: %w", p, m, ErrBadPrefix)
	}
	return p, nil
}

// add adds prefix for owner. Adding a route the owner already has is a
// no-op; a prefix that overlaps (contains, is contained in, or equals) a
// route of another peer is refused with ErrOverlap, because the ownership of
// the addresses in the overlap would depend on prefix lengths, which is
// almost always a configuration mistake (two connectors advertising the same
// LAN, or a client's virtual address inside a connector's subnet).
func (t *routeTable) add(prefix netip.Prefix, owner *peer) error {
	prefix, err := checkPrefix(prefix)
	if err != nil {
		return err
	}
	if owner.kind == KindClient && prefix.Bits() != prefix.Addr().BitLen() {
		return fmt.Errorf("client %q: route %v: a client owns single addresses (/32, /128): %w", owner.id, prefix, ErrBadPrefix)
	}
	for _, r := range t.routes {
		if !r.prefix.Overlaps(prefix) {
			continue
		}
		if r.owner == owner {
			if r.prefix == prefix {
				return nil
			}
			continue // nested routes of one peer are harmless
		}
		if r.prefix == prefix && r.owner.kind == KindConnector && owner.kind == KindConnector {
			// Failover hook: several connectors advertising the same
			// subnet is subnet failover (a later issue). It will keep
			// a list of owners per prefix here and let the fib pick
			// the live one; until then it is refused.
			return fmt.Errorf("route %v of %q: already advertised by connector %q (subnet failover is not supported yet): %w",
				prefix, owner.id, r.owner.id, ErrOverlap)
		}
		return fmt.Errorf("route %v of %q: overlaps %v of %q: %w", prefix, owner.id, r.prefix, r.owner.id, ErrOverlap)
	}
	t.routes = append(t.routes, route{prefix, owner})
	return nil
}

// removeOwner removes the routes of owner and returns how many it removed.
func (t *routeTable) removeOwner(owner *peer) int {
	n := len(t.routes)
	t.routes = slices.DeleteFunc(t.routes, func(r route) bool { return r.owner == owner })
	return n - len(t.routes)
}

// prefixes returns the prefixes of owner, sorted.
func (t *routeTable) prefixes(owner *peer) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range t.routes {
		if r.owner == owner {
			out = append(out, r.prefix)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// u128 is an IPv6 address or prefix as two big-endian halves.
type u128 struct{ hi, lo uint64 }

func u128From(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (u u128) mask(bits int) u128 {
	switch {
	case bits == 0:
		return u128{}
	case bits < 64:
		return u128{u.hi &^ (^uint64(0) >> bits), 0}
	case bits == 64:
		return u128{u.hi, 0}
	case bits < 128:
		return u128{u.hi, u.lo &^ (^uint64(0) >> (bits - 64))}
	}
	return u
}

func (u u128) cmp(v u128) int {
	switch {
	case u.hi < v.hi:
		return -1
	case u.hi > v.hi:
		return 1
	case u.lo < v.lo:
		return -1
	case u.lo > v.lo:
		return 1
	}
	return 0
}

// level4 holds the IPv4 routes of one prefix length, sorted by key.
type level4 struct {
	bits   int
	mask   uint32
	keys   []uint32
	owners []*peer
}

// level6 holds the IPv6 routes of one prefix length, sorted by key.
type level6 struct {
	bits   int
	keys   []u128
	owners []*peer
}

// fib is the immutable forwarding table: per address family, one sorted
// slice of masked prefixes per prefix length present, longest length first.
// A lookup masks the address to each length and binary-searches that level;
// the first hit is the longest match. With the few distinct lengths a real
// configuration has (/32 and /128 for clients, a handful of subnet lengths)
// that is a few binary searches over contiguous memory, and it allocates
// nothing.
type fib struct {
	v4 []level4
	v6 []level6
}

// compile builds the fib of the routes.
func (t *routeTable) compile() *fib {
	f := &fib{}
	for _, r := range t.routes {
		bits := r.prefix.Bits()
		if r.prefix.Addr().Is4() {
			i := slices.IndexFunc(f.v4, func(l level4) bool { return l.bits == bits })
			if i < 0 {
				f.v4 = append(f.v4, level4{bits: bits, mask: ^uint32(0) << (32 - bits)})
				if bits == 0 {
					f.v4[len(f.v4)-1].mask = 0
				}
				i = len(f.v4) - 1
			}
			a := r.prefix.Addr().As4()
			f.v4[i].keys = append(f.v4[i].keys, binary.BigEndian.Uint32(a[:]))
			f.v4[i].owners = append(f.v4[i].owners, r.owner)
		} else {
			i := slices.IndexFunc(f.v6, func(l level6) bool { return l.bits == bits })
			if i < 0 {
				f.v6 = append(f.v6, level6{bits: bits})
				i = len(f.v6) - 1
			}
			f.v6[i].keys = append(f.v6[i].keys, u128From(r.prefix.Addr()))
			f.v6[i].owners = append(f.v6[i].owners, r.owner)
		}
	}
	slices.SortFunc(f.v4, func(a, b level4) int { return b.bits - a.bits })
	slices.SortFunc(f.v6, func(a, b level6) int { return b.bits - a.bits })
	for i := range f.v4 {
		l := &f.v4[i]
		sortPaired(l.keys, l.owners, func(a, b uint32) int {
			if a < b {
				return -1
			}
			if a > b {
				return 1
			}
			return 0
		})
	}
	for i := range f.v6 {
		l := &f.v6[i]
		sortPaired(l.keys, l.owners, u128.cmp)
	}
	return f
}

// sortPaired sorts keys and permutes owners alike.
func sortPaired[K any](keys []K, owners []*peer, cmp func(a, b K) int) {
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp(keys[a], keys[b]) })
	k2 := make([]K, len(keys))
	o2 := make([]*peer, len(keys))
	for i, j := range idx {
		k2[i], o2[i] = keys[j], owners[j]
	}
	copy(keys, k2)
	copy(owners, o2)
}

// lookup4 returns the owner of the longest prefix containing the IPv4
// address a (big-endian), or nil.
func (f *fib) lookup4(a uint32) *peer {
	for i := range f.v4 {
		l := &f.v4[i]
		k := a & l.mask
		// Binary search by hand: slices.BinarySearch is as fast but
		// this keeps the loop free of closures.
		lo, hi := 0, len(l.keys)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if l.keys[m] < k {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if lo < len(l.keys) && l.keys[lo] == k {
			return l.owners[lo]
		}
	}
	return nil
}

// lookup6 returns the owner of the longest prefix containing the IPv6
// address a, or nil.
func (f *fib) lookup6(a u128) *peer {
	for i := range f.v6 {
		l := &f.v6[i]
		k := a.mask(l.bits)
		lo, hi := 0, len(l.keys)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if l.keys[m].cmp(k) < 0 {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if lo < len(l.keys) && l.keys[lo] == k {
			return l.owners[lo]
		}
	}
	return nil
}

// lookup returns the owner of the longest prefix containing a, or nil.
func (f *fib) lookup(a netip.Addr) *peer {
	if a.Is4() {
		b := a.As4()
		return f.lookup4(binary.BigEndian.Uint32(b[:]))
	}
	if a.Is6() && !a.Is4In6() {
		return f.lookup6(u128From(a))
	}
	return nil
}
