// Package edge is the public half of the L4 tunnel: it keeps the connector
// connections of every tunnel ([Server.ServeConnectors]) and proxies users to
// them, one tunnel stream per user connection:
//
//   - [Server.ServeTCP]: a plain TCP port bound to a tunnel ([Binding]);
//   - [Server.ServeTLS]: TLS routed by the ClientHello's SNI, not terminated;
//   - [Server.ServeHTTP]: HTTP/1 routed by the first request's Host (and the
//     connector's ingress rules by its path);
//   - [Server.ServeUDP]: a UDP port bound to a tunnel, one flow per user
//     address, carried in datagrams.
//
// Hostname routes ([Route], [Server.SetRoutes]) say which tunnel serves an SNI
// or Host. Routes and bindings name their tunnel; [Server.SetTunnels] maps
// the names to tunnel IDs, and each new user is resolved through it, so a
// tunnel deleted and created again under its name is served at once, and a
// deleted one's users find it offline. A new stream goes to the least
// loaded live, non-draining connection of the tunnel; if opening fails
// there (draining, dead), the next one is tried. A UDP flow sticks to its connection while it lives and
// moves to another when it dies or drains.
//
// # Revocation
//
// A connector connection authenticates in the tunnel listener and registers
// with the Server later ([Server.ServeConnectors]); on HTTP/2 the connector
// can stretch that gap to the handshake timeout. [Options.Admit] is asked at
// registration whether the secret generation the connection proved is still
// the tunnel's; [Server.Revalidate], called after a store change (delete,
// rotate), asks it again for the live connections. Both run under one lock,
// so no connection of a deleted tunnel or a replaced secret survives the
// change, whatever the interleaving. Revoked connections are closed with
// the reason ("tunnel deleted", "token rotated"), which the connector
// reports, and take no new stream meanwhile.
//
// # Data path
//
// Each proxied connection runs one goroutine per direction, each with one
// pooled 32 KiB buffer: a read is written out before the next read, so
// back-pressure reaches the sender and nothing is queued. EOF on one side
// half-closes the other (TCP CloseWrite, stream CloseWrite); an error or a
// reset on one side resets the other (RST via SO_LINGER 0, stream Reset).
// Reads and datagrams do not allocate.
//
// # UDP flows
//
// A flow belongs to the one connection that carries it: it sits in that
// connection's table under an ID drawn at random (ChaCha8 seeded from
// crypto/rand) and unique on the edge, and a datagram from a connector is
// looked up in its own connection's table only. A connector of another
// tunnel, or another connection of the same one, can neither write into a
// flow, close it, nor get its FlowOpen (user address, service) back, even
// knowing its ID; it is answered as for an unknown flow, counted in
// onramp_edge_udp_flow_mismatches_total{reason} and logged at most once a
// second. A flow that moves to another connection takes a new ID there.
//
// A binding sends a user nothing but what the origin answered it. What a
// spoofed-source flood can make it hold is bounded: new flows are limited
// per source prefix (/24, /64; [Options.UDPNewFlowsPerSource], in a fixed
// table of token buckets) and per tunnel ([Options.UDPNewFlowsPerTunnel]),
// a tunnel's flows have their own budget ([Options.MaxUDPFlowsPerTunnel]),
// apart from its streams, and a flow the origin never answered expires
// after [Options.UDPUnrepliedIdle] instead of [Options.UDPFlowIdle].
//
// # Limits
//
// Every user connection (TCP, TLS, HTTP) takes a slot of
// [Options.MaxConns] and of [Options.MaxConnsPerSource] (an IPv4 address or
// an IPv6 /64) right after its accept, before any buffer or read; over a
// limit it is reset at once, counted in
// onramp_edge_user_connections_refused_total{limit} and logged with the
// limit named ("limits.maxConnsPerSource (256) reached for 198.18.10.2"),
// at most once per source and minute, with a summary of the rest. A TLS
// ClientHello or HTTP head must arrive within [Options.HeaderTimeout]; until
// its first byte the connection holds no buffer, and the head's bytes are
// copied out of the 32 KiB read buffer, and dropped once forwarded. A
// proxied connection idle for [Options.IdleTimeout] (10 minutes by
// default) is closed.
//
// [Server.TunnelConfig] makes the tunnel listeners report to the server:
// failed authentications by reason, attempts refused by a handshake limit,
// QUIC Retries (see package tunnel).
//
// # Refusals
//
// A user the edge cannot serve is refused with a reason in the log (at
// most a line a second of each kind, which counts the ones not logged: a
// stranger chooses the SNI or Host it names and how often) and in
// onramp_edge_errors_total{kind}: no_route, tunnel_offline, limit (the
// tunnel is at [Options.MaxStreamsPerTunnel]), refused and origin (the
// connector answered the stream with an error), reset. TCP and TLS users
// are closed; HTTP users get 404 (no route), 403 (the connector refused
// the stream because its rule is not for the HTTP listener), 502 (tunnel
// offline, other connector refusals, with its message) or 503 (limit)
// from the edge itself. A new UDP flow refused by a limit is dropped and
// counted in onramp_edge_udp_flows_refused_total{reason}: flow_limit,
// source_rate, tunnel_rate; the log line, at most one a second, names the
// limit.
//
// # Metrics
//
// With [Options.Registerer] set: onramp_edge_connector_connections{protocol},
// onramp_edge_streams_open{kind}, onramp_edge_streams_total{kind},
// onramp_edge_udp_flows_open, onramp_edge_udp_flows_total,
// onramp_edge_bytes_total{direction}, onramp_edge_datagrams_total{direction}
// (direction to_origin or to_user), onramp_edge_datagrams_dropped_total,
// onramp_edge_errors_total{kind}, onramp_edge_udp_flows_refused_total{reason},
// onramp_edge_udp_flow_mismatches_total{reason} (unknown_flow,
// other_connection, other_tunnel),
// onramp_edge_connector_revocations_total{reason,stage} (reason
// tunnel_deleted or token_rotated; stage registration or live),
// onramp_edge_user_connections,
// onramp_edge_user_connections_refused_total{limit} (maxConns,
// maxConnsPerSource), and through [Server.TunnelConfig]
// onramp_edge_auth_failures_total{reason} (unknown_tunnel, bad_secret,
// tunnel_deleted, malformed, internal, tls, timeout),
// onramp_edge_handshakes_refused_total{limit} (maxHandshakes,
// maxHandshakesPerSource) and onramp_edge_quic_retries_total{limit}
// (quicRetryAbove, maxHandshakesPerSource).
//
// Per connector connection and per tunnel, not as metrics (their number
// follows the tunnels): the bytes each way of the streams and UDP
// datagrams, in [ConnInfo] (BytesToOrigin, BytesToUser) and
// [Server.TunnelBytes] (connections gone included).
package edge
