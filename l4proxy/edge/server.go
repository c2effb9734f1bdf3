package edge

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/onramp-net/onramp/dataplane/relay"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/l4proxy/internal/metrics"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of [Options].
const (
	DefaultMaxStreamsPerTunnel = 10000
	DefaultUDPFlowIdle         = 60 * time.Second
	// openTimeout bounds OpenStream, which blocks while the connector is at
	// its stream limit.
	openTimeout = 10 * time.Second
)

// Defaults of the UDP limits of [Options].
const (
	DefaultMaxUDPFlowsPerTunnel = 10000
	DefaultUDPNewFlowsPerSource = 100
	DefaultUDPNewFlowsPerTunnel = 1000
	DefaultUDPUnrepliedIdle     = 10 * time.Second
)

// Options configure a [Server]. The zero value is usable.
type Options struct {
	// Logger receives connection-level events; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the onramp_edge_* metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// QuietAfter is how long a connector connection may be silent before
	// new streams avoid it (DefaultQuietAfter if 0).
	QuietAfter time.Duration
	// StreamSpread is how many of a tunnel's connections its new streams
	// and UDP flows are spread over: the oldest that are live. The
	// connections outside the spread stand by: they take streams once one
	// inside fails, drains or goes quiet. Negative means all connections.
	// 0, the default, follows the tunnel's traffic: while most of its
	// recent streams carried less than a MiB, one connection per CPU the
	// edge may use (GOMAXPROCS, read at each pick), since a QUIC or TLS
	// connection is processed by one goroutine at a time, and past the
	// CPUs more connections buy nothing for small streams but their own
	// work (packets and acknowledgements that could have carried several
	// streams' frames, timers, wakeups); otherwise all connections, over
	// which bulk streams measured faster.
	StreamSpread int
	// MaxStreamsPerTunnel bounds the concurrent streams of one tunnel, over
	// all its connections. Default 10000. When it is hit, new users are
	// refused: TCP and TLS connections are closed (and the reason logged),
	// HTTP ones answered "503 Service Unavailable" with a body naming the
	// limit. UDP flows do not count here: they have their own budget.
	MaxStreamsPerTunnel int
	// IdleTimeout closes a proxied TCP connection that moved no byte in
	// either direction for this long. Default 10m; negative means never.
	IdleTimeout time.Duration
	// MaxConns bounds the user connections (TCP, TLS, HTTP) open at once
	// over all user listeners, and MaxConnsPerSource those from one source
	// (an IPv4 address or an IPv6 /64). Each connection counts from its
	// accept, before anything is read from it; over a limit it is reset at
	// once, counted and logged with the limit named. Defaults 20000 and 256.
	MaxConns          int
	MaxConnsPerSource int
	// HeaderTimeout bounds the reading of a TLS ClientHello or an HTTP
	// request head. Default 10s.
	HeaderTimeout time.Duration
	// UDPFlowIdle ends a UDP flow that saw no datagram either way for this
	// long. Default 60s.
	UDPFlowIdle time.Duration
	// UDPUnrepliedIdle is UDPFlowIdle for a flow the origin never answered
	// (conntrack's unreplied state): a spoofed source holds a flow only
	// this long. Default 10s; at most UDPFlowIdle.
	UDPUnrepliedIdle time.Duration
	// MaxUDPFlowsPerTunnel bounds the UDP flows of one tunnel, over all its
	// bindings and connections, apart from its streams. Default 10000.
	// When it is hit, the datagrams of new user addresses are dropped.
	MaxUDPFlowsPerTunnel int
	// UDPNewFlowsPerSource bounds the new UDP flows per second from one
	// source prefix (/24 for IPv4, /64 for IPv6) on one binding, with a
	// burst of one second's worth. Default 100.
	UDPNewFlowsPerSource int
	// UDPNewFlowsPerTunnel bounds the new UDP flows per second of one
	// tunnel over all its bindings, with a burst of one second's worth.
	// Default 1000.
	UDPNewFlowsPerTunnel int
	// Admit, if set, decides whether a connector connection may still be
	// served: it is asked when the connection registers, with its tunnel and
	// the generation of the secret it authenticated with
	// ([tunnel.Conn.Generation]), and again for each live connection of a
	// tunnel by [Server.Revalidate]. A reason other than [tunnel.AuthOK]
	// (the tunnel deleted, its token rotated) closes the connection with that
	// reason, which the connector reports. Admit should read the tunnel store
	// itself, not a copy: it runs under the lock that orders registrations
	// with Revalidate. Keep it quick and do not call the Server from it.
	// Without Admit every authenticated connection registers.
	Admit func(tunnelID [16]byte, generation uint64) tunnel.AuthReason
	// OnConnected, if set, is called with the remote address of each
	// connector connection that registered (authenticated and admitted):
	// the edge proves the source to its XDP pre-filter. It must not block.
	OnConnected func(remote net.Addr)
	// Relay is the engine of direct routes and bindings (TCP to TCP);
	// nil makes one with the default strategy at first use.
	Relay *relay.Engine
}

// ConnInfo describes one live connector connection.
type ConnInfo struct {
	Tunnel    [16]byte
	Connector [16]byte
	Protocol  string // "quic" or "http2"
	Remote    net.Addr
	Draining  bool
	Since     time.Time
	Streams   int // streams open on this connection now
	// Quiet is set while the connector has been silent for QuietAfter:
	// new streams go to the tunnel's other connections.
	Quiet bool
	// ID tells the connection apart from every other of this Server,
	// past ones included (a sequence number).
	ID uint64
	// BytesToOrigin and BytesToUser are the bytes the connection carried
	// so far, its streams' and its UDP datagrams' payloads, each way.
	BytesToOrigin, BytesToUser uint64
}

// Server is the edge half of the L4 tunnel: it keeps the connector
// connections of every tunnel and proxies users to them. All methods are
// safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger
	m    *metrics.Set

	routes   atomic.Pointer[routeTable]
	names    atomic.Pointer[map[string][16]byte] // tunnel name -> ID (SetTunnels)
	noTunnel *tunnelEntry                        // what an unknown name resolves to: never connected

	// regMu orders registrations with Revalidate and DropTunnel (see
	// register). Taken before mu, never while holding it.
	regMu       sync.Mutex
	revocations *revocationMetrics

	lim    *limits                  // user connection and handshake limits (limits.go)
	limits atomic.Pointer[limitSet] // the limits of Options that SetLimits changes (reload.go)

	mu      sync.RWMutex
	tunnels map[[16]byte]*tunnelEntry

	rr     atomic.Uint32 // rotates the start of the least-loaded scan
	connID atomic.Uint64 // the last ConnInfo.ID given

	livenessOnce sync.Once // starts watchLiveness
	adv          edgeAdvert

	// UDP flows live in the table of their connection (liveConn.flows).
	// flowIDs indexes every live flow by ID, to draw IDs unique over the
	// server and to tell, when a connection names a flow it does not own,
	// whose flow that is (for the metrics and the log only).
	flowMu  sync.RWMutex
	flowIDs map[uint32]*udpFlow
	flowRNG *rand.ChaCha8 // draws flow IDs; guarded by flowMu

	udp            udpMetrics
	logUDPRefused  [numUDPRefusals]logLimiter
	logUDPMismatch logLimiter
	logUsers       [numUserLogs]logLimiter // lines a stranger causes per connection or flow

	relayOnce sync.Once
	relay     *relay.Engine // direct routes and bindings (relayEngine)
}

// tunnelEntry is the state of one tunnel. Entries are never removed, so that
// the stream count of a tunnel survives its connections coming and going.
type tunnelEntry struct {
	id     [16]byte
	conns  []*liveConn  // guarded by Server.mu; live ones only
	active atomic.Int64 // streams, against MaxStreamsPerTunnel

	udpFlows   atomic.Int64 // UDP flows, against MaxUDPFlowsPerTunnel
	udpNewRate gcra         // new UDP flows, against UDPNewFlowsPerTunnel

	bytes traffic // over all its connections, past ones included (traffic.go)

	// small is the share of the tunnel's recent streams that ended having
	// carried less than smallStream bytes, in 1/smallScale (an average
	// over about the last 16 streams): pick's default spread.
	small atomic.Int32
}

// The default spread (Options.StreamSpread 0) follows the tunnel's
// streams. Where most are small (requests, keystrokes, short
// connections), their cost is per packet and per wakeup: they share as
// few connections as there are cores, so that one packet carries several
// streams' frames. Where most carry bulk, they spread over every
// connection, as they did before. Measured on the bench's one SUT core:
// small streams over 4 QUIC connections cost a fifth of the connection
// rate; 8 bulk HTTP/2 streams kept on one of 4 connections lost about a
// tenth of their throughput (why is not settled: one congestion window
// and receive path for all, or that connection's path).
const (
	smallStream = 1 << 20 // bytes both ways: a stream under it is small
	smallScale  = 1024    // small's fixed point: all small
	smallWeight = 16      // the average's memory, in streams
)

// noteStream adds a finished stream that carried n bytes to small.
func (te *tunnelEntry) noteStream(n int64) {
	var x int32
	if n < smallStream {
		x = smallScale
	}
	for {
		old := te.small.Load()
		if te.small.CompareAndSwap(old, old+(x-old)/smallWeight) {
			return
		}
	}
}

// spread is how many connections a new stream of te may go to: n if set,
// else one per core while most recent streams are small, else all (-1).
func (te *tunnelEntry) spread(n int) int {
	if n != 0 {
		return n
	}
	if te.small.Load() > smallScale/2 {
		return runtime.GOMAXPROCS(0)
	}
	return -1
}

// liveConn is one registered connector connection.
type liveConn struct {
	conn    tunnel.Conn
	since   time.Time
	id      uint64 // ConnInfo.ID
	streams atomic.Int64

	// bytes is the connection's traffic; its streams count it through
	// toOrigin and toUser, which register sets (traffic.go).
	bytes            traffic
	toOrigin, toUser byteCounter

	// flows are the UDP flows carried on this connection, by ID: the only
	// ones its datagrams may name.
	flowMu  sync.Mutex
	flows   map[uint32]*udpFlow
	revoked atomic.Bool // being closed for an auth reason: no new streams or flows

	// quiet is set while the connector has been silent for QuietAfter:
	// pick prefers the other connections. lastRecv and heard belong to
	// the liveness sampler.
	quiet    atomic.Bool
	lastRecv uint64
	heard    time.Time

	advState // the edge list last sent to the connector
}

// orDefault sets *v to def unless it is positive.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// NewServer returns a Server with no routes and no connections.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	orDefault(&opts.MaxStreamsPerTunnel, DefaultMaxStreamsPerTunnel)
	orDefault(&opts.MaxUDPFlowsPerTunnel, DefaultMaxUDPFlowsPerTunnel)
	orDefault(&opts.UDPNewFlowsPerSource, DefaultUDPNewFlowsPerSource)
	orDefault(&opts.UDPNewFlowsPerTunnel, DefaultUDPNewFlowsPerTunnel)
	orDefault(&opts.UDPFlowIdle, DefaultUDPFlowIdle)
	orDefault(&opts.UDPUnrepliedIdle, DefaultUDPUnrepliedIdle)
	opts.UDPUnrepliedIdle = min(opts.UDPUnrepliedIdle, opts.UDPFlowIdle)
	orDefault(&opts.MaxConns, DefaultMaxConns)
	orDefault(&opts.MaxConnsPerSource, DefaultMaxConnsPerSource)
	orDefault(&opts.HeaderTimeout, DefaultHeaderTimeout)
	orDefault(&opts.QuietAfter, DefaultQuietAfter)
	if opts.IdleTimeout == 0 { // negative: never
		opts.IdleTimeout = DefaultIdleTimeout
	}
	m, err := metrics.New(opts.Registerer, metricsSpec)
	if err != nil {
		opts.Logger.Warn("edge: metrics not registered", "err", err)
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		m:        m,
		tunnels:  make(map[[16]byte]*tunnelEntry),
		flowIDs:  make(map[uint32]*udpFlow),
		flowRNG:  newFlowRNG(),
		noTunnel: &tunnelEntry{},
	}
	if err := s.udp.init(opts.Registerer); err != nil {
		opts.Logger.Warn("edge: udp metrics not registered", "err", err)
	}
	s.revocations = newRevocationMetrics(opts.Registerer, opts.Logger)
	s.lim = newLimits(&opts, opts.Logger)
	s.SetLimits(limitsOf(&opts))
	s.routes.Store(&routeTable{})
	s.names.Store(&map[string][16]byte{})
	return s
}

// tunnelName formats a tunnel ID for logs.
func tunnelName(id [16]byte) string { return hex.EncodeToString(id[:]) }

// ServeConnectors accepts connector connections from ln and registers each
// under its TunnelID until its Context ends. It returns nil when ctx is done
// (the connections it accepted are then closed) and an error if ln fails.
// It does not close ln.
func (s *Server) ServeConnectors(ctx context.Context, ln tunnel.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	s.livenessOnce.Do(func() { go s.watchLiveness(ctx) })
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("edge: accept connector: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// serveConn registers c, receives its datagrams and unregisters it when it
// ends. A connection Admit refuses is closed at once.
func (s *Server) serveConn(ctx context.Context, c tunnel.Conn) {
	lc := &liveConn{conn: c, since: time.Now(), id: s.connID.Add(1)}
	proto := c.Protocol()
	cid := c.ConnectorID()
	log := s.log.With("tunnel", tunnelName(c.TunnelID()), "connector", hex.EncodeToString(cid[:]), "protocol", proto, "remote", c.RemoteAddr())
	te, reason := s.register(lc)
	if te == nil {
		s.revoke(lc, reason, "registration", log)
		return
	}
	log.Info("connector connected")
	go s.advertise(lc)
	if s.opts.OnConnected != nil {
		s.opts.OnConnected(c.RemoteAddr())
	}
	s.m.Conns.WithLabelValues(proto).Inc()
	stop := context.AfterFunc(ctx, func() {
		_ = c.CloseWithError(tunnel.CloseNormal, "edge shutting down")
	})
	s.receiveDatagrams(lc, te)
	<-c.Context().Done()
	stop()
	s.unregister(te, lc)
	s.m.Conns.WithLabelValues(proto).Dec()
	log.Info("connector disconnected", "reason", context.Cause(c.Context()))
}

func (s *Server) entry(id [16]byte) *tunnelEntry {
	s.mu.RLock()
	te := s.tunnels[id]
	s.mu.RUnlock()
	if te != nil {
		return te
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if te = s.tunnels[id]; te == nil {
		te = &tunnelEntry{id: id}
		s.tunnels[id] = te
	}
	return te
}

// register adds lc to its tunnel if Admit accepts it, and returns the
// tunnel, or nil and Admit's reason. It holds regMu while asking Admit and
// adding lc: a store change (delete, rotate) followed by Revalidate, which
// takes regMu too, then either finds lc registered and closes it, or
// happened before Admit looked at the store, which refuses lc. Without this
// a connection that authenticated before the change and registered after it
// would survive: the listener's check and the registration are apart (the
// HTTP/2 transport opens the datagram stream in between, and a connector
// may take the whole handshake timeout to answer it).
func (s *Server) register(lc *liveConn) (*tunnelEntry, tunnel.AuthReason) {
	id := lc.conn.TunnelID()
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.opts.Admit != nil {
		if r := s.opts.Admit(id, lc.conn.Generation()); r != tunnel.AuthOK {
			return nil, r
		}
	}
	te := s.entry(id)
	lc.toOrigin = byteCounter{Counter: s.m.BytesToOrigin, conn: &lc.bytes.toOrigin, tunnel: &te.bytes.toOrigin}
	lc.toUser = byteCounter{Counter: s.m.BytesToPeer, conn: &lc.bytes.toUser, tunnel: &te.bytes.toUser}
	s.mu.Lock()
	te.conns = append(te.conns, lc)
	s.mu.Unlock()
	return te, tunnel.AuthOK
}

func (s *Server) unregister(te *tunnelEntry, lc *liveConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.Index(te.conns, lc); i >= 0 {
		te.conns = slices.Delete(te.conns, i, i+1)
	}
}

// acquire takes one of the tunnel's MaxStreamsPerTunnel slots.
func (s *Server) acquire(te *tunnelEntry) bool {
	if te.active.Add(1) > int64(s.cur().MaxStreamsPerTunnel) {
		te.active.Add(-1)
		return false
	}
	return true
}

func (s *Server) release(te *tunnelEntry) { te.active.Add(-1) }

// pick returns the connection a new stream or flow of te goes to,
// skipping those in tried. The candidates are the tunnel's first
// [Options.StreamSpread] usable connections in the order they registered
// (usable: live, not draining, not revoked, not tried); among them the one
// with the fewest open streams wins, ties broken by rotation. A connection
// whose connector has gone quiet is a candidate only when every usable one
// is quiet.
func (s *Server) pick(te *tunnelEntry, tried []*liveConn) *liveConn {
	spread := te.spread(s.opts.StreamSpread)
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := len(te.conns)
	if n == 0 {
		return nil
	}
	r := int(s.rr.Add(1) % uint32(n))
	var live, quiet pickChoice
	for i, lc := range te.conns {
		if lc.conn.Context().Err() != nil || lc.conn.Draining() || lc.revoked.Load() || slices.Contains(tried, lc) {
			continue
		}
		c := &live
		if lc.quiet.Load() {
			c = &quiet
		}
		c.consider(lc, (i-r+n)%n, spread)
	}
	if live.lc != nil {
		return live.lc
	}
	return quiet.lc
}

// pickChoice is pick's best so far among the first spread connections of
// one kind (live or quiet): the fewest open streams, then the lowest
// rotated position.
type pickChoice struct {
	lc       *liveConn
	streams  int64
	key, got int
}

func (c *pickChoice) consider(lc *liveConn, key, spread int) {
	if spread > 0 && c.got == spread {
		return
	}
	c.got++
	if k := lc.streams.Load(); c.lc == nil || k < c.streams || k == c.streams && key < c.key {
		c.lc, c.streams, c.key = lc, k, key
	}
}

// errOffline and errLimitHit are the refusals of openStream.
var (
	errOffline  = errors.New("tunnel offline: no live connection")
	errLimitHit = errors.New("tunnel stream limit reached")
)

// openStream opens a stream for req on one of the connections of te,
// trying the others if one is draining or dead. On success the caller owns a
// slot of the tunnel (release with s.release) and one stream count of lc.
func (s *Server) openStream(ctx context.Context, te *tunnelEntry, req *tunnel.Request) (tunnel.Stream, *tunnelEntry, *liveConn, error) {
	if !s.acquire(te) {
		return nil, nil, nil, errLimitHit
	}
	var tried []*liveConn
	var lastErr error
	for {
		lc := s.pick(te, tried)
		if lc == nil {
			s.release(te)
			if lastErr != nil {
				return nil, nil, nil, fmt.Errorf("%w (last error: %v)", errOffline, lastErr)
			}
			return nil, nil, nil, errOffline
		}
		lc.streams.Add(1)
		octx, cancel := context.WithTimeout(ctx, openTimeout)
		st, err := lc.conn.OpenStream(octx, req)
		cancel()
		if err == nil {
			return st, te, lc, nil
		}
		lc.streams.Add(-1)
		if ctx.Err() != nil {
			s.release(te)
			return nil, nil, nil, ctx.Err()
		}
		if errors.Is(err, tunnel.ErrMalformed) || errors.Is(err, tunnel.ErrTooLong) {
			// The request itself is bad: another connection would refuse it too.
			s.release(te)
			return nil, nil, nil, err
		}
		lastErr = err
		tried = append(tried, lc)
	}
}

// Connections lists the live connector connections of every tunnel.
func (s *Server) Connections() []ConnInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []ConnInfo
	for _, te := range s.tunnels {
		for _, lc := range te.conns {
			out = append(out, ConnInfo{
				Tunnel:    te.id,
				Connector: lc.conn.ConnectorID(),
				Protocol:  lc.conn.Protocol(),
				Remote:    lc.conn.RemoteAddr(),
				Draining:  lc.conn.Draining(),
				Since:     lc.since,
				Streams:   int(lc.streams.Load()),
				Quiet:     lc.quiet.Load(),
				ID:        lc.id,

				BytesToOrigin: lc.bytes.toOrigin.Load(),
				BytesToUser:   lc.bytes.toUser.Load(),
			})
		}
	}
	return out
}

// addrPort returns the user's address for the stream request.
// IPv4-mapped addresses are unmapped; zones are dropped.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}
