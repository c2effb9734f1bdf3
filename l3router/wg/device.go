//go:build linux

package wg

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/onramp-net/onramp/dataplane/steer"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// Device is a running WireGuard device. Its methods are safe for
// concurrent use.
type Device struct {
	id     identity
	router *l3router.Router
	tun    tun.Device
	// tunPeer is the peer of a TUN device.
	tunPeer atomic.Pointer[Peer]
	mtu     int
	log     *slog.Logger
	start   time.Time
	port    int
	socks4  []bind
	socks6  []bind

	mu    sync.Mutex
	peers map[l3config.Key]*Peer

	idxMu sync.RWMutex
	index map[uint32]indexEntry

	onHandshake func(netip.Addr) // Config.OnHandshake

	hs       HandshakeLimits // defaults filled
	hsMu     sync.Mutex
	hsBucket bucket // the device's handshake budget
	hsUntil  int64  // device clock until which the device is under load

	cookies    cookieJar
	cookieAEAD cipher.AEAD // seals our cookie replies
	hsCount    hsCounters
	rejected   rejectCounts // handshake messages refused by the handshake, by reason
	drops      [NumDatagramDrops]atomic.Uint64

	staging staging // packets held for peers without a session (stage.go)

	steer steering // the steering program's use (steer.go)

	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// indexEntry is what a local index names: a keypair, or (kp nil) the
// initiation of a handshake in progress.
type indexEntry struct {
	peer *Peer
	kp   *keypair
}

// keypair is one session's transport keys.
type keypair struct {
	send, recv  cipher.AEAD
	sendCtr     atomic.Uint64
	replayMu    sync.Mutex
	replay      replayWindow
	created     int64 // device clock
	initiator   bool
	local       uint32
	remoteIndex uint32
	peer        *Peer
}

func (kp *keypair) fresh(now int64) bool {
	return kp != nil && now-kp.created < int64(rejectAfterTime)
}

// Peer is a peer of the device.
type Peer struct {
	// Set when the peer is added; remote.ss is zeroed, under mu, when
	// it is removed.
	dev    *Device
	name   l3router.PeerID
	remote remote

	// The handshake, guarded by mu.
	mu            sync.Mutex
	hs            handshake // the one in progress (hsState), zeroed when it ends
	hsState       int       // hsNone or hsInitSent
	hsStarted     int64     // device clock of the first initiation of this attempt
	lastInitSent  int64     // device clock of the last initiation sent
	lastTimestamp [12]byte  // TAI64N of the last initiation accepted: older ones are replays
	lastInitRecv  int64     // device clock of the last initiation accepted (initiationMinGap)
	seenInit      bool      // lastTimestamp and lastInitRecv are set
	cookie        [16]byte  // the peer's last cookie, for the mac2 of our messages
	cookieSet     int64     // device clock when it came
	hasCookie     bool
	lastMAC1      [16]byte // mac1 of our last message: a cookie reply must answer it
	removed       bool

	// Packets waiting for a session, guarded by mu (stage.go).
	staged []stagedPacket // oldest first

	// Sessions and where the peer is: read by the loops without a lock.
	// The sessions change under mu; the endpoint changes on receipt
	// (roaming).
	endpoint                atomic.Pointer[endpoint]
	current, previous, next atomic.Pointer[keypair]

	// Timers, on the device clock (atomic).
	lastSent, lastRecv atomic.Int64 // any packet
	lastRecvData       atomic.Int64 // a data packet (not a keepalive)
	unanswered         atomic.Int64 // the first send since the last receive; 0 if none
	// staleRecv is when the peer last sent, from its endpoint, on a
	// session this hub had let expire (it still takes it for alive).
	staleRecv atomic.Int64
	// expired are the indexes of a hub's sessions past
	// REJECT_AFTER_TIME, kept without their sessions for
	// KEEPALIVE_TIMEOUT + REKEY_TIMEOUT more (under mu).
	expired   []expiredIndex
	initAt    atomic.Int64 // the last initiation sent while one is pending; 0 if none
	keepalive atomic.Int64 // persistent keepalive interval (ns); 0: none

	// Stats (atomic).
	lastHandshake    atomic.Int64 // unix nanoseconds of the last completed handshake
	rxBytes, txBytes atomic.Uint64
	handshakes       atomic.Uint64 // completed, either side
	dropped          atomic.Uint64 // TUN device: packets from the peer outside its allowed IPs or malformed

	// Cryptokey routing of a TUN device (atomic): sources accepted,
	// destinations sent.
	allowed atomic.Pointer[[]netip.Prefix]

	// Paths (paths.go): the peer's paths while it has several
	// endpoints (nil: one); on a path other than the peer itself, the
	// peer it belongs to.
	paths atomic.Pointer[pathSet]
	main  *Peer
}

// New starts a device: it binds the port for IPv4 and IPv6 (as far as the
// host has them; only the family of Config.ListenAddr if it names an
// address), starts the loops and the timers.
func New(cfg Config) (*Device, error) { return newDevice(cfg, listenUDP) }

// newDevice is New with the device's binds opened by listen.
func newDevice(cfg Config, listen listenFunc) (*Device, error) {
	if (cfg.Router == nil) == (cfg.TUN == nil) {
		return nil, errors.New("wg: want a router or a TUN")
	}
	hs, err := cfg.Handshakes.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Device{
		id:     newIdentity(cfg.PrivateKey),
		router: cfg.Router,
		tun:    cfg.TUN,
		mtu:    cfg.MTU,
		log:    cfg.Logger,
		start:  time.Now(),
		peers:  map[l3config.Key]*Peer{},
		index:  map[uint32]indexEntry{},
		closed: make(chan struct{}),
		hs:     hs,

		onHandshake: cfg.OnHandshake,
	}
	if d.mtu == 0 {
		d.mtu = l3router.DefaultMTU
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	if cfg.MaxStagedBytes < 0 {
		return nil, fmt.Errorf("wg: MaxStagedBytes %d: negative", cfg.MaxStagedBytes)
	}
	d.staging.max = int64(cfg.MaxStagedBytes)
	if d.staging.max == 0 {
		d.staging.max = DefaultMaxStagedBytes
	}
	d.hsBucket = bucket{tokens: float64(hs.PerSecond)}
	d.cookieAEAD, _ = chacha20poly1305.NewX(d.id.cookieKey[:])
	loops := cfg.Loops
	if loops <= 0 {
		loops = runtime.GOMAXPROCS(0)
	}
	socks := loops
	if cfg.Steer {
		loops = min(loops, steer.MaxLoops)
		socks = loops + 1 // the handshake socket first
	}
	port := cfg.ListenPort
	addr := cfg.ListenAddr.Unmap()
	one := addr.IsValid() && !addr.IsUnspecified() // one address: its family's sockets only
	var err4, err6 error
	for i := 0; i < socks && (!one || addr.Is4()); i++ {
		s, err := listen("udp4", addr, port)
		if err != nil {
			err4 = err
			break
		}
		port = s.port()
		d.socks4 = append(d.socks4, s)
	}
	for i := 0; i < socks && (!one || addr.Is6()); i++ {
		s, err := listen("udp6", addr, port)
		if err != nil {
			err6 = err
			break
		}
		port = s.port()
		d.socks6 = append(d.socks6, s)
	}
	if len(d.socks4) == 0 && len(d.socks6) == 0 {
		where := fmt.Sprint("udp port ", cfg.ListenPort)
		if addr.IsValid() {
			where = netip.AddrPortFrom(addr, uint16(cfg.ListenPort)).String()
		}
		return nil, fmt.Errorf("wg: listen on %s: %w", where, errors.Join(err4, err6))
	}
	if err4 != nil && len(d.socks4) == 0 {
		d.log.Warn("l3 wireguard: no IPv4 socket", "port", port, "err", err4)
	}
	if err6 != nil && len(d.socks6) == 0 {
		d.log.Warn("l3 wireguard: no IPv6 socket", "port", port, "err", err6)
	}
	d.port = port
	if cfg.Steer {
		d.startSteering(loops)
	}
	for _, s := range append(append([]bind{}, d.socks4...), d.socks6...) {
		d.wg.Add(1)
		go d.loop(s)
	}
	d.wg.Add(1)
	go d.timers()
	if d.tun != nil {
		d.wg.Add(2)
		go d.tunReader()
		go func() {
			defer d.wg.Done()
			for range d.tun.Events() {
			}
		}()
	}
	return d, nil
}

// Port returns the UDP port.
func (d *Device) Port() int { return d.port }

// PublicKey returns the device's public key.
func (d *Device) PublicKey() l3config.Key { return d.id.pub }

func (d *Device) now() int64 { return int64(time.Since(d.start)) }

// Close stops the loops and timers, closes the sockets and zeroes the
// peers' keys.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		close(d.closed)
		for _, s := range append(append([]bind{}, d.socks4...), d.socks6...) {
			s.close()
		}
		if d.steer.prog != nil {
			d.steer.prog.Close()
		}
		if d.tun != nil {
			d.tun.Close()
		}
	})
	d.wg.Wait()
	// The peers stay (their stats can be read) but their keys go.
	d.mu.Lock()
	peers := make([]*Peer, 0, len(d.peers))
	for _, p := range d.peers {
		peers = append(peers, p.allPaths()...)
	}
	d.mu.Unlock()
	for _, p := range peers {
		d.forget(p)
	}
	return nil
}

// AddPeer adds the peer with key pub, routed by the router's peer name,
// and attaches it to the router under that name.
func (d *Device) AddPeer(name l3router.PeerID, pub l3config.Key) (*Peer, error) {
	r, err := newRemote(&d.id, pub)
	if err != nil {
		return nil, fmt.Errorf("wg: peer %q: %w", name, err)
	}
	p := &Peer{dev: d, name: name, remote: r}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.peers[pub]; ok {
		return nil, fmt.Errorf("wg: peer %q: key already a peer", name)
	}
	if d.router != nil {
		if err := d.router.Attach(name, p); err != nil {
			return nil, fmt.Errorf("wg: peer %q: %w", name, err)
		}
	} else if !d.tunPeer.CompareAndSwap(nil, p) {
		return nil, fmt.Errorf("wg: peer %q: a TUN device has one peer", name)
	}
	d.peers[pub] = p
	return p, nil
}

// RemovePeer removes the peer with key pub at once: its sessions end, its
// packets are no longer decrypted.
func (d *Device) RemovePeer(pub l3config.Key) {
	d.mu.Lock()
	p, ok := d.peers[pub]
	var paths []*Peer
	if ok {
		paths = p.allPaths()
		for _, q := range paths {
			d.hsCount.retired.Add(q.handshakes.Load())
		}
	}
	delete(d.peers, pub)
	d.mu.Unlock()
	if !ok {
		return
	}
	d.tunPeer.CompareAndSwap(p, nil)
	for _, q := range paths {
		d.forget(q)
	}
	// After forget: every index is made under p.mu and only while the
	// peer is not removed, so no handshake can give p a slot again.
	d.releaseSlot(p)
}

// forget ends p's sessions and handshake and zeroes its key material:
// the handshake's state and the static secret at once, the sessions' keys
// once no loop refers to them any more (wipeWhenUnreachable).
func (d *Device) forget(p *Peer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removed = true
	d.dropStagedLocked(p, len(p.staged), stageDropRemoved)
	d.endHandshakeLocked(p)
	clear(p.remote.ss[:]) // read under p.mu only
	for _, slot := range []*atomic.Pointer[keypair]{&p.current, &p.previous, &p.next} {
		if kp := slot.Swap(nil); kp != nil {
			d.dropIndex(kp.local, p)
		}
	}
	for _, e := range p.expired {
		d.dropIndex(e.index, p)
	}
	p.expired = nil
}

// Stats returns the peer's counters.
func (p *Peer) Stats() PeerStats {
	s := PeerStats{RxBytes: p.rxBytes.Load(), TxBytes: p.txBytes.Load(), Handshakes: p.handshakes.Load(), Dropped: p.dropped.Load()}
	if t := p.lastHandshake.Load(); t != 0 {
		s.LastHandshake = time.Unix(0, t)
	}
	if ep := p.endpoint.Load(); ep != nil {
		s.Endpoint = ep.AddrPort
	}
	s.Loop = p.dev.loopOf(p)
	return s
}

// LastReceived returns when the device last received an authenticated
// message from the peer: a handshake message, a keepalive or data. It is
// zero if none yet. It reads one atomic, for liveness checks (subnet
// failover).
func (p *Peer) LastReceived() time.Time {
	t := p.lastRecv.Load()
	if t == 0 {
		return time.Time{}
	}
	return p.dev.start.Add(time.Duration(t))
}

// SetEndpoint sets the peer's address before it has sent anything (the
// device learns it from each authenticated packet anyway).
func (p *Peer) SetEndpoint(ep netip.AddrPort) { p.setEndpoint(endpoint{AddrPort: ep}) }

// setEndpoint records where the peer is: where its last authenticated
// packet came from, and the local address it went to.
func (p *Peer) setEndpoint(ep endpoint) { p.endpoint.Store(&ep) }

// forgetLocal drops the local address of the peer's endpoint if it is
// still ep's: sending from it failed (the address has left the host), so
// what goes to the peer takes the routing table's source until its next
// packet names one again.
func (p *Peer) forgetLocal(ep endpoint) {
	if cur := p.endpoint.Load(); cur != nil && *cur == ep {
		p.endpoint.CompareAndSwap(cur, &endpoint{AddrPort: ep.AddrPort})
	}
}

// PublicKey returns the peer's key.
func (p *Peer) PublicKey() l3config.Key { return p.remote.pub }

// Keepalive returns the persistent keepalive interval (0: none).
func (p *Peer) Keepalive() time.Duration { return time.Duration(p.keepalive.Load()) }

// AllowedIPs returns a TUN device's peer's allowed IPs.
func (p *Peer) AllowedIPs() []netip.Prefix {
	if ps := p.allowed.Load(); ps != nil {
		return append([]netip.Prefix(nil), (*ps)...)
	}
	return nil
}

// SetAllowedIPs sets a TUN device's peer's allowed IPs: the sources it may
// send from and the destinations sent to it.
func (p *Peer) SetAllowedIPs(ps []netip.Prefix) {
	c := append([]netip.Prefix(nil), ps...)
	p.allowed.Store(&c)
}

// allows reports whether a is in p's allowed IPs.
func (p *Peer) allows(a netip.Addr) bool {
	ps := p.allowed.Load()
	if ps == nil {
		return false
	}
	for _, pf := range *ps {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

// SetKeepalive sets the persistent keepalive interval (0: none). With
// one, the device starts a session with the peer at once, as wireguard-go
// does, and keeps it alive.
//
// A peer with several endpoints does so on each path.
func (p *Peer) SetKeepalive(d time.Duration) {
	for _, q := range p.allPaths() {
		q.keepalive.Store(int64(d))
		if d > 0 {
			now := q.dev.now()
			if !q.dev.sealAndSend(q, nil, now) {
				q.dev.initiate(q, now)
			}
		}
	}
}

// newIndex registers a fresh random local index for e.
func (d *Device) newIndex(e indexEntry) uint32 {
	d.idxMu.Lock()
	for {
		i := randomIndex()
		if _, taken := d.index[i]; !taken && i != 0 {
			d.index[i] = e
			d.idxMu.Unlock()
			d.steerIndex(i, e.peer)
			return i
		}
	}
}

// expiredIndex is an index whose session expired, kept until (device
// clock) to know the peer that still sends on it.
type expiredIndex struct {
	index uint32
	until int64
}

// staleIndex keeps index i, if it is still p's, naming p but no session.
func (d *Device) staleIndex(i uint32, p *Peer) {
	d.idxMu.Lock()
	if e, ok := d.index[i]; ok && e.peer == p {
		d.index[i] = indexEntry{peer: p}
	}
	d.idxMu.Unlock()
}

// dropIndex forgets index i if it is still p's.
func (d *Device) dropIndex(i uint32, p *Peer) {
	if i == 0 {
		return
	}
	d.idxMu.Lock()
	e, ok := d.index[i]
	if ok && e.peer == p {
		delete(d.index, i)
	}
	d.idxMu.Unlock()
	if ok && e.peer == p {
		d.unsteerIndex(i)
	}
}

func (d *Device) lookup(i uint32) indexEntry {
	d.idxMu.RLock()
	e := d.index[i]
	d.idxMu.RUnlock()
	return e
}

// sockFor returns the first socket of dst's family.
func (d *Device) sockFor(dst netip.AddrPort) bind {
	socks := d.socks6
	if dst.Addr().Is4() || dst.Addr().Is4In6() {
		socks = d.socks4
	}
	if len(socks) == 0 {
		return nil
	}
	return socks[0]
}

// sendControl sends one message (a handshake message, a cookie reply, a
// keepalive, a staged packet) to dst at once, from dst's local address.
// If that address is gone, p (nil for a cookie reply) forgets it.
func (d *Device) sendControl(p *Peer, dst endpoint, msg []byte) {
	d.countSent(msg)
	if s := d.sockFor(dst.AddrPort); s != nil {
		if gone, _ := s.sendOne(dst, msg); gone && p != nil {
			p.forgetLocal(dst)
		}
	}
}

// bucket is a token bucket on the device clock.
type bucket struct {
	tokens float64
	last   int64
}

// refill adds the tokens earned since the last call, up to burst. A now
// before the last call's (loops read the clock apart) adds nothing.
func (b *bucket) refill(now int64, rate, burst float64) {
	if now <= b.last {
		return
	}
	b.tokens = min(burst, b.tokens+float64(now-b.last)/1e9*rate)
	b.last = now
}

// take takes a token if there is one.
func (b *bucket) take(now int64, rate, burst float64) bool {
	b.refill(now, rate, burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (d *Device) debug(msg string, args ...any) { d.log.Debug("l3 wireguard: "+msg, args...) }
