package l3router

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

// route is a prefix and a peer that owns it.
type route struct {
	prefix netip.Prefix // masked
	owner  *peer
}

// routeTable is the control-plane list of routes. It is not safe for
// concurrent use (the Router guards it with its mutex); the data path uses
// the immutable fib compiled from it.
//
// Connectors may share a prefix (subnet failover): the prefix then has a
// route per owner, in the order they were added, and active names the one
// the fib sends to (the first owner if active names none of them).
type routeTable struct {
	routes []route
	active map[netip.Prefix]PeerID
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
// almost always a configuration mistake (a connector's subnet inside
// another's, or a client's virtual address inside a connector's subnet).
// The one exception is subnet failover: a connector may add exactly the
// prefix another connector has; it joins the prefix's owners as a standby
// (the active owner stays as it is).
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
			continue // a failover partner: the same subnet, another connector
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
	// standby holds, by key, the other owners of a shared prefix (subnet
	// failover; nil for a prefix of one owner); nil if the level has no
	// shared prefix.
	standby [][]*peer
}

// level6 holds the IPv6 routes of one prefix length, sorted by key.
type level6 struct {
	bits    int
	keys    []u128
	owners  []*peer
	standby [][]*peer // as level4's
}

// fib is the immutable forwarding table: per address family, one sorted
// slice of masked prefixes per prefix length present, longest length first.
// A lookup masks the address to each length and binary-searches that level;
// the first hit is the longest match. With the few distinct lengths a real
// configuration has (/32 and /128 for clients, a handful of subnet lengths)
// that is a few binary searches over contiguous memory, and it allocates
// nothing.
//
// A prefix several connectors share (subnet failover) has one entry: its
// active owner, the destination of packets to it, and its standby owners,
// who may still send from it (standby4, standby6).
type fib struct {
	v4 []level4
	v6 []level6
}

// fibEntry is a prefix with its owners, while the fib is compiled.
type fibEntry struct {
	prefix  netip.Prefix
	owner   *peer
	standby []*peer
}

// entries groups the routes by prefix: one entry per prefix, in the order
// of the prefixes' first routes, its owner the active one. It drops the
// active choices that name no owner of their prefix any more.
func (t *routeTable) entries() []fibEntry {
	var out []fibEntry
	at := make(map[netip.Prefix]int, len(t.routes))
	for _, r := range t.routes {
		i, ok := at[r.prefix]
		if !ok {
			at[r.prefix] = len(out)
			out = append(out, fibEntry{prefix: r.prefix, owner: r.owner})
			continue
		}
		out[i].standby = append(out[i].standby, r.owner)
	}
	for pf, id := range t.active {
		i, ok := at[pf]
		if !ok {
			delete(t.active, pf)
			continue
		}
		e := &out[i]
		if e.owner.id == id {
			continue
		}
		j := slices.IndexFunc(e.standby, func(p *peer) bool { return p.id == id })
		if j < 0 {
			delete(t.active, pf)
			continue
		}
		// The active one first, the others in the order they came.
		all := append([]*peer{e.owner}, e.standby...)
		act := all[j+1]
		e.owner, e.standby = act, slices.DeleteFunc(all, func(p *peer) bool { return p == act })
	}
	return out
}

// compile builds the fib of the routes.
func (t *routeTable) compile() *fib {
	f := &fib{}
	for _, e := range t.entries() {
		bits := e.prefix.Bits()
		if e.prefix.Addr().Is4() {
			i := slices.IndexFunc(f.v4, func(l level4) bool { return l.bits == bits })
			if i < 0 {
				f.v4 = append(f.v4, level4{bits: bits, mask: ^uint32(0) << (32 - bits)})
				if bits == 0 {
					f.v4[len(f.v4)-1].mask = 0
				}
				i = len(f.v4) - 1
			}
			a := e.prefix.Addr().As4()
			l := &f.v4[i]
			l.keys = append(l.keys, binary.BigEndian.Uint32(a[:]))
			l.owners = append(l.owners, e.owner)
			l.standby = appendStandby(l.standby, len(l.keys)-1, e.standby)
		} else {
			i := slices.IndexFunc(f.v6, func(l level6) bool { return l.bits == bits })
			if i < 0 {
				f.v6 = append(f.v6, level6{bits: bits})
				i = len(f.v6) - 1
			}
			l := &f.v6[i]
			l.keys = append(l.keys, u128From(e.prefix.Addr()))
			l.owners = append(l.owners, e.owner)
			l.standby = appendStandby(l.standby, len(l.keys)-1, e.standby)
		}
	}
	slices.SortFunc(f.v4, func(a, b level4) int { return b.bits - a.bits })
	slices.SortFunc(f.v6, func(a, b level6) int { return b.bits - a.bits })
	for i := range f.v4 {
		l := &f.v4[i]
		sortPaired(l.keys, l.owners, l.standby, func(a, b uint32) int {
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
		sortPaired(l.keys, l.owners, l.standby, u128.cmp)
	}
	return f
}

// appendStandby records the standby owners sb of the entry at index i of a
// level whose standby slice is s: s stays nil until an entry has some.
func appendStandby(s [][]*peer, i int, sb []*peer) [][]*peer {
	if len(sb) == 0 {
		if s != nil {
			s = append(s, nil)
		}
		return s
	}
	if s == nil {
		s = make([][]*peer, i, i+1)
	}
	return append(s, sb)
}

// sortPaired sorts keys and permutes owners and standby (if not nil)
// alike.
func sortPaired[K any](keys []K, owners []*peer, standby [][]*peer, cmp func(a, b K) int) {
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp(keys[a], keys[b]) })
	k2 := make([]K, len(keys))
	o2 := make([]*peer, len(keys))
	var s2 [][]*peer
	if standby != nil {
		s2 = make([][]*peer, len(keys))
	}
	for i, j := range idx {
		k2[i], o2[i] = keys[j], owners[j]
		if s2 != nil {
			s2[i] = standby[j]
		}
	}
	copy(keys, k2)
	copy(owners, o2)
	copy(standby, s2)
}

// find4 returns the level and index of the longest prefix containing the
// IPv4 address a (big-endian), or a nil level.
func (f *fib) find4(a uint32) (*level4, int) {
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
			return l, lo
		}
	}
	return nil, 0
}

// lookup4 returns the (active) owner of the longest prefix containing the
// IPv4 address a (big-endian), or nil.
func (f *fib) lookup4(a uint32) *peer {
	if l, i := f.find4(a); l != nil {
		return l.owners[i]
	}
	return nil
}

// standby4 returns the standby owner of the longest prefix containing the
// IPv4 address a (big-endian) that is attached as from, or nil. A packet
// whose source's active owner is not its sender may come from a standby
// owner of a shared prefix: the data path asks only then.
func (f *fib) standby4(a uint32, from any) *peer {
	l, i := f.find4(a)
	if l == nil || l.standby == nil {
		return nil
	}
	return attachedAs(l.standby[i], from)
}

// attachedAs returns the peer of ps attached as from, or nil.
func attachedAs(ps []*peer, from any) *peer {
	for _, p := range ps {
		if a := p.att.Load(); a != nil && a.v == from {
			return p
		}
	}
	return nil
}

// find6 returns the level and index of the longest prefix containing the
// IPv6 address a, or a nil level.
func (f *fib) find6(a u128) (*level6, int) {
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
			return l, lo
		}
	}
	return nil, 0
}

// lookup6 returns the (active) owner of the longest prefix containing the
// IPv6 address a, or nil.
func (f *fib) lookup6(a u128) *peer {
	if l, i := f.find6(a); l != nil {
		return l.owners[i]
	}
	return nil
}

// standby6 is standby4 for an IPv6 address.
func (f *fib) standby6(a u128, from any) *peer {
	l, i := f.find6(a)
	if l == nil || l.standby == nil {
		return nil
	}
	return attachedAs(l.standby[i], from)
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
