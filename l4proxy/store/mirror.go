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
	m *registry.Mirror
}

// Mirror starts mirroring the tunnels until ctx is done and waits for the
// first listing. onChange (may be nil) is called, in order and from one
// goroutine, for each tunnel created (old nil), changed (its secret
// rotated) or deleted (new nil), the listing's tunnels included as
// created; it must not change the store. From then on Credential reads the
// mirror, and the store's changes return once the mirror has applied them
// (onChange ran).
func (store *Store) Mirror(ctx context.Context, onChange func(old, new *Tunnel)) (*Tunnels, error) {
	t := &Tunnels{}
	t.m = registry.NewMirror(ctx, store.reg, prefixTunnels, func(cs []registry.Change) {
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
	if err := t.m.Synced(sctx); err != nil {
		return nil, fmt.Errorf("store: %s: %w", store.reg, err)
	}
	store.tunnels = t
	return t, nil
}

// parseChange parses one side of a change; nil if it is missing or not a
// record this code reads (it is then as good as missing).
func parseChange(key string, v []byte) *Tunnel {
	if v == nil {
		return nil
	}
	t, err := parseTunnel([]byte(strings.TrimPrefix(key, prefixTunnels)), v)
	if err != nil {
		return nil
	}
	return &t
}

// Get returns the tunnel with the given ID.
func (t *Tunnels) Get(id [IDSize]byte) (Tunnel, bool) {
	v, ok := t.m.Get(prefixTunnels + string(id[:]))
	if !ok {
		return Tunnel{}, false
	}
	tun, err := parseTunnel(id[:], v)
	return tun, err == nil
}

// Names returns the IDs of the tunnels by name.
func (t *Tunnels) Names() map[string][IDSize]byte {
	out := make(map[string][IDSize]byte, t.m.Len())
	t.m.Range(func(k string, v []byte) bool {
		if tun := parseChange(k, v); tun != nil {
			out[tun.Name] = tun.ID
		}
		return true
	})
	return out
}

// Revision returns the registry revision the mirror has applied.
func (t *Tunnels) Revision() int64 {
	rev, _ := t.m.Revision()
	return rev
}
