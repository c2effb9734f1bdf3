package l3router

import (
	"slices"
)

// Forget removes the peer owner from the router: its routes (packets to
// its addresses get ICMP unreachable from the next batch on), its counters
// and its place in the peer list, which the next peer added takes. An edge
// that adds and removes peers for a long time thus keeps only the peers it
// has. It reports whether the peer is gone; it is kept as a route-less
// placeholder, as RemoveOwner leaves it, when the ACL still names it or
// when it alone is in a group the ACL names (the ACL would not compile
// without it). Forget of an unknown name reports false.
//
// Batches in flight keep the data state they loaded, with the forgotten
// peer in it, to their end: its index is not reused by them, because a
// new peer is only in route tables published after it was added.
func (r *Router) Forget(owner PeerID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byName[owner]
	if !ok {
		return false
	}
	if names, _ := r.aclCfg.Names(); !slices.Contains(names, owner) {
		r.peers[p.idx] = &peer{idx: p.idx}
		delete(r.byName, owner)
		if a, err := compileACL(&r.aclCfg, r.peers); err == nil {
			r.routes.removeOwner(p)
			r.free = append(r.free, p.idx)
			r.state.Store(&dataState{fib: r.routes.compile(), acl: a})
			return true
		}
		// A group the ACL names has no other member: keep the peer.
		r.peers[p.idx] = p
		r.byName[owner] = p
	}
	r.removeRoutesLocked(p)
	return false
}
