package edge

import (
	"github.com/onramp-net/onramp/l4proxy/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Error kinds counted in onramp_edge_errors_total.
const (
	errNoRoute       = "no_route"        // no hostname route for the SNI or Host
	errTunnelOffline = "tunnel_offline"  // the tunnel has no live connection
	errRefused       = "refused"         // the connector refused the stream (no rule, too many, draining)
	errLimit         = "limit"           // MaxStreamsPerTunnel reached
	errReset         = "reset"           // a proxied connection was aborted (reset, idle timeout)
	errOrigin        = "origin"          // the connector could not reach the origin
	errQuiet         = "connector_quiet" // a connector connection went silent (QuietAfter): new streams avoid it
)

// metricsSpec names the edge's collectors (onramp_edge_*).
var metricsSpec = metrics.Spec{
	Prefix:     "onramp_edge_",
	Conns:      "connector_connections",
	Peer:       "user",
	ErrorKinds: []string{errNoRoute, errTunnelOffline, errRefused, errLimit, errReset, errOrigin, errQuiet},

	ConnsHelp:        "Live connector connections by transport protocol.",
	StreamsOpenHelp:  "Proxied user connections (tunnel streams) open, by kind.",
	StreamsTotalHelp: "Tunnel streams opened, by kind.",
	FlowsOpenHelp:    "UDP flows open.",
	FlowsTotalHelp:   "UDP flows opened.",
	BytesHelp:        "Bytes proxied on streams, by direction (to_origin, to_user).",
	DatagramsHelp:    "UDP datagrams proxied, by direction (to_origin, to_user).",
	DroppedHelp:      "UDP datagrams dropped (no flow, too large, send failure).",
	ErrorsHelp:       "Refused or failed user connections and flows, by kind.",
}

// Reasons a new UDP flow is refused, counted in
// onramp_edge_udp_flows_refused_total{reason}, each named after its limit.
const (
	refusedFlowLimit  = iota // MaxUDPFlowsPerTunnel: "flow_limit"
	refusedSourceRate        // UDPNewFlowsPerSource: "source_rate"
	refusedTunnelRate        // UDPNewFlowsPerTunnel: "tunnel_rate"
	numUDPRefusals
)

// Reasons a datagram from a connector names a flow its connection does not
// own, counted in onramp_edge_udp_flow_mismatches_total{reason}.
const (
	mismatchUnknown     = iota // no flow has this ID (a late datagram of a closed flow, a guess): "unknown_flow"
	mismatchOtherConn          // a flow of the same tunnel on another connection: "other_connection"
	mismatchOtherTunnel        // a flow of another tunnel: "other_tunnel"
	numMismatches
)

// udpMetrics are the edge's own UDP collectors, next to the shared ones of
// metrics.Set. Like those, they exist without a Registerer.
type udpMetrics struct {
	refusedVec  *prometheus.CounterVec
	mismatchVec *prometheus.CounterVec
	// Children resolved once: a flood of refusals must not allocate.
	refused    [numUDPRefusals]prometheus.Counter
	mismatches [numMismatches]prometheus.Counter
}

var (
	udpRefusalNames = [numUDPRefusals]string{"flow_limit", "source_rate", "tunnel_rate"}
	mismatchNames   = [numMismatches]string{"unknown_flow", "other_connection", "other_tunnel"}
)

func (m *udpMetrics) init(reg prometheus.Registerer) error {
	m.refusedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onramp_edge_udp_flows_refused_total",
		Help: "New UDP flows refused, by the limit hit: flow_limit (maxUDPFlowsPerTunnel), source_rate (udpNewFlowsPerSource), tunnel_rate (udpNewFlowsPerTunnel).",
	}, []string{"reason"})
	m.mismatchVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onramp_edge_udp_flow_mismatches_total",
		Help: "Datagrams from a connector naming a UDP flow its connection does not own, by whose flow the ID is: unknown_flow (none), other_connection (same tunnel), other_tunnel.",
	}, []string{"reason"})
	for i, n := range udpRefusalNames {
		m.refused[i] = m.refusedVec.WithLabelValues(n)
	}
	for i, n := range mismatchNames {
		m.mismatches[i] = m.mismatchVec.WithLabelValues(n)
	}
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.refusedVec, m.mismatchVec} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
