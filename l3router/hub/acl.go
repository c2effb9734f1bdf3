package hub

import (
	"fmt"

	"github.com/onramp-net/onramp/l3router"
)

// SetACL replaces the access policy of the running hub (the edge's
// configuration reload). The router applies it from its next packet on,
// to the sessions already up as well: an ACL is a policy over packets, and
// a narrowed one stops at once what it no longer allows. Names of peers
// and groups that do not exist yet are registered with the router as
// route-less placeholders, as New does. A policy the router refuses
// changes nothing and returns the error naming the rule. (A placeholder
// only the old policy named stays in the router, route-less and without
// traffic, until the edge restarts.)
func (h *Hub) SetACL(acl l3router.ACLConfig) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := acl.Check(); err != nil {
		return fmt.Errorf("l3 hub: acl: %w", err)
	}
	var added []l3router.PeerID
	undo := func() {
		for _, id := range added {
			h.router.Forget(id)
		}
	}
	need := func(pc l3router.PeerConfig) error {
		if _, ok := h.router.PeerStats(pc.Name); ok {
			return nil
		}
		if err := h.router.AddPeer(pc); err != nil {
			return err
		}
		added = append(added, pc.Name)
		return nil
	}
	names, groups := acl.Names()
	for _, n := range names {
		if err := need(l3router.PeerConfig{Name: n, Kind: l3router.KindClient}); err != nil {
			undo()
			return fmt.Errorf("l3 hub: acl: peer %q: %w", n, err)
		}
	}
	for _, g := range groups {
		if err := need(l3router.PeerConfig{Name: groupPlaceholder(g), Kind: l3router.KindClient, Groups: []string{g}}); err != nil {
			undo()
			return fmt.Errorf("l3 hub: acl: group %q: %w", g, err)
		}
	}
	if err := h.router.SetACL(acl); err != nil {
		undo()
		return fmt.Errorf("l3 hub: acl: %w", err)
	}
	return nil
}
