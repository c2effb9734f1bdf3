package connector

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/internal/metrics"
	"github.com/onramp-net/onramp/l4proxy/internal/pipe"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults and timings.
const (
	// DefaultConnections is the number of HA connections kept up.
	DefaultConnections = 4
	// minBackoff and maxBackoff bound the redial delay; it doubles after
	// each failed dial, with jitter, and starts again after a success.
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// quicRetryAfter is how long an "auto" connection that fell back to HTTP/2
// lives before QUIC is tried again in the background. A variable for tests.
var quicRetryAfter = 5 * time.Minute

// Options configure a [Connector].
type Options struct {
	// Token names the tunnel, its secret and the edges.
	Token tunnel.Token
	// Protocol is "quic", "http2" or "auto" (the default): QUIC, falling
	// back to HTTP/2 over TLS; a connection that fell back retries QUIC
	// every 5 minutes and is replaced when QUIC works.
	Protocol string
	// Connections is the number of connections kept up, spread round-robin
	// over Token.Edges. Default 4.
	Connections int
	// Ingress holds the rules for streams and flows. Required.
	Ingress *ingress.Config
	// Logger receives connection-level events; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the onramp_connector_* metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// Tunnel tunes the transports; nil means the defaults.
	Tunnel *tunnel.Config
}

// ConnInfo describes one live edge connection.
type ConnInfo struct {
	Edge     string // the edge address dialed
	Protocol string // "quic" or "http2"
	Since    time.Time
	Streams  int // streams being proxied on it now
	// Transport is what the transport reports of the path: round-trip
	// time, packets (QUIC) or segments (HTTP/2) sent and lost.
	Transport tunnel.TransportStats
}

// Connector is the connector half of the L4 tunnel: it keeps connections to
// the edge, accepts the streams and flows the edge opens on them and proxies
// them to the origins its ingress rules name. Methods are safe for concurrent
// use; Run may be called once.
type Connector struct {
	opts    Options
	proto   string
	log     *slog.Logger
	m       *metrics.Set
	id      [16]byte // stable for the life of the process
	ingress atomic.Pointer[ingress.Config]

	running  atomic.Bool
	stopping chan struct{} // closed when Shutdown starts
	stopOnce sync.Once
	done     chan struct{}   // closed when Shutdown finished
	abort    context.Context // done to reset every stream still proxied
	proxies  *pipe.Group     // the streams proxied, aborted with abort
	abortAll context.CancelFunc

	mu      sync.Mutex
	conns   map[*edgeConn]struct{}
	dialing map[string]int // dials under way, by edge

	// advertised is the edge list the edges advertise (nil until one
	// does: then the token's).
	advertised atomic.Pointer[[]string]

	wg sync.WaitGroup // connection and stream goroutines

	active atomic.Int64 // streams being proxied, all connections

	edges edgeTable // dial errors and lost connections by edge (status.go)
}

// edgeConn is one live connection to the edge.
type edgeConn struct {
	conn    tunnel.Conn
	edge    string
	since   time.Time
	streams atomic.Int64
	// moving is the edge rebalance moves the connection to ("": none),
	// under Connector.mu; move tells its keep loop.
	moving   string
	move     chan string
	retiring bool // drained, closed once its streams end: counts for no edge

	flowMu sync.Mutex
	flows  map[uint32]*flow
}

// New checks opts and returns a Connector; Run starts it.
func New(opts Options) (*Connector, error) {
	if opts.Ingress == nil {
		return nil, errors.New("connector: no ingress rules")
	}
	if len(opts.Token.Edges) == 0 {
		return nil, errors.New("connector: token has no edge address")
	}
	switch opts.Protocol {
	case "":
		opts.Protocol = tunnel.ProtoAuto
	case tunnel.ProtoAuto, tunnel.ProtoQUIC, tunnel.ProtoHTTP2:
	default:
		return nil, fmt.Errorf("connector: unknown protocol %q (want quic, http2 or auto)", opts.Protocol)
	}
	if opts.Connections <= 0 {
		opts.Connections = DefaultConnections
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m, err := metrics.New(opts.Registerer, metricsSpec)
	if err != nil {
		opts.Logger.Warn("connector: metrics not registered", "err", err)
	}
	c := &Connector{
		opts:     opts,
		proto:    opts.Protocol,
		log:      opts.Logger.With("tunnel", opts.Token.TunnelIDString()),
		m:        m,
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
		conns:    make(map[*edgeConn]struct{}),
		dialing:  make(map[string]int),
	}
	// The transports tell the connector the edges' lists.
	tc := tunnel.Config{}
	if opts.Tunnel != nil {
		tc = *opts.Tunnel
	}
	tc.OnEdges = c.onEdges
	c.opts.Tunnel = &tc
	c.abort, c.abortAll = context.WithCancel(context.Background())
	c.proxies = pipe.NewGroup(c.abort)
	if _, err := rand.Read(c.id[:]); err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	c.ingress.Store(opts.Ingress)
	if err := c.registerStatus(opts.Registerer); err != nil {
		opts.Logger.Warn("connector: edge metrics not registered", "err", err)
	}
	return c, nil
}

// Reload atomically replaces the ingress rules. Streams already proxied keep
// their origin; new streams and flows use cfg. A nil cfg is ignored.
func (c *Connector) Reload(cfg *ingress.Config) {
	if cfg != nil {
		c.ingress.Store(cfg)
	}
}

// Ready reports whether at least one connection to the edge is up.
func (c *Connector) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns) > 0
}

// Summary says how many connections are up, of how many kept, and to
// where: "4 of 4 connections up: 198.18.51.2:7844 quic x2, ...". The
// connector's /ready answers with it and its logs carry it.
func (c *Connector) Summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.summaryLocked()
}

func (c *Connector) summaryLocked() string {
	count := map[string]int{}
	up := 0
	for ec := range c.conns {
		if !ec.retiring {
			count[ec.edge+" "+ec.conn.Protocol()]++
			up++
		}
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d connections up", up, c.opts.Connections)
	for i, k := range keys {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s x%d", k, count[k])
	}
	return b.String()
}

// Connections lists the live edge connections.
func (c *Connector) Connections() []ConnInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ConnInfo, 0, len(c.conns))
	for ec := range c.conns {
		out = append(out, ConnInfo{Edge: ec.edge, Protocol: ec.conn.Protocol(), Since: ec.since, Streams: int(ec.streams.Load()),
			Transport: ec.conn.Stats()})
	}
	return out
}

func (c *Connector) isStopping() bool {
	select {
	case <-c.stopping:
		return true
	default:
		return false
	}
}

// Run keeps Connections connections to the edge up, redialing with
// exponential backoff (1s to 30s, with jitter) when one fails or ends,
// and serves the streams and datagrams arriving on them.
//
// It returns nil when ctx is done — after Shutdown finished, if it was
// called — or when Shutdown finished; then every connection is closed and
// every stream ended. An [*tunnel.AuthError] from the edge is fatal: a
// refused dial (unknown tunnel or bad secret) or a live connection the
// edge closed because the tunnel was deleted or its token rotated. Run
// returns it at once, wrapped ("connector: %w"), rather than knock on the
// edge again with a token that cannot work. Only [tunnel.AuthInternal], an
// edge failing to check, is retried.
func (c *Connector) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("connector: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fatal := make(chan error, c.opts.Connections)
	var workers sync.WaitGroup
	for i := range c.opts.Connections {
		workers.Add(1)
		go func() {
			defer workers.Done()
			c.keep(ctx, i, fatal)
		}()
	}
	var err error
	select {
	case err = <-fatal:
	case <-ctx.Done():
	case <-c.done:
	}
	if err == nil && c.isStopping() {
		<-c.done
	}
	cancel()
	workers.Wait()
	c.closeAll("connector stopped")
	c.abortAll()
	c.wg.Wait()
	c.proxies.Close()
	return err
}

// keep keeps connection number i up until ctx is done or Shutdown starts.
// It dials the least used of the edges (pickEdge), and another one after a
// failed dial.
func (c *Connector) keep(ctx context.Context, i int, fatal chan<- error) {
	backoff := time.Duration(0)
	failed := map[string]bool{}
	for {
		if ctx.Err() != nil || c.isStopping() {
			return
		}
		edge, dialed := c.pickEdge(i, failed)
		log := c.log.With("edge", edge)
		conn, err := tunnel.Dial(ctx, c.proto, edge, c.opts.Token, c.id, c.opts.Tunnel)
		dialed()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ae *tunnel.AuthError
			if errors.As(err, &ae) && ae.Reason != tunnel.AuthInternal {
				c.m.Error(errAuth)
				log.Error("connector: edge refused the tunnel", "err", err)
				fatal <- fmt.Errorf("connector: %w", err)
				return
			}
			// Anything else, an edge failing to check the token included,
			// may be transient.
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			c.edges.dialFailed(edge, err)
			log.Warn("connector: dial failed", "err", err, "retry_in", backoff)
			failed[edge] = true // try another edge, if there are several
			if len(failed) >= len(c.edgeList()) {
				clear(failed)
			}
			if !c.sleep(ctx, jitter(backoff)) {
				return
			}
			continue
		}
		backoff = 0
		clear(failed)
		if c.isStopping() {
			_ = conn.CloseWithError(tunnel.CloseNormal, "connector shutting down")
			return
		}
		ec := c.serve(conn, edge)
		again, err := c.watch(ctx, ec, log)
		if err != nil {
			c.m.Error(errAuth)
			log.Error("connector: the edge revoked the tunnel", "err", err)
			fatal <- fmt.Errorf("connector: %w", err)
			return
		}
		if !again {
			return
		}
		if !c.sleep(ctx, jitter(minBackoff)) {
			return
		}
	}
}

// watch waits for ec to end, replacing it by a QUIC connection if it is an
// "auto" connection that fell back to HTTP/2 and QUIC works again. It
// returns false if ctx is done or Shutdown started, and the edge's
// [*tunnel.AuthError] if the edge closed the connection for an auth reason
// (tunnel deleted, token rotated).
func (c *Connector) watch(ctx context.Context, ec *edgeConn, log *slog.Logger) (again bool, revoked error) {
	retry := time.NewTimer(quicRetryAfter)
	defer retry.Stop()
	upgradable := func() bool { return c.proto == tunnel.ProtoAuto && ec.conn.Protocol() == tunnel.ProtoHTTP2 }
	if !upgradable() {
		retry.Stop()
	}
	type dialed struct {
		conn tunnel.Conn
		err  error
	}
	results := make(chan dialed, 1)
	dialing := false
	defer func() {
		if dialing { // close a QUIC connection that arrives too late
			go func() {
				if d := <-results; d.conn != nil {
					_ = d.conn.CloseWithError(tunnel.CloseNormal, "not needed")
				}
			}()
		}
	}()
	for {
		select {
		case to := <-ec.move:
			// rebalance moves this connection: dial the new edge first,
			// then drain the old connection.
			qc, err := tunnel.Dial(ctx, c.proto, to, c.opts.Token, c.id, c.opts.Tunnel)
			if err != nil {
				log.Warn("connector: could not move a connection to an advertised edge; it stays", "to", to, "err", err)
				c.mu.Lock()
				ec.moving = ""
				c.mu.Unlock()
				continue
			}
			if c.isStopping() {
				_ = qc.CloseWithError(tunnel.CloseNormal, "connector shutting down")
				return false, nil
			}
			log.Info("connector: connection moved to another edge", "to", to)
			old := ec
			ec = c.serve(qc, to)
			c.retire(old, "moved to another edge")
			log = c.log.With("edge", to)
		case <-ec.conn.Context().Done():
			cause := context.Cause(ec.conn.Context())
			var ae *tunnel.AuthError
			if errors.As(cause, &ae) && ae.Reason != tunnel.AuthInternal {
				return false, ae
			}
			log.Warn("connector: connection lost", "protocol", ec.conn.Protocol(), "reason", cause)
			if ctx.Err() == nil && !c.isStopping() {
				c.edges.lostConn(ec.edge, cause)
			}
			return ctx.Err() == nil && !c.isStopping(), nil
		case <-ctx.Done():
			return false, nil
		case <-c.stopping:
			return false, nil
		case <-retry.C:
			dialing = true
			go func() {
				dctx, cancel := context.WithTimeout(ctx, c.quicTimeout())
				defer cancel()
				qc, err := tunnel.DialQUIC(dctx, ec.edge, c.opts.Token, c.id, c.opts.Tunnel)
				results <- dialed{qc, err}
			}()
		case d := <-results:
			dialing = false
			if d.err != nil {
				log.Debug("connector: QUIC still unavailable", "err", d.err)
				retry.Reset(quicRetryAfter)
				continue
			}
			if c.isStopping() {
				_ = d.conn.CloseWithError(tunnel.CloseNormal, "connector shutting down")
				return false, nil
			}
			log.Info("connector: QUIC works again; replacing the HTTP/2 connection")
			old := ec
			ec = c.serve(d.conn, old.edge)
			c.retire(old, "replaced by a QUIC connection")
		}
	}
}

// quicTimeout bounds a background QUIC dial.
func (c *Connector) quicTimeout() time.Duration {
	if c.opts.Tunnel != nil && c.opts.Tunnel.QUICHandshakeTimeout > 0 {
		return c.opts.Tunnel.QUICHandshakeTimeout
	}
	return 3 * time.Second
}

// retire drains ec and closes it, for reason, once its streams are done
// (at most 10 minutes). It no longer counts as a connection of its edge.
func (c *Connector) retire(ec *edgeConn, reason string) {
	c.mu.Lock()
	ec.retiring = true
	ec.moving = ""
	c.mu.Unlock()
	_ = ec.conn.Drain()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		deadline := time.Now().Add(10 * time.Minute)
		for ec.streams.Load() > 0 && time.Now().Before(deadline) {
			select {
			case <-ec.conn.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		_ = ec.conn.CloseWithError(tunnel.CloseNormal, reason)
	}()
}

func (c *Connector) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-c.stopping:
		return false
	}
}

// jitter returns d plus up to half of d, at random.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(mrand.Int64N(int64(d)/2+1))
}

// serve registers conn and starts serving its streams and datagrams.
func (c *Connector) serve(conn tunnel.Conn, edge string) *edgeConn {
	ec := &edgeConn{conn: conn, edge: edge, since: time.Now(), flows: make(map[uint32]*flow), move: make(chan string, 1)}
	c.mu.Lock()
	c.conns[ec] = struct{}{}
	up := c.summaryLocked()
	c.mu.Unlock()
	c.edges.connected(edge)
	proto := conn.Protocol()
	c.m.Conns.WithLabelValues(proto).Inc()
	c.log.Info("connector: connected", "edge", edge, "protocol", proto, "up", up)
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.acceptStreams(ec)
	}()
	go func() {
		defer c.wg.Done()
		c.receiveDatagrams(ec)
		<-conn.Context().Done()
		c.closeFlows(ec)
		c.mu.Lock()
		delete(c.conns, ec)
		up := c.summaryLocked()
		c.mu.Unlock()
		c.m.Conns.WithLabelValues(proto).Dec()
		if !c.isStopping() {
			c.log.Info("connector: connection ended", "edge", edge, "protocol", proto, "up", up)
		}
	}()
	return ec
}

func (c *Connector) acceptStreams(ec *edgeConn) {
	ctx := ec.conn.Context()
	for {
		st, req, err := ec.conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		c.wg.Add(1)
		go c.handleStream(ec, st, req, c.wg.Done)
	}
}

// closeAll closes every connection.
func (c *Connector) closeAll(msg string) {
	c.mu.Lock()
	conns := make([]*edgeConn, 0, len(c.conns))
	for ec := range c.conns {
		conns = append(conns, ec)
	}
	c.mu.Unlock()
	for _, ec := range conns {
		_ = ec.conn.CloseWithError(tunnel.CloseNormal, msg)
	}
}

// Shutdown stops gracefully: it drains every connection (the edge opens no
// new streams on them and moves UDP flows elsewhere), waits until the
// streams being proxied end or ctx is done — then resets them — and closes
// the connections. Run then returns. It returns ctx.Err() if streams had to
// be reset.
func (c *Connector) Shutdown(ctx context.Context) error {
	first := false
	c.stopOnce.Do(func() {
		first = true
		close(c.stopping)
	})
	if !first {
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer close(c.done)
	c.mu.Lock()
	for ec := range c.conns {
		if err := ec.conn.Drain(); err != nil {
			c.log.Debug("connector: drain", "edge", ec.edge, "err", err)
		}
	}
	n := len(c.conns)
	c.mu.Unlock()
	c.log.Info("connector: shutting down", "connections", n, "streams", c.active.Load())
	var err error
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for c.active.Load() > 0 && err == nil {
		select {
		case <-t.C:
		case <-ctx.Done():
			err = ctx.Err()
			c.log.Warn("connector: shutdown deadline: resetting streams", "streams", c.active.Load())
			c.abortAll()
		}
	}
	if err == nil {
		c.linger(ctx)
	}
	c.closeAll("connector shutting down")
	return err
}

// linger gives the transports a few round trips to deliver the last
// streams' final bytes and end-of-stream before the connections close: a
// QUIC connection closed at once drops what it has not sent, or not had
// acknowledged, yet, and the edge would reset the user's connection
// instead of closing it. At most a second, and not past ctx.
func (c *Connector) linger(ctx context.Context) {
	var rtt time.Duration
	c.mu.Lock()
	for ec := range c.conns {
		if r, ok := ec.conn.(interface{ SmoothedRTT() time.Duration }); ok {
			rtt = max(rtt, r.SmoothedRTT())
		}
	}
	c.mu.Unlock()
	t := time.NewTimer(min(4*rtt+50*time.Millisecond, time.Second))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
