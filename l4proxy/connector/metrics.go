package connector

import "github.com/onramp-net/onramp/l4proxy/internal/metrics"

// Error kinds counted in onramp_connector_errors_total.
const (
	errNoRule     = "no_rule"     // no ingress rule, or a udp rule for a stream
	errOriginDial = "origin_dial" // the origin could not be dialed
	errReset      = "reset"       // a proxied stream was aborted
	errAuth       = "auth"        // the edge refused the tunnel
	errListener   = "listener"    // a rule the stream's listener may not use (see admits)
	errBadPath    = "bad_path"    // an HTTP request path refused as malformed or ambiguous (400)
)

// metricsSpec names the connector's collectors (onramp_connector_*).
var metricsSpec = metrics.Spec{
	Prefix:     "onramp_connector_",
	Conns:      "connections",
	Peer:       "edge",
	ErrorKinds: []string{errNoRule, errOriginDial, errReset, errAuth, errListener, errBadPath},

	ConnsHelp:        "Live edge connections by transport protocol.",
	StreamsOpenHelp:  "Tunnel streams being proxied to origins, by kind.",
	StreamsTotalHelp: "Tunnel streams accepted, by kind.",
	FlowsOpenHelp:    "UDP flows open to origins.",
	FlowsTotalHelp:   "UDP flows opened to origins.",
	BytesHelp:        "Bytes proxied on streams, by direction (to_origin, to_edge).",
	DatagramsHelp:    "UDP datagrams proxied, by direction (to_origin, to_edge).",
	DroppedHelp:      "UDP datagrams dropped (unknown or pending flow, send failure).",
	ErrorsHelp:       "Failures by kind (no_rule, origin_dial, reset, auth, listener, bad_path).",
}
