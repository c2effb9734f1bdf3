package tunnel

import (
	"context"
	"io"
	"net"
	"time"
)

// Conn is one live, authenticated tunnel connection between an edge and a connector.
// All methods are safe for concurrent use.
type Conn interface {
	// OpenStream (edge side) opens a stream to the connector and writes req at its head without waiting
	// for an answer (no extra round trip): the connector's Response is read by the first Read on the stream;
	// if the connector refused, that Read returns a *StreamError carrying the response status and message.
	// req must pass [Request.Validate]. OpenStream blocks while the connector's stream limit is reached,
	// until ctx is done. It returns [ErrDraining] once the connector called Drain, and [ErrWrongSide]
	// on the connector side.
	OpenStream(ctx context.Context, req *Request) (Stream, error)
	// AcceptStream (connector side) returns the next stream and its parsed request. The connector must call
	// stream.Respond(status, msg) before writing data (Respond with a non-OK status resets/closes the stream after sending).
	// Streams whose request header is malformed or does not arrive within [Config.HeaderTimeout] are reset
	// and never returned. It returns [ErrWrongSide] on the edge side.
	AcceptStream(ctx context.Context) (Stream, *Request, error)
	// SendDatagram sends one UDP-flow datagram (already framed with AppendDatagram). Unreliable on QUIC; on HTTP/2 it is
	// length-framed on a dedicated stream and may block briefly under backpressure (never buffers unboundedly).
	// b is not retained. A datagram too large for the path returns an error wrapping [ErrDatagramTooLarge].
	SendDatagram(b []byte) error
	// ReceiveDatagram copies the next datagram into b and returns its length.
	// If b is too short the datagram is truncated to len(b) and io.ErrShortBuffer is returned with n = len(b).
	ReceiveDatagram(ctx context.Context, b []byte) (int, error)
	// Protocol returns "quic" or "http2".
	Protocol() string
	// RemoteAddr is the peer's UDP or TCP address.
	RemoteAddr() net.Addr
	// ConnectorID is the connector's process-stable identifier as it authenticated.
	ConnectorID() [16]byte
	// TunnelID is the authenticated tunnel.
	TunnelID() [16]byte
	// Generation (edge side) is the generation of the secret the connector
	// proved, as the edge's [TunnelLookup] gave it (0 without one), so
	// that the edge can drop the connections of a replaced secret. It is
	// 0 on the connector side.
	Generation() uint64
	// AdvertiseEdges (edge side) tells the connector the edge addresses it
	// may dial now (each passing [CheckEdgeAddr]), so that connectors follow
	// edges added after their token was made; the connector hears of it
	// through [Config.OnEdges]. It returns [ErrWrongSide] on the connector side.
	AdvertiseEdges(addrs []string) error
	// Context is canceled when the connection is gone (closed by either side, idle timeout, transport failure).
	// On the connector side, when the edge closed it for an [AuthReason] (the tunnel deleted, the token
	// rotated), its cause is an [*AuthError].
	Context() context.Context
	// CloseWithError closes the connection and fails its streams. On QUIC code and msg reach the
	// peer in CONNECTION_CLOSE. On HTTP/2 only the edge's [CloseAuthRefused]+reason codes reach the
	// connector (on the control stream; the edge then opens no new stream and closes within a second);
	// others are not transmitted (the peer sees the TCP connection end).
	CloseWithError(code uint64, msg string) error
	// Drain (connector side) tells the edge to open no new streams on this connection; streams
	// already open continue. It returns [ErrWrongSide] on the edge side.
	Drain() error
	// Draining reports whether Drain was called (connector side) or received (edge side), or the edge
	// is closing an HTTP/2 connection for an [AuthReason].
	Draining() bool
	// Stats is what the transport reports of the connection's path, for status pages.
	Stats() TransportStats
}

// TransportStats is what a connection's transport reports of its path.
type TransportStats struct {
	// RTT is the smoothed round-trip time: QUIC's, or on HTTP/2 that of
	// the tunnel's PINGs; 0 until measured.
	RTT time.Duration
	// Sent counts the packets sent since the connection began (QUIC) or
	// the TCP segments (HTTP/2); Lost those declared lost (QUIC) or
	// retransmitted (TCP). Both are 0 where the platform has no count.
	Sent, Lost uint64
}

// Stream is one proxied user connection. Read and Write may be called concurrently
// with each other; concurrent Reads, or concurrent Writes, are not supported.
type Stream interface {
	io.Reader
	io.Writer
	// Respond (connector side only) sends the answer to the stream's request; it must come before any Write.
	// A non-OK status closes the stream after sending it: the edge's first Read returns a *StreamError.
	// It returns [ErrWrongSide] on the edge and [ErrAlreadyResponded] on a second call.
	Respond(status Status, msg string) error
	// CloseWrite half-closes: the peer's Read sees io.EOF after the data.
	CloseWrite() error
	// Reset aborts both directions; the peer sees an error (not EOF) on Read/Write, wrapping [ErrStreamReset].
	Reset()
	// Close is a full close (CloseWrite + stop reading): data the peer sends afterwards is discarded
	// and the peer's further Writes fail. Every stream must end with Close or Reset, or its
	// resources stay held until the connection ends.
	Close() error
}

// Listener is the edge side of a transport: it yields authenticated connections.
type Listener interface {
	// Accept returns the next authenticated connection. Connections that fail the handshake
	// or authentication are closed and never returned.
	Accept(ctx context.Context) (Conn, error)
	Addr() net.Addr
	// Close stops listening and closes connections not yet accepted. Accepted HTTP/2 connections
	// stay open; accepted QUIC connections share the listener's UDP socket and are closed with it.
	Close() error
}

// Application close codes sent when closing a connection.
const (
	// CloseNormal is an ordinary close.
	CloseNormal uint64 = 0
	// CloseAuthRefused plus an [AuthReason] is the code the edge closes a refused connection with.
	CloseAuthRefused uint64 = 0x100
)

// Liveness is what a connection tells of its peer's signs of life: Received
// changes each time something arrives from the peer (a QUIC packet, an
// HTTP/2 frame). Both transports' connections implement it; with the
// keep-alives of [Config.KeepAlivePeriod], a Received that stays the same
// for much longer than that period means the peer is gone.
type Liveness interface {
	Received() uint64
}

// Config tunes both transports. The zero value, or a nil *Config, means the defaults
// documented on each field. The same Config is used on the edge and the connector.
type Config struct {
	// HandshakeTimeout bounds the TLS handshake plus authentication. Default 10s.
	HandshakeTimeout time.Duration
	// KeepAlivePeriod is the interval of keep-alive packets (QUIC) or PINGs (HTTP/2) once the
	// peer has been silent that long. Default 1s: a live connection hears from its peer at least
	// about once a second, so that a silent one is known dead in seconds (see [Liveness]).
	KeepAlivePeriod time.Duration
	// MaxIdleTimeout is how long a silent peer is tolerated before the connection is declared dead
	// and its streams end with a reset. Default 5s. It must exceed KeepAlivePeriod.
	MaxIdleTimeout time.Duration
	// OnEdges (connector side), if set, is called with each edge list the
	// edge advertises on the connection (AdvertiseEdges), from the
	// connection's control loop: it must not block.
	OnEdges func(addrs []string)
	// MaxStreamWindow bounds the per-stream receive window. Default 16 MiB.
	MaxStreamWindow int
	// MaxConnWindow bounds the per-connection receive window. Default 32 MiB.
	MaxConnWindow int
	// MaxIncomingStreams is how many concurrent streams the connector accepts from the edge. Default 10000.
	MaxIncomingStreams int
	// SocketBuffer is the UDP socket buffer size requested for QUIC (SO_RCVBUFFORCE/SO_SNDBUFFORCE
	// when permitted, SO_RCVBUF/SO_SNDBUF otherwise). Default 8 MiB; negative leaves the OS default.
	SocketBuffer int
	// HeaderTimeout bounds the arrival of a stream's request header on the connector. Default 10s.
	HeaderTimeout time.Duration
	// AcceptQueueLen is how many streams with a parsed request may wait for AcceptStream. Default 256.
	AcceptQueueLen int
	// DatagramQueueLen bounds datagrams queued for sending or receiving on HTTP/2. Default 1024.
	DatagramQueueLen int
	// DatagramSendWait is how long SendDatagram on HTTP/2 waits for queue space before
	// dropping with [ErrDatagramDropped]. Default 50ms.
	DatagramSendWait time.Duration
	// QUICHandshakeTimeout is how long [Dial] with "auto" waits for QUIC before falling back
	// to HTTP/2. Default 3s.
	QUICHandshakeTimeout time.Duration
	// QUICSockets is how many UDP sockets, each with its own quic-go
	// Transport, the QUIC listener runs on its port: a SO_REUSEPORT group
	// steered by connection ID (dataplane/steer), so that a connection
	// stays on its Transport when its source changes. 0 (the default) is
	// GOMAXPROCS; 1 is a single socket without eBPF. Where steering cannot
	// load (no eBPF, no capability) the listener runs one socket and
	// [QUICListener.Steering] says why.
	QUICSockets int

	// The edge's listeners bound the work strangers can make them do before
	// they authenticated (see handshake.go). A connection attempt counts as
	// a pending handshake from its first packet (QUIC) or its accept (TCP)
	// until its verdict.

	// MaxHandshakes bounds the pending handshakes of one listener. Over it,
	// new attempts are refused before any cryptography: the TCP connection
	// closed, the QUIC Initial answered with CONNECTION_REFUSED. Default
	// [DefaultMaxHandshakes].
	MaxHandshakes int
	// MaxHandshakesPerSource bounds the pending handshakes of one listener
	// from one source: an IPv4 address or an IPv6 /64. Default
	// [DefaultMaxHandshakesPerSource]. On QUIC, whose source addresses can
	// be spoofed, a source at the limit must first prove its address with a
	// Retry; handshakes of proven addresses count against their own budget,
	// so spoofed Initials cannot use up the budget of a real connector.
	MaxHandshakesPerSource int
	// QUICRetryAbove makes the QUIC listener validate source addresses
	// (a Retry, RFC 9000 section 8.1.2: one more round trip) once more
	// handshakes than this are pending. Default [DefaultQUICRetryAbove].
	QUICRetryAbove int

	// Listener events, for the edge's metrics and logs. Each may be nil; each
	// is called from the listener's goroutines and must not block.

	// OnAuthFailure is called for every connection attempt that did not
	// authenticate: a refusing verdict (its reason is the one counted, which
	// the wire may not tell apart), a TLS failure ([AuthTLSFailed]) or an
	// attempt that did not finish in HandshakeTimeout ([AuthHandshakeTimeout]).
	OnAuthFailure func(reason AuthReason, remote net.Addr)
	// OnHandshakeRefused is called for every attempt refused by
	// MaxHandshakes (perSource false) or MaxHandshakesPerSource (true).
	OnHandshakeRefused func(perSource bool, remote net.Addr)
	// OnQUICRetry is called for every QUIC Initial answered with a Retry:
	// because its source is at MaxHandshakesPerSource (perSource true) or
	// more than QUICRetryAbove handshakes are pending (false).
	OnQUICRetry func(perSource bool, remote net.Addr)
	// OnAcceptError is called when the HTTP/2 listener's accept fails
	// (EMFILE, ENFILE, ...), once at the start of each streak of failures;
	// the listener retries after retryIn, backing off up to 1s.
	OnAcceptError func(err error, retryIn time.Duration)
}

func (c *Config) withDefaults() Config {
	var o Config
	if c != nil {
		o = *c
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.HandshakeTimeout, 10*time.Second)
	def(&o.KeepAlivePeriod, time.Second)
	def(&o.MaxIdleTimeout, 5*time.Second)
	def(&o.HeaderTimeout, 10*time.Second)
	def(&o.DatagramSendWait, 50*time.Millisecond)
	def(&o.QUICHandshakeTimeout, 3*time.Second)
	defInt(&o.MaxStreamWindow, 16<<20)
	defInt(&o.MaxConnWindow, 32<<20)
	defInt(&o.MaxIncomingStreams, 10000)
	defInt(&o.AcceptQueueLen, 256)
	defInt(&o.DatagramQueueLen, 1024)
	defInt(&o.MaxHandshakes, DefaultMaxHandshakes)
	defInt(&o.MaxHandshakesPerSource, DefaultMaxHandshakesPerSource)
	defInt(&o.QUICRetryAbove, DefaultQUICRetryAbove)
	if o.SocketBuffer == 0 {
		o.SocketBuffer = 8 << 20
	}
	if o.MaxConnWindow < o.MaxStreamWindow {
		o.MaxConnWindow = o.MaxStreamWindow
	}
	return o
}

// accepted is one connector-side stream whose request header was read.
type accepted struct {
	s   Stream
	req *Request
}

// acceptFrom waits for the next accepted stream on ch.
func acceptFrom(ctx, connCtx context.Context, ch <-chan accepted) (Stream, *Request, error) {
	select {
	case a := <-ch:
		return a.s, a.req, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-connCtx.Done():
		return nil, nil, connGoneErr(connCtx)
	}
}

// connGoneErr is the error reported after the connection's context ended.
func connGoneErr(ctx context.Context) error {
	if c := context.Cause(ctx); c != nil && c != context.Canceled {
		return c
	}
	return ErrClosed
}
