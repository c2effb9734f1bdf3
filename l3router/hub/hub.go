// Package hub is the edge's L3 hub: the edge's WireGuard device (package
// wg) forwarding through an in-memory [l3router.Router], listening on a UDP
// port with UDP GSO/GRO, with the clients and connectors of a [Store] as its
// peers.
//
// Each device peer is attached to the router peer of its name: the router
// checks that a packet's source is the sending peer's and picks the
// destination peer by its routes (the device has no allowed IPs of its
// own). Peers are added and removed live; removing one cuts it at once (the
// device forgets its key, the router its routes).
//
// Connectors may advertise the same subnet: the hub routes it to one of
// them at a time by their liveness (failover.go).
//
// ACL rules may name peers and groups that do not exist yet, or no longer
// exist (a removed client): the hub registers each such name with the
// router as a peer without routes, so that the policy compiles and applies
// as soon as the real peer is added.
package hub

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l3router/wg"
)

// Config configures a Hub.
type Config struct {
	// ListenPort is the UDP port of the device on every address; 0 picks
	// a free one (see Hub.Port).
	ListenPort int
	// ListenAddr, if set and not unspecified, is the one address the
	// device listens on (and so its family only) instead of every
	// address.
	ListenAddr netip.Addr
	// PrivateKey is the edge's WireGuard key (Store.EdgeKey).
	PrivateKey l3config.Key
	// Pools are the virtual address pools; the first address of each is
	// the router's, the source of its ICMP errors.
	Pools Pools
	// MTU of the device and the router (l3router.DefaultMTU if 0).
	MTU int
	// ACL is the router's access policy.
	ACL l3router.ACLConfig
	// Logger receives the device's handshake failures at debug level;
	// slog.Default() if nil.
	Logger *slog.Logger
	// Loops is the device's receive loops per address family
	// (GOMAXPROCS if 0).
	Loops int
	// Steer is the device's wg.Config.Steer (eBPF steering over its
	// sockets).
	Steer bool
	// Handshakes bounds the device's handshake work (edge.yml
	// l3.handshakes); a zero field is its default.
	Handshakes wg.HandshakeLimits
	// MaxStagedBytes bounds the packets the device holds for peers
	// without a session (wg.DefaultMaxStagedBytes if 0).
	MaxStagedBytes int
	// OnHandshake is the device's wg.Config.OnHandshake.
	OnHandshake func(netip.Addr)
	// Failover bounds the subnet failover between connectors that
	// advertise the same subnet (see failover.go).
	Failover FailoverConfig
}

// Hub is a running L3 hub. Its methods are safe for concurrent use.
type Hub struct {
	router *l3router.Router
	dev    *wg.Device
	pub    l3config.Key
	port   int

	mu    sync.Mutex
	peers map[string]livePeer // by name
	// retired holds the router's counters of the removed peers, by kind,
	// as they were at removal: the totals by kind only go up.
	retired map[l3router.PeerKind]l3router.PeerStats
	// fo is the subnet failover's state (failover.go).
	fo failover

	closing   chan struct{} // closed by Close
	foDone    chan struct{} // closed when the failover loop ends; nil before it starts
	closeOnce sync.Once
}

// livePeer is a live peer and its device peer.
type livePeer struct {
	Peer
	dev *wg.Peer
}

// groupPlaceholder names the router peer that keeps an ACL group defined
// while no real peer is in it. Peer names cannot contain ':'.
func groupPlaceholder(g string) l3router.PeerID { return l3router.PeerID("acl-group:" + g) }

// New starts a hub with the given peers. It fails with an error naming
// the field or peer at fault (a peer whose routes overlap another's, an
// ACL rule the router refuses), or if the port cannot be bound.
func New(cfg Config, peers []Peer) (*Hub, error) {
	if err := cfg.Pools.check(); err != nil {
		return nil, fmt.Errorf("l3 hub: %w", err)
	}
	if cfg.PrivateKey.IsZero() {
		return nil, fmt.Errorf("l3 hub: private key: missing: %w", ErrInvalid)
	}
	if cfg.ListenPort < 0 || cfg.ListenPort > 65535 {
		return nil, fmt.Errorf("l3 hub: listen port %d: want 0-65535: %w", cfg.ListenPort, ErrInvalid)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	fcfg, err := cfg.Failover.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("l3 hub: %w", err)
	}
	r4, r6 := cfg.Pools.Router()
	rc := l3router.Config{MTU: cfg.MTU, Address4: r4, Address6: r6, ACL: cfg.ACL}
	known := map[l3router.PeerID]bool{}
	for _, p := range peers {
		rc.Peers = append(rc.Peers, l3router.PeerConfig{
			Name: l3router.PeerID(p.Name), Kind: p.Kind, Groups: p.Groups, Routes: p.Routes(),
		})
		known[l3router.PeerID(p.Name)] = true
	}
	names, groups := cfg.ACL.Names()
	for _, n := range names {
		if !known[n] {
			rc.Peers = append(rc.Peers, l3router.PeerConfig{Name: n, Kind: l3router.KindClient})
		}
	}
	for _, g := range groups {
		rc.Peers = append(rc.Peers, l3router.PeerConfig{Name: groupPlaceholder(g), Kind: l3router.KindClient, Groups: []string{g}})
	}
	router, err := l3router.New(rc)
	if err != nil {
		return nil, fmt.Errorf("l3 hub: router: %w", err)
	}
	h := &Hub{router: router, pub: cfg.PrivateKey.PublicKey(), peers: make(map[string]livePeer, len(peers)),
		retired: map[l3router.PeerKind]l3router.PeerStats{}, closing: make(chan struct{}),
		fo: failover{cfg: fcfg, log: log, up: map[string]time.Time{}, moves: map[moveKey]uint64{}}}
	h.dev, err = wg.New(wg.Config{PrivateKey: cfg.PrivateKey, ListenPort: cfg.ListenPort, ListenAddr: cfg.ListenAddr, Router: router,
		MTU: cfg.MTU, Loops: cfg.Loops, Steer: cfg.Steer, Logger: log, Handshakes: cfg.Handshakes,
		MaxStagedBytes: cfg.MaxStagedBytes, OnHandshake: cfg.OnHandshake})
	if err != nil {
		return nil, fmt.Errorf("l3 hub: %w", err)
	}
	for _, p := range peers {
		dp, err := h.dev.AddPeer(l3router.PeerID(p.Name), p.PublicKey)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("l3 hub: %v %q: %w", p.Kind, p.Name, err)
		}
		h.peers[p.Name] = livePeer{p, dp}
	}
	h.port = h.dev.Port()
	h.foDone = make(chan struct{})
	go h.failoverLoop()
	return h, nil
}

// Port returns the UDP port the device listens on.
func (h *Hub) Port() int { return h.port }

// PublicKey returns the edge's WireGuard public key.
func (h *Hub) PublicKey() l3config.Key { return h.pub }

// Router returns the hub's router, for its counters and lookups.
func (h *Hub) Router() *l3router.Router { return h.router }

// AddPeer adds p (a stored peer with its addresses) live: the router routes
// its prefixes to it and the device accepts its key. It fails, changing
// nothing, if the name or key is already live (ErrExists) or a route
// overlaps another peer's (ErrOverlap). A connector's subnet that another
// connector advertises exactly is no overlap: the new connector is its
// standby (subnet failover).
func (h *Hub) AddPeer(p Peer) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.peers[p.Name]; ok {
		return fmt.Errorf("l3 hub: add %v %q: %w", p.Kind, p.Name, ErrExists)
	}
	for _, o := range h.peers {
		if o.PublicKey == p.PublicKey {
			return fmt.Errorf("l3 hub: add %v %q: public key is %v %q's: %w", p.Kind, p.Name, o.Kind, o.Name, ErrExists)
		}
	}
	if p.PublicKey == h.pub {
		return fmt.Errorf("l3 hub: add %v %q: public key is the edge's own: %w", p.Kind, p.Name, ErrInvalid)
	}
	id := l3router.PeerID(p.Name)
	// ReplacePeer: the name may be known to the router already, as a
	// name the ACL mentions (see Router.Forget).
	err := h.router.ReplacePeer(l3router.PeerConfig{Name: id, Kind: p.Kind, Groups: p.Groups, Routes: p.Routes()})
	if err != nil {
		return fmt.Errorf("l3 hub: add %v %q: %w", p.Kind, p.Name, err)
	}
	dp, err := h.dev.AddPeer(id, p.PublicKey)
	if err != nil {
		h.router.Forget(id)
		return fmt.Errorf("l3 hub: add %v %q: %w", p.Kind, p.Name, err)
	}
	h.peers[p.Name] = livePeer{p, dp}
	return nil
}

// RemovePeer cuts the peer named name at once: the device forgets its key
// (its sessions end, its packets are no longer decrypted) and the router
// its routes (packets to its addresses get ICMP unreachable). Other peers
// are not disturbed. It returns the removed peer, or ErrNotFound.
func (h *Hub) RemovePeer(name string) (Peer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.peers[name]
	if !ok {
		return Peer{}, fmt.Errorf("l3 hub: remove %q: not a live peer: %w", name, ErrNotFound)
	}
	h.dev.RemovePeer(p.PublicKey)
	// Its counters go to the totals of its kind: the router forgets them
	// (or zeroes them when the name comes back).
	if st, ok := h.router.PeerStats(l3router.PeerID(name)); ok {
		t := h.retired[p.Kind]
		t.Add(st)
		h.retired[p.Kind] = t
	}
	// The router forgets it too (routes, counters, its slot), unless the
	// ACL names it or a group only it was in: then it stays route-less.
	h.router.Forget(l3router.PeerID(name))
	delete(h.peers, name)
	return p.Peer, nil
}

// Peers returns the live peers, sorted by name.
func (h *Hub) Peers() []Peer {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Peer, 0, len(h.peers))
	for _, p := range h.peers {
		out = append(out, p.Peer)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// PeerStats is what the hub knows of a live peer's traffic.
type PeerStats struct {
	Name string
	Kind l3router.PeerKind
	// Router holds the router's counters: packets and bytes received
	// from the peer (Rx) and sent to it (Tx), drops by reason.
	Router l3router.PeerStats
	// LastHandshake is the time of the last completed handshake; zero if
	// none yet.
	LastHandshake time.Time
	// Endpoint is the peer's last known UDP address ("" if none yet).
	Endpoint string
	// WireRxBytes and WireTxBytes count the encrypted bytes the device
	// received from and sent to the peer.
	WireRxBytes, WireTxBytes uint64
	// Loop is the device's receive loop that steering keeps the peer on
	// (1 on; 0: not steered).
	Loop int
}

// Stats is a snapshot of the hub's counters.
type Stats struct {
	Peers []PeerStats // sorted by name
	// Kinds totals the router's counters (Router in PeerStats) of the
	// peers of each kind, client and connector, removed peers' included
	// as they were at removal: counters that only go up however peers
	// come and go.
	Kinds map[l3router.PeerKind]l3router.PeerStats
	// Unattributed counts drops no peer can be blamed for (see
	// l3router.Stats).
	Unattributed [l3router.NumDropReasons]uint64
	// ICMP errors sent, and not sent for the rate limit.
	ICMPErrors, ICMPRateLimited uint64
	// Handshakes counts the handshake messages the device processed,
	// answered with a cookie or refused, by reason.
	Handshakes wg.HandshakeStats
	// Drops counts the datagrams the device dropped before they reached
	// a session or the handshake, by reason (wg.DatagramDrop).
	Drops [wg.NumDatagramDrops]uint64
	// Limits are the device's handshake limits, defaults filled.
	Limits wg.HandshakeLimits
	// Staging counts the packets the device holds for peers without a
	// session, and those it dropped, by reason.
	Staging wg.StagingStats
}

// Stats returns the live peers' counters and handshake times, and the
// totals.
func (h *Hub) Stats() (Stats, error) {
	// The router's counters are read under h.mu, which RemovePeer holds
	// to move a peer's counters to the totals: each is counted once.
	h.mu.Lock()
	live := make([]livePeer, 0, len(h.peers))
	for _, p := range h.peers {
		live = append(live, p)
	}
	rs := h.router.Stats()
	kinds := map[l3router.PeerKind]l3router.PeerStats{}
	for _, k := range []l3router.PeerKind{l3router.KindClient, l3router.KindConnector} {
		t := h.retired[k]
		t.Kind = k
		kinds[k] = t
	}
	h.mu.Unlock()
	slices.SortFunc(live, func(a, b livePeer) int { return strings.Compare(a.Name, b.Name) })
	s := Stats{
		Kinds:        kinds,
		Unattributed: rs.Unattributed,
		ICMPErrors:   rs.ICMPErrors, ICMPRateLimited: rs.ICMPRateLimited,
		Handshakes: h.dev.HandshakeStats(),
		Drops:      h.dev.Drops(),
		Limits:     h.dev.HandshakeLimits(),
		Staging:    h.dev.StagingStats(),
	}
	for _, p := range live {
		d := p.dev.Stats()
		ps := PeerStats{Name: p.Name, Kind: p.Kind, Router: rs.Peers[l3router.PeerID(p.Name)],
			LastHandshake: d.LastHandshake, WireRxBytes: d.RxBytes, WireTxBytes: d.TxBytes, Loop: d.Loop}
		if d.Endpoint.IsValid() {
			ps.Endpoint = d.Endpoint.String()
		}
		s.Peers = append(s.Peers, ps)
		t := s.Kinds[p.Kind]
		t.Add(ps.Router)
		s.Kinds[p.Kind] = t
	}
	return s, nil
}

// Close stops the device and the failover checks. It is idempotent.
func (h *Hub) Close() error {
	h.closeOnce.Do(func() {
		close(h.closing)
		if h.foDone != nil {
			<-h.foDone
		}
	})
	h.dev.Close()
	return nil
}
