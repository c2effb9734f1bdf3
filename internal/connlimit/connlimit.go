// Package connlimit counts open connections in all and per source, where a
// source is what one host or site usually holds (tunnel.SourceOf: an IPv4
// address or an IPv6 /64), against two limits: Counter, which the edge's
// user listeners take a slot of for each connection, and Listener, a
// net.Listener for the HTTP listeners of the edge and the connector (the
// web console, the metrics address). A Listener closes a connection over
// either count at accept, before TLS or HTTP sees it, and Accept never
// waits for a slot: a host holding idle sockets gets its share and no
// more, while whoever is within the counts is served. The time bounds (a
// request head within seconds, idle connections closed) are the
// http.Server's.
package connlimit

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// Names of the limits, as in the limit label of the refusal counters.
const (
	LimitMaxConns          = "maxConns"
	LimitMaxConnsPerSource = "maxConnsPerSource"
)

// LogEvery is the period of the refusal log: the first refusal in a
// period is logged, with the count of those that were not.
const LogEvery = time.Minute

// Counter counts open connections, in all and per source, against Max and
// PerSource. Its methods are safe for concurrent use.
type Counter struct {
	mu             sync.Mutex
	max, perSource int
	total          int
	sources        map[netip.Addr]int
}

// NewCounter makes a counter with the two limits.
func NewCounter(max, perSource int) *Counter {
	return &Counter{max: max, perSource: perSource, sources: make(map[netip.Addr]int)}
}

// Acquire takes a slot for a connection from src, or returns the name of
// the limit that refused it (LimitMaxConns is checked first).
func (c *Counter) Acquire(src netip.Addr) (refusedBy string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total >= c.max {
		return LimitMaxConns
	}
	n := c.sources[src]
	if n >= c.perSource {
		return LimitMaxConnsPerSource
	}
	c.total++
	c.sources[src] = n + 1
	return ""
}

// Release gives back a slot Acquire took for src.
func (c *Counter) Release(src netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if n := c.sources[src] - 1; n > 0 {
		c.sources[src] = n
	} else {
		delete(c.sources, src)
	}
}

// Open is the number of slots taken.
func (c *Counter) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// SetMax changes the limits (a reload); the counts stay, and a lowered
// limit refuses new connections until enough have ended.
func (c *Counter) SetMax(max, perSource int) {
	c.mu.Lock()
	c.max, c.perSource = max, perSource
	c.mu.Unlock()
}

// Config is a [Listener]'s counts and where its refusals go.
type Config struct {
	// Max and PerSource bound the open connections, in all and per
	// source; both must be positive.
	Max, PerSource int
	// Refused counts the connections closed at accept, by limit (a
	// vector with the one label "limit"; NewRefused makes one); nil: not
	// counted.
	Refused *prometheus.CounterVec
	// Log gets the refusals at Warn, at most one line per LogEvery; nil:
	// not logged.
	Log *slog.Logger
	// Name says which listener in the log ("console", "metrics").
	Name string
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// NewRefused makes a refusal counter with the label "limit", both of its
// series present from the start.
func NewRefused(name, help string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"limit"})
	v.WithLabelValues(LimitMaxConns)
	v.WithLabelValues(LimitMaxConnsPerSource)
	return v
}

// Listener is a net.Listener whose connections are counted (see the
// package comment). Close each connection it returns: that gives its slot
// back.
type Listener struct {
	net.Listener
	c     Config
	count *Counter

	// The refusal log: when it last logged, and how many it left out since.
	logMu      sync.Mutex
	loggedAt   time.Time
	suppressed int
}

// New wraps ln.
func New(ln net.Listener, c Config) *Listener {
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Listener{Listener: ln, c: c, count: NewCounter(c.Max, c.PerSource)}
}

// Accept returns the next connection within the counts, closing those over
// them on the way.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err // http.Server retries temporary errors (EMFILE) with a back-off
		}
		src := tunnel.SourceOfAddr(c.RemoteAddr())
		if l.acquire(src) {
			return &conn{Conn: c, l: l, src: src}, nil
		}
		_ = c.Close()
	}
}

// Open is the number of connections holding a slot.
func (l *Listener) Open() int { return l.count.Open() }

// acquire takes a slot for src or counts and logs the refusal.
func (l *Listener) acquire(src netip.Addr) bool {
	limit := l.count.Acquire(src)
	if limit == "" {
		return true
	}
	if l.c.Refused != nil {
		l.c.Refused.WithLabelValues(limit).Inc()
	}
	now := l.c.Now()
	l.logMu.Lock()
	if !l.loggedAt.IsZero() && now.Sub(l.loggedAt) < LogEvery {
		l.suppressed++
		l.logMu.Unlock()
		return false
	}
	n := l.suppressed
	l.loggedAt, l.suppressed = now, 0
	l.logMu.Unlock()
	if l.c.Log != nil {
		l.c.Log.Warn(l.c.Name+": connection refused", "source", tunnel.SourceString(src), "limit", limit,
			"open", l.count.Open(), "more_refusals_not_logged", n, "next_line_in", LogEvery)
	}
	return false
}

type conn struct {
	net.Conn
	l    *Listener
	src  netip.Addr
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.count.Release(c.src) })
	return err
}
