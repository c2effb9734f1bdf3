package l3router

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// Defaults and limits of Config.
const (
	DefaultMTU      = 1420 // as wireguard-go's device.DefaultMTU
	MinMTU          = 1280 // the IPv6 minimum MTU; also fits every ICMP error
	MaxMTU          = 65535
	DefaultICMPRate = 1000
)

// Config configures a Router.
type Config struct {
	// MTU is the largest packet the router forwards (DefaultMTU if 0,
	// at least MinMTU). Larger packets are dropped and answered with
	// ICMP fragmentation needed (IPv4 with DF) or packet too big (IPv6).
	MTU int `yaml:"mtu"`
	// Address4 and Address6 are the router's own addresses, the sources
	// of the ICMP errors it sends. If one is unset, the router sends no
	// ICMP errors of that family (the packets are still dropped and
	// counted).
	Address4 netip.Addr `yaml:"address4"`
	Address6 netip.Addr `yaml:"address6"`
	// ICMPRate limits the ICMP errors the router sends, per second, with
	// a burst of as many (DefaultICMPRate if 0; negative: no limit).
	ICMPRate int `yaml:"icmp_rate"`
	// Peers are the peers and their routes.
	Peers []PeerConfig `yaml:"peers"`
	// ACL is the access policy.
	ACL ACLConfig `yaml:"acl"`
}

// dataState is what the data path reads, swapped whole on every change.
type dataState struct {
	fib *fib
	acl *acl
}

// Router is an in-memory IP router between the peers of one WireGuard
// device. See the package documentation.
//
// Control methods (AddPeer, AddRoute, RemoveOwner, SetACL) are safe for
// concurrent use with each other and with the data path (Route), which
// sees each change atomically from its next packet on.
type Router struct {
	mtu          int
	addr4, addr6 netip.Addr

	state atomic.Pointer[dataState]

	mu     sync.Mutex // guards the control plane below
	peers  []*peer    // by index; a forgotten peer's slot holds a tombstone (no id)
	free   []int      // indexes of tombstones, taken again by the next peers
	byName map[PeerID]*peer
	routes routeTable
	aclCfg ACLConfig

	icmp limiter

	unattributed            [NumDropReasons]atomic.Uint64
	icmpErrors, icmpLimited atomic.Uint64
}

// New returns a Router configured by cfg. It returns an error naming the
// offending field, peer, route or rule if cfg is invalid, including
// routes of different peers that overlap (ErrOverlap).
func New(cfg Config) (*Router, error) {
	r := &Router{
		mtu:    cfg.MTU,
		addr4:  cfg.Address4,
		addr6:  cfg.Address6,
		byName: make(map[PeerID]*peer),
	}
	if r.mtu == 0 {
		r.mtu = DefaultMTU
	}
	if r.mtu < MinMTU || r.mtu > MaxMTU {
		return nil, fmt.Errorf("mtu %d: want %d to %d: %w", cfg.MTU, MinMTU, MaxMTU, ErrBadConfig)
	}
	if r.addr4.IsValid() && !r.addr4.Is4() {
		return nil, fmt.Errorf("address4 %v: not IPv4: %w", r.addr4, ErrBadConfig)
	}
	if r.addr6.IsValid() && (!r.addr6.Is6() || r.addr6.Is4In6()) {
		return nil, fmt.Errorf("address6 %v: not IPv6: %w", r.addr6, ErrBadConfig)
	}
	rate := cfg.ICMPRate
	if rate == 0 {
		rate = DefaultICMPRate
	}
	r.icmp.init(rate)
	for _, pc := range cfg.Peers {
		if err := r.addPeerLocked(pc); err != nil {
			return nil, err
		}
	}
	a, err := compileACL(&cfg.ACL, r.peers)
	if err != nil {
		return nil, err
	}
	r.aclCfg = cfg.ACL
	r.state.Store(&dataState{fib: r.routes.compile(), acl: a})
	return r, nil
}

func (r *Router) addPeerLocked(pc PeerConfig) error {
	if pc.Name == "" {
		return fmt.Errorf("peer with routes %v: empty name: %w", pc.Routes, ErrBadConfig)
	}
	if _, ok := r.byName[pc.Name]; ok {
		return fmt.Errorf("peer %q: %w", pc.Name, ErrDuplicatePeer)
	}
	if pc.Kind != KindClient && pc.Kind != KindConnector {
		return fmt.Errorf("peer %q: kind %v: want client or connector: %w", pc.Name, pc.Kind, ErrBadConfig)
	}
	// A forgotten peer's index is taken again (see Forget), so that the
	// peer list and the ACL's peer sets follow the peers there are, not
	// all there ever were.
	idx := len(r.peers)
	if n := len(r.free); n > 0 {
		idx = r.free[n-1]
	}
	p := &peer{id: pc.Name, kind: pc.Kind, groups: append([]string(nil), pc.Groups...), idx: idx}
	saved := len(r.routes.routes)
	for _, pf := range pc.Routes {
		if err := r.routes.add(pf, p); err != nil {
			r.routes.routes = r.routes.routes[:saved]
			return fmt.Errorf("peer %q: %w", pc.Name, err)
		}
	}
	if idx < len(r.peers) {
		r.free = r.free[:len(r.free)-1]
		r.peers[idx] = p
	} else {
		r.peers = append(r.peers, p)
	}
	r.byName[p.id] = p
	return nil
}

// republishLocked compiles the routes and the ACL and publishes them to the
// data path.
func (r *Router) republishLocked() error {
	a, err := compileACL(&r.aclCfg, r.peers)
	if err != nil {
		return err
	}
	r.state.Store(&dataState{fib: r.routes.compile(), acl: a})
	return nil
}

// AddPeer adds a peer and its routes. It fails, changing nothing, if the
// name is taken, the kind is invalid, or a route is invalid or overlaps
// another peer's.
func (r *Router) AddPeer(pc PeerConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.addPeerLocked(pc); err != nil {
		return err
	}
	return r.republishLocked()
}

// AddRoute gives prefix to the peer owner. It returns ErrUnknownPeer if
// owner is not configured, ErrBadPrefix if prefix is invalid, not masked, or
// is not a single address for a client, and ErrOverlap if it overlaps a
// route of another peer, unless both are connectors and the prefix is
// exactly the other's: then owner is a standby owner of the shared prefix
// (subnet failover, see SetActive). Adding an existing route is a no-op.
func (r *Router) AddRoute(prefix netip.Prefix, owner PeerID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byName[owner]
	if !ok {
		return fmt.Errorf("route %v: peer %q: %w", prefix, owner, ErrUnknownPeer)
	}
	if err := r.routes.add(prefix, p); err != nil {
		return err
	}
	return r.republishLocked()
}

// RemoveOwner removes every route of owner and returns how many it removed.
// The peer stays configured (its counters and ACL rules remain).
func (r *Router) RemoveOwner(owner PeerID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byName[owner]
	if !ok {
		return 0
	}
	return r.removeRoutesLocked(p)
}

// removeRoutesLocked removes p's routes and publishes the route table if
// that changed it; the ACL compiled before still applies. mu is held.
func (r *Router) removeRoutesLocked(p *peer) int {
	n := r.routes.removeOwner(p)
	if n > 0 {
		r.state.Store(&dataState{fib: r.routes.compile(), acl: r.state.Load().acl})
	}
	return n
}

// SetACL replaces the access policy. It fails, changing nothing, if cfg is
// invalid (ErrBadRule, naming the rule).
func (r *Router) SetACL(cfg ACLConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, err := compileACL(&cfg, r.peers)
	if err != nil {
		return err
	}
	r.aclCfg = cfg
	r.state.Store(&dataState{fib: r.state.Load().fib, acl: a})
	return nil
}

// Lookup returns the peer that owns addr by longest prefix match.
func (r *Router) Lookup(addr netip.Addr) (PeerID, bool) {
	p := r.state.Load().fib.lookup(addr.Unmap())
	if p == nil {
		return "", false
	}
	return p.id, true
}

// AllowedIPs returns the routes of owner, sorted: the addresses the peer
// may send from and is sent to (its WireGuard allowed IPs, as a client's
// or a connector's configuration shows them).
func (r *Router) AllowedIPs(owner PeerID) []netip.Prefix {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byName[owner]
	if !ok {
		return nil
	}
	return r.routes.prefixes(p)
}

// Stats returns a snapshot of the counters. Counters are read one by one
// while traffic flows, so they are not mutually consistent to the packet.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	peers := append([]*peer(nil), r.peers...)
	r.mu.Unlock()
	s := Stats{
		Peers:           make(map[PeerID]PeerStats, len(peers)),
		ICMPErrors:      r.icmpErrors.Load(),
		ICMPRateLimited: r.icmpLimited.Load(),
	}
	for _, p := range peers {
		if p.id != "" {
			s.Peers[p.id] = p.stats()
		}
	}
	for i := range s.Unattributed {
		s.Unattributed[i] = r.unattributed[i].Load()
	}
	return s
}

// verdict kinds.
const (
	vDrop = iota
	vForward
	vICMP
)

// verdict is the fate of one packet.
type verdict struct {
	kind uint8
	v6   bool
	typ  uint8
	code uint8
	rest uint32
	pkt  []byte // the packet, cut to its IP length
	src  *peer  // owner of the source
	dst  *peer  // owner of the destination (vForward)
}

// classify decides the fate of b, a packet the peer attached as from sent,
// and sets v. For vForward it has decremented the TTL or hop limit; it
// counts drops.
func (r *Router) classify(st *dataState, b []byte, v *verdict, from any) {
	*v = verdict{}
	if len(b) == 0 {
		r.unattributed[DropMalformed].Add(1)
		return
	}
	var f flow
	var ttl uint8
	var ip4 packet.IPv4
	var ip6 packet.IPv6
	switch b[0] >> 4 {
	case 4:
		var err error
		ip4, err = packet.ParseIPv4(b)
		if err != nil || !ip4.ChecksumValid() {
			r.unattributed[DropMalformed].Add(1)
			return
		}
		if !r.ports(&f, ip4.IsNonFirstFragment(), ip4.Protocol(), ip4.Payload()) {
			r.unattributed[DropMalformed].Add(1)
			return
		}
		v.pkt = ip4.Bytes()
		f.src, f.dst = ip4.Src(), ip4.Dst()
		f.srcP = st.fib.lookup4(binary.BigEndian.Uint32(b[12:16]))
		if f.srcP != nil {
			f.dstP = st.fib.lookup4(binary.BigEndian.Uint32(b[16:20]))
		}
		ttl = ip4.TTL()
	case 6:
		var err error
		ip6, err = packet.ParseIPv6(b)
		if err != nil {
			r.unattributed[DropMalformed].Add(1)
			return
		}
		f.v6 = true
		if !r.ports(&f, ip6.IsNonFirstFragment(), ip6.Protocol(), ip6.Transport()) {
			r.unattributed[DropMalformed].Add(1)
			return
		}
		v.pkt = ip6.Bytes()
		v.v6 = true
		f.src, f.dst = ip6.Src(), ip6.Dst()
		f.srcP = st.fib.lookup6(u128{binary.BigEndian.Uint64(b[8:16]), binary.BigEndian.Uint64(b[16:24])})
		if f.srcP != nil {
			f.dstP = st.fib.lookup6(u128{binary.BigEndian.Uint64(b[24:32]), binary.BigEndian.Uint64(b[32:40])})
		}
		ttl = ip6.HopLimit()
	default:
		r.unattributed[DropMalformed].Add(1)
		return
	}
	// The source must be the sender's: its own address or one of its
	// subnets (a shared subnet's standby owners included: a LAN may
	// route its replies through any connector of a failover pair).
	if f.srcP == nil {
		r.unattributed[DropSpoofed].Add(1)
		return
	}
	if a := f.srcP.att.Load(); a == nil || a.v != from {
		var sb *peer
		if f.v6 {
			sb = st.fib.standby6(u128{binary.BigEndian.Uint64(b[8:16]), binary.BigEndian.Uint64(b[16:24])}, from)
		} else {
			sb = st.fib.standby4(binary.BigEndian.Uint32(b[12:16]), from)
		}
		if sb == nil {
			r.unattributed[DropSpoofed].Add(1)
			return
		}
		f.srcP = sb
	}
	v.src = f.srcP
	if f.dstP == nil {
		r.reject(v, DropNoRoute, packet.ICMPv4DestUnreachable, packet.ICMPv4CodeNetUnreachable,
			packet.ICMPv6DestUnreachable, packet.ICMPv6CodeNoRoute, 0)
		return
	}
	switch st.acl.eval(&f) {
	case ActionDrop:
		v.src.drops[DropACL].Add(1)
		return
	case ActionReject:
		r.reject(v, DropACL, packet.ICMPv4DestUnreachable, packet.ICMPv4CodeAdminProhibited,
			packet.ICMPv6DestUnreachable, packet.ICMPv6CodeAdminProhibited, 0)
		return
	}
	if ttl <= 1 {
		r.reject(v, DropTTL, packet.ICMPv4TimeExceeded, packet.ICMPv4CodeTTLExceeded,
			packet.ICMPv6TimeExceeded, packet.ICMPv6CodeHopLimitExceeded, 0)
		return
	}
	if len(v.pkt) > r.mtu {
		if !v.v6 && !ip4.DontFragment() {
			// The router does not fragment.
			v.src.drops[DropTooBig].Add(1)
			return
		}
		r.reject(v, DropTooBig, packet.ICMPv4DestUnreachable, packet.ICMPv4CodeFragNeeded,
			packet.ICMPv6PacketTooBig, 0, uint32(r.mtu))
		return
	}
	if v.v6 {
		ip6.DecrementHopLimit()
	} else {
		ip4.DecrementTTL()
	}
	v.dst = f.dstP
	v.kind = vForward
}

// ports sets f.proto and, for TCP and UDP packets that carry a transport
// header, f.dstPort. It returns false if that header is truncated.
func (r *Router) ports(f *flow, nonFirstFragment bool, proto uint8, l4 []byte) bool {
	f.proto = proto
	if nonFirstFragment || (proto != packet.ProtoTCP && proto != packet.ProtoUDP) {
		return true
	}
	switch proto {
	case packet.ProtoTCP:
		t, err := packet.ParseTCP(l4)
		if err != nil {
			return false
		}
		f.dstPort = t.DstPort()
	case packet.ProtoUDP:
		u, err := packet.ParseUDP(l4)
		if err != nil {
			return false
		}
		f.dstPort = u.DstPort()
	}
	f.hasPorts = true
	return true
}

// reject counts a drop of v for reason and turns v into an ICMP error of
// the packet's family, if the router has an address of that family and the
// rate limit allows.
func (r *Router) reject(v *verdict, reason DropReason, t4, c4, t6, c6 uint8, rest uint32) {
	v.src.drops[reason].Add(1)
	if v.v6 && !r.addr6.IsValid() || !v.v6 && !r.addr4.IsValid() {
		return
	}
	if !r.icmp.allow() {
		r.icmpLimited.Add(1)
		return
	}
	v.kind = vICMP
	if v.v6 {
		v.typ, v.code = t6, c6
	} else {
		v.typ, v.code = t4, c4
	}
	v.rest = rest
}

// putICMP writes the ICMP error of v into dst and returns its length, 0 if
// the offending packet must not be answered (an ICMP error, a non-first
// fragment, a multicast source or destination).
func (r *Router) putICMP(dst []byte, v *verdict) int {
	var n int
	var err error
	if v.v6 {
		n, err = packet.PutICMPv6Error(dst, r.addr6, v.typ, v.code, v.rest, v.pkt)
	} else {
		n, err = packet.PutICMPv4Error(dst, r.addr4, v.typ, v.code, v.rest, v.pkt)
	}
	if err != nil {
		return 0
	}
	return n
}

// limiter is a token bucket for ICMP errors. It is only consulted on error
// paths, so a mutex is cheap enough.
type limiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second; < 0 unlimited
	tokens float64
	last   time.Time
}

func (l *limiter) init(rate int) {
	l.rate = float64(rate)
	l.tokens = l.rate
}

func (l *limiter) allow() bool {
	if l.rate < 0 {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
