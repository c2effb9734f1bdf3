package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/onramp-net/onramp/dataplane/sockio"
	"github.com/onramp-net/onramp/l4proxy/internal/pipe"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// ServeTCP proxies every connection accepted from ln to the tunnel of b, as
// a [tunnel.KindTCP] stream with Hostname b.Service. It returns nil when ctx
// is done, after closing ln and aborting the connections it proxies, and an
// error if ln fails. Closing ln stops the accepting only: ServeTCP returns
// nil once the connections it accepted have ended.
func (s *Server) ServeTCP(ctx context.Context, ln net.Listener, b Binding) error {
	v, err := NewBindingVar(b)
	if err != nil {
		return fmt.Errorf("edge: serve tcp: %w", err)
	}
	return s.ServeTCPVar(ctx, ln, v)
}

// ServeTCPVar is ServeTCP with a binding that may change while it serves:
// each connection goes where the binding sent it when it was accepted.
func (s *Server) ServeTCPVar(ctx context.Context, ln net.Listener, v *BindingVar) error {
	return s.serveListener(ctx, ln, func(ctx context.Context, c net.Conn, hold *connHold) {
		b := v.p.Load()
		if b.Origin != "" {
			s.proxyDirect(ctx, c, target{origin: b.Origin, proxyProtocol: b.ProxyProtocol}, tunnel.KindTCP, "", nil, hold)
			return
		}
		req := &tunnel.Request{Kind: tunnel.KindTCP, Hostname: b.Service, Remote: addrPort(c.RemoteAddr())}
		s.proxyStream(ctx, c, b.Tunnel, req, nil, hold)
	})
}

// ServeTLS proxies TLS connections accepted from ln by the SNI of their
// ClientHello, without terminating TLS: the ClientHello is read (at most
// maxHelloLen bytes, within Options.HeaderTimeout), the route for its SNI
// picked, and the bytes read forwarded first on a [tunnel.KindTLS] stream.
// Connections without a route are closed. It returns as ServeTCP does.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener) error {
	return s.serveListener(ctx, ln, func(ctx context.Context, c net.Conn, hold *connHold) {
		_ = c.SetReadDeadline(time.Now().Add(s.cur().HeaderTimeout))
		sni, head, err := peekClientHello(c)
		_ = c.SetReadDeadline(time.Time{})
		if err != nil {
			s.log.Debug("edge: tls: no ClientHello", "user", c.RemoteAddr(), "err", err)
			c.Close()
			return
		}
		tg, ok := s.routes.Load().lookup(sni)
		if !ok {
			s.m.Error(errNoRoute)
			if ok, held := s.userLogDue(logNoRoute); ok {
				s.log.Info("edge: tls: no route", "user", c.RemoteAddr(), "sni", sni, notLogged, held)
			}
			c.Close()
			return
		}
		if tg.origin != "" {
			s.proxyDirect(ctx, c, tg, tunnel.KindTLS, sni, head, hold)
			return
		}
		req := &tunnel.Request{Kind: tunnel.KindTLS, Hostname: sni, Remote: addrPort(c.RemoteAddr())}
		s.proxyStream(ctx, c, tg.tunnel, req, head, hold)
	})
}

// ServeHTTP proxies HTTP/1 connections accepted from ln by the Host of their
// first request: the request head is read (at most maxHeadLen bytes, within
// Options.HeaderTimeout), the route for the Host picked, and the bytes read forwarded
// first on a [tunnel.KindHTTP] stream with Hostname the Host (port
// stripped) and Path the request-target; then bytes flow both ways
// untouched. The connector serves the stream request by request, each
// matched by its own Host and path (see connector's httproute.go); the
// edge routes the connection by its first Host.
//
// The edge itself answers 400 to a malformed head, 431 to one too large,
// 404 when no route matches, 403 when the connector refused the stream
// because its rule is not for the HTTP listener (a tcp service), 502 when
// the tunnel is offline or the connector refused the stream otherwise,
// and 503 when the tunnel is at
// MaxStreamsPerTunnel. It returns as ServeTCP does.
func (s *Server) ServeHTTP(ctx context.Context, ln net.Listener) error {
	return s.serveListener(ctx, ln, func(ctx context.Context, c net.Conn, hold *connHold) {
		_ = c.SetReadDeadline(time.Now().Add(s.cur().HeaderTimeout))
		h, err := readHead(c)
		_ = c.SetReadDeadline(time.Time{})
		if err != nil {
			var he *httpError
			if errors.As(err, &he) {
				s.log.Debug("edge: http: bad request head", "user", c.RemoteAddr(), "err", err)
				s.answer(c, he.code, he.msg)
				return
			}
			s.log.Debug("edge: http: no request head", "user", c.RemoteAddr(), "err", err)
			c.Close()
			return
		}
		tg, ok := s.routes.Load().lookup(h.host)
		if !ok {
			s.m.Error(errNoRoute)
			if ok, held := s.userLogDue(logNoRoute); ok {
				s.log.Info("edge: http: no route", "user", c.RemoteAddr(), "host", h.host, notLogged, held)
			}
			s.answer(c, 404, "no route for host "+strconv.Quote(h.host))
			return
		}
		if tg.origin != "" {
			s.proxyDirect(ctx, c, tg, tunnel.KindHTTP, h.host, h.raw, hold)
			return
		}
		req := &tunnel.Request{Kind: tunnel.KindHTTP, Hostname: h.host, Path: h.path, Remote: addrPort(c.RemoteAddr())}
		s.proxyStream(ctx, c, tg.tunnel, req, h.raw, hold)
	})
}

// readHead reads the first request head from c for ServeHTTP. Until bytes
// arrive it holds no buffer; then it reads into a pooled one, which it puts
// back before returning: the head's bytes (h.raw) are an exact-size copy,
// held only until they are forwarded.
func readHead(c net.Conn) (httpHead, error) {
	if err := pipe.WaitReadable(c); err != nil {
		return httpHead{}, err
	}
	bp := pipe.GetBuf()
	defer pipe.PutBuf(bp)
	h, err := readHTTPHead(c, (*bp)[:maxHeadLen])
	h.raw = bytes.Clone(h.raw)
	return h, err
}

// serveListener runs the accept loop shared by ServeTCP, ServeTLS and
// ServeHTTP. Each connection takes a slot of Options.MaxConns and
// MaxConnsPerSource right after its accept, before any buffer or read, or
// is reset at once (acceptUser). When ctx is done it closes ln and aborts
// the connections; when the caller closes ln (a listener a reload
// removed) it lets them run to their end, and returns nil after them.
func (s *Server) serveListener(ctx context.Context, ln net.Listener, handle func(context.Context, net.Conn, *connHold)) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	// The listener's proxies, aborted when ctx is done.
	proxies := pipe.NewGroup(ctx)
	defer func() {
		stop()
		cancel()
		wg.Wait()
		proxies.Close()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				// Closed by the caller, not by ctx: stop accepting and
				// wait for the connections, which ctx (not yet
				// cancelled) still lets run, as the managed tunnel and
				// HAProxy let a removed listener's connections finish.
				wg.Wait()
				return nil
			}
			// EMFILE, ECONNABORTED and the like: back off and go on,
			// logging the first failure of each streak.
			if delay == 0 {
				s.log.Warn("edge: accept failed; retrying with a backoff up to 1s", "listener", ln.Addr(), "err", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		src := tunnel.SourceOfAddr(c.RemoteAddr())
		if !s.acceptUser(c, src) {
			continue
		}
		wg.Add(1)
		go func() {
			h := &connHold{proxies: proxies, release: func() {
				s.lim.users.Release(src)
				wg.Done()
			}}
			handle(ctx, c, h)
			if !h.detached {
				h.release()
			}
		}()
	}
}

// connHold is a user connection's slot (its place in the limits, and in
// the listener's wait at shutdown), released when the handler returns
// unless the handler detaches it to release it later itself.
type connHold struct {
	proxies  *pipe.Group // the listener's
	release  func()
	detached bool
}

// detach keeps the slot past the handler's return; the caller must call
// the returned function once, when the connection is done.
func (h *connHold) detach() func() {
	h.detached = true
	return h.release
}

// proxyStream opens a stream for req on the tunnel called name now and
// proxies c over it, writing prefix (bytes already read from c) first. It
// owns c. Once the stream is open the handler's goroutine goes on as the
// proxy's direction from the user until that first parks or ends
// (pipe.Proxy.RunIn); the proxy detaches hold and releases it when the
// connection is done.
func (s *Server) proxyStream(ctx context.Context, c net.Conn, name string, req *tunnel.Request, prefix []byte, hold *connHold) {
	isHTTP := req.Kind == tunnel.KindHTTP
	// The connection's lines (those a stranger can cause, rate-limited)
	// carry these.
	logArgs := func(args ...any) []any {
		return append([]any{"user", c.RemoteAddr(), "tunnel", name, "kind", req.Kind.String(), "hostname", req.Hostname}, args...)
	}
	st, te, lc, err := s.openStream(ctx, s.tunnelNamed(name), req)
	if err != nil {
		ok, held := s.userLogDue(logUserRefused)
		switch {
		case errors.Is(err, errLimitHit):
			s.m.Error(errLimit)
			msg := fmt.Sprintf("tunnel stream limit reached (%d concurrent streams)", s.cur().MaxStreamsPerTunnel)
			if ok {
				s.log.Warn("edge: user refused", logArgs("reason", msg, notLogged, held)...)
			}
			if isHTTP {
				s.answer(c, 503, msg)
				return
			}
		case errors.Is(err, errOffline):
			s.m.Error(errTunnelOffline)
			if ok {
				s.log.Info("edge: user refused", logArgs("reason", err, notLogged, held)...)
			}
			if isHTTP {
				s.answer(c, 502, "tunnel offline")
				return
			}
		default:
			if ok {
				s.log.Info("edge: user refused", logArgs("reason", err, notLogged, held)...)
			}
			if isHTTP {
				s.answer(c, 502, "cannot open tunnel stream")
				return
			}
		}
		c.Close()
		return
	}
	var prefixBuf *[]byte
	if prefix == nil && req.Kind == tunnel.KindTCP {
		// What the user sent with its connection (most protocols speak
		// first) follows the stream's request at once (Start writes it),
		// in the same packet: read without waiting, so that an origin
		// that speaks first is not held up, and only now that the stream
		// is open, so that nothing is held while one is awaited.
		bp := pipe.GetBuf()
		n, err := sockio.TryRead(c, *bp)
		if err != nil && err != io.EOF {
			pipe.PutBuf(bp)
			// Reset before anything was proxied; the read took the
			// error, so the stream is reset here, not by the proxy.
			s.m.Error(errReset)
			st.Reset()
			lc.streams.Add(-1)
			s.release(te)
			pipe.ConnSide{Conn: c}.Reset()
			return
		}
		prefix = (*bp)[:n]
		prefixBuf = bp // the Proxy puts it back once written
	}
	kind := req.Kind.String()
	open := s.m.Stream(kind)
	open.Inc()
	release := hold.detach()
	p := &pipe.Proxy{
		A: pipe.ConnSide{Conn: c}, B: st, Prefix: prefix, PrefixBuf: prefixBuf,
		// The global counters, and the connection's and tunnel's.
		AToB: &lc.toOrigin, BToA: &lc.toUser,
		Idle: max(s.cur().IdleTimeout, 0), // negative: never
	}
	if isHTTP {
		p.OnRefused = func(se *tunnel.StreamError) {
			code := 502
			if se.Status == tunnel.StatusForbidden {
				code = 403 // a rule the HTTP listener may not use
			}
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_ = writeHTTPError(c, code, se.Error())
		}
	}
	// This goroutine goes on as the direction from the user (RunIn).
	p.RunIn(hold.proxies, func(res pipe.Result) {
		// How the stream ended is counted before its place under the
		// tunnel's stream limit is given back: whoever gets that place
		// next sees the count.
		s.logResult(logArgs, res)
		open.Dec()
		lc.streams.Add(-1)
		te.noteStream(res.AToB + res.BToA)
		s.release(te)
		release()
	})
}

// logResult counts and logs how a proxied connection ended: the lines of
// ends a user can cause at will (a refused stream, a reset) at most once a
// second each, the others at debug level.
func (s *Server) logResult(logArgs func(...any) []any, res pipe.Result) {
	switch {
	case res.Refused != nil:
		if res.Refused.Status == tunnel.StatusOriginUnreachable {
			s.m.Error(errOrigin)
		} else {
			s.m.Error(errRefused)
		}
		if ok, held := s.userLogDue(logStreamRefused); ok {
			s.log.Info("edge: connector refused the stream", logArgs("reason", res.Refused, notLogged, held)...)
		}
	case res.Idle:
		if s.debug() {
			s.log.Debug("edge: connection closed after idle timeout", logArgs("to_origin", res.AToB, "to_user", res.BToA)...)
		}
	case errors.Is(res.Err, pipe.ErrStopped):
		if s.debug() {
			s.log.Debug("edge: connection closed on shutdown", logArgs("to_origin", res.AToB, "to_user", res.BToA)...)
		}
	case res.Err != nil:
		s.m.Error(errReset)
		if ok, held := s.userLogDue(logConnReset); ok {
			s.log.Info("edge: connection reset", logArgs("reason", res.Err, "to_origin", res.AToB, "to_user", res.BToA, notLogged, held)...)
		}
	default:
		if s.debug() {
			s.log.Debug("edge: connection closed", logArgs("to_origin", res.AToB, "to_user", res.BToA)...)
		}
	}
}

// debug says whether debug lines are written: a line's arguments (a
// connection's, boxed into a slice) are made only then.
func (s *Server) debug() bool { return s.log.Enabled(context.Background(), slog.LevelDebug) }

// The lines about users that a stranger can cause once per connection or
// UDP flow: each kind is let through at most once a second (logLimiter),
// carrying the number not logged since the last one (notLogged); the
// metrics count every event.
const (
	logNoRoute       = iota // TLS or HTTP without a route for its SNI or Host
	logUserRefused          // no stream opened: tunnel offline or at its stream limit
	logStreamRefused        // the connector refused the stream
	logConnReset            // a proxied connection reset
	logFlowClosed           // a UDP flow closed by the connector (origin unreachable, no rule)
	logOriginFailed         // a direct origin could not be reached
	numUserLogs
)

const notLogged = "not_logged_since_last_line"

// userLogDue reports whether a line of kind k may be logged now and, if
// so, how many were held back since the last one.
func (s *Server) userLogDue(k int) (bool, int64) { return s.logUsers[k].allow(time.Now().UnixNano()) }

// answer writes an HTTP error response and closes c in an orderly way.
func (s *Server) answer(c net.Conn, code int, msg string) {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := writeHTTPError(c, code, msg); err != nil {
		c.Close()
		return
	}
	lingeringClose(c)
}

// lingeringClose half-closes c and reads what the client still sends for a
// moment before closing, so that the close does not turn into an RST that
// destroys the answer just written.
func lingeringClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		bp := pipe.GetBuf()
		for range 16 {
			if _, err := c.Read(*bp); err != nil {
				break
			}
		}
		pipe.PutBuf(bp)
	}
	c.Close()
}
