// Package hub is the edge's L3 hub: a wireguard-go device whose TUN is an
// in-memory [l3router.Router], listening on a UDP port with wireguard-go's
// default bind (UDP GSO/GRO), with the clients and connectors of a [Store]
// as its peers.
//
// The hub keeps the device's peers and the router's routes equal: a peer's
// allowed_ip lines are exactly [l3router.Router.AllowedIPs] of its name.
// Peers are added and removed live; removing one cuts it at once (the
// device forgets its key, the router its routes).
//
// ACL rules may name peers and groups that do not exist yet, or no longer
// exist (a removed client): the hub registers each such name with the
// router as a peer without routes, so that the policy compiles and applies
// as soon as the real peer is added.
package hub

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// Config configures a Hub.
type Config struct {
	// ListenPort is the UDP port of the device on every address; 0 picks
	// a free one (see Hub.Port).
	ListenPort int
	// PrivateKey is the edge's WireGuard key (Store.EdgeKey).
	PrivateKey l3config.Key
	// Pools are the virtual address pools; the first address of each is
	// the router's, the source of its ICMP errors.
	Pools Pools
	// MTU of the device and the router (l3router.DefaultMTU if 0).
	MTU int
	// QueueLen is the router's packet queue (l3router.DefaultQueueLen if 0).
	QueueLen int
	// ACL is the router's access policy.
	ACL l3router.ACLConfig
	// Logger receives the device's errors (and its verbose log at debug
	// level); slog.Default() if nil.
	Logger *slog.Logger
}

// Hub is a running L3 hub. Its methods are safe for concurrent use.
type Hub struct {
	router *l3router.Router
	dev    *device.Device
	pub    l3config.Key
	port   int

	mu    sync.Mutex
	peers map[string]Peer // live peers by name
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
	r4, r6 := cfg.Pools.Router()
	rc := l3router.Config{MTU: cfg.MTU, QueueLen: cfg.QueueLen, Address4: r4, Address6: r6, ACL: cfg.ACL}
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
	h := &Hub{router: router, pub: cfg.PrivateKey.PublicKey(), peers: make(map[string]Peer, len(peers))}
	h.dev = device.NewDevice(router, conn.NewDefaultBind(), wgLogger(log))
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=%d\nreplace_peers=true\n", cfg.PrivateKey.Hex(), cfg.ListenPort)
	for _, p := range peers {
		h.writePeer(&b, &p)
		h.peers[p.Name] = p
	}
	if err := h.dev.IpcSet(b.String()); err != nil {
		h.dev.Close()
		return nil, fmt.Errorf("l3 hub: configure device: %w", err)
	}
	if err := h.dev.Up(); err != nil {
		h.dev.Close()
		return nil, fmt.Errorf("l3 hub: listen on udp port %d: %w", cfg.ListenPort, err)
	}
	h.port = cfg.ListenPort
	if h.port == 0 {
		st, err := h.deviceStats()
		if err != nil || st.port == 0 {
			h.dev.Close()
			return nil, fmt.Errorf("l3 hub: listen port unknown: %v", err)
		}
		h.port = st.port
	}
	return h, nil
}

// writePeer writes the UAPI lines of p: its key and allowed IPs, which are
// the router's routes of p.
func (h *Hub) writePeer(b *strings.Builder, p *Peer) {
	fmt.Fprintf(b, "public_key=%s\nreplace_allowed_ips=true\n", p.PublicKey.Hex())
	for _, pf := range h.router.AllowedIPs(l3router.PeerID(p.Name)) {
		fmt.Fprintf(b, "allowed_ip=%v\n", pf)
	}
}

// wgLogger adapts slog to wireguard-go's logger: errors at warn level (a
// peer's failure is not the edge's), verbose lines at debug level.
func wgLogger(log *slog.Logger) *device.Logger {
	l := &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf: func(format string, args ...any) {
			log.Warn("l3 wireguard: " + fmt.Sprintf(format, args...))
		},
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		l.Verbosef = func(format string, args ...any) {
			log.Debug("l3 wireguard: " + fmt.Sprintf(format, args...))
		}
	}
	return l
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
// overlaps another peer's (ErrOverlap).
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
	var b strings.Builder
	h.writePeer(&b, &p)
	if err := h.dev.IpcSet(b.String()); err != nil {
		h.router.Forget(id)
		return fmt.Errorf("l3 hub: add %v %q: configure device: %w", p.Kind, p.Name, err)
	}
	h.peers[p.Name] = p
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
	if err := h.dev.IpcSet("public_key=" + p.PublicKey.Hex() + "\nremove=true\n"); err != nil {
		return Peer{}, fmt.Errorf("l3 hub: remove %v %q: configure device: %w", p.Kind, name, err)
	}
	// The router forgets it too (routes, counters, its slot), unless the
	// ACL names it or a group only it was in: then it stays route-less.
	h.router.Forget(l3router.PeerID(name))
	delete(h.peers, name)
	return p, nil
}

// Peers returns the live peers, sorted by name.
func (h *Hub) Peers() []Peer {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Peer, 0, len(h.peers))
	for _, p := range h.peers {
		out = append(out, p)
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
}

// Stats is a snapshot of the hub's counters.
type Stats struct {
	Peers []PeerStats // sorted by name
	// Unattributed counts drops no peer can be blamed for (see
	// l3router.Stats).
	Unattributed [l3router.NumDropReasons]uint64
	// ICMP errors sent, not sent for the rate limit, not sent for a full
	// queue.
	ICMPErrors, ICMPRateLimited, ICMPQueueFull uint64
}

// Stats returns the live peers' counters and handshake times.
func (h *Hub) Stats() (Stats, error) {
	peers := h.Peers()
	rs := h.router.Stats()
	ds, err := h.deviceStats()
	if err != nil {
		return Stats{}, err
	}
	s := Stats{
		Unattributed: rs.Unattributed,
		ICMPErrors:   rs.ICMPErrors, ICMPRateLimited: rs.ICMPRateLimited, ICMPQueueFull: rs.ICMPQueueFull,
	}
	for _, p := range peers {
		ps := PeerStats{Name: p.Name, Kind: p.Kind, Router: rs.Peers[l3router.PeerID(p.Name)]}
		if d, ok := ds.peers[p.PublicKey.Hex()]; ok {
			ps.LastHandshake, ps.Endpoint, ps.WireRxBytes, ps.WireTxBytes = d.handshake, d.endpoint, d.rx, d.tx
		}
		s.Peers = append(s.Peers, ps)
	}
	return s, nil
}

type devicePeer struct {
	handshake time.Time
	endpoint  string
	rx, tx    uint64
}

type deviceStats struct {
	port  int
	peers map[string]*devicePeer // by hex public key
}

// deviceStats parses the device's UAPI get output.
func (h *Hub) deviceStats() (deviceStats, error) {
	out, err := h.dev.IpcGet()
	if err != nil {
		return deviceStats{}, fmt.Errorf("l3 hub: device stats: %w", err)
	}
	ds := deviceStats{peers: map[string]*devicePeer{}}
	var cur *devicePeer
	var sec, nsec int64
	flush := func() {
		if cur != nil && (sec != 0 || nsec != 0) {
			cur.handshake = time.Unix(sec, nsec)
		}
		sec, nsec = 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "listen_port":
			ds.port, _ = strconv.Atoi(v)
		case "public_key":
			flush()
			cur = &devicePeer{}
			ds.peers[v] = cur
		}
		if cur == nil {
			continue
		}
		switch k {
		case "endpoint":
			cur.endpoint = v
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			cur.rx, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			cur.tx, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	flush()
	return ds, nil
}

// Close stops the device and the router. It is idempotent.
func (h *Hub) Close() error {
	h.dev.Close()
	return nil
}
