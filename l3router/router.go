package l3router

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/dataplane/packet"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// Defaults and limits of Config.
const (
	DefaultMTU      = 1420 // as wireguard-go's device.DefaultMTU
	MinMTU          = 1280 // the IPv6 minimum MTU; also fits every ICMP error
	MaxMTU          = 65535
	DefaultQueueLen = 2048
	MaxQueueLen     = 1 << 20
	DefaultICMPRate = 1000
	DefaultName     = "onramp-l3"
)

// BatchSize is the router's batch size: wireguard-go's conn.IdealBatchSize.
const BatchSize = conn.IdealBatchSize

// Config configures a Router.
type Config struct {
	// Name is what Name returns; DefaultName if empty.
	Name string `yaml:"name"`
	// MTU is the largest packet the router forwards (DefaultMTU if 0,
	// at least MinMTU). Larger packets are dropped and answered with
	// ICMP fragmentation needed (IPv4 with DF) or packet too big (IPv6).
	MTU int `yaml:"mtu"`
	// QueueLen is the number of packet buffers between Write and Read, a
	// power of two (DefaultQueueLen if 0). Each holds MTU bytes. One
	// sending peer may hold at most half of them.
	QueueLen int `yaml:"queue_len"`
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

// Router is an in-memory IP router between the peers of one wireguard-go
// device: the device's tun.Device. See the package documentation.
//
// Control methods (AddPeer, AddRoute, RemoveOwner, SetACL) are safe for
// concurrent use with each other and with the data path, which sees each
// change atomically from its next batch on.
type Router struct {
	name         string
	mtu          int
	addr4, addr6 netip.Addr

	state atomic.Pointer[dataState]

	mu     sync.Mutex // guards the control plane below
	peers  []*peer    // by index; a forgotten peer's slot holds a tombstone (no id)
	free   []int      // indexes of tombstones, taken again by the next peers
	byName map[PeerID]*peer
	routes routeTable
	aclCfg ACLConfig

	ring   *ring
	readMu sync.Mutex // one Read at a time

	icmp limiter

	unattributed            [NumDropReasons]atomic.Uint64
	icmpErrors, icmpLimited atomic.Uint64
	icmpQueueFull           atomic.Uint64
	// peerShare is the most ring slots one sending peer may hold.
	peerShare int64
	readShort atomic.Uint64
	events    chan tun.Event
	closed    chan struct{}
	closeOnce sync.Once
}

var _ tun.Device = (*Router)(nil)

// New returns a Router configured by cfg. It returns an error naming the
// offending field, peer, route or rule if cfg is invalid, including
// routes of different peers that overlap (ErrOverlap).
func New(cfg Config) (*Router, error) {
	r := &Router{
		name:   cfg.Name,
		mtu:    cfg.MTU,
		addr4:  cfg.Address4,
		addr6:  cfg.Address6,
		byName: make(map[PeerID]*peer),
		events: make(chan tun.Event, 1),
		closed: make(chan struct{}),
	}
	if r.name == "" {
		r.name = DefaultName
	}
	if r.mtu == 0 {
		r.mtu = DefaultMTU
	}
	if r.mtu < MinMTU || r.mtu > MaxMTU {
		return nil, fmt.Errorf("mtu %d: want %d to %d: %w", cfg.MTU, MinMTU, MaxMTU, ErrBadConfig)
	}
	qlen := cfg.QueueLen
	if qlen == 0 {
		qlen = DefaultQueueLen
	}
	if qlen < 1 || qlen&(qlen-1) != 0 || qlen > MaxQueueLen {
		return nil, fmt.Errorf("queue_len %d: want a power of two up to %d: %w", cfg.QueueLen, MaxQueueLen, ErrBadConfig)
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
	r.ring = newRing(qlen, r.mtu)
	r.peerShare = max(1, int64(qlen)/2)
	r.events <- tun.EventUp
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
// route of another peer (same subnet on several connectors included: subnet
// failover is a later feature). Adding an existing route is a no-op.
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

// AllowedIPs returns the routes of owner, sorted: exactly the allowed_ip
// lines the wireguard-go device must have for that peer, so that the
// device's cryptokey routing and the router agree.
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
		ICMPQueueFull:   r.icmpQueueFull.Load(),
		ReadShort:       r.readShort.Load(),
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

// File implements tun.Device. It returns nil: there is no file.
func (r *Router) File() *os.File { return nil }

// MTU implements tun.Device. It returns the configured MTU.
func (r *Router) MTU() (int, error) { return r.mtu, nil }

// Name implements tun.Device. It returns the configured name.
func (r *Router) Name() (string, error) { return r.name, nil }

// Events implements tun.Device. The channel carries one tun.EventUp and is
// closed by Close.
func (r *Router) Events() <-chan tun.Event { return r.events }

// BatchSize implements tun.Device. It returns BatchSize.
func (r *Router) BatchSize() int { return BatchSize }

// Close implements tun.Device: pending and later Reads and Writes return
// os.ErrClosed, and the Events channel is closed. It is idempotent.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		close(r.closed)
		close(r.events)
	})
	return nil
}

// Read implements tun.Device: it hands the device the packets the router
// wants encrypted and sent to a peer, forwarded packets and ICMP errors.
//
// It blocks until at least one packet is queued or the router is closed,
// then copies up to len(bufs) packets, packet i into bufs[i][offset:], sets
// sizes[i] to its length and returns how many it copied. len(sizes) must be
// >= len(bufs). The router keeps no reference to bufs after Read returns. A
// queued packet longer than len(bufs[i])-offset is dropped (Stats.ReadShort).
// After Close, Read returns queued packets, then 0 and os.ErrClosed.
// Concurrent Reads are serialized.
func (r *Router) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	r.readMu.Lock()
	defer r.readMu.Unlock()
	if len(sizes) < len(bufs) {
		bufs = bufs[:len(sizes)]
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	for {
		if n := r.ring.drain(bufs, sizes, offset, &r.readShort); n > 0 {
			return n, nil
		}
		select {
		case <-r.ring.bell:
		case <-r.closed:
			if n := r.ring.drain(bufs, sizes, offset, &r.readShort); n > 0 {
				return n, nil
			}
			return 0, os.ErrClosed
		}
	}
}

// Write implements tun.Device: it takes the packets the device decrypted
// from one peer, packet i at bufs[i][offset:], routes them and returns
// len(bufs) (or 0 and os.ErrClosed after Close). Per-packet failures are
// counted and the packet dropped, never returned as an error. The router
// may modify bufs[i][offset:] (the TTL) and keeps no reference to bufs after
// Write returns: accepted packets are copied into the queue.
//
// Write never blocks: when the queue towards Read is full, or the sending
// peer already holds its share of it (half), the remaining packets are
// dropped (DropQueueFull), as a router's full egress queue does. Blocking instead would stall the sending peer's receive goroutine
// in wireguard-go (and with it that peer's keepalive and handshake timers)
// behind whichever peers the device is slow to send to, and it would give
// one flooding peer the power to hold up every other.
//
// Which peer sent the packets is not passed by wireguard-go; the router
// knows it by the source address instead. This is sound because the device
// drops every decrypted packet whose source is outside the sending peer's
// AllowedIPs (receive.go, RoutineSequentialReceiver), and AllowedIPs equal
// the router's routes (see AllowedIPs). A source no peer owns means the two
// disagree: the packet is dropped as DropSpoofed.
//
// Write is safe for concurrent use: wireguard-go calls it from one
// goroutine per peer.
func (r *Router) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-r.closed:
		return 0, os.ErrClosed
	default:
	}
	st := r.state.Load()
	var vs [BatchSize]verdict
	for start := 0; start < len(bufs); start += BatchSize {
		chunk := bufs[start:min(start+BatchSize, len(bufs))]
		// Counters are summed over runs of packets of one peer (a
		// Write batch normally comes from one peer and goes to few),
		// to keep atomic adds on shared cache lines off the
		// per-packet path.
		rx, tx := tally{rx: true}, tally{}
		need := 0
		// The sender's share of the ring: a Write batch comes from
		// one peer, whose held count is read once per run of it.
		var sharer *peer
		var held int64
		for i, b := range chunk {
			v := &vs[i]
			r.classify(st, b, offset, v, false, nil)
			if v.src != nil {
				rx.add(v.src, len(v.pkt))
			}
			if v.kind == vDrop {
				continue
			}
			if v.src != sharer {
				sharer, held = v.src, v.src.held.Load()
			}
			if held >= r.peerShare {
				r.queueFull(v)
				v.kind = vDrop
				continue
			}
			held++
			need++
		}
		rx.flush()
		if need == 0 {
			continue
		}
		pos, free := r.ring.reserve(need)
		var owner *peer
		var taken int64
		for i := range chunk {
			v := &vs[i]
			if v.kind == vDrop {
				continue
			}
			if free == 0 {
				r.queueFull(v)
				continue
			}
			s := r.ring.at(pos)
			pos++
			free--
			s.owner = v.src
			if v.src != owner {
				if owner != nil {
					owner.held.Add(taken)
				}
				owner, taken = v.src, 0
			}
			taken++
			if v.kind == vForward {
				s.n = copy(s.buf, v.pkt)
				tx.add(v.dst, s.n)
			} else {
				s.n = r.putICMP(s.buf, v)
				if s.n > 0 {
					r.icmpErrors.Add(1)
					tx.add(v.src, s.n)
				}
			}
			r.ring.publish(s)
		}
		if owner != nil {
			owner.held.Add(taken)
		}
		tx.flush()
		r.ring.wake()
	}
	return len(bufs), nil
}

// queueFull counts a packet the ring has no room for: a forwarded packet
// against its sender; an ICMP error (whose packet is already counted by
// the error's reason) in the router's lost-errors count.
func (r *Router) queueFull(v *verdict) {
	if v.kind == vForward {
		v.src.drops[DropQueueFull].Add(1)
	} else {
		r.icmpQueueFull.Add(1)
	}
}

// tally sums packets and bytes of consecutive packets of one peer.
type tally struct {
	p              *peer
	packets, bytes uint64
	rx             bool // counts rx, else tx
}

func (t *tally) add(p *peer, n int) {
	if p != t.p {
		t.flush()
		t.p = p
	}
	t.packets++
	t.bytes += uint64(n)
}

func (t *tally) flush() {
	if t.p == nil {
		return
	}
	if t.rx {
		t.p.rxPackets.Add(t.packets)
		t.p.rxBytes.Add(t.bytes)
	} else {
		t.p.txPackets.Add(t.packets)
		t.p.txBytes.Add(t.bytes)
	}
	t.p, t.packets, t.bytes = nil, 0, 0
}

// verdict kinds.
const (
	vDrop = iota
	vForward
	vICMP
)

// verdict is the fate of one packet of a Write batch.
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

// classify decides the fate of bufs[offset:] and sets v. For vForward it
// has decremented the TTL or hop limit; it counts drops. With direct set
// (Route), the source must belong to the peer attached as from.
func (r *Router) classify(st *dataState, b []byte, offset int, v *verdict, direct bool, from any) {
	*v = verdict{}
	if offset < 0 || offset >= len(b) {
		r.unattributed[DropMalformed].Add(1)
		return
	}
	b = b[offset:]
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
	if f.srcP == nil {
		r.unattributed[DropSpoofed].Add(1)
		return
	}
	if direct {
		if a := f.srcP.att.Load(); a == nil || a.v != from {
			r.unattributed[DropSpoofed].Add(1)
			return
		}
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
