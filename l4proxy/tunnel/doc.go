// Package tunnel is the wire protocol of the L4 tunnel between an edge and a
// connector, with its two transports: QUIC (RFC 9000, datagrams per RFC 9221)
// and a fallback of HTTP/2 over TLS over TCP.
//
// A connector inside a private network only dials out. The edge authenticates
// each tunnel connection (see [Authenticator]), then opens one stream per user
// connection with [Conn.OpenStream]; the connector accepts it with
// [Conn.AcceptStream], dials the origin named by the [Request] and answers with
// [Stream.Respond]. UDP flows ride datagrams framed by [AppendDatagram].
//
// Authentication: TLS 1.3 only. The connector pins the edge certificate by the
// SHA-256 of its SubjectPublicKeyInfo ([SPKIPin]); no CA is consulted. The
// connector proves it knows the tunnel secret without sending it:
//
//	proof = HMAC-SHA256(secret, EKM)
//	EKM   = TLS exporter("EXPORTER-onramp-auth", context = tunnelID || connectorID, 32 bytes)
//
// The proof is bound to this TLS session, so it cannot be replayed on another
// connection. The edge answers with OK or a refusal carrying an [AuthReason];
// the connector's dial then fails with an [*AuthError]. An unknown tunnel
// and a wrong secret get the same refusal, [AuthDenied], so that a peer
// cannot learn whether a tunnel ID exists; the edge knows which it was.
//
// Revocation: the edge's [Conn] carries the generation of the secret it
// authenticated with ([Conn.Generation], from [TunnelLookup]), so that the
// edge can tell, after a rotation, the connections of the old secret. The
// edge closes such a connection, or one of a deleted tunnel, with code
// [CloseAuthRefused] + reason ([AuthRotated], [AuthTunnelDeleted]): in
// CONNECTION_CLOSE on QUIC, in a control message on HTTP/2. The connector's
// [Conn.Context] then ends with the [*AuthError] as its cause.
//
// # What a stranger can make a listener do
//
// Until a connection attempt has authenticated it is a pending handshake,
// bounded per listener in total ([Config.MaxHandshakes]) and per source,
// an IPv4 address or an IPv6 /64 ([Config.MaxHandshakesPerSource], see
// [SourceOf]). Over a limit the attempt is refused before any
// cryptography: the HTTP/2 listener resets the TCP connection, the QUIC
// listener answers the Initial with CONNECTION_REFUSED. Every attempt has
// [Config.HandshakeTimeout] for TLS and its proof. The QUIC listener
// validates source addresses with a Retry when more than
// [Config.QUICRetryAbove] handshakes are pending or the source is at its
// limit, so that spoofed Initials cannot hold a real connector's budget.
// Failures are reported by reason ([Config.OnAuthFailure]) for the edge's
// metrics; the verdict on the wire says no more than before. The HTTP/2
// listener survives accept errors such as EMFILE by backing off.
//
// # Stream semantics per transport
//
// QUIC: one bidirectional stream per user connection, opened by the edge.
// CloseWrite is a FIN (quic Stream.Close); Reset is CancelRead+CancelWrite
// (STOP_SENDING + RESET_STREAM); Close is FIN + STOP_SENDING. The control
// stream is the first bidirectional stream, opened by the connector.
//
// HTTP/2: one POST per user connection, issued by the edge (the HTTP/2 client)
// on a purpose-built multiplexer (h2mux: RFC 9113 framing, HPACK, flow control;
// not net/http). The request body carries the encoded [Request] then the user's
// bytes; the response (:status 200) body the encoded [Response] then the
// origin's bytes. CloseWrite is END_STREAM on the writer's body; Reset is
// RST_STREAM(CANCEL); Close is END_STREAM then, if the peer is still sending,
// RST_STREAM(NO_ERROR), which after the peer's END_STREAM means "I read no
// more": the peer's writes fail while what it already received stays readable.
package tunnel
