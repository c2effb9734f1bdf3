package hub

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/onramp-net/onramp/dataplane/registry"
)

// Mirror is every client and connector of the store, kept in memory from
// the registry's watch: the edge's hub follows it, so that a peer added or
// removed on any edge sharing the registry is live or cut on this one, and
// the hub keeps its peers while etcd is unreachable.
type Mirror struct {
	m *registry.Mirror
}

// Mirror starts mirroring the peers until ctx is done and waits for the
// first listing. onChange (may be nil) is called, in order and from one
// goroutine, for each peer added (old nil), changed or removed (new nil),
// the listing's peers included as added; it must not change the store.
// From then on the store's changes return once the mirror applied them
// (onChange ran).
func (s *Store) Mirror(ctx context.Context, onChange func(old, new *Peer)) (*Mirror, error) {
	pm := &Mirror{}
	pm.m = registry.NewMirror(ctx, s.reg, prefixPeers, func(cs []registry.Change) {
		if onChange == nil {
			return
		}
		for _, c := range cs {
			old, new := parseChange(c.Key, c.Old), parseChange(c.Key, c.New)
			if old != nil || new != nil {
				onChange(old, new)
			}
		}
	})
	sctx, cancel := context.WithTimeout(ctx, mirrorWait)
	defer cancel()
	if err := pm.m.Synced(sctx); err != nil {
		return nil, fmt.Errorf("l3 store: %s: %w", s.reg, err)
	}
	s.mirror = pm
	return pm, nil
}

// parseChange parses one side of a change; nil if it is missing or not a
// record this code reads (then it is as good as missing).
func parseChange(key string, v []byte) *Peer {
	if v == nil {
		return nil
	}
	p, err := parse(strings.TrimPrefix(key, prefixPeers), v)
	if err != nil {
		return nil
	}
	return &p
}

// Peers returns the mirrored peers, sorted by name.
func (pm *Mirror) Peers() []Peer {
	var out []Peer
	pm.m.Range(func(k string, v []byte) bool {
		if p := parseChange(k, v); p != nil {
			out = append(out, *p)
		}
		return true
	})
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}
