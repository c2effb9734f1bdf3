package connector

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// Limits of the per-request HTTP path (every KindHTTP stream).
const (
	// httpHeaderTimeout bounds the reading of each request head, as the
	// edge bounds the first one.
	httpHeaderTimeout = 10 * time.Second
	// httpMaxHeaderBytes bounds each request head, as the edge bounds the
	// first one (net/http allows 4 KiB more).
	httpMaxHeaderBytes = 16 << 10
	// originIdleTimeout is how long an idle keep-alive connection to an
	// origin is kept for reuse when its rule sets no idleTimeout.
	originIdleTimeout = 90 * time.Second
	// originMaxIdle bounds the idle keep-alive connections kept per rule.
	originMaxIdle = 64
	// originMaxResponseHeader bounds an origin's response head.
	originMaxResponseHeader = 1 << 20
	// A routed stream reads into a small buffer, and into a big one while
	// reads fill the small one (a request body in bulk).
	streamSmallBuf = 4 << 10
	streamBigBuf   = 64 << 10
)

// serveHTTP serves a KindHTTP stream as HTTP/1.1, request by request, so
// that every request on a keep-alive connection is matched against the
// rules with its own Host and path (ingress.Config.MatchHTTP), not only the
// first one. http_status rules are answered here, keeping the connection
// alive; http, https and unix rules get the request forwarded to their
// origin over a keep-alive connection pool of the rule (see originFor),
// with the canonical path (see ingress.Config.MatchHTTP) and
// X-Forwarded-For/-Host/-Proto set from what the edge saw, the user's own
// forwarding headers removed. Upgrades (WebSocket) are carried through.
//
// Answered here: 400 to a malformed or ambiguous request path, 403 to a
// request matching a tcp rule (for port bindings only, see admits), 421 to
// a request for another host than the stream's (the edge routed the
// connection to this tunnel by its first Host), 502 when the origin fails.
// If the stream's first request, as the edge read it, already matches a
// rule the HTTP listener may not use, the stream itself is refused (the
// edge answers 403, or 502 for a udp rule) and no HTTP server is started.
func (c *Connector) serveHTTP(st tunnel.Stream, req *tunnel.Request, cfg *ingress.Config, log *slog.Logger) {
	first, _, err := cfg.MatchHTTP(req.Hostname, req.Path)
	if err != nil || first == nil {
		// The first request gets its 400 from the server below.
		first = cfg.Match(req.Hostname, "")
	}
	if first != nil {
		if status, msg := admits(tunnel.KindHTTP, first); status != tunnel.StatusOK {
			c.refuse(st, status, msg, log.With("rule", first.Index(), "service", first.Service().String()))
			return
		}
	}
	if err := st.Respond(tunnel.StatusOK, ""); err != nil {
		st.Reset()
		log.Debug("connector: respond", "err", err)
		return
	}
	conn := newStreamConn(st, req.Remote, c)
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	rs := &routedStream{c: c, cfg: cfg, hostname: req.Hostname, log: log, errLog: errLog, conn: conn}
	srv := &http.Server{
		Handler:           rs,
		ReadHeaderTimeout: httpHeaderTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          errLog,
		Protocols:         http1Only(),
	}
	if first != nil {
		// The first request's rule bounds the wait for the next request.
		srv.IdleTimeout = first.IdleTimeout()
	}

	// Shutdown: on Shutdown, idle keep-alive connections close at once and
	// busy ones after their response; at the deadline, streams are reset.
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		stopping := c.stopping
		for {
			select {
			case <-conn.done:
				return
			case <-c.abort.Done():
				st.Reset()
				conn.Close()
				return
			case <-stopping:
				stopping = nil
				srv.SetKeepAlivesEnabled(false)
			}
		}
	}()

	err = srv.Serve(&oneConnListener{conn: conn})
	rs.closeAndWait()
	<-watchDone
	if err != nil && !errors.Is(err, net.ErrClosed) {
		log.Info("connector: http stream ended", "err", err, "requests", rs.requests, "to_origin", conn.readBytes.Load(), "to_edge", conn.writtenBytes.Load())
		return
	}
	log.Debug("connector: http stream closed", "requests", rs.requests, "to_origin", conn.readBytes.Load(), "to_edge", conn.writtenBytes.Load())
}

// routedStream is the http.Handler of one KindHTTP stream.
type routedStream struct {
	c        *Connector
	cfg      *ingress.Config // the rules when the stream arrived
	hostname string          // the Host the edge routed the stream by
	log      *slog.Logger
	errLog   *log.Logger
	conn     *streamConn

	mu       sync.Mutex
	closed   bool // no handler starts any more
	active   sync.WaitGroup
	requests int // handled so far; read after closeAndWait
}

// enter registers a handler run; false means the stream is gone.
func (rs *routedStream) enter() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return false
	}
	rs.active.Add(1)
	rs.requests++
	return true
}

// closeAndWait closes the stream and waits for running handlers.
func (rs *routedStream) closeAndWait() {
	rs.conn.Close()
	rs.mu.Lock()
	rs.closed = true
	rs.mu.Unlock()
	rs.active.Wait()
}

// ServeHTTP matches one request against the rules and answers or forwards it.
func (rs *routedStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !rs.enter() {
		return
	}
	defer rs.active.Done()
	log := rs.log
	switch {
	case r.Host == "":
		writeHTTPError(w, http.StatusBadRequest, "missing Host header")
		return
	case !ingress.SameHost(r.Host, rs.hostname):
		log.Info("connector: request for another host on the connection", "host", r.Host)
		writeHTTPError(w, http.StatusMisdirectedRequest, "this connection is for "+strconv.Quote(rs.hostname)+", not "+strconv.Quote(r.Host))
		return
	case r.Method == http.MethodConnect:
		writeHTTPError(w, http.StatusMethodNotAllowed, "CONNECT is not proxied to HTTP origins")
		return
	}
	target := requestTarget(r.RequestURI)
	var rule *ingress.Rule
	originPath := ""
	if target == "*" {
		// OPTIONS *: no path to match or rewrite.
		rule = rs.cfg.Match(rs.hostname, "")
	} else {
		var err error
		rule, originPath, err = rs.cfg.MatchHTTP(rs.hostname, target)
		if err != nil {
			rs.c.m.Error(errBadPath)
			log.Info("connector: request path refused", "path", target, "err", err)
			writeHTTPError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if rule == nil {
		rs.c.m.Error(errNoRule)
		writeHTTPError(w, http.StatusBadGateway, "no ingress rule for "+rs.hostname)
		return
	}
	log.Debug("connector: http request", "method", r.Method, "path", target, "rule", rule.Index(), "service", rule.Service().String())
	switch status, msg := admits(tunnel.KindHTTP, rule); status {
	case tunnel.StatusOK:
	case tunnel.StatusForbidden:
		rs.c.m.Error(errListener)
		log.Info("connector: http request refused", "rule", rule.Index(), "reason", msg)
		writeHTTPError(w, http.StatusForbidden, msg)
		return
	default:
		rs.c.m.Error(errNoRule)
		log.Info("connector: http request refused", "rule", rule.Index(), "reason", msg)
		writeHTTPError(w, http.StatusBadGateway, msg)
		return
	}
	if rule.Service().Scheme == ingress.SchemeHTTPStatus {
		writeStatus(w, rule.Service().Status)
		return
	}
	op := originFor(rs.cfg, rule)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			op.rewrite(pr, originPath)
		},
		Transport:  op.transport,
		BufferPool: proxyBuffers{},
		ErrorLog:   rs.errLog,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			rs.originError(w, r, err, rule)
		},
	}
	rp.ServeHTTP(w, r)
}

// requestTarget returns the request-target of a request line in origin
// form: an absolute-form target ("http://host/a?q", whose host net/http
// took as the request's Host) loses its scheme and authority.
func requestTarget(uri string) string {
	if uri == "" || uri[0] == '/' || uri == "*" {
		return uri
	}
	_, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return uri // not a path: MatchHTTP refuses it
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		if rest[i] == '/' {
			return rest[i:]
		}
		return "/" + rest[i:]
	}
	return "/"
}

// originError answers a request whose origin failed: 502 with the reason.
func (rs *routedStream) originError(w http.ResponseWriter, r *http.Request, err error, rule *ingress.Rule) {
	log := rs.log.With("rule", rule.Index(), "service", rule.Service().String())
	var de *originDialError
	switch {
	case r.Context().Err() != nil:
		// The user went away; nobody reads an answer.
		log.Debug("connector: http request canceled", "err", err)
		w.WriteHeader(http.StatusBadGateway)
		return
	case errors.As(err, &de):
		rs.c.m.Error(errOriginDial)
		log.Warn("connector: origin unreachable", "err", de.err)
		err = de.err
	default:
		rs.c.m.Error(errReset)
		log.Info("connector: origin request failed", "err", err)
	}
	writeHTTPError(w, http.StatusBadGateway, err.Error())
}

// writeStatus answers an http_status rule: the status and, except where
// HTTP forbids a body, a short text naming it, as ingress.WriteStatusResponse
// writes on the raw path, but without closing a keep-alive connection.
// Informational codes cannot end a request: they are written raw and the
// connection closed, as on the raw path.
func writeStatus(w http.ResponseWriter, code int) {
	if code < 200 {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_ = ingress.WriteStatusResponse(conn, code)
		conn.Close()
		return
	}
	if code == http.StatusNoContent || code == http.StatusNotModified {
		w.WriteHeader(code)
		return
	}
	text := http.StatusText(code)
	if text == "" {
		text = "Status " + strconv.Itoa(code)
	}
	body := strconv.Itoa(code) + " " + text + "\n"
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// writeHTTPError answers with code and a text body "502 Bad Gateway: msg",
// as the edge words its own errors.
func writeHTTPError(w http.ResponseWriter, code int, msg string) {
	body := strconv.Itoa(code) + " " + http.StatusText(code) + ": " + msg + "\n"
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// ---- origins ----

// originProxy forwards requests to the origin of one rule: one Transport
// per rule, its keep-alive pool shared by every stream matched against the
// same rules.
type originProxy struct {
	transport *http.Transport
	scheme    string // of the URL the Transport sees: "http" or "https"
	host      string // of that URL; the Host header is the user's
}

// rewrite aims the outgoing request at the origin, keeping the user's
// Host header and query, with originPath (if not "") as its path (see
// ingress.Config.MatchHTTP), and sets X-Forwarded-For (the user's address
// as the edge saw it), X-Forwarded-Host and X-Forwarded-Proto ("http": the
// edge's HTTP listener does not do TLS, and TLS users are passed through,
// never here). Whatever the user sent as forwarding headers is dropped,
// not passed on as if a proxy had set it: Forwarded, X-Real-IP and every
// X-Forwarded-*, also spelt with '_' for '-' (CGI and PHP read both as
// HTTP_X_FORWARDED_FOR); ReverseProxy itself drops only four.
func (op *originProxy) rewrite(pr *httputil.ProxyRequest, originPath string) {
	out := pr.Out
	out.URL.Scheme = op.scheme
	out.URL.Host = op.host
	out.Host = pr.In.Host
	if originPath != "" && out.URL.EscapedPath() != originPath {
		if p, err := url.PathUnescape(originPath); err == nil {
			out.URL.Path, out.URL.RawPath = p, originPath
		}
	}
	for name := range out.Header {
		if forwardingHeader(name) {
			delete(out.Header, name)
		}
	}
	pr.SetXForwarded()
}

// forwardingHeader reports whether a header name is Forwarded, X-Real-IP
// or X-Forwarded-*, ignoring ASCII case and reading '_' as '-'.
func forwardingHeader(name string) bool {
	const xf = "x-forwarded-"
	return len(name) > len(xf) && sameHeaderName(name[:len(xf)], xf) ||
		sameHeaderName(name, "forwarded") || sameHeaderName(name, "x-real-ip")
}

// sameHeaderName compares name with lower, a lower-case name, ignoring
// ASCII case and reading '_' as '-'.
func sameHeaderName(name, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// originDialError marks a failure to connect to the origin (as opposed to
// one once connected).
type originDialError struct{ err error }

func (e *originDialError) Error() string { return e.err.Error() }
func (e *originDialError) Unwrap() error { return e.err }

// rulesOrigins holds the originProxy of each rule of one ingress.Config,
// created on first use.
type rulesOrigins struct {
	mu     sync.Mutex
	byRule map[*ingress.Rule]*originProxy
}

// originsByConfig maps a weak pointer to an ingress.Config to its
// *rulesOrigins. An entry goes, its idle origin connections closed, once
// the Config is unreachable: when a reload replaced it and the last stream
// using it ended. Weak keys, because a Connector holds no such state of its
// own and several Connectors may share a Config.
var originsByConfig sync.Map

// originFor returns the originProxy of rule, a rule of cfg.
func originFor(cfg *ingress.Config, rule *ingress.Rule) *originProxy {
	key := weak.Make(cfg)
	v, ok := originsByConfig.Load(key)
	if !ok {
		var loaded bool
		v, loaded = originsByConfig.LoadOrStore(key, &rulesOrigins{byRule: make(map[*ingress.Rule]*originProxy)})
		if !loaded {
			runtime.AddCleanup(cfg, dropOrigins, key)
		}
	}
	ro := v.(*rulesOrigins)
	ro.mu.Lock()
	defer ro.mu.Unlock()
	op := ro.byRule[rule]
	if op == nil {
		op = newOriginProxy(rule)
		ro.byRule[rule] = op
	}
	return op
}

// dropOrigins forgets the origins of a Config that is gone.
func dropOrigins(key weak.Pointer[ingress.Config]) {
	v, ok := originsByConfig.LoadAndDelete(key)
	if !ok {
		return
	}
	ro := v.(*rulesOrigins)
	ro.mu.Lock()
	defer ro.mu.Unlock()
	for _, op := range ro.byRule {
		op.transport.CloseIdleConnections()
	}
}

// newOriginProxy builds the Transport of a rule: connections dialed with
// the rule's DialStream (its connect timeout, TCP keep-alive and, for
// https, its TLS settings), HTTP/1.1 only, no proxy from the environment,
// no transparent compression, idle connections kept for the rule's
// idleTimeout (originIdleTimeout if unset).
func newOriginProxy(rule *ingress.Rule) *originProxy {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		conn, err := rule.DialStream(ctx, false)
		if err != nil {
			return nil, &originDialError{err}
		}
		return conn, nil
	}
	idle := rule.IdleTimeout()
	if idle <= 0 {
		idle = originIdleTimeout
	}
	t := &http.Transport{
		MaxIdleConns:           originMaxIdle,
		MaxIdleConnsPerHost:    originMaxIdle,
		IdleConnTimeout:        idle,
		DisableCompression:     true,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: originMaxResponseHeader,
		ReadBufferSize:         64 << 10,
		WriteBufferSize:        64 << 10,
		Protocols:              http1Only(),
	}
	op := &originProxy{transport: t, scheme: "http", host: rule.Service().Addr}
	switch rule.Service().Scheme {
	case ingress.SchemeHTTPS:
		// DialStream does the TLS handshake (ALPN http/1.1).
		t.DialTLSContext = dial
		op.scheme = "https"
	case ingress.SchemeUnix:
		t.DialContext = dial
		op.host = "localhost"
	default:
		t.DialContext = dial
	}
	return op
}

// proxyBuffers lends ReverseProxy 32 KiB copy buffers from a pool.
type proxyBuffers struct{}

var proxyBufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func (proxyBuffers) Get() []byte  { return *proxyBufPool.Get().(*[]byte) }
func (proxyBuffers) Put(b []byte) { proxyBufPool.Put(&b) }

// ---- the stream as a net.Conn ----

// oneConnListener hands conn to http.Server.Serve once, then blocks until
// conn is closed, so that Serve returns when the stream is done.
type oneConnListener struct {
	conn *streamConn
	once sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.conn.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return tunnelAddr("connector") }

// tunnelAddr is the address of the connector's end of a stream, or of a
// user whose address the edge did not know.
type tunnelAddr string

func (a tunnelAddr) Network() string { return "tunnel" }
func (a tunnelAddr) String() string  { return string(a) }

// streamConn is a tunnel.Stream as the net.Conn net/http serves. Streams
// have no deadlines, and net/http needs read deadlines (to stop its
// background read when a response is done, and for its timeouts), so a
// goroutine does the stream's reads into a buffer while Read waits for
// its result or the deadline; a Read that times out leaves the stream read
// pending for the next Read. Write deadlines are not supported (net/http
// sets them only with Server.WriteTimeout, which is not used).
type streamConn struct {
	st     tunnel.Stream
	remote net.Addr
	c      *Connector

	want chan struct{}   // Read asks readLoop for the next chunk
	got  chan readResult // readLoop's answer
	// Read's side, used by one Read at a time (net/http serialises them).
	pending bool   // a want is sent, its got not yet received
	data    []byte // the unread rest of the last read
	rerr    error  // the stream's read error, after data

	rdl deadline

	closeOnce sync.Once
	done      chan struct{} // closed by Close

	readBytes, writtenBytes atomic.Int64 // for the end-of-stream log line
}

type readResult struct {
	data []byte // readLoop's buffer; Read owns it until its next want
	err  error
}

func newStreamConn(st tunnel.Stream, remote netip.AddrPort, c *Connector) *streamConn {
	sc := &streamConn{
		st: st, c: c,
		want: make(chan struct{}, 1),
		got:  make(chan readResult, 1),
		done: make(chan struct{}),
	}
	sc.rdl.init()
	if remote.IsValid() {
		sc.remote = net.TCPAddrFromAddrPort(remote)
	} else {
		sc.remote = tunnelAddr("unknown")
	}
	go sc.readLoop()
	return sc
}

// readLoop reads the stream each time Read asks, until the stream fails,
// ends or is closed. It reads into a small buffer, switching to a big one
// when a read fills the small one and back when a read is small again, so
// that a stream waiting for its next request holds little.
func (sc *streamConn) readLoop() {
	small := make([]byte, streamSmallBuf)
	var big []byte
	buf := small
	for {
		select {
		case <-sc.want:
		case <-sc.done:
			return
		}
		n, err := sc.st.Read(buf)
		sc.got <- readResult{buf[:n], err}
		if err != nil {
			return
		}
		switch {
		case n == len(buf) && len(buf) < streamBigBuf:
			if big == nil {
				big = make([]byte, streamBigBuf)
			}
			buf = big
		case n < streamSmallBuf && len(buf) > streamSmallBuf:
			buf, big = small, nil
		}
	}
}

func (sc *streamConn) Read(p []byte) (int, error) {
	for len(sc.data) == 0 {
		if sc.rerr != nil {
			return 0, sc.rerr
		}
		if len(p) == 0 {
			return 0, nil
		}
		select {
		case <-sc.done:
			return 0, net.ErrClosed
		case <-sc.rdl.expired():
			// Not wrapped: net/http asserts net.Error on the error itself.
			return 0, os.ErrDeadlineExceeded
		default:
		}
		if !sc.pending {
			sc.pending = true
			sc.want <- struct{}{}
		}
		select {
		case r := <-sc.got:
			sc.pending = false
			sc.data, sc.rerr = r.data, r.err
			if n := len(r.data); n > 0 {
				sc.readBytes.Add(int64(n))
				sc.c.m.BytesToOrigin.Add(float64(n))
			}
		case <-sc.rdl.expired():
			return 0, os.ErrDeadlineExceeded
		case <-sc.done:
			return 0, net.ErrClosed
		}
	}
	n := copy(p, sc.data)
	sc.data = sc.data[n:]
	return n, nil
}

func (sc *streamConn) Write(p []byte) (int, error) {
	n, err := sc.st.Write(p)
	if n > 0 {
		sc.writtenBytes.Add(int64(n))
		sc.c.m.BytesToPeer.Add(float64(n))
	}
	return n, err
}

// CloseWrite half-closes the stream: the user reads EOF after the data.
// net/http calls it before closing after an error, and ReverseProxy when
// an upgraded origin connection ends.
func (sc *streamConn) CloseWrite() error { return sc.st.CloseWrite() }

// Close closes the stream (see tunnel.Stream.Close); a pending Read
// returns net.ErrClosed.
func (sc *streamConn) Close() error {
	err := net.ErrClosed
	sc.closeOnce.Do(func() {
		close(sc.done)
		err = sc.st.Close()
	})
	return err
}

func (sc *streamConn) LocalAddr() net.Addr  { return tunnelAddr("connector") }
func (sc *streamConn) RemoteAddr() net.Addr { return sc.remote }

// SetDeadline sets the read deadline; see SetWriteDeadline.
func (sc *streamConn) SetDeadline(t time.Time) error {
	sc.rdl.set(t)
	return sc.SetWriteDeadline(t)
}

func (sc *streamConn) SetReadDeadline(t time.Time) error {
	sc.rdl.set(t)
	return nil
}

// SetWriteDeadline accepts only the zero time: tunnel streams have no
// write deadlines.
func (sc *streamConn) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() {
		return errors.New("connector: tunnel streams have no write deadline")
	}
	return nil
}

// deadline is a settable point in time with a channel closed once it has
// passed.
type deadline struct {
	mu    sync.Mutex
	gen   uint64 // counts set calls, so that a stale timer does nothing
	timer *time.Timer
	ch    chan struct{} // closed while the deadline is past
}

func (d *deadline) init() { d.ch = make(chan struct{}) }

// set moves the deadline to t; the zero t means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	past := isClosed(d.ch)
	if t.IsZero() || time.Until(t) > 0 {
		if past {
			d.ch = make(chan struct{})
		}
		if !t.IsZero() {
			gen, ch := d.gen, d.ch
			d.timer = time.AfterFunc(time.Until(t), func() {
				d.mu.Lock()
				defer d.mu.Unlock()
				if d.gen == gen && !isClosed(ch) {
					close(ch)
				}
			})
		}
		return
	}
	if !past {
		close(d.ch)
	}
}

// expired returns a channel closed once the deadline has passed.
func (d *deadline) expired() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// http1Only is the protocol set of the routed streams' server and of the
// origin Transports: HTTP/1.1 only.
func http1Only() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	return &p
}
