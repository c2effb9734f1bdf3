package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/onramp-net/onramp/dataplane/registry"
)

// Edge membership. Connectors dial the edges their token names, and then
// the edges the edges advertise to them (tunnel control message Edges):
// with one edge, the advertise list of its edge.yml; with etcd, the union
// of the advertise lists of every live edge, which each edge keeps in the
// registry (edges/ID, a heartbeat every 10 s; an edge not heard from for
// 35 s is left out, one that stops cleanly removes itself). An edge added
// later (its advertise list naming itself) is dialed by connectors whose
// token predates it. The record carries the edge's l3.endpoint too: an
// L3 connector's l3.yml lists every live edge's, and the connector keeps
// a session with each.
const (
	prefixEdges     = "edges/"
	heartbeatEvery  = 10 * time.Second
	memberExpiry    = 35 * time.Second
	memberForgotten = 10 * time.Minute // records this old are deleted
)

// member is an edge's record in the registry.
type member struct {
	Name      string   `json:"name"`
	Advertise []string `json:"advertise"`
	// L3 is the edge's l3.endpoint (empty with the L3 on-ramp off): the
	// connectors' l3.yml lists every live edge's (see l3Endpoints).
	L3   string `json:"l3,omitempty"`
	Seen int64  `json:"seen"` // Unix milliseconds of the last heartbeat
	// What the edge carried at its last heartbeat, for edge status on
	// any edge: when it started, its connector connections and the
	// tunnels with at least one of them.
	Started     int64 `json:"started,omitempty"` // Unix milliseconds
	Connections int   `json:"connections"`
	Tunnels     int   `json:"tunnels"`
}

// members returns the edges' membership records, live ones first by
// name, then those not heard from for memberExpiry; nil with one edge.
func (a *app) members(now time.Time) []edgeMember {
	m := a.memberMirror.Load()
	if m == nil {
		return nil
	}
	var out []edgeMember
	m.Range(func(k string, v []byte) bool {
		var r member
		if json.Unmarshal(v, &r) != nil {
			return true
		}
		em := edgeMember{ID: k[len(prefixEdges):], Name: r.Name, Advertise: r.Advertise, Seen: time.UnixMilli(r.Seen),
			Connections: r.Connections, Tunnels: r.Tunnels, Live: now.Sub(time.UnixMilli(r.Seen)) < memberExpiry,
			Self: k[len(prefixEdges):] == memberID(a.cfg.Data)}
		if r.Started != 0 {
			em.Started = time.UnixMilli(r.Started)
		}
		out = append(out, em)
		return true
	})
	slices.SortFunc(out, func(x, y edgeMember) int {
		if x.Live != y.Live {
			if x.Live {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Name, y.Name)
	})
	return out
}

// l3Endpoints returns the l3.endpoint of every live edge in the registry
// but the one named id, sorted.
func l3Endpoints(ctx context.Context, reg registry.Store, id string) ([]string, error) {
	var eps []string
	err := reg.View(ctx, func(tx registry.Txn) error {
		all, err := tx.List(prefixEdges)
		if err != nil {
			return err
		}
		eps = eps[:0]
		for _, p := range all {
			var m member
			if p.Key == prefixEdges+id || json.Unmarshal(p.Value, &m) != nil || m.L3 == "" ||
				time.Since(time.UnixMilli(m.Seen)) >= memberExpiry || slices.Contains(eps, m.L3) {
				continue
			}
			eps = append(eps, m.L3)
		}
		return nil
	})
	slices.Sort(eps)
	return eps, err
}

// memberID names this edge in the registry: stable across restarts of one
// edge (its host and data directory).
func memberID(data string) string {
	host, _ := os.Hostname()
	abs, err := filepath.Abs(data)
	if err != nil {
		abs = data
	}
	h := sha256.Sum256([]byte(host + "\x00" + abs))
	return hex.EncodeToString(h[:8])
}

// advertiseEdges keeps the Server's advertised edge list: the config's
// for a single edge; the live members' union under etcd, kept until ctx is
// done (when the edge removes its own record).
func (a *app) advertiseEdges(ctx context.Context, wg *sync.WaitGroup) {
	own := advertised(a.cfg)
	if a.cfg.Registry.Etcd == nil {
		a.srv.SetEdges(own)
		return
	}
	reg := a.store.Registry()
	id := memberID(a.cfg.Data)
	host, _ := os.Hostname()
	var l3 string
	if a.cfg.L3.Enabled() {
		l3 = a.cfg.L3.Endpoint
	}
	var mirror *registry.Mirror
	recompute := func() {
		if mirror == nil {
			return
		}
		now := time.Now()
		set := slices.Clone(own)
		mirror.Range(func(k string, v []byte) bool {
			var m member
			if json.Unmarshal(v, &m) == nil && now.Sub(time.UnixMilli(m.Seen)) < memberExpiry {
				set = append(set, m.Advertise...)
			}
			return true
		})
		a.srv.SetEdges(set)
	}
	var mu sync.Mutex // orders recompute, from the mirror and the ticker
	mu.Lock()
	mirror = registry.NewMirror(ctx, reg, prefixEdges, func([]registry.Change) {
		mu.Lock()
		defer mu.Unlock()
		recompute()
	})
	a.memberMirror.Store(mirror)
	mu.Unlock()
	beat := func(ctx context.Context) {
		m := member{Name: host + ":" + a.cfg.Data, Advertise: own, L3: l3, Seen: time.Now().UnixMilli(), Started: a.started.UnixMilli()}
		tunnels := map[[16]byte]bool{}
		for _, c := range a.srv.Connections() {
			m.Connections++
			tunnels[c.Tunnel] = true
		}
		m.Tunnels = len(tunnels)
		v, _ := json.Marshal(m)
		_, err := reg.Update(ctx, func(tx registry.Txn) error {
			all, err := tx.List(prefixEdges)
			if err != nil {
				return err
			}
			for _, p := range all {
				var m member
				if json.Unmarshal(p.Value, &m) != nil || time.Since(time.UnixMilli(m.Seen)) > memberForgotten {
					if err := tx.Delete(p.Key); err != nil {
						return err
					}
				}
			}
			if len(own) == 0 && l3 == "" {
				return nil
			}
			return tx.Put(prefixEdges+id, v)
		})
		if err != nil && ctx.Err() == nil {
			a.log.Debug("edge membership: heartbeat not written", "err", err)
		}
	}
	beat(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				// Leave cleanly: the others stop advertising this edge.
				dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, _ = reg.Update(dctx, func(tx registry.Txn) error { return tx.Delete(prefixEdges + id) })
				cancel()
				return
			case <-t.C:
				beat(ctx)
				mu.Lock()
				recompute()
				mu.Unlock()
			}
		}
	}()
}
