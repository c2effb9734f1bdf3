package edge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Error kinds counted in onramp_edge_errors_total.
const (
	errNoRoute       = "no_route"       // no hostname route for the SNI or Host
	errTunnelOffline = "tunnel_offline" // the tunnel has no live connection
	errRefused       = "refused"        // the connector refused the stream (no rule, too many, draining)
	errLimit         = "limit"          // MaxStreamsPerTunnel reached
	errReset         = "reset"          // a proxied connection was aborted (reset, idle timeout)
	errOrigin        = "origin"         // the connector could not reach the origin
)

var errorKinds = []string{errNoRoute, errTunnelOffline, errRefused, errLimit, errReset, errOrigin}

// metrics are the edge's Prometheus collectors. They exist even without a
// Registerer, so that the data path never checks for nil.
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

	// Resolved children for the hot path.
	bytesToOrigin, bytesToUser prometheus.Counter
	dgToOrigin, dgToUser       prometheus.Counter
}

// newMetrics creates the collectors and registers them with reg if not nil.
// A registration failure (e.g. a second Server on the same registry) is
// returned; the metrics then still work, unexported.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "onramp_edge_"
	m := &metrics{
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ns + "connector_connections", Help: "Live connector connections by transport protocol.",
		}, []string{"protocol"}),
		streamsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ns + "streams_open", Help: "Proxied user connections (tunnel streams) open, by kind.",
		}, []string{"kind"}),
		streamsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "streams_total", Help: "Tunnel streams opened, by kind.",
		}, []string{"kind"}),
		flowsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "udp_flows_open", Help: "UDP flows open.",
		}),
		flowsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "udp_flows_total", Help: "UDP flows opened.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "bytes_total", Help: "Bytes proxied on streams, by direction (to_origin, to_user).",
		}, []string{"direction"}),
		datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "datagrams_total", Help: "UDP datagrams proxied, by direction (to_origin, to_user).",
		}, []string{"direction"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "datagrams_dropped_total", Help: "UDP datagrams dropped (no flow, too large, send failure).",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "errors_total", Help: "Refused or failed user connections and flows, by kind.",
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
	m.bytesToUser = m.bytes.WithLabelValues("to_user")
	m.dgToOrigin = m.datagrams.WithLabelValues("to_origin")
	m.dgToUser = m.datagrams.WithLabelValues("to_user")
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
