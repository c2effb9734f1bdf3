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
package tunnel
