package tunnel

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/onramp-net/onramp/dataplane/sockio"
	"github.com/onramp-net/onramp/dataplane/steer"
)

// QUIC stream error codes (RESET_STREAM / STOP_SENDING).
const (
	quicStreamClosed  quic.StreamErrorCode = 0 // STOP_SENDING after Close: the reader is gone
	quicStreamReset   quic.StreamErrorCode = 1 // Stream.Reset
	quicStreamRefused quic.StreamErrorCode = 2 // non-OK Respond, or a bad header
)

func quicConfig(cfg *Config, incomingStreams int) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           cfg.HandshakeTimeout,
		MaxIdleTimeout:                 cfg.MaxIdleTimeout,
		KeepAlivePeriod:                cfg.KeepAlivePeriod,
		InitialStreamReceiveWindow:     512 << 10,
		MaxStreamReceiveWindow:         uint64(cfg.MaxStreamWindow),
		InitialConnectionReceiveWindow: 1 << 20,
		MaxConnectionReceiveWindow:     uint64(cfg.MaxConnWindow),
		MaxIncomingStreams:             int64(incomingStreams),
		MaxIncomingUniStreams:          -1,
		EnableDatagrams:                true,
	}
}

// QUICListener is the edge side of the QUIC transport. It implements [Listener].
//
// It runs one quic-go Transport per UDP socket: one socket, or a
// SO_REUSEPORT group of [Config.QUICSockets] steered by connection ID
// (dataplane/steer). All of them feed one handshake gate and one accept
// queue.
type QUICListener struct {
	udps     []*net.UDPConn
	trs      []*quic.Transport
	lns      []*quic.Listener
	group    *steer.QUIC // nil: one socket, not steered
	steerErr error       // why steering is off, if it was asked for
	auth     Authenticator
	cfg      Config
	gate     *handshakeGate
	acceptQueue
}

var _ Listener = (*QUICListener)(nil)

// ListenQUIC listens for connectors on the UDP address addr ("host:port"; port 0 picks one)
// presenting cert (ALPN [ALPNQUIC], TLS 1.3 only) and authenticating them with auth.
// cfg may be nil. With cfg.QUICSockets other than 1 it tries a steered
// group of sockets and falls back to one; see [QUICListener.Steering].
func ListenQUIC(addr string, cert tls.Certificate, auth Authenticator, cfg *Config) (*QUICListener, error) {
	c := cfg.withDefaults()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen quic: %w", err)
	}
	l := &QUICListener{auth: auth, cfg: c, gate: newHandshakeGate(&c), acceptQueue: newAcceptQueue()}
	n := c.QUICSockets
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	n = min(n, steer.MaxSockets)
	if n > 1 {
		if l.group, err = steer.ListenQUIC("udp", ua.String(), n); err != nil {
			l.steerErr = err
		} else {
			l.udps = l.group.Conns()
		}
	}
	if l.group == nil {
		udp, err := net.ListenUDP("udp", ua)
		if err != nil {
			return nil, fmt.Errorf("listen quic: %w", err)
		}
		l.udps = []*net.UDPConn{udp}
	}
	// One key for the tokens of all Transports: a Retry token or a
	// resumption token one issued is good at every other.
	var tokenKey quic.TokenGeneratorKey
	if _, err := rand.Read(tokenKey[:]); err != nil {
		l.closeSockets()
		return nil, fmt.Errorf("listen quic: %w", err)
	}
	tlsConf, qconf := edgeTLSConfig(cert, ALPNQUIC), quicConfig(&c, 4) // the edge accepts only the control stream from the connector
	for i, udp := range l.udps {
		setSocketBuffers(udp, c.SocketBuffer)
		gen, _ := steer.NewConnIDGenerator(i)
		// Raw recvmmsg and sendmsg on Go's poller (see dataplane/sockio).
		tr := &quic.Transport{Conn: sockio.NewUDP(udp), ConnectionIDGenerator: gen, TokenGeneratorKey: &tokenKey,
			ConnContext: l.connContext, VerifySourceAddress: l.verifySource}
		l.trs = append(l.trs, tr)
		ln, err := tr.Listen(tlsConf, qconf)
		if err != nil {
			l.closeTransports()
			return nil, fmt.Errorf("listen quic: %w", err)
		}
		l.lns = append(l.lns, ln)
	}
	for _, ln := range l.lns {
		go l.acceptLoop(ln)
	}
	return l, nil
}

// Steering returns how many sockets (and Transports) the listener runs,
// and, if it runs one where more were asked for, why (eBPF unavailable,
// say).
func (l *QUICListener) Steering() (sockets int, err error) { return len(l.udps), l.steerErr }

// SteeringCounts returns the datagrams the steering program handed to
// each socket, by connection ID and by hash; nil if not steered.
func (l *QUICListener) SteeringCounts() ([]steer.Count, error) {
	if l.group == nil {
		return nil, nil
	}
	per, _, err := l.group.Counts()
	return per, err
}

// verifySource is quic-go's question, for an Initial without a valid
// token, whether to validate its source address with a Retry first.
func (l *QUICListener) verifySource(remote net.Addr) bool {
	retry, perSource := l.gate.needsRetry(SourceOfAddr(remote), l.cfg.QUICRetryAbove)
	if retry && l.cfg.OnQUICRetry != nil {
		l.cfg.OnQUICRetry(perSource, remote)
	}
	return retry
}

// connContext is called by quic-go for each new connection attempt, before
// any cryptography: it takes a handshake slot or refuses the attempt
// (quic-go then answers CONNECTION_REFUSED). The slot travels in the
// connection's context to authenticate.
func (l *QUICListener) connContext(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	src := SourceOfAddr(info.RemoteAddr)
	if ok, perSource := l.gate.acquire(src, info.AddrVerified); !ok {
		l.cfg.handshakeRefused(perSource, info.RemoteAddr)
		return nil, errHandshakeLimit
	}
	s := &handshakeSlot{l: l, src: src, validated: info.AddrVerified, remote: info.RemoteAddr}
	s.mu.Lock() // the callbacks wait for both to be set
	// quic-go gives up a handshake after twice its HandshakeIdleTimeout;
	// authentication has HandshakeTimeout more. The timer only guards
	// against a connection whose context never ends.
	s.timer = time.AfterFunc(3*l.cfg.HandshakeTimeout+time.Second, func() { s.ended(nil) })
	s.stop = context.AfterFunc(ctx, func() { s.ended(context.Cause(ctx)) })
	s.mu.Unlock()
	return context.WithValue(ctx, slotKey{}, s), nil
}

// Addr returns the local UDP address (every socket of a steered group has it).
func (l *QUICListener) Addr() net.Addr { return l.udps[0].LocalAddr() }

// Close stops the listener. Accepted connections are closed too, since they share its UDP sockets.
func (l *QUICListener) Close() error {
	l.close(l.closeTransports)
	return nil
}

// closeTransports closes the listeners, Transports and sockets.
func (l *QUICListener) closeTransports() {
	for _, ln := range l.lns {
		ln.Close()
	}
	for _, tr := range l.trs {
		tr.Close()
	}
	l.closeSockets()
}

func (l *QUICListener) closeSockets() {
	if l.group != nil {
		l.group.Close() // its sockets, and the program
		return
	}
	for _, udp := range l.udps {
		udp.Close()
	}
}

func (l *QUICListener) acceptLoop(ln *quic.Listener) {
	for {
		qc, err := ln.Accept(l.ctx)
		if err != nil {
			return
		}
		go l.authenticate(qc)
	}
}

func (l *QUICListener) authenticate(qc *quic.Conn) {
	slot, _ := qc.Context().Value(slotKey{}).(*handshakeSlot)
	if slot != nil {
		if !slot.startAuth() {
			// The slot timed out while the connection waited to be accepted.
			qc.CloseWithError(quic.ApplicationErrorCode(CloseNormal), "handshake timeout")
			return
		}
		defer slot.done()
	}
	ctx, cancel := context.WithTimeout(l.ctx, l.cfg.HandshakeTimeout)
	defer cancel()
	ctrl, err := qc.AcceptStream(ctx)
	if err != nil {
		l.cfg.authFailed(failureBeforeVerdict(ctx, err, AuthMalformed), qc.RemoteAddr())
		qc.CloseWithError(quic.ApplicationErrorCode(CloseAuthRefused+uint64(AuthMalformed)), "no control stream")
		return
	}
	dl, _ := ctx.Deadline()
	ctrl.SetDeadline(dl)
	cs := qc.ConnectionState().TLS
	hello, reason, err := edgeCheckAuth(ctrl, &cs, l.auth)
	if reason != AuthOK {
		l.cfg.authFailed(failureBeforeVerdict(ctx, err, reason), qc.RemoteAddr())
		edgeWriteAuthResult(ctrl, reason)
		ctrl.Close()
		// Give the connector a moment to read the verdict and close by itself,
		// then close with the reason in CONNECTION_CLOSE as a fallback.
		select {
		case <-qc.Context().Done():
		case <-time.After(time.Second):
		}
		wire := reason.onWire()
		qc.CloseWithError(quic.ApplicationErrorCode(CloseAuthRefused+uint64(wire)), wire.String())
		return
	}
	if err := edgeWriteAuthResult(ctrl, AuthOK); err != nil {
		qc.CloseWithError(quic.ApplicationErrorCode(CloseNormal), "auth write failed")
		return
	}
	ctrl.SetDeadline(time.Time{})
	c := newQUICConn(qc, nil, nil, true, ctrl, hello.tunnelID, hello.connectorID, &l.cfg)
	c.generation = hello.generation
	go c.edgeControlLoop()
	if slot != nil {
		slot.done() // authenticated: no longer a pending handshake
	}
	if !l.offer(c) {
		qc.CloseWithError(quic.ApplicationErrorCode(CloseNormal), "listener closed")
	}
}

// DialQUIC connects to the edge at addr over QUIC, verifies the edge by tok.EdgePin and
// authenticates with tok's secret. A refusal by the edge is returned as an [*AuthError];
// a certificate that does not match the pin as an error wrapping [ErrPinMismatch].
// cfg may be nil. The returned Conn owns its UDP socket.
func DialQUIC(ctx context.Context, addr string, tok Token, connectorID [16]byte, cfg *Config) (Conn, error) {
	c := cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, c.HandshakeTimeout)
	defer cancel()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial quic %s: %w", addr, err)
	}
	network := "udp4"
	if ra.IP.To4() == nil {
		network = "udp6"
	}
	udp, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("dial quic %s: %w", addr, err)
	}
	setSocketBuffers(udp, c.SocketBuffer)
	tr := &quic.Transport{Conn: sockio.NewUDP(udp)}
	fail := func(err error) (Conn, error) {
		tr.Close()
		udp.Close()
		if isPinError(err) && !errors.Is(err, ErrPinMismatch) {
			err = fmt.Errorf("%w: %w", ErrPinMismatch, err)
		}
		return nil, fmt.Errorf("dial quic %s: %w", addr, err)
	}
	qc, err := tr.Dial(ctx, ra, connectorTLSConfig(addr, tok.EdgePin, ALPNQUIC), quicConfig(&c, c.MaxIncomingStreams))
	if err != nil {
		return fail(err)
	}
	ctrl, err := qc.OpenStreamSync(ctx)
	if err != nil {
		qc.CloseWithError(0, "")
		return fail(err)
	}
	dl, _ := ctx.Deadline()
	ctrl.SetDeadline(dl)
	cs := qc.ConnectionState().TLS
	if err := connectorSendAuth(ctrl, &cs, &tok, connectorID); err != nil {
		qc.CloseWithError(0, "")
		return fail(err)
	}
	if err := connectorReadAuthResult(ctrl); err != nil {
		err = authCloseError(err)
		qc.CloseWithError(0, "")
		var authErr *AuthError
		if errors.As(err, &authErr) {
			tr.Close()
			udp.Close()
			return nil, err
		}
		return fail(err)
	}
	ctrl.SetDeadline(time.Time{})
	conn := newQUICConn(qc, tr, udp, false, ctrl, tok.TunnelID, connectorID, &c)
	go conn.connectorAcceptLoop()
	go conn.connectorControlLoop()
	return conn, nil
}

// quicConn implements Conn over a quic.Conn.
type quicConn struct {
	qc          *quic.Conn
	tr          *quic.Transport // connector side: owned, closed with the conn
	udp         *net.UDPConn    // connector side: owned
	edge        bool
	ctrl        *quic.Stream
	ctrlMu      sync.Mutex
	tunnelID    [16]byte
	connectorID [16]byte
	generation  uint64 // edge side: of the secret the connector proved
	cfg         *Config
	draining    atomic.Bool
	accepts     chan accepted
	closeOnce   sync.Once
	ctx         context.Context // connector side: qc's, with an edge's auth close as an *AuthError
}

func newQUICConn(qc *quic.Conn, tr *quic.Transport, udp *net.UDPConn, edge bool, ctrl *quic.Stream, tunnelID, connectorID [16]byte, cfg *Config) *quicConn {
	c := &quicConn{qc: qc, tr: tr, udp: udp, edge: edge, ctrl: ctrl, tunnelID: tunnelID, connectorID: connectorID, cfg: cfg, ctx: qc.Context()}
	if !edge {
		c.accepts = make(chan accepted, cfg.AcceptQueueLen)
		ctx, cancel := context.WithCancelCause(context.Background())
		context.AfterFunc(qc.Context(), func() { cancel(authCloseError(context.Cause(qc.Context()))) })
		c.ctx = ctx
	}
	if tr != nil {
		// The connector owns its socket: release it whoever closes the connection.
		context.AfterFunc(qc.Context(), c.releaseSocket)
	}
	return c
}

func (c *quicConn) releaseSocket() {
	c.closeOnce.Do(func() {
		c.tr.Close()
		c.udp.Close()
	})
}

func (c *quicConn) Protocol() string         { return "quic" }
func (c *quicConn) RemoteAddr() net.Addr     { return c.qc.RemoteAddr() }
func (c *quicConn) ConnectorID() [16]byte    { return c.connectorID }
func (c *quicConn) TunnelID() [16]byte       { return c.tunnelID }
func (c *quicConn) Generation() uint64       { return c.generation }
func (c *quicConn) Context() context.Context { return c.ctx }
func (c *quicConn) Draining() bool           { return c.draining.Load() }
func (c *quicConn) LocalAddr() net.Addr      { return c.qc.LocalAddr() }

func (c *quicConn) CloseWithError(code uint64, msg string) error {
	err := c.qc.CloseWithError(quic.ApplicationErrorCode(code), msg)
	if c.tr != nil {
		c.releaseSocket()
	}
	return err
}

// SmoothedRTT is quic-go's smoothed round-trip time of the connection.
func (c *quicConn) SmoothedRTT() time.Duration { return c.qc.ConnectionStats().SmoothedRTT }

// Stats implements Conn: quic-go's counts of the connection.
func (c *quicConn) Stats() TransportStats {
	st := c.qc.ConnectionStats()
	return TransportStats{RTT: st.SmoothedRTT, Sent: st.PacketsSent, Lost: st.PacketsLost}
}

func (c *quicConn) Drain() error {
	if c.edge {
		return fmt.Errorf("drain: %w", ErrWrongSide)
	}
	c.draining.Store(true)
	c.ctrlMu.Lock()
	defer c.ctrlMu.Unlock()
	if err := writeCtrl(c.ctrl, ctrlDrain, nil); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// edgeControlLoop reads control messages from the connector.
func (c *quicConn) edgeControlLoop() {
	var buf [maxCtrlLen]byte
	for {
		typ, _, err := readCtrl(c.ctrl, buf[:])
		if err != nil {
			return
		}
		if typ == ctrlDrain {
			c.draining.Store(true)
		}
	}
}

// connectorControlLoop reads the edge's side of the control stream after
// the verdict: the edge lists it advertises (ctrlEdges); reading also keeps
// flow control moving.
func (c *quicConn) connectorControlLoop() {
	var buf [maxCtrlLen]byte
	for {
		typ, p, err := readCtrl(c.ctrl, buf[:])
		if err != nil {
			return
		}
		if typ == ctrlEdges && c.cfg.OnEdges != nil {
			if addrs, err := ParseEdges(p); err == nil {
				c.cfg.OnEdges(addrs)
			}
		}
	}
}

// AdvertiseEdges implements Conn.
func (c *quicConn) AdvertiseEdges(addrs []string) error {
	if !c.edge {
		return fmt.Errorf("advertise edges: %w", ErrWrongSide)
	}
	p, err := AppendEdges(nil, addrs)
	if err != nil {
		return err
	}
	c.ctrlMu.Lock()
	defer c.ctrlMu.Unlock()
	// A connector that does not read its control stream cannot hold the
	// caller for long.
	_ = c.ctrl.SetWriteDeadline(time.Now().Add(5 * time.Second))
	defer c.ctrl.SetWriteDeadline(time.Time{})
	if err := writeCtrl(c.ctrl, ctrlEdges, p); err != nil {
		return fmt.Errorf("advertise edges: %w", mapQUICErr(err))
	}
	return nil
}

// Received implements [Liveness]: the packets received.
func (c *quicConn) Received() uint64 { return c.qc.ConnectionStats().PacketsReceived }

func (c *quicConn) OpenStream(ctx context.Context, req *Request) (Stream, error) {
	if !c.edge {
		return nil, fmt.Errorf("open stream: %w", ErrWrongSide)
	}
	if c.draining.Load() {
		return nil, fmt.Errorf("open stream: %w", ErrDraining)
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	s, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	bp := getHeaderBuf()
	*bp = AppendRequest(*bp, req)
	_, err = s.Write(*bp)
	putHeaderBuf(bp)
	if err != nil {
		s.CancelRead(quicStreamReset)
		s.CancelWrite(quicStreamReset)
		return nil, fmt.Errorf("open stream: %w", mapQUICErr(err))
	}
	return &quicStream{s: s, edge: true}, nil
}

func (c *quicConn) AcceptStream(ctx context.Context) (Stream, *Request, error) {
	if c.edge {
		return nil, nil, fmt.Errorf("accept stream: %w", ErrWrongSide)
	}
	s, r, err := acceptFrom(ctx, c.qc.Context(), c.accepts)
	if err != nil {
		return nil, nil, fmt.Errorf("accept stream: %w", err)
	}
	return s, r, nil
}

func (c *quicConn) connectorAcceptLoop() {
	ctx := c.qc.Context()
	for {
		s, err := c.qc.AcceptStream(ctx)
		if err != nil {
			return
		}
		go c.readHeader(ctx, s)
	}
}

// readHeader reads a stream's request in its own goroutine, so that one slow
// header does not hold up the others.
func (c *quicConn) readHeader(ctx context.Context, s *quic.Stream) {
	s.SetReadDeadline(time.Now().Add(c.cfg.HeaderTimeout))
	req, err := ReadRequest(s)
	if err != nil {
		s.CancelRead(quicStreamRefused)
		s.CancelWrite(quicStreamRefused)
		return
	}
	s.SetReadDeadline(time.Time{})
	select {
	case c.accepts <- accepted{s: &quicStream{s: s}, req: &req}:
	case <-ctx.Done():
		s.CancelRead(quicStreamReset)
		s.CancelWrite(quicStreamReset)
	}
}

func (c *quicConn) SendDatagram(b []byte) error {
	if err := c.qc.SendDatagram(b); err != nil {
		var tl *quic.DatagramTooLargeError
		if errors.As(err, &tl) {
			return fmt.Errorf("send datagram: %d bytes, max %d: %w", len(b), tl.MaxDatagramPayloadSize, ErrDatagramTooLarge)
		}
		return fmt.Errorf("send datagram: %w", err)
	}
	return nil
}

func (c *quicConn) ReceiveDatagram(ctx context.Context, b []byte) (int, error) {
	d, err := c.qc.ReceiveDatagram(ctx)
	if err != nil {
		return 0, fmt.Errorf("receive datagram: %w", err)
	}
	n := copy(b, d)
	if n < len(d) {
		return n, io.ErrShortBuffer
	}
	return n, nil
}
