package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The HTTP/2 transport reverses roles after TLS: the connector (TLS client)
// is the HTTP/2 server and the edge (TLS server) the HTTP/2 client, so that
// the edge can open streams. Both ends run h2mux. Every tunnel stream is one
// POST request:
//
//	"/auth"      the first request; stays open as the control stream.
//	             response body: connector -> edge control messages (proof, drain)
//	             request body:  edge -> connector control messages (verdict)
//	"/datagrams" one long-lived request; both bodies carry datagrams as len u16 | datagram.
//	"/stream/2"  one per user connection.
//	             request body:  encoded Request, then the user's bytes
//	             response:      :status 200, then a body of the encoded Response
//	                            and the origin's bytes
//	             END_STREAM on either body is that side's half-close;
//	             RST_STREAM(CANCEL) a reset; RST_STREAM(NO_ERROR) after
//	             END_STREAM a close (the sender reads no more).
//	             The "/2" is the body format: builds on x/net/http2 used
//	             "/stream" with a length-framed response body, so an edge and
//	             a connector of different formats refuse each other's
//	             streams (HTTP 404) instead of misreading them.
const (
	h2PathAuth      = "/auth"
	h2PathDatagrams = "/datagrams"
	h2PathStream    = "/stream/2"
)

// HTTP2Listener is the edge side of the HTTP/2 transport. It implements [Listener].
type HTTP2Listener struct {
	ln   net.Listener
	cert tls.Certificate
	auth Authenticator
	cfg  Config
	gate *handshakeGate
	acceptQueue
}

var _ Listener = (*HTTP2Listener)(nil)

// ListenHTTP2 listens for connectors on the TCP address addr, presenting cert
// (ALPN "h2", TLS 1.3 only) and authenticating them with auth. cfg may be nil.
func ListenHTTP2(addr string, cert tls.Certificate, auth Authenticator, cfg *Config) (*HTTP2Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen http2: %w", err)
	}
	return newHTTP2Listener(ln, cert, auth, cfg), nil
}

func newHTTP2Listener(ln net.Listener, cert tls.Certificate, auth Authenticator, cfg *Config) *HTTP2Listener {
	l := &HTTP2Listener{ln: ln, cert: cert, auth: auth, cfg: cfg.withDefaults(), acceptQueue: newAcceptQueue()}
	l.gate = newHandshakeGate(&l.cfg)
	go l.acceptLoop()
	return l
}

// Addr returns the local TCP address.
func (l *HTTP2Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops listening. Accepted connections stay open.
func (l *HTTP2Listener) Close() error {
	l.close(func() { l.ln.Close() })
	return nil
}

// acceptLoop accepts TCP connections until the listener is closed. Each
// takes a handshake slot or is closed at once. An accept error other than
// the listener's closing (EMFILE, ENFILE, ECONNABORTED) does not end it: it
// backs off from 5ms, doubling up to 1s, as net/http does, and reports the
// first error of each streak.
func (l *HTTP2Listener) acceptLoop() {
	var delay time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			first := delay == 0
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if first && l.cfg.OnAcceptError != nil {
				l.cfg.OnAcceptError(err, delay)
			}
			select {
			case <-time.After(delay):
			case <-l.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		src := SourceOfAddr(raw.RemoteAddr())
		if ok, perSource := l.gate.acquire(src, true); !ok {
			closeNow(raw)
			l.cfg.handshakeRefused(perSource, raw.RemoteAddr())
			continue
		}
		go func() {
			c := l.handshake(raw)
			l.gate.release(src, true)
			if c != nil && !l.offer(c) {
				c.CloseWithError(CloseNormal, "listener closed")
			}
		}()
	}
}

// handshake runs TLS and authentication on raw, within HandshakeTimeout. It
// returns the authenticated connection, or nil after closing raw and
// reporting the failure.
func (l *HTTP2Listener) handshake(raw net.Conn) *h2Conn {
	setTCPOptions(raw, l.cfg.KeepAlivePeriod)
	ctx, cancel := context.WithTimeout(l.ctx, l.cfg.HandshakeTimeout)
	defer cancel()
	bc := newBatchConn(raw)
	tc := tls.Server(bc, edgeTLSConfig(l.cert, ALPNHTTP2))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		l.cfg.authFailed(handshakeFailure(err), raw.RemoteAddr())
		return nil
	}
	if tc.ConnectionState().NegotiatedProtocol != ALPNHTTP2 {
		tc.Close()
		l.cfg.authFailed(AuthTLSFailed, raw.RemoteAddr())
		return nil
	}
	c, err := newEdgeH2Conn(ctx, tc, bc, l.auth, &l.cfg)
	if errors.Is(err, errAuthenticated) {
		return nil // not an authentication failure: the connector went away
	}
	if err != nil {
		reason := AuthMalformed
		var ae *AuthError
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		l.cfg.authFailed(failureBeforeVerdict(ctx, err, reason), raw.RemoteAddr())
		return nil
	}
	return c
}

// errAuthenticated marks a failure of an edge connection after its
// connector authenticated.
var errAuthenticated = errors.New("after authentication")

// DialHTTP2 connects to the edge at addr over TLS (ALPN "h2") on TCP, verifies
// the edge by tok.EdgePin, serves HTTP/2 on the connection and authenticates
// with tok's secret. Errors are as for [DialQUIC]. cfg may be nil.
func DialHTTP2(ctx context.Context, addr string, tok Token, connectorID [16]byte, cfg *Config) (Conn, error) {
	c := cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, c.HandshakeTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: -1}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial http2 %s: %w", addr, err)
	}
	setTCPOptions(raw, c.KeepAlivePeriod)
	bc := newBatchConn(raw)
	tc := tls.Client(bc, connectorTLSConfig(addr, tok.EdgePin, ALPNHTTP2))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		if isPinError(err) && !errors.Is(err, ErrPinMismatch) {
			err = fmt.Errorf("%w: %w", ErrPinMismatch, err)
		}
		return nil, fmt.Errorf("dial http2 %s: %w", addr, err)
	}
	conn := newH2Conn(false, tc, bc, &c)
	conn.tok = &tok
	conn.connectorID = connectorID
	conn.tunnelID = tok.TunnelID
	conn.accepts = make(chan accepted, c.AcceptQueueLen)
	conn.authResult = make(chan error, 1)
	conn.authDone = make(chan struct{})
	conn.mux.onStream = conn.onStream
	if err := conn.mux.start(); err != nil {
		return nil, fmt.Errorf("dial http2 %s: %w", addr, err)
	}
	select {
	case err = <-conn.authResult:
	case <-ctx.Done():
		err = ctx.Err()
	case <-conn.mux.ctx.Done():
		err = connGoneErr(conn.mux.ctx)
	}
	if err != nil {
		conn.shutdown(err)
		var ae *AuthError
		if errors.As(err, &ae) {
			return nil, err
		}
		return nil, fmt.Errorf("dial http2 %s: %w", addr, err)
	}
	return conn, nil
}

// h2Conn implements Conn over an h2mux; the edge is the HTTP/2 client, the
// connector the server.
type h2Conn struct {
	edge        bool
	tc          *tls.Conn
	raw         net.Conn // the TCP connection under tc
	mux         *h2mux
	cfg         *Config
	tunnelID    [16]byte
	connectorID [16]byte
	generation  uint64 // edge side: of the secret the connector proved
	draining    atomic.Bool
	dg          *h2Datagrams
	ctrlMu      sync.Mutex
	ctrl        *h2stream  // the control stream; nil once it ended (connector)
	ctrlWriteMu sync.Mutex // orders the edge's control messages (ctrlEdges, ctrlClose)

	// connector side
	tok        *Token
	accepts    chan accepted
	authResult chan error
	authSeen   atomic.Bool
	authed     atomic.Bool   // set before authDone is closed
	authDone   chan struct{} // closed once the edge's verdict was read (or auth failed)
	dgSeen     atomic.Bool
}

func newH2Conn(edge bool, tc *tls.Conn, bc *batchConn, cfg *Config) *h2Conn {
	c := &h2Conn{edge: edge, tc: tc, raw: bc.Conn, cfg: cfg}
	c.mux = newH2Mux(edge, tc, bc, cfg)
	c.dg = newH2Datagrams(c.mux.ctx, cfg)
	c.dg.fail = c.shutdown
	return c
}

// shutdown ends the connection with cause, telling the peer (GOAWAY).
func (c *h2Conn) shutdown(cause error) { c.mux.goAway(cause) }

func (c *h2Conn) Protocol() string { return "http2" }

// Received implements [Liveness]: the time of the last frame from the peer.
func (c *h2Conn) Received() uint64         { return uint64(c.mux.lastFrame.Load()) }
func (c *h2Conn) RemoteAddr() net.Addr     { return c.tc.RemoteAddr() }
func (c *h2Conn) LocalAddr() net.Addr      { return c.tc.LocalAddr() }
func (c *h2Conn) ConnectorID() [16]byte    { return c.connectorID }
func (c *h2Conn) TunnelID() [16]byte       { return c.tunnelID }
func (c *h2Conn) Generation() uint64       { return c.generation }
func (c *h2Conn) Context() context.Context { return c.mux.ctx }
func (c *h2Conn) Draining() bool           { return c.draining.Load() }

// CloseWithError closes the connection (GOAWAY, then the TCP connection).
// HTTP/2 has no close code: the edge sends an auth close (CloseAuthRefused
// + reason) on the control stream instead, and the connector closes when it
// reads it; the edge then stops opening streams and closes after at most a
// second. Other codes are not transmitted.
func (c *h2Conn) CloseWithError(code uint64, msg string) error {
	cause := fmt.Errorf("closed locally with code %d: %s: %w", code, msg, ErrClosed)
	c.ctrlMu.Lock()
	ctrl := c.ctrl
	c.ctrlMu.Unlock()
	if !c.edge || !isAuthClose(code) || ctrl == nil || c.mux.ctx.Err() != nil {
		c.shutdown(cause)
		return nil
	}
	c.draining.Store(true)
	t := time.AfterFunc(time.Second, func() { c.shutdown(cause) })
	context.AfterFunc(c.mux.ctx, func() { t.Stop() })
	go func() {
		// Written aside: a connector that does not read its control
		// stream blocks the write until the timer closes the connection.
		var b [2 + 255]byte
		c.ctrlWriteMu.Lock()
		defer c.ctrlWriteMu.Unlock()
		if writeCtrl(ctrl, ctrlClose, appendVerdict(b[:0], AuthReason(code-CloseAuthRefused), msg)) != nil {
			c.shutdown(cause)
		}
	}()
	return nil
}

// SmoothedRTT is the round-trip time measured with PINGs (0 until one came
// back).
func (c *h2Conn) SmoothedRTT() time.Duration { return time.Duration(c.mux.rtt.Load()) }

// Stats implements Conn: the PINGs' round-trip time and the TCP
// connection's segments sent and retransmitted.
func (c *h2Conn) Stats() TransportStats {
	sent, retrans := tcpSegments(c.raw)
	return TransportStats{RTT: c.SmoothedRTT(), Sent: sent, Lost: retrans}
}

func (c *h2Conn) Drain() error {
	if c.edge {
		return fmt.Errorf("drain: %w", ErrWrongSide)
	}
	c.draining.Store(true)
	c.ctrlMu.Lock()
	defer c.ctrlMu.Unlock()
	if c.ctrl == nil {
		return fmt.Errorf("drain: %w", ErrClosed)
	}
	if err := writeCtrl(c.ctrl, ctrlDrain, nil); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// AdvertiseEdges implements Conn. A connector that does not read its
// control stream blocks the write until the connection ends (at the
// latest at its idle timeout); call it aside.
func (c *h2Conn) AdvertiseEdges(addrs []string) error {
	if !c.edge {
		return fmt.Errorf("advertise edges: %w", ErrWrongSide)
	}
	p, err := AppendEdges(nil, addrs)
	if err != nil {
		return err
	}
	c.ctrlMu.Lock()
	ctrl := c.ctrl
	c.ctrlMu.Unlock()
	if ctrl == nil {
		return fmt.Errorf("advertise edges: %w", ErrClosed)
	}
	c.ctrlWriteMu.Lock()
	defer c.ctrlWriteMu.Unlock()
	if err := writeCtrl(ctrl, ctrlEdges, p); err != nil {
		return fmt.Errorf("advertise edges: %w", err)
	}
	return nil
}

func (c *h2Conn) SendDatagram(b []byte) error { return c.dg.send(b) }

func (c *h2Conn) ReceiveDatagram(ctx context.Context, b []byte) (int, error) {
	return c.dg.receive(ctx, b)
}

// ---- edge side ----

func newEdgeH2Conn(ctx context.Context, tc *tls.Conn, bc *batchConn, auth Authenticator, cfg *Config) (*h2Conn, error) {
	c := newH2Conn(true, tc, bc, cfg)
	if err := c.mux.start(); err != nil {
		return nil, err
	}
	// The handshake deadline covers authentication.
	stopTimer := context.AfterFunc(ctx, func() {
		if ctx.Err() == context.DeadlineExceeded {
			c.shutdown(fmt.Errorf("authentication: %w", ctx.Err()))
		}
	})
	defer stopTimer()
	fail := func(err error) (*h2Conn, error) {
		c.shutdown(err)
		return nil, err
	}

	ctrl, err := c.roundTrip(c.mux.ctx, h2PathAuth, nil)
	if err != nil {
		return fail(err)
	}
	cs := tc.ConnectionState()
	hello, reason, _ := edgeCheckAuth(ctrl, &cs, auth)
	if reason != AuthOK {
		edgeWriteAuthResult(ctrl, reason)
		ctrl.CloseWrite()
		// Give the connector a moment to read the verdict and close by itself.
		select {
		case <-c.mux.ctx.Done():
		case <-time.After(time.Second):
		}
		return fail(&AuthError{Reason: reason})
	}
	if err := edgeWriteAuthResult(ctrl, AuthOK); err != nil {
		return fail(err)
	}
	c.tunnelID, c.connectorID, c.generation = hello.tunnelID, hello.connectorID, hello.generation
	c.ctrl = ctrl
	go c.edgeControlLoop(ctrl)

	dg, err := c.roundTrip(c.mux.ctx, h2PathDatagrams, nil)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", errAuthenticated, err))
	}
	go c.dg.writeLoop(dg, nil)
	go c.dg.readLoop(dg)
	return c, nil
}

// roundTrip (edge) opens a stream to path with data as the start of the
// request body and waits for the response headers: an error unless 200.
func (c *h2Conn) roundTrip(ctx context.Context, path string, data []byte) (*h2stream, error) {
	s, err := c.mux.openStream(ctx, path, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	status, err := s.responseStatus()
	if err != nil {
		s.Reset()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if status != "200" {
		s.Reset()
		return nil, fmt.Errorf("%s: HTTP status %s", path, status)
	}
	return s, nil
}

func (c *h2Conn) edgeControlLoop(r io.Reader) {
	var buf [maxCtrlLen]byte
	for {
		typ, _, err := readCtrl(r, buf[:])
		if err != nil {
			// The control stream lives as long as the connection.
			c.shutdown(fmt.Errorf("control stream: %w", err))
			return
		}
		if typ == ctrlDrain {
			c.draining.Store(true)
		}
	}
}

func (c *h2Conn) AcceptStream(ctx context.Context) (Stream, *Request, error) {
	if c.edge {
		return nil, nil, fmt.Errorf("accept stream: %w", ErrWrongSide)
	}
	s, r, err := acceptFrom(ctx, c.mux.ctx, c.accepts)
	if err != nil {
		return nil, nil, fmt.Errorf("accept stream: %w", err)
	}
	return s, r, nil
}

// ---- connector side ----

// onStream is called by the reader for each stream the edge opens.
func (c *h2Conn) onStream(s *h2stream, path string) {
	switch path {
	case h2PathAuth:
		if !c.authSeen.CompareAndSwap(false, true) {
			go c.refuse(s, "409")
			return
		}
		go c.serveAuth(s)
	case h2PathDatagrams:
		go c.serveDatagrams(s)
	case h2PathStream:
		go c.serveStream(s)
	default:
		go c.refuse(s, "404")
	}
}

// refuse answers a request with status and no body, and reads no more of it.
func (c *h2Conn) refuse(s *h2stream, status string) {
	c.mux.respond(s, status, nil, nil, true)
	s.stopReading()
}

// waitAuth waits, on a stream other than the control stream, for the end
// of authentication: the edge opens streams right after sending its
// verdict, which serveAuth may not have read yet.
func (c *h2Conn) waitAuth() bool {
	select {
	case <-c.authDone:
		return c.authed.Load()
	case <-c.mux.ctx.Done():
		return false
	}
}

func (c *h2Conn) serveAuth(s *h2stream) {
	err := c.mux.respond(s, "200", nil, nil, false)
	if err == nil {
		cs := c.tc.ConnectionState()
		err = connectorSendAuth(s, &cs, c.tok, c.connectorID)
	}
	if err == nil {
		err = connectorReadAuthResult(s)
	}
	if err == nil {
		c.ctrlMu.Lock()
		c.ctrl = s
		c.ctrlMu.Unlock()
		c.authed.Store(true)
	}
	close(c.authDone)
	c.authResult <- err
	if err != nil {
		return
	}
	// After the verdict the edge sends the edge lists it advertises
	// (ctrlEdges) and at most the reason it closes the connection for
	// (ctrlClose); the request body ends with the connection.
	cause := fmt.Errorf("control stream ended: %w", ErrClosed)
	var buf [maxCtrlLen]byte
	for {
		typ, p, err := readCtrl(s, buf[:])
		if err != nil {
			break
		}
		if ae, err := parseVerdict(p); typ == ctrlClose && err == nil {
			cause = ae
			break
		}
		if typ == ctrlEdges && c.cfg.OnEdges != nil {
			if addrs, err := ParseEdges(p); err == nil {
				c.cfg.OnEdges(addrs)
			}
		}
	}
	c.ctrlMu.Lock()
	c.ctrl = nil
	c.ctrlMu.Unlock()
	c.shutdown(cause)
}

func (c *h2Conn) serveDatagrams(s *h2stream) {
	if !c.waitAuth() || !c.dgSeen.CompareAndSwap(false, true) {
		c.refuse(s, "403")
		return
	}
	if err := c.mux.respond(s, "200", nil, nil, false); err != nil {
		return
	}
	go c.dg.readLoop(s)
	c.dg.writeLoop(s, nil) // returns when the stream or connection ends
}

func (c *h2Conn) serveStream(s *h2stream) {
	if !c.waitAuth() {
		c.refuse(s, "403")
		return
	}
	t := time.AfterFunc(c.cfg.HeaderTimeout, s.Reset)
	req, err := ReadRequest(s)
	if !t.Stop() || err != nil {
		s.Reset()
		return
	}
	select {
	case c.accepts <- accepted{s: &h2ConnectorStream{s: s}, req: &req}:
	case <-c.mux.ctx.Done():
		s.Reset()
	}
}
