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
// the connector's dial then fails with an [*AuthError].
//
// # Stream semantics per transport
//
// QUIC: one bidirectional stream per user connection, opened by the edge.
// CloseWrite is a FIN (quic Stream.Close); Reset is CancelRead+CancelWrite
// (STOP_SENDING + RESET_STREAM); Close is FIN + STOP_SENDING. The control
// stream is the first bidirectional stream, opened by the connector.
//
// HTTP/2: one POST per user connection, issued by the edge (the HTTP/2 client).
// The edge's CloseWrite ends the request body (END_STREAM). The connector's
// CloseWrite cannot use END_STREAM: x/net/http2 ends a response only when the
// handler returns, and then it also resets the request body. So the response
// body is framed (len u32 | data) and a zero-length frame is an in-band FIN;
// the handler returns once the connector has both sent its FIN and read the
// edge's END_STREAM (or called Close/Reset), and only then END_STREAM is sent.
// Consequences: a connector must eventually Close or Reset every stream it
// accepted, and each connector write carries 4 bytes of framing.
// The edge's Close ends the request body, then discards the response for up to
// a second before resetting, because a reset sent at once can overtake the
// END_STREAM (x/net/http2 does not report when END_STREAM is written).
// The edge's Reset cancels the request (RST_STREAM CANCEL). The connector's Reset
// sets a write deadline in the past, which x/net/http2 turns into RST_STREAM
// INTERNAL_ERROR at once, even while a Write waits for flow control.
package tunnel
