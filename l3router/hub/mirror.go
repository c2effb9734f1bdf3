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
	r *registry.Records[Peer]
}

// Mirror starts mirroring the peers until ctx is done and waits for the
// first listing. onChange (may be nil) is called, in order and from one
// goroutine, for each peer added (old nil), changed or removed (new nil),
// the listing's peers included as added; it must not change the store.
// From then on the store's changes return once the mirror applied them
// (onChange ran).
func (s *Store) Mirror(ctx context.Context, onChange func(old, new *Peer)) (*Mirror, error) {
	r, err := registry.MirrorRecords(ctx, s.reg, prefixPeers, mirrorWait, func(key string, v []byte) (Peer, error) {
		return parse(strings.TrimPrefix(key, prefixPeers), v)
	}, onChange)
	if err != nil {
		return nil, fmt.Errorf("l3 store: %w", err)
	}
	s.mirror = &Mirror{r: r}
	return s.mirror, nil
}

// Peers returns the mirrored peers, sorted by name.
func (pm *Mirror) Peers() []Peer {
	out := pm.r.All()
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}
