// Package connector is the private half of the L4 tunnel. A [Connector]
// dials out to the edges named by its token (QUIC, or HTTP/2 over TLS as
// fallback), keeps [Options.Connections] connections up, and serves the
// streams and UDP flows the edge opens on them: each stream is matched
// against the ingress rules ([ingress.Config.Match]) and proxied to the
// origin the rule names, if the rule is for the listener the user came in
// by (port bindings: any stream service; HTTP: no tcp; TLS: tlsPassthrough
// rules only); each flow is relayed over a connected UDP socket to the
// origin of a udp rule. An HTTP stream is served request by request, each
// request matched by its own Host and canonical path
// ([ingress.Config.MatchHTTP]) and forwarded with X-Forwarded-For/-Proto
// from what the edge saw (httproute.go).
//
// Lifecycle: [Connector.Run] keeps the connections up, redialing with
// exponential backoff, and returns the [*tunnel.AuthError] if the edge
// refuses the tunnel or closes a connection because the tunnel was deleted
// or its token rotated (a token that stopped working is not retried);
// [Connector.Shutdown] drains; [Connector.Reload] swaps the rules without
// touching live streams.
//
// The copy loop is the edge's (see package edge): one goroutine and one
// pooled 32 KiB buffer per direction, half-close and resets propagated, the
// rule's idleTimeout honoured. Datagram buffers are pooled too.
//
// # Metrics
//
// With [Options.Registerer] set: onramp_connector_connections{protocol},
// onramp_connector_streams_open{kind}, onramp_connector_streams_total{kind},
// onramp_connector_udp_flows_open, onramp_connector_udp_flows_total,
// onramp_connector_bytes_total{direction}, onramp_connector_datagrams_total{direction}
// (direction to_origin or to_edge), onramp_connector_datagrams_dropped_total
// and onramp_connector_errors_total{kind} with kind no_rule, origin_dial,
// reset, auth, listener (a rule the stream's listener may not use) or
// bad_path (an HTTP request path refused as malformed or ambiguous).
package connector
