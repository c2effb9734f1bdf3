package l3router

import (
	"fmt"
	"net/netip"
	"slices"
)

// Subnet failover: connectors may advertise exactly the same prefix (a
// failover pair, or more). The router routes packets to such a prefix to
// one owner at a time, the active one, and accepts packets from the
// prefix from each of its owners (the LAN behind them may return its
// replies through any of them). Which owner is active is the caller's
// choice (SetActive; the hub chooses by the owners' liveness); a prefix
// starts with its first owner active, a new owner joins as a standby, and
// when the active owner loses the prefix (RemoveOwner, Forget,
// ReplacePeer without it) the next owner in the order they were added
// takes over.

// SharedPrefix is a prefix that several connectors own.
type SharedPrefix struct {
	Prefix netip.Prefix
	// Owners are the connectors that own it, in the order they added it.
	Owners []PeerID
	// Active is the owner packets to the prefix go to.
	Active PeerID
}

// Shared returns the prefixes that several peers own, sorted. It looks at
// the connectors' routes only (clients own no shared prefix), so an edge
// with many clients can ask often.
func (r *Router) Shared() []SharedPrefix {
	r.mu.Lock()
	defer r.mu.Unlock()
	var conn []route
	for _, rt := range r.routes.routes {
		if rt.owner.kind == KindConnector {
			conn = append(conn, rt)
		}
	}
	var out []SharedPrefix
	for i, rt := range conn {
		if slices.ContainsFunc(out, func(sp SharedPrefix) bool { return sp.Prefix == rt.prefix }) {
			continue
		}
		sp := SharedPrefix{Prefix: rt.prefix, Owners: []PeerID{rt.owner.id}}
		for _, o := range conn[i+1:] {
			if o.prefix == rt.prefix {
				sp.Owners = append(sp.Owners, o.owner.id)
			}
		}
		if len(sp.Owners) < 2 {
			continue
		}
		sp.Active = sp.Owners[0]
		if a, ok := r.routes.active[rt.prefix]; ok && slices.Contains(sp.Owners, a) {
			sp.Active = a
		}
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b SharedPrefix) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out
}

// SetActive makes owner the active owner of prefix: packets to the prefix
// go to owner from the next packet on. owner must own prefix
// (ErrUnknownPeer if it is no peer, ErrBadPrefix if it does not own the
// prefix). The choice holds while owner owns the prefix; a prefix of one
// owner has no choice to make, but setting it is allowed.
func (r *Router) SetActive(prefix netip.Prefix, owner PeerID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byName[owner]
	if !ok {
		return fmt.Errorf("set active %v: peer %q: %w", prefix, owner, ErrUnknownPeer)
	}
	if !slices.ContainsFunc(r.routes.routes, func(rt route) bool { return rt.prefix == prefix && rt.owner == p }) {
		return fmt.Errorf("set active %v: peer %q does not own it: %w", prefix, owner, ErrBadPrefix)
	}
	if r.routes.active == nil {
		r.routes.active = map[netip.Prefix]PeerID{}
	}
	if r.routes.active[prefix] == owner {
		return nil
	}
	r.routes.active[prefix] = owner
	r.state.Store(&dataState{fib: r.routes.compile(), acl: r.state.Load().acl})
	return nil
}
