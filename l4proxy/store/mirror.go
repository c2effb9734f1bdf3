package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/onramp-net/onramp/dataplane/registry"
)

// Tunnels is every tunnel of the store, kept in memory from the
// registry's watch (registry.Mirror): connectors authenticate against it
// without reaching the back end, so an edge keeps accepting the tunnels it
// knows while etcd is unreachable, and sees the changes any edge makes.
type Tunnels struct {
	r *registry.Records[Tunnel]
}

// Mirror starts mirroring the tunnels until ctx is done and waits for the
// first listing. onChange (may be nil) is called, in order and from one
// goroutine, for each tunnel created (old nil), changed (its secret
// rotated) or deleted (new nil), the listing's tunnels included as
// created; it must not change the store. From then on Credential reads the
// mirror, and the store's changes return once the mirror has applied them
// (onChange ran).
func (store *Store) Mirror(ctx context.Context, onChange func(old, new *Tunnel)) (*Tunnels, error) {
	r, err := registry.MirrorRecords(ctx, store.reg, prefixTunnels, mirrorWait, parseRecord, onChange)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	store.tunnels = &Tunnels{r: r}
	return store.tunnels, nil
}

// parseRecord parses the tunnel record under a registry key.
func parseRecord(key string, v []byte) (Tunnel, error) {
	return parseTunnel([]byte(strings.TrimPrefix(key, prefixTunnels)), v)
}

// Get returns the tunnel with the given ID.
func (t *Tunnels) Get(id [IDSize]byte) (Tunnel, bool) {
	return t.r.Get(prefixTunnels + string(id[:]))
}

// Names returns the IDs of the tunnels by name.
func (t *Tunnels) Names() map[string][IDSize]byte {
	all := t.r.All()
	out := make(map[string][IDSize]byte, len(all))
	for _, tun := range all {
		out[tun.Name] = tun.ID
	}
	return out
}
