//go:build linux

package wg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/l3router"
)

// Paths: a TUN device's peer reached at several endpoints. Edges that
// share one WireGuard key (several edges on one registry) are one peer
// identity to a connector, at one endpoint per edge; each edge runs its
// own process with its own sessions, so the connector keeps a session
// with each: one path per endpoint, each a Peer of its own (its
// handshake, sessions, cookie, timers and endpoint) under the one peer the
// device knows by the key, which is path 0.
//
//   - Receiving: a receiver index names a path's session, so whichever
//     edge a message comes from, its path's session decrypts it. The
//     source address of each packet written to the TUN is remembered with
//     the path it came on (a bounded table: pathSlots slots, one atomic
//     word each, a newer address taking an older one's slot; nothing
//     allocated per packet).
//   - Sending: a packet read from the TUN goes back on the path its
//     destination's packets last came on (a client's replies through the
//     edge the client is connected to, which alone has its session), if
//     that path is live; otherwise on the first live path; with none live,
//     on the first path with a session, else path 0 (which stages it and
//     starts a handshake).
//   - Liveness: edges send a connector nothing unasked while idle (the
//     connector's persistent keepalives need no answer), so a path not
//     heard from for pathProbeAfter is probed with a handshake
//     initiation, which a live edge answers. A path is live while it has
//     a current session and was heard from (handshake, keepalive or data)
//     within pathStaleAfter: longer than a probe and its first
//     retransmission take, so that one lost datagram does not make it
//     stale. A dead edge's path goes stale pathStaleAfter after it was
//     last heard from, and new traffic leaves it.
//   - An initiation from an edge (it has packets for the connector and no
//     session) is taken by the path whose endpoint it comes from, else by
//     path 0.
//
// With one endpoint there is one path, the peer itself, and nothing of
// the above runs: no table, no probes.

// pathSlots is the size of a peer's table of source addresses and their
// paths: 4,096 words, 32 KiB.
const pathSlots = 1 << 12

// MaxEndpoints is the most endpoints (paths) a peer may have.
const MaxEndpoints = 16

// The paths' liveness; variables only so that tests can run it in
// seconds.
var (
	// pathProbeAfter: a path not heard from for this long gets a
	// handshake initiation.
	pathProbeAfter = 5 * time.Second
	// pathStaleAfter: a path not heard from for this long is stale. A
	// probe's initiation is retransmitted after rekeyTimeout (5 s): one
	// lost datagram leaves a path live.
	pathStaleAfter = 11 * time.Second
)

// pathSet is a peer's paths: paths[0] is the peer itself, at
// endpoints[0].
type pathSet struct {
	paths     []*Peer
	endpoints []netip.AddrPort // as configured; a path's endpoint roams
	// learned maps a hash of a source address to the path its packets
	// last came on: the hash's top bits above the slot's, and the path's
	// index plus one in the low byte; 0 is empty.
	learned [pathSlots]atomic.Uint64
}

// addrHash mixes an address into 64 bits; the low bits pick the slot.
func addrHash(a netip.Addr) uint64 {
	b := a.As16()
	h := binary.BigEndian.Uint64(b[:8])*0x9E3779B97F4A7C15 ^ binary.BigEndian.Uint64(b[8:])*0xC2B2AE3D27D4EB4F
	h ^= h >> 29
	h *= 0xBF58476D1CE4E5B9
	return h ^ h>>32
}

// learnedWord is the table word of address hash h on path i.
func learnedWord(h uint64, i int) uint64 { return h>>12<<8 | uint64(i+1) }

// learn remembers that a packet from src came on path q. It writes only
// when the slot changes.
func (s *pathSet) learn(src netip.Addr, q *Peer) {
	i := 0
	for ; i < len(s.paths) && s.paths[i] != q; i++ {
	}
	if i == len(s.paths) {
		return // a path removed meanwhile
	}
	h := addrHash(src)
	w := learnedWord(h, i)
	slot := &s.learned[h&(pathSlots-1)]
	if slot.Load() != w {
		slot.Store(w)
	}
}

// lookup returns the path dst's packets last came on, or nil.
func (s *pathSet) lookup(dst netip.Addr) *Peer {
	h := addrHash(dst)
	w := s.learned[h&(pathSlots-1)].Load()
	if w == 0 || w>>8 != h>>12 {
		return nil
	}
	if i := int(w&0xff) - 1; i < len(s.paths) {
		return s.paths[i]
	}
	return nil
}

// owner returns the peer path p belongs to (p itself for path 0).
func (p *Peer) owner() *Peer {
	if p.main != nil {
		return p.main
	}
	return p
}

// live reports whether path p has a current session and was heard from
// within pathStaleAfter.
func (p *Peer) live(now int64) bool {
	return p.current.Load().fresh(now) && now-p.lastRecv.Load() < int64(pathStaleAfter)
}

// multipath reports whether p is one of several paths.
func (p *Peer) multipath() bool { return p.owner().paths.Load() != nil }

// pathTo returns the path a packet to dst leaves on (see the top of the
// file); p is the device's peer.
func (p *Peer) pathTo(dst netip.Addr, now int64) *Peer {
	s := p.paths.Load()
	if s == nil {
		return p
	}
	if q := s.lookup(dst); q != nil && q.live(now) {
		return q
	}
	for _, q := range s.paths {
		if q.live(now) {
			return q
		}
	}
	for _, q := range s.paths {
		if q.current.Load().fresh(now) {
			return q
		}
	}
	return p
}

// pathFrom returns the path whose endpoint src is, or p (path 0). p is
// the device's peer of the key an initiation names.
func (p *Peer) pathFrom(src netip.AddrPort) *Peer {
	s := p.paths.Load()
	if s == nil {
		return p
	}
	for i, q := range s.paths {
		if ep := q.endpoint.Load(); ep != nil && ep.AddrPort == src || s.endpoints[i] == src {
			return q
		}
	}
	return p
}

// allPaths returns p's paths (p alone if it has one).
func (p *Peer) allPaths() []*Peer {
	if s := p.paths.Load(); s != nil {
		return s.paths
	}
	return []*Peer{p}
}

// errNotTUN refuses several endpoints for a router device's peer.
var errNotTUN = errors.New("wg: several endpoints are for a TUN device's peer")

// SetEndpoints sets where a TUN device's peer is: one path per endpoint,
// each with its own handshake and sessions (see the top of paths.go). The
// first endpoint is the peer's own (as SetEndpoint); a path whose endpoint
// stays in the list keeps its sessions, one whose endpoint left it ends,
// and a new one starts a handshake if the peer has a persistent
// keepalive. The table of source addresses starts again empty when the
// list changes.
func (p *Peer) SetEndpoints(eps []netip.AddrPort) error {
	d := p.dev
	switch {
	case len(eps) == 0:
		return errors.New("wg: no endpoint")
	case len(eps) > MaxEndpoints:
		return fmt.Errorf("wg: %d endpoints, at most %d", len(eps), MaxEndpoints)
	case len(eps) > 1 && d.tun == nil:
		return errNotTUN
	case p.main != nil:
		return errors.New("wg: not the device's peer")
	}
	for i, ep := range eps {
		if slices.Contains(eps[:i], ep) {
			return fmt.Errorf("wg: endpoint %s given twice", ep)
		}
	}
	d.mu.Lock()
	if d.peers[p.remote.pub] != p {
		d.mu.Unlock()
		return errors.New("wg: peer removed")
	}
	old := p.paths.Load()
	var gone, fresh []*Peer // paths that end, paths that start
	if old == nil || !slices.Equal(old.endpoints, eps) {
		kept := map[netip.AddrPort]*Peer{}
		if old != nil {
			for i, q := range old.paths[1:] {
				kept[old.endpoints[i+1]] = q
			}
		}
		var set *pathSet
		if len(eps) > 1 {
			set = &pathSet{paths: []*Peer{p}, endpoints: slices.Clone(eps)}
			for _, ep := range eps[1:] {
				q := kept[ep]
				if q != nil {
					delete(kept, ep)
				} else {
					r, err := newRemote(&d.id, p.remote.pub)
					if err != nil {
						d.mu.Unlock()
						return err // it did not fail for the peer itself
					}
					q = &Peer{dev: d, name: l3router.PeerID(fmt.Sprintf("%s@%s", p.name, ep)), main: p, remote: r}
					q.SetEndpoint(ep)
					fresh = append(fresh, q)
				}
				set.paths = append(set.paths, q)
			}
		}
		for _, q := range kept {
			d.hsCount.retired.Add(q.handshakes.Load())
			gone = append(gone, q)
		}
		p.paths.Store(set)
	}
	d.mu.Unlock()
	p.SetEndpoint(eps[0])
	for _, q := range gone {
		d.forget(q) // after the set went: no new packet picks it
	}
	if ka := p.keepalive.Load(); ka > 0 {
		for _, q := range fresh {
			q.SetKeepalive(time.Duration(ka))
		}
	}
	return nil
}

// PathStats is what the device knows of one path of a peer (see
// SetEndpoints).
type PathStats struct {
	PeerStats
	// Configured is the path's endpoint as set; PeerStats.Endpoint is
	// where its last message came from.
	Configured netip.AddrPort
	// Live: the path has a session and, with several paths, was heard
	// from within the last 11 s (new traffic leaves a path that is not).
	Live bool
}

// Paths returns the stats of each of p's paths, path 0 (p's own) first.
func (p *Peer) Paths() []PathStats {
	now := p.dev.now()
	s := p.paths.Load()
	if s == nil {
		st := PathStats{PeerStats: p.Stats(), Live: p.current.Load().fresh(now)}
		st.Configured = st.Endpoint
		return []PathStats{st}
	}
	out := make([]PathStats, len(s.paths))
	for i, q := range s.paths {
		out[i] = PathStats{PeerStats: q.Stats(), Configured: s.endpoints[i], Live: q.live(now)}
	}
	return out
}
