package connector

import "github.com/prometheus/client_golang/prometheus"

// Error kinds counted in onramp_connector_errors_total.
const (
	errNoRule     = "no_rule"     // no ingress rule, or a rule of the wrong kind
	errOriginDial = "origin_dial" // the origin could not be dialed
	errReset      = "reset"       // a proxied stream was aborted
	errAuth       = "auth"        // the edge refused the tunnel
)

var errorKinds = []string{errNoRule, errOriginDial, errReset, errAuth}

// metrics are the connector's Prometheus collectors. They exist even without
// a Registerer, so that the data path never checks for nil.
type metrics struct {
	conns        *prometheus.GaugeVec   // protocol
	streamsOpen  *prometheus.GaugeVec   // kind
	streamsTotal *prometheus.CounterVec // kind
	flowsOpen    prometheus.Gauge
	flowsTotal   prometheus.Counter
	bytes        *prometheus.CounterVec // direction
	datagrams    *prometheus.CounterVec // direction
	dropped      prometheus.Counter
	errors       *prometheus.CounterVec // kind

	bytesToOrigin, bytesToEdge prometheus.Counter
	dgToOrigin, dgToEdge       prometheus.Counter
}

// newMetrics creates the collectors and registers them with reg if not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "onramp_connector_"
	m := &metrics{
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ns + "connections", Help: "Live edge connections by transport protocol.",
		}, []string{"protocol"}),
		streamsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ns + "streams_open", Help: "Tunnel streams being proxied to origins, by kind.",
		}, []string{"kind"}),
		streamsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "streams_total", Help: "Tunnel streams accepted, by kind.",
		}, []string{"kind"}),
		flowsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "udp_flows_open", Help: "UDP flows open to origins.",
		}),
		flowsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "udp_flows_total", Help: "UDP flows opened to origins.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "bytes_total", Help: "Bytes proxied on streams, by direction (to_origin, to_edge).",
		}, []string{"direction"}),
		datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "datagrams_total", Help: "UDP datagrams proxied, by direction (to_origin, to_edge).",
		}, []string{"direction"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "datagrams_dropped_total", Help: "UDP datagrams dropped (unknown or pending flow, send failure).",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "errors_total", Help: "Failures by kind (no_rule, origin_dial, reset, auth).",
		}, []string{"kind"}),
	}
	for _, p := range []string{"quic", "http2"} {
		m.conns.WithLabelValues(p)
	}
	for _, k := range []string{"tcp", "tls", "http"} {
		m.streamsOpen.WithLabelValues(k)
		m.streamsTotal.WithLabelValues(k)
	}
	for _, k := range errorKinds {
		m.errors.WithLabelValues(k)
	}
	m.bytesToOrigin = m.bytes.WithLabelValues("to_origin")
	m.bytesToEdge = m.bytes.WithLabelValues("to_edge")
	m.dgToOrigin = m.datagrams.WithLabelValues("to_origin")
	m.dgToEdge = m.datagrams.WithLabelValues("to_edge")
	if reg != nil {
		for _, c := range []prometheus.Collector{m.conns, m.streamsOpen, m.streamsTotal, m.flowsOpen,
			m.flowsTotal, m.bytes, m.datagrams, m.dropped, m.errors} {
			if err := reg.Register(c); err != nil {
				return m, err
			}
		}
	}
	return m, nil
}

func (m *metrics) error(kind string) { m.errors.WithLabelValues(kind).Inc() }
