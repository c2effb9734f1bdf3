package console

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the console's connection limits (Options.MaxConns,
// MaxConnsPerSource). A console is for a few operators: a browser opens at
// most 6 connections to a host (1 over HTTP/2), so 32 per source lets an
// office behind one NAT in, and 256 in all bounds what idle sockets can
// hold (a goroutine, a 4 KiB read buffer and TLS state each: some 10 MiB
// together). The time bounds are http.Server's in Serve.
const (
	DefaultMaxConns          = 256
	DefaultMaxConnsPerSource = 32
)

// Names of the limits, as in the limit label of
// onramp_edge_console_connections_refused_total.
const (
	limitMaxConns          = "maxConns"
	limitMaxConnsPerSource = "maxConnsPerSource"
)

// refuseLogEvery is the period of the refusal log: the first refusal in a
// period is logged, with the count of those that were not.
const refuseLogEvery = time.Minute

// limitListener accepts connections within a total and a per-source count
// (sourceOf: an IPv4 address or an IPv6 /64). A connection over either
// count is closed at once, before TLS or HTTP sees it, so a host holding
// idle sockets cannot take more than its share, and Accept never waits for
// a slot: whoever is within the counts is served while others are refused.
type limitListener struct {
	net.Listener
	max, perSource int
	refused        *prometheus.CounterVec // limit
	log            func(msg string, args ...any)
	now            func() time.Time

	mu      sync.Mutex
	total   int
	sources map[netip.Addr]int
	// The refusal log: when it last logged, and how many it left out since.
	loggedAt   time.Time
	suppressed int
}

// Accept returns the next connection within the counts. Its Close gives
// the slot back (once).
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err // http.Server retries temporary errors (EMFILE) with a back-off
		}
		src := sourceOf(c.RemoteAddr().String())
		if l.acquire(src) {
			return &limitedConn{Conn: c, l: l, src: src}, nil
		}
		_ = c.Close()
	}
}

func (l *limitListener) acquire(src netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	limit := ""
	switch {
	case l.total >= l.max:
		limit = limitMaxConns
	case l.sources[src] >= l.perSource:
		limit = limitMaxConnsPerSource
	default:
		l.total++
		l.sources[src]++
		return true
	}
	l.refused.WithLabelValues(limit).Inc()
	now := l.now()
	if !l.loggedAt.IsZero() && now.Sub(l.loggedAt) < refuseLogEvery {
		l.suppressed++
		return false
	}
	n := l.suppressed
	l.loggedAt, l.suppressed = now, 0
	l.log("console: connection refused", "source", sourceString(src), "limit", limit,
		"open", l.total, "more_refusals_not_logged", n, "next_line_in", refuseLogEvery)
	return false
}

func (l *limitListener) release(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.sources[src] - 1; n > 0 {
		l.sources[src] = n
	} else {
		delete(l.sources, src)
	}
}

// open is the number of connections holding a slot.
func (l *limitListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	src  netip.Addr
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}
