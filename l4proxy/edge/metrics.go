package edge

import "github.com/onramp-net/onramp/l4proxy/internal/metrics"

// Error kinds counted in onramp_edge_errors_total.
const (
	errNoRoute       = "no_route"       // no hostname route for the SNI or Host
	errTunnelOffline = "tunnel_offline" // the tunnel has no live connection
	errRefused       = "refused"        // the connector refused the stream (no rule, too many, draining)
	errLimit         = "limit"          // MaxStreamsPerTunnel reached
	errReset         = "reset"          // a proxied connection was aborted (reset, idle timeout)
	errOrigin        = "origin"         // the connector could not reach the origin
)

// metricsSpec names the edge's collectors (onramp_edge_*).
var metricsSpec = metrics.Spec{
	Prefix:     "onramp_edge_",
	Conns:      "connector_connections",
	Peer:       "user",
	ErrorKinds: []string{errNoRoute, errTunnelOffline, errRefused, errLimit, errReset, errOrigin},

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
