package connector

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// EdgeStatus is what the connector knows of one edge address it dialed:
// its failures and their last error. Connections lists the live ones.
type EdgeStatus struct {
	Edge string // the edge address, as dialed
	// DialErrors counts the failed dials, Lost the live connections
	// lost (closed by the edge, timed out, reset), since the start.
	DialErrors, Lost uint64
	// Failing counts the dials that failed since the last one that
	// worked: 0 once a dial to the edge works again.
	Failing int
	// LastError is the error of the last failed dial or lost connection,
	// at LastErrorAt; "" if there was none.
	LastError   string
	LastErrorAt time.Time
	// LastConnected is when the last connection to the edge was made.
	LastConnected time.Time
}

// edgeTable records what happens to each edge address. Its zero value is
// ready.
type edgeTable struct {
	mu    sync.Mutex
	edges map[string]*EdgeStatus
	dials *prometheus.CounterVec // edge
	lost  *prometheus.CounterVec // edge
}

func (t *edgeTable) get(edge string) *EdgeStatus {
	if t.edges == nil {
		t.edges = map[string]*EdgeStatus{}
	}
	e := t.edges[edge]
	if e == nil {
		e = &EdgeStatus{Edge: edge}
		t.edges[edge] = e
	}
	return e
}

// dialFailed records a failed dial to edge.
func (t *edgeTable) dialFailed(edge string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(edge)
	e.DialErrors++
	e.Failing++
	e.LastError, e.LastErrorAt = err.Error(), time.Now()
	if t.dials != nil {
		t.dials.WithLabelValues(edge).Inc()
	}
}

// lostConn records a live connection to edge lost with cause.
func (t *edgeTable) lostConn(edge string, cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(edge)
	e.Lost++
	if cause == nil || errors.Is(cause, context.Canceled) {
		e.LastError = "connection closed"
	} else {
		e.LastError = cause.Error()
	}
	e.LastErrorAt = time.Now()
	if t.lost != nil {
		t.lost.WithLabelValues(edge).Inc()
	}
}

// connected records a connection made to edge.
func (t *edgeTable) connected(edge string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(edge)
	e.Failing = 0
	e.LastConnected = time.Now()
}

// Edges lists, by address, the edges the connector has dialed or
// will dial (the token's): their dial errors and lost connections, and
// the last error with its time.
func (c *Connector) Edges() []EdgeStatus {
	c.edges.mu.Lock()
	for _, e := range c.opts.Token.Edges {
		c.edges.get(e)
	}
	out := make([]EdgeStatus, 0, len(c.edges.edges))
	for _, e := range c.edges.edges {
		out = append(out, *e)
	}
	c.edges.mu.Unlock()
	slices.SortFunc(out, func(x, y EdgeStatus) int { return compareEdges(c.opts.Token.Edges, x.Edge, y.Edge) })
	return out
}

// compareEdges orders the token's edges as the token does, then the others
// by address.
func compareEdges(token []string, x, y string) int {
	i, j := slices.Index(token, x), slices.Index(token, y)
	switch {
	case i >= 0 && j >= 0:
		return i - j
	case i >= 0:
		return -1
	case j >= 0:
		return 1
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// Protocol returns the transport setting: "quic", "http2" or "auto".
func (c *Connector) Protocol() string { return c.proto }

// TunnelID returns the tunnel's ID in hex.
func (c *Connector) TunnelID() string { return c.opts.Token.TunnelIDString() }

// WantConnections returns how many connections the connector keeps up.
func (c *Connector) WantConnections() int { return c.opts.Connections }

// registerStatus creates the per-edge metrics and registers them, with
// the collector of the live connections by edge, on reg (if not nil).
// Their edge label takes the few addresses of the token (and of the
// edges the connector learns of): never one series per connection.
func (c *Connector) registerStatus(reg prometheus.Registerer) error {
	t := &c.edges
	t.dials = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onramp_connector_dial_errors_total",
		Help: "Failed dials to an edge, by edge address.",
	}, []string{"edge"})
	t.lost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onramp_connector_connections_lost_total",
		Help: "Live edge connections lost (closed by the edge, timed out, reset), by edge address.",
	}, []string{"edge"})
	for _, e := range c.opts.Token.Edges {
		t.dials.WithLabelValues(e)
		t.lost.WithLabelValues(e)
	}
	if reg == nil {
		return nil
	}
	for _, col := range []prometheus.Collector{t.dials, t.lost, &edgeCollector{c: c, desc: newEdgeDescs()}} {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}

type edgeDescs struct {
	conns, since, lastErr *prometheus.Desc
}

func newEdgeDescs() edgeDescs {
	return edgeDescs{
		conns: prometheus.NewDesc("onramp_connector_edge_connections",
			"Live connections by edge address and transport protocol.", []string{"edge", "protocol"}, nil),
		since: prometheus.NewDesc("onramp_connector_edge_connected_since_timestamp_seconds",
			"Unix time the oldest live connection to the edge was made; 0 with none.", []string{"edge"}, nil),
		lastErr: prometheus.NewDesc("onramp_connector_edge_last_error_timestamp_seconds",
			"Unix time of the last failed dial or lost connection of the edge; 0 if none.", []string{"edge"}, nil),
	}
}

// edgeCollector exports the live connections by edge at each scrape.
type edgeCollector struct {
	c    *Connector
	desc edgeDescs
}

// Describe implements prometheus.Collector.
func (m *edgeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.desc.conns
	ch <- m.desc.since
	ch <- m.desc.lastErr
}

// Collect implements prometheus.Collector.
func (m *edgeCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ edge, proto string }
	n := map[key]int{}
	oldest := map[string]time.Time{}
	for _, ci := range m.c.Connections() {
		n[key{ci.Edge, ci.Protocol}]++
		if o, ok := oldest[ci.Edge]; !ok || ci.Since.Before(o) {
			oldest[ci.Edge] = ci.Since
		}
	}
	unix := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	for _, e := range m.c.Edges() {
		for _, p := range []string{"quic", "http2"} {
			ch <- prometheus.MustNewConstMetric(m.desc.conns, prometheus.GaugeValue, float64(n[key{e.Edge, p}]), e.Edge, p)
		}
		ch <- prometheus.MustNewConstMetric(m.desc.since, prometheus.GaugeValue, unix(oldest[e.Edge]), e.Edge)
		ch <- prometheus.MustNewConstMetric(m.desc.lastErr, prometheus.GaugeValue, unix(e.LastErrorAt), e.Edge)
	}
}
