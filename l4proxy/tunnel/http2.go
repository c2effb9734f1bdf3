// The HTTP/2 transport reverses roles on one TLS connection (the dialing
// connector serves, the edge is the client), which needs x/net/http2's
// ServeConn and NewClientConn on an existing net.Conn; net/http has no
// equivalent for a connection it did not accept or dial itself.
//lint:file-ignore SA1019 ServeConn and ClientConn on an existing conn are what this transport needs

package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// The HTTP/2 transport reverses roles after TLS: the connector (TLS client) runs
// an http2.Server on its connection and the edge (TLS server) an http2.ClientConn,
// so that the edge can open streams. Every tunnel stream is one POST request:
//
//	"/auth"      the first request; stays open as the control stream.
//	             response body: connector -> edge control messages (proof, drain)
//	             request body:  edge -> connector control messages (verdict)
//	"/datagrams" one long-lived request; both bodies carry datagrams as len u16 | datagram.
//	"/stream"    one per user connection.
//	             request body:  encoded Request, then the user's bytes (END_STREAM = half-close)
//	             response body: encoded Response, then data frames: len u32 | data;
//	                            a frame of length 0 is the connector's half-close (in-band FIN).
const (
	h2PathAuth      = "/auth"
	h2PathDatagrams = "/datagrams"
	h2PathStream    = "/stream"
	h2URLBase       = "https://onramp.tunnel"
	h2MaxChunk      = 1 << 20 // connector -> edge data frame payload limit
)

// h2ReadFrameSize is the largest HTTP/2 frame either side accepts; large frames
// cut per-frame overhead on bulk streams.
const h2ReadFrameSize = 1 << 20

// HTTP2Listener is the edge side of the HTTP/2 transport. It implements [Listener].
type HTTP2Listener struct {
	ln   net.Listener
	cert tls.Certificate
	auth Authenticator
	cfg  Config
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
	l := &HTTP2Listener{ln: ln, cert: cert, auth: auth, cfg: cfg.withDefaults(), acceptQueue: newAcceptQueue()}
	go l.acceptLoop()
	return l, nil
}

// Addr returns the local TCP address.
func (l *HTTP2Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops listening. Accepted connections stay open.
func (l *HTTP2Listener) Close() error {
	l.close(func() { l.ln.Close() })
	return nil
}

func (l *HTTP2Listener) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		go l.handshake(c)
	}
}

func (l *HTTP2Listener) handshake(raw net.Conn) {
	setTCPOptions(raw, l.cfg.KeepAlivePeriod)
	ctx, cancel := context.WithTimeout(l.ctx, l.cfg.HandshakeTimeout)
	defer cancel()
	tc := tls.Server(raw, edgeTLSConfig(l.cert, ALPNHTTP2))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol != ALPNHTTP2 {
		tc.Close()
		return
	}
	c, err := newEdgeH2Conn(ctx, tc, l.auth, &l.cfg)
	if err != nil {
		return
	}
	if !l.offer(c) {
		c.CloseWithError(CloseNormal, "listener closed")
	}
}

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
	tc := tls.Client(raw, connectorTLSConfig(addr, tok.EdgePin, ALPNHTTP2))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		if isPinError(err) && !errors.Is(err, ErrPinMismatch) {
			err = fmt.Errorf("%w: %w", ErrPinMismatch, err)
		}
		return nil, fmt.Errorf("dial http2 %s: %w", addr, err)
	}
	conn := newH2Conn(false, tc, &c)
	conn.tok = &tok
	conn.connectorID = connectorID
	conn.tunnelID = tok.TunnelID
	conn.accepts = make(chan accepted, c.AcceptQueueLen)
	conn.authResult = make(chan error, 1)
	conn.authDone = make(chan struct{})
	srv := &http2.Server{
		MaxConcurrentStreams:         uint32(c.MaxIncomingStreams) + 2,
		MaxReadFrameSize:             h2ReadFrameSize,
		MaxUploadBufferPerConnection: int32(c.MaxConnWindow),
		MaxUploadBufferPerStream:     int32(c.MaxStreamWindow),
		ReadIdleTimeout:              c.KeepAlivePeriod,
		PingTimeout:                  c.MaxIdleTimeout - c.KeepAlivePeriod,
	}
	go func() {
		srv.ServeConn(conn.nc, &http2.ServeConnOpts{
			Context:    conn.ctx,
			Handler:    http.HandlerFunc(conn.serveHTTP),
			BaseConfig: &http.Server{ErrorLog: discardLogger},
		})
		conn.shutdown(ErrClosed)
	}()
	select {
	case err = <-conn.authResult:
	case <-ctx.Done():
		err = ctx.Err()
	case <-conn.ctx.Done():
		err = connGoneErr(conn.ctx)
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

// h2Conn implements Conn over HTTP/2; edge is the HTTP/2 client, the connector the server.
type h2Conn struct {
	edge        bool
	tc          *tls.Conn
	nc          *watchConn
	cfg         *Config
	ctx         context.Context
	cancel      context.CancelCauseFunc
	tunnelID    [16]byte
	connectorID [16]byte
	draining    atomic.Bool
	dg          *h2Datagrams

	// edge side
	cc *http2.ClientConn

	// connector side
	tok        *Token
	accepts    chan accepted
	authResult chan error
	authSeen   atomic.Bool
	authed     atomic.Bool   // set before authDone is closed
	authDone   chan struct{} // closed once the edge's verdict was read (or auth failed)
	dgSeen     atomic.Bool
	ctrlMu     sync.Mutex
	ctrlW      io.Writer // the /auth response, nil once its handler returned
}

func newH2Conn(edge bool, tc *tls.Conn, cfg *Config) *h2Conn {
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &h2Conn{edge: edge, tc: tc, cfg: cfg, ctx: ctx, cancel: cancel}
	c.nc = &watchConn{Conn: tc, tc: tc, cancel: cancel}
	c.dg = newH2Datagrams(ctx, cfg)
	c.dg.fail = c.shutdown
	return c
}

func (c *h2Conn) shutdown(cause error) {
	c.cancel(cause)
	if c.cc != nil {
		c.cc.Close()
	}
	c.tc.Close()
}

func (c *h2Conn) Protocol() string         { return "http2" }
func (c *h2Conn) RemoteAddr() net.Addr     { return c.tc.RemoteAddr() }
func (c *h2Conn) LocalAddr() net.Addr      { return c.tc.LocalAddr() }
func (c *h2Conn) ConnectorID() [16]byte    { return c.connectorID }
func (c *h2Conn) TunnelID() [16]byte       { return c.tunnelID }
func (c *h2Conn) Context() context.Context { return c.ctx }
func (c *h2Conn) Draining() bool           { return c.draining.Load() }

// CloseWithError closes the TCP connection. On HTTP/2 code and msg are not
// transmitted; the peer sees the connection end.
func (c *h2Conn) CloseWithError(code uint64, msg string) error {
	c.shutdown(fmt.Errorf("closed locally with code %d: %s: %w", code, msg, ErrClosed))
	return nil
}

func (c *h2Conn) Drain() error {
	if c.edge {
		return fmt.Errorf("drain: %w", ErrWrongSide)
	}
	c.draining.Store(true)
	c.ctrlMu.Lock()
	defer c.ctrlMu.Unlock()
	if c.ctrlW == nil {
		return fmt.Errorf("drain: %w", ErrClosed)
	}
	if err := writeCtrl(c.ctrlW, ctrlDrain, nil); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

func (c *h2Conn) SendDatagram(b []byte) error { return c.dg.send(b) }

func (c *h2Conn) ReceiveDatagram(ctx context.Context, b []byte) (int, error) {
	return c.dg.receive(ctx, b)
}

// ---- edge side ----

func newEdgeH2Conn(ctx context.Context, tc *tls.Conn, auth Authenticator, cfg *Config) (*h2Conn, error) {
	c := newH2Conn(true, tc, cfg)
	t1 := &http.Transport{HTTP2: &http.HTTP2Config{
		MaxReceiveBufferPerConnection: cfg.MaxConnWindow,
		MaxReceiveBufferPerStream:     cfg.MaxStreamWindow,
	}}
	t2, err := http2.ConfigureTransports(t1)
	if err != nil {
		tc.Close()
		return nil, err
	}
	t2.MaxReadFrameSize = h2ReadFrameSize
	t2.ReadIdleTimeout = cfg.KeepAlivePeriod
	t2.PingTimeout = cfg.MaxIdleTimeout - cfg.KeepAlivePeriod
	t2.StrictMaxConcurrentStreams = true
	t2.DisableCompression = true
	cc, err := t2.NewClientConn(c.nc)
	if err != nil {
		tc.Close()
		return nil, err
	}
	c.cc = cc
	// The handshake deadline covers authentication.
	stopTimer := context.AfterFunc(ctx, func() {
		if ctx.Err() == context.DeadlineExceeded {
			c.shutdown(fmt.Errorf("authentication: %w", ctx.Err()))
		}
	})
	defer stopTimer()

	ctrlR, ctrlW := io.Pipe()
	resp, err := c.roundTrip(c.ctx, h2PathAuth, ctrlR)
	if err != nil {
		c.shutdown(err)
		return nil, err
	}
	cs := tc.ConnectionState()
	hello, reason, _ := edgeCheckAuth(resp.Body, &cs, auth)
	if reason != AuthOK {
		edgeWriteAuthResult(ctrlW, reason)
		ctrlW.Close()
		select {
		case <-c.ctx.Done():
		case <-time.After(time.Second):
		}
		c.shutdown(&AuthError{Reason: reason})
		return nil, &AuthError{Reason: reason}
	}
	if err := edgeWriteAuthResult(ctrlW, AuthOK); err != nil {
		c.shutdown(err)
		return nil, err
	}
	c.tunnelID, c.connectorID = hello.tunnelID, hello.connectorID
	go c.edgeControlLoop(resp.Body, ctrlW)

	dgR, dgW := io.Pipe()
	dresp, err := c.roundTrip(c.ctx, h2PathDatagrams, dgR)
	if err != nil {
		c.shutdown(err)
		return nil, err
	}
	go c.dg.writeLoop(dgW, nil)
	go c.dg.readLoop(dresp.Body)
	return c, nil
}

func (c *h2Conn) roundTrip(ctx context.Context, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h2URLBase+path, body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = -1
	resp, err := c.cc.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: HTTP status %d", path, resp.StatusCode)
	}
	return resp, nil
}

func (c *h2Conn) edgeControlLoop(r io.ReadCloser, w *io.PipeWriter) {
	defer r.Close()
	defer w.Close()
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
	s, r, err := acceptFrom(ctx, c.ctx, c.accepts)
	if err != nil {
		return nil, nil, fmt.Errorf("accept stream: %w", err)
	}
	return s, r, nil
}

// ---- connector side ----

var discardLogger = newDiscardLogger()

func (c *h2Conn) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != h2PathAuth {
		// The edge opens other streams right after sending its verdict, which
		// the /auth handler may not have processed yet.
		select {
		case <-c.authDone:
		case <-r.Context().Done():
			return
		}
	}
	switch r.URL.Path {
	case h2PathAuth:
		if !c.authSeen.CompareAndSwap(false, true) {
			w.WriteHeader(http.StatusConflict)
			return
		}
		c.serveAuth(w, r)
	case h2PathDatagrams:
		if !c.authed.Load() || !c.dgSeen.CompareAndSwap(false, true) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		c.serveDatagrams(w, r)
	case h2PathStream:
		if !c.authed.Load() {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		c.serveStream(w, r)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (c *h2Conn) serveAuth(w http.ResponseWriter, r *http.Request) {
	fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
	cs := c.tc.ConnectionState()
	err := connectorSendAuth(fw, &cs, c.tok, c.connectorID)
	if err == nil {
		err = connectorReadAuthResult(r.Body)
	}
	if err == nil {
		c.ctrlMu.Lock()
		c.ctrlW = fw
		c.ctrlMu.Unlock()
		c.authed.Store(true)
	}
	close(c.authDone)
	c.authResult <- err
	if err != nil {
		return
	}
	// The edge sends nothing more; the request body ends with the connection.
	io.Copy(io.Discard, r.Body)
	c.ctrlMu.Lock()
	c.ctrlW = nil
	c.ctrlMu.Unlock()
	c.shutdown(fmt.Errorf("control stream ended: %w", ErrClosed))
}

func (c *h2Conn) serveDatagrams(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	go c.dg.readLoop(r.Body)
	c.dg.writeLoop(w, rc.Flush) // returns when the stream or connection ends
}

func (c *h2Conn) serveStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(c.cfg.HeaderTimeout))
	req, err := ReadRequest(r.Body)
	if err != nil {
		rc.SetWriteDeadline(time.Now().Add(-time.Second)) // RST_STREAM
		return
	}
	rc.SetReadDeadline(time.Time{})
	s := newH2ConnectorStream(w, rc, r)
	select {
	case c.accepts <- accepted{s: s, req: &req}:
	case <-r.Context().Done():
		return
	case <-c.ctx.Done():
		return
	}
	s.serve()
}
