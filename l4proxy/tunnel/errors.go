package tunnel

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Functions wrap them as "op: %w"; test with [errors.Is].
var (
	// ErrBadToken is wrapped by every [ParseToken] failure.
	ErrBadToken = errors.New("bad token")
	// ErrMalformed is wrapped by every codec failure on bytes read from the peer.
	ErrMalformed = errors.New("malformed message")
	// ErrTooLong reports a field or message over its documented limit.
	ErrTooLong = errors.New("too long")
	// ErrUnsupportedVersion reports a message version this package does not speak.
	ErrUnsupportedVersion = errors.New("unsupported protocol version")
	// ErrStreamReset is wrapped by Read and Write errors when the peer aborted the stream
	// ([Stream.Reset] on the other side, or a refusal after [Stream.Respond]).
	ErrStreamReset = errors.New("stream reset by peer")
	// ErrNotResponded is returned by a connector-side Write before [Stream.Respond].
	ErrNotResponded = errors.New("write before Respond")
	// ErrAlreadyResponded is returned by a second [Stream.Respond].
	ErrAlreadyResponded = errors.New("already responded")
	// ErrWrongSide is returned by a method called on the wrong side of the tunnel
	// (Respond on the edge, OpenStream on the connector, ...).
	ErrWrongSide = errors.New("method not available on this side of the tunnel")
	// ErrDraining is returned by an edge-side OpenStream after the connector called Drain.
	ErrDraining = errors.New("connection is draining")
	// ErrDatagramDropped is returned by SendDatagram on HTTP/2 when the bounded
	// datagram queue stayed full for [Config.DatagramSendWait].
	ErrDatagramDropped = errors.New("datagram dropped: queue full")
	// ErrDatagramTooLarge reports a datagram that cannot be carried.
	ErrDatagramTooLarge = errors.New("datagram too large")
	// ErrPinMismatch is returned (wrapped) by a dial when the edge's certificate
	// does not match the token's pin.
	ErrPinMismatch = errors.New("edge certificate does not match the pinned SPKI hash")
	// ErrClosed is returned after the connection or listener was closed locally.
	ErrClosed = errors.New("tunnel connection closed")
)

// AuthReason is the edge's verdict on a connector's proof, sent on the wire
// as one byte, and the reason it closes an authenticated connection for
// (code [CloseAuthRefused] + reason).
//
// The edge knows why it refuses a proof, but a peer that has not proved
// anything must not learn whether a tunnel ID exists: an unknown tunnel, a
// tunnel deleted before the proof and a wrong secret all go on the wire as
// [AuthDenied]. The edge keeps the precise reason for its logs and
// counters.
type AuthReason uint8

// Authentication verdicts and close reasons.
const (
	AuthOK AuthReason = 0
	// AuthUnknownTunnel (no such tunnel) and AuthBadSecret (wrong proof)
	// are the edge's own reasons; the peer is sent AuthDenied.
	AuthUnknownTunnel AuthReason = 1
	AuthBadSecret     AuthReason = 2
	// AuthTunnelDeleted closes the connections of a tunnel deleted after
	// they authenticated. A proof for a deleted tunnel gets AuthDenied.
	AuthTunnelDeleted AuthReason = 3
	AuthMalformed     AuthReason = 4 // the proof message could not be parsed
	AuthInternal      AuthReason = 5 // the edge failed to check (lookup error, exporter failure)
	// AuthDenied is the one refusal of a proof the edge cannot accept:
	// unknown tunnel or wrong secret, without saying which.
	AuthDenied AuthReason = 6
	// AuthRotated closes the connections that authenticated with a secret
	// the tunnel no longer has (edge tunnel rotate): the token was replaced.
	AuthRotated AuthReason = 7
)

func (r AuthReason) String() string {
	switch r {
	case AuthOK:
		return "ok"
	case AuthUnknownTunnel:
		return "unknown tunnel"
	case AuthBadSecret:
		return "bad secret"
	case AuthTunnelDeleted:
		return "tunnel deleted"
	case AuthMalformed:
		return "malformed authentication"
	case AuthInternal:
		return "edge internal error"
	case AuthDenied:
		return "unknown tunnel or bad secret"
	case AuthRotated:
		return "token rotated"
	case AuthTLSFailed:
		return "TLS handshake failed"
	case AuthHandshakeTimeout:
		return "handshake timeout"
	}
	return fmt.Sprintf("auth reason %d", uint8(r))
}

// onWire is the reason sent to a peer whose proof was refused for r.
func (r AuthReason) onWire() AuthReason {
	switch r {
	case AuthUnknownTunnel, AuthBadSecret, AuthTunnelDeleted:
		return AuthDenied
	}
	return r
}

// AuthError is returned by the connector's dial functions when the edge refused
// the tunnel, and is the cause of a connector-side [Conn.Context] when the
// edge closed the connection with an [AuthReason] (the tunnel deleted, the
// token rotated). Reason is machine-readable; Message is the edge's text
// (may be empty).
type AuthError struct {
	Reason  AuthReason
	Message string
}

func (e *AuthError) Error() string {
	if strings.HasPrefix(e.Message, e.Reason.String()) { // the edge's text starts with the reason
		return "tunnel refused by edge: " + e.Message
	}
	if e.Message == "" {
		return "tunnel refused by edge: " + e.Reason.String()
	}
	return "tunnel refused by edge: " + e.Reason.String() + ": " + e.Message
}

// StreamError is returned by the edge's first Read on a stream when the
// connector answered with a non-OK [Status].
type StreamError struct {
	Status  Status
	Message string
}

func (e *StreamError) Error() string {
	if e.Message == "" {
		return "stream refused by connector: " + e.Status.String()
	}
	return "stream refused by connector: " + e.Status.String() + ": " + e.Message
}
