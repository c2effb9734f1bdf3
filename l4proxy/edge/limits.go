package edge

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/onramp-net/onramp/internal/connlimit"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the user connection limits of [Options].
//
// A proxied connection that sits idle costs the edge about 25 KiB (two
// goroutines and their stacks, the tunnel stream's state, a 4 KiB buffer on
// QUIC; BenchmarkStreamsHeld): 20000 of them stay near 500 MiB, what a
// small public server can hold, and within the file descriptors a service
// usually gets. 256 per source is far more than a browser opens (6 per
// host) and lets a NAT of some dozens of busy users through, while one host
// stays far from the global limit and from a tunnel's MaxStreamsPerTunnel.
const (
	DefaultMaxConns          = 20000
	DefaultMaxConnsPerSource = 256
	DefaultHeaderTimeout     = 10 * time.Second
	DefaultIdleTimeout       = 10 * time.Minute
)

// Names of the user connection limits, as in edge.yml and in the limit
// label of onramp_edge_user_connections_refused_total.
const (
	limitMaxConns          = connlimit.LimitMaxConns
	limitMaxConnsPerSource = connlimit.LimitMaxConnsPerSource
)

// refusalLogInterval is the period of the refusal logs: in each, the first
// refusal of a source is logged, the others summed up at its end.
const refusalLogInterval = time.Minute

// limits is what the Server keeps for its connection and handshake limits:
// the user connection counts, the metrics of refusals and the rate-limited
// logs.
type limits struct {
	users *connlimit.Counter

	connsRefused      *prometheus.CounterVec // limit
	authFailures      *prometheus.CounterVec // reason
	handshakesRefused *prometheus.CounterVec // limit
	quicRetries       *prometheus.CounterVec // limit

	connLog, handshakeLog *refusalLog
	authLogs              map[tunnel.AuthReason]*refusalLog // one per reason
}

// authReasons are the reasons of onramp_edge_auth_failures_total.
var authReasons = []tunnel.AuthReason{tunnel.AuthUnknownTunnel, tunnel.AuthBadSecret, tunnel.AuthTunnelDeleted,
	tunnel.AuthMalformed, tunnel.AuthInternal, tunnel.AuthTLSFailed, tunnel.AuthHandshakeTimeout}

func newLimits(opts *Options, log *slog.Logger) *limits {
	l := &limits{
		users: connlimit.NewCounter(opts.MaxConns, opts.MaxConnsPerSource),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onramp_edge_user_connections_refused_total",
			Help: "User connections (TCP, TLS, HTTP) closed at accept, by the limit that refused them (maxConns, maxConnsPerSource).",
		}, []string{"limit"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onramp_edge_auth_failures_total",
			Help: "Connector connection attempts that did not authenticate, by reason.",
		}, []string{"reason"}),
		handshakesRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onramp_edge_handshakes_refused_total",
			Help: "Connector connection attempts refused before TLS, by the limit that refused them (maxHandshakes, maxHandshakesPerSource).",
		}, []string{"limit"}),
		quicRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onramp_edge_quic_retries_total",
			Help: "QUIC Initials answered with a Retry (source address validation), by the limit that asked for it (quicRetryAbove, maxHandshakesPerSource).",
		}, []string{"limit"}),
		connLog:      newRefusalLog(log, "edge: user connection refused"),
		handshakeLog: newRefusalLog(log, "edge: connector handshake refused"),
		authLogs:     make(map[tunnel.AuthReason]*refusalLog),
	}
	for _, n := range []string{limitMaxConns, limitMaxConnsPerSource} {
		l.connsRefused.WithLabelValues(n)
	}
	for _, n := range []string{"maxHandshakes", "maxHandshakesPerSource"} {
		l.handshakesRefused.WithLabelValues(n)
	}
	for _, n := range []string{"quicRetryAbove", "maxHandshakesPerSource"} {
		l.quicRetries.WithLabelValues(n)
	}
	for _, r := range append(authReasons, 0xff) { // 0xff: "other"
		l.authFailures.WithLabelValues(authLabel(r))
		l.authLogs[r] = newRefusalLog(log, "edge: connector authentication failed")
	}
	if opts.Registerer != nil {
		open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "onramp_edge_user_connections",
			Help: "User connections (TCP, TLS, HTTP) open, proxied or still being read.",
		}, func() float64 { return float64(l.users.Open()) })
		for _, c := range []prometheus.Collector{l.connsRefused, l.authFailures, l.handshakesRefused, l.quicRetries, open} {
			if err := opts.Registerer.Register(c); err != nil {
				log.Warn("edge: metrics not registered", "err", err)
				break
			}
		}
	}
	return l
}

// authLabel is the reason label of onramp_edge_auth_failures_total and
// onramp_edge_connector_revocations_total.
func authLabel(r tunnel.AuthReason) string {
	switch r {
	case tunnel.AuthUnknownTunnel:
		return "unknown_tunnel"
	case tunnel.AuthBadSecret:
		return "bad_secret"
	case tunnel.AuthTunnelDeleted:
		return "tunnel_deleted"
	case tunnel.AuthRotated:
		return "token_rotated"
	case tunnel.AuthMalformed:
		return "malformed"
	case tunnel.AuthInternal:
		return "internal"
	case tunnel.AuthTLSFailed:
		return "tls"
	case tunnel.AuthHandshakeTimeout:
		return "timeout"
	}
	return "other"
}

// acceptUser takes a slot for the user connection c from src, or refuses
// it: c is reset at once (no FIN exchange, no TIME_WAIT on the edge), the
// refusal counted and logged. It reports whether c may be served.
func (s *Server) acceptUser(c net.Conn, src netip.Addr) bool {
	limit := s.lim.users.Acquire(src)
	if limit == "" {
		return true
	}
	// Counted before the reset: whoever sees the reset sees the count.
	s.lim.connsRefused.WithLabelValues(limit).Inc()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
	if s.lim.connLog.first(src) {
		n, whose := s.cur().MaxConns, ""
		if limit == limitMaxConnsPerSource {
			n, whose = s.cur().MaxConnsPerSource, " for "+src.String()
		}
		s.lim.connLog.log("reason", fmt.Sprintf("limits.%s (%d) reached%s", limit, n, whose),
			"user", c.RemoteAddr(), "listener", c.LocalAddr())
	}
	return false
}

// TunnelConfig returns a copy of base (nil for the defaults) whose
// listener events count and log, in the server's metrics and log, the
// failed authentications (onramp_edge_auth_failures_total{reason}), the
// attempts refused by a handshake limit
// (onramp_edge_handshakes_refused_total{limit}), the QUIC Retries
// (onramp_edge_quic_retries_total{limit}) and the accept failures. Pass it to
// [tunnel.ListenQUIC] and [tunnel.ListenHTTP2].
func (s *Server) TunnelConfig(base *tunnel.Config) *tunnel.Config {
	var cfg tunnel.Config
	if base != nil {
		cfg = *base
	}
	maxHS, perSourceHS := cfg.MaxHandshakes, cfg.MaxHandshakesPerSource
	if maxHS <= 0 {
		maxHS = tunnel.DefaultMaxHandshakes
	}
	if perSourceHS <= 0 {
		perSourceHS = tunnel.DefaultMaxHandshakesPerSource
	}
	cfg.OnAuthFailure = func(r tunnel.AuthReason, remote net.Addr) {
		s.lim.authFailures.WithLabelValues(authLabel(r)).Inc()
		log := s.lim.authLogs[r]
		if log == nil {
			log = s.lim.authLogs[0xff]
		}
		if log.first(tunnel.SourceOfAddr(remote)) {
			log.log("reason", r.String(), "remote", remote)
		}
	}
	cfg.OnHandshakeRefused = func(perSource bool, remote net.Addr) {
		src := tunnel.SourceOfAddr(remote)
		limit, n, whose := "maxHandshakes", maxHS, ""
		if perSource {
			limit, n, whose = "maxHandshakesPerSource", perSourceHS, " for "+src.String()
		}
		s.lim.handshakesRefused.WithLabelValues(limit).Inc()
		if s.lim.handshakeLog.first(src) {
			s.lim.handshakeLog.log("reason", fmt.Sprintf("limits.%s (%d) reached%s", limit, n, whose), "remote", remote)
		}
	}
	cfg.OnQUICRetry = func(perSource bool, _ net.Addr) {
		if perSource {
			s.lim.quicRetries.WithLabelValues("maxHandshakesPerSource").Inc()
		} else {
			s.lim.quicRetries.WithLabelValues("quicRetryAbove").Inc()
		}
	}
	cfg.OnAcceptError = func(err error, retryIn time.Duration) {
		s.log.Warn("edge: tunnel listener: accept failed; retrying", "err", err, "retry_in", retryIn)
	}
	return &cfg
}

// refusalLog logs refusals of one kind without letting whoever causes them
// grow the log: in each interval, the first refusal of each source (up to
// maxSources sources) is logged in full; the others are only counted, and
// summed up in one line at the end of the interval.
type refusalLog struct {
	logger   *slog.Logger
	msg      string
	interval time.Duration

	mu         sync.Mutex
	seen       map[netip.Addr]bool // sources logged in this interval
	suppressed int                 // refusals not logged in this interval
	others     int                 // sources beyond maxSources in this interval
	timer      *time.Timer         // ends the interval; nil between intervals
}

const maxSources = 1000

func newRefusalLog(l *slog.Logger, msg string) *refusalLog {
	return &refusalLog{logger: l, msg: msg, interval: refusalLogInterval}
}

// first reports whether the refusal from src is to be logged (with log);
// otherwise it is counted for the summary.
func (r *refusalLog) first(src netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer == nil {
		r.seen = make(map[netip.Addr]bool)
		r.timer = time.AfterFunc(r.interval, r.summary)
	}
	if r.seen[src] {
		r.suppressed++
		return false
	}
	if len(r.seen) >= maxSources {
		r.suppressed++
		r.others++ // may count a source more than once: an upper bound
		return false
	}
	r.seen[src] = true
	return true
}

// log writes one refusal's line.
func (r *refusalLog) log(args ...any) { r.logger.Warn(r.msg, args...) }

// summary ends an interval: one line for the refusals not logged.
func (r *refusalLog) summary() {
	r.mu.Lock()
	suppressed, sources, others := r.suppressed, len(r.seen), r.others
	r.suppressed, r.others, r.seen, r.timer = 0, 0, nil, nil
	r.mu.Unlock()
	if suppressed > 0 {
		r.logger.Warn(r.msg+": more refusals, not logged one by one", "count", suppressed,
			"interval", r.interval, "sources_logged", sources, "from_unlogged_sources", others)
	}
}
