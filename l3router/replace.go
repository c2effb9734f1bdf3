package l3router

import (
	"fmt"
	"slices"
)

// ReplacePeer configures pc like AddPeer, but if a peer of that name is
// already configured it takes its place: the peer gets pc's kind, groups
// and routes, and its counters start again from zero. The edge uses it when
// a name comes back after RemoveOwner (a removed client added again, with a
// new key) or when a name the ACL mentions before any peer had it is
// finally added.
//
// It fails, changing nothing, if the kind is invalid, a route is invalid or
// overlaps another peer's, or the ACL no longer compiles (a group that only
// the old peer was in).
func (r *Router) ReplacePeer(pc PeerConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.byName[pc.Name]
	if !ok {
		if err := r.addPeerLocked(pc); err != nil {
			return err
		}
		return r.republishLocked()
	}
	if pc.Kind != KindClient && pc.Kind != KindConnector {
		return fmt.Errorf("peer %q: kind %v: want client or connector: %w", pc.Name, pc.Kind, ErrBadConfig)
	}
	// A new peer value at the old index: in-flight batches keep using the
	// old one through the data state they loaded, the next batch sees the
	// new one. The ACL's peer bit sets are by index, so they stay valid.
	p := &peer{id: pc.Name, kind: pc.Kind, groups: slices.Clone(pc.Groups), idx: old.idx}
	saved := slices.Clone(r.routes.routes)
	r.routes.removeOwner(old)
	for _, pf := range pc.Routes {
		if err := r.routes.add(pf, p); err != nil {
			r.routes.routes = saved
			return fmt.Errorf("peer %q: %w", pc.Name, err)
		}
	}
	r.peers[old.idx] = p
	r.byName[p.id] = p
	if err := r.republishLocked(); err != nil {
		r.peers[old.idx] = old
		r.byName[old.id] = old
		r.routes.routes = saved
		return fmt.Errorf("peer %q: %w", pc.Name, err)
	}
	return nil
}
