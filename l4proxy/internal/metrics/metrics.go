// Package metrics holds the Prometheus collectors both halves of the L4
// tunnel keep: connections, streams, UDP flows, bytes and datagrams by
// direction, drops and errors by kind. The edge and the connector differ only
// in names and help texts.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Spec names one side's collectors.
type Spec struct {
	Prefix     string   // "onramp_edge_" or "onramp_connector_"
	Conns      string   // name of the connection gauge, after Prefix
	Peer       string   // the far end of the tunnel side: direction label "to_"+Peer
	ErrorKinds []string // the kinds of errors_total, created at zero

	ConnsHelp, StreamsOpenHelp, StreamsTotalHelp, FlowsOpenHelp, FlowsTotalHelp,
	BytesHelp, DatagramsHelp, DroppedHelp, ErrorsHelp string
}

// Set is one side's collectors. They exist even without a Registerer, so
// that the data path never checks for nil.
type Set struct {
	Conns        *prometheus.GaugeVec   // protocol
	StreamsOpen  *prometheus.GaugeVec   // kind
	StreamsTotal *prometheus.CounterVec // kind
	FlowsOpen    prometheus.Gauge
	FlowsTotal   prometheus.Counter
	Bytes        *prometheus.CounterVec // direction
	Datagrams    *prometheus.CounterVec // direction
	Dropped      prometheus.Counter
	Errors       *prometheus.CounterVec // kind

	// Children resolved once for the hot path.
	BytesToOrigin, BytesToPeer prometheus.Counter
	DgToOrigin, DgToPeer       prometheus.Counter
	streams                    [len(streamKinds)]streamKind
}

// streamKinds are the kinds of streams_total and streams_open.
var streamKinds = [...]string{"tcp", "tls", "http"}

type streamKind struct {
	total prometheus.Counter
	open  prometheus.Gauge
}

// New creates the collectors of spec and registers them with reg if not
// nil. A registration failure (a second server on the same registry) is
// returned; the metrics then still work, unexported.
func New(reg prometheus.Registerer, spec Spec) (*Set, error) {
	p := spec.Prefix
	m := &Set{
		Conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: p + spec.Conns, Help: spec.ConnsHelp},
			[]string{"protocol"}),
		StreamsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: p + "streams_open", Help: spec.StreamsOpenHelp},
			[]string{"kind"}),
		StreamsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "streams_total", Help: spec.StreamsTotalHelp},
			[]string{"kind"}),
		FlowsOpen:  prometheus.NewGauge(prometheus.GaugeOpts{Name: p + "udp_flows_open", Help: spec.FlowsOpenHelp}),
		FlowsTotal: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "udp_flows_total", Help: spec.FlowsTotalHelp}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "bytes_total", Help: spec.BytesHelp},
			[]string{"direction"}),
		Datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "datagrams_total", Help: spec.DatagramsHelp},
			[]string{"direction"}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "datagrams_dropped_total", Help: spec.DroppedHelp}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "errors_total", Help: spec.ErrorsHelp},
			[]string{"kind"}),
	}
	for _, proto := range []string{"quic", "http2"} {
		m.Conns.WithLabelValues(proto)
	}
	for i, k := range streamKinds {
		m.streams[i] = streamKind{total: m.StreamsTotal.WithLabelValues(k), open: m.StreamsOpen.WithLabelValues(k)}
	}
	for _, k := range spec.ErrorKinds {
		m.Errors.WithLabelValues(k)
	}
	m.BytesToOrigin = m.Bytes.WithLabelValues("to_origin")
	m.BytesToPeer = m.Bytes.WithLabelValues("to_" + spec.Peer)
	m.DgToOrigin = m.Datagrams.WithLabelValues("to_origin")
	m.DgToPeer = m.Datagrams.WithLabelValues("to_" + spec.Peer)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Conns, m.StreamsOpen, m.StreamsTotal, m.FlowsOpen,
			m.FlowsTotal, m.Bytes, m.Datagrams, m.Dropped, m.Errors} {
			if err := reg.Register(c); err != nil {
				return m, err
			}
		}
	}
	return m, nil
}

// Error counts one error of kind.
func (m *Set) Error(kind string) { m.Errors.WithLabelValues(kind).Inc() }

// Stream counts one stream of kind opened and returns its open gauge,
// which the caller increments and decrements: a per-connection call that
// looks no label up for the known kinds.
func (m *Set) Stream(kind string) (open prometheus.Gauge) {
	for i, k := range streamKinds {
		if k == kind {
			m.streams[i].total.Inc()
			return m.streams[i].open
		}
	}
	m.StreamsTotal.WithLabelValues(kind).Inc()
	return m.StreamsOpen.WithLabelValues(kind)
}
