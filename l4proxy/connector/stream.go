package connector

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/internal/pipe"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// handleStream matches req against the ingress rules, dials the origin and
// proxies st to it. It calls finish once, when the stream is done: as it
// returns, or, once the stream is proxied to its origin, when the proxy
// ends. This goroutine goes on as the proxy's direction from the origin
// until that first parks or ends (pipe.Proxy.RunIn).
func (c *Connector) handleStream(ec *edgeConn, st tunnel.Stream, req *tunnel.Request, finish func()) {
	end := finish // nil once the proxy owns it
	defer func() {
		if end != nil {
			end()
		}
	}()
	kind := req.Kind.String()
	log := &streamLog{base: c.log, edge: ec.edge, req: req}
	if c.isStopping() {
		_ = st.Respond(tunnel.StatusDraining, "connector shutting down")
		return
	}
	open := c.m.Stream(kind)
	open.Inc()
	ec.streams.Add(1)
	c.active.Add(1)
	end = func() {
		c.active.Add(-1)
		ec.streams.Add(-1)
		open.Dec()
		finish()
	}

	cfg := c.ingress.Load()
	if req.Kind == tunnel.KindHTTP {
		// Every request on the connection is matched with its own Host
		// and path (httproute.go).
		c.serveHTTP(st, req, cfg, log.get())
		return
	}
	rule := cfg.Match(req.Hostname, "")
	if rule == nil {
		c.m.Error(errNoRule)
		log.get().Info("connector: no ingress rule")
		_ = st.Respond(tunnel.StatusNoRule, "no ingress rule for "+req.Hostname)
		return
	}
	log.rule = rule
	if status, msg := admits(req.Kind, rule); status != tunnel.StatusOK {
		c.refuse(st, status, msg, log.get())
		return
	}
	if rule.Service().Scheme == ingress.SchemeHTTPStatus {
		c.answerStatus(st, rule.Service().Status)
		return
	}
	origin, err := rule.DialStream(ec.conn.Context(), req.Kind == tunnel.KindTLS)
	if err != nil {
		c.m.Error(errOriginDial)
		log.get().Warn("connector: origin unreachable", "err", err)
		_ = st.Respond(tunnel.StatusOriginUnreachable, err.Error())
		return
	}
	if err := st.Respond(tunnel.StatusOK, ""); err != nil {
		origin.Close()
		st.Reset()
		if log.debug() {
			log.get().Debug("connector: respond", "err", err)
		}
		return
	}
	p := &pipe.Proxy{
		A: pipe.ConnSide{Conn: origin}, B: st,
		AToB: c.m.BytesToPeer, BToA: c.m.BytesToOrigin,
		Idle: rule.IdleTimeout(),
	}
	done := end
	end = nil
	p.RunIn(c.proxies, func(res pipe.Result) {
		defer done()
		switch {
		case res.Idle:
			if log.debug() {
				log.get().Debug("connector: stream closed after idle timeout", "to_origin", res.BToA, "to_edge", res.AToB)
			}
		case errors.Is(res.Err, pipe.ErrStopped):
			log.get().Info("connector: stream reset on shutdown", "to_origin", res.BToA, "to_edge", res.AToB)
		case res.Err != nil:
			c.m.Error(errReset)
			log.get().Info("connector: stream reset", "reason", res.Err, "to_origin", res.BToA, "to_edge", res.AToB)
		default:
			if log.debug() {
				log.get().Debug("connector: stream closed", "to_origin", res.BToA, "to_edge", res.AToB)
			}
		}
	})
}

// streamLog is a stream's logger, made at its first line: most streams
// log nothing (their close is at debug level), and slog's With formats
// its attributes when it is called, not when a line is written. It is
// used by one goroutine at a time (handleStream, then the proxy's end).
type streamLog struct {
	base *slog.Logger
	edge string
	req  *tunnel.Request
	rule *ingress.Rule // once matched
	l    *slog.Logger
}

// get returns the logger with the stream's attributes, and the rule's
// once it is matched.
func (s *streamLog) get() *slog.Logger {
	if s.l == nil {
		s.l = s.base.With("edge", s.edge, "kind", s.req.Kind.String(), "hostname", s.req.Hostname, "user", s.req.Remote)
	}
	if s.rule != nil {
		s.l = s.l.With("rule", s.rule.Index(), "service", s.rule.Service().String())
		s.rule = nil
	}
	return s.l
}

// debug says whether debug lines are written.
func (s *streamLog) debug() bool { return s.base.Enabled(context.Background(), slog.LevelDebug) }

// admits decides whether a stream of kind, from the edge listener of that
// kind, may use rule's service, and otherwise returns the status and
// message of the refusal, naming the rule and the listener:
//
//	listener          kind      services
//	port binding      KindTCP   tcp, http, https, unix, http_status (raw bytes; the operator bound it)
//	HTTP by Host      KindHTTP  http, https, unix (HTTP over the socket), http_status
//	TLS by SNI        KindTLS   rules with tlsPassthrough: true (tcp, https or unix)
//	UDP binding       (flows)   udp (udp.go)
//
// A rule the listener may not use is refused with tunnel.StatusForbidden
// (the edge answers HTTP users 403); a udp rule, which no stream can use,
// with tunnel.StatusNoRule (502).
func admits(kind tunnel.Kind, rule *ingress.Rule) (tunnel.Status, string) {
	scheme := rule.Service().Scheme
	if scheme == ingress.SchemeUDP {
		return tunnel.StatusNoRule, rule.String() + " is a udp service; a stream cannot use it"
	}
	switch kind {
	case tunnel.KindTCP:
		return tunnel.StatusOK, ""
	case tunnel.KindHTTP:
		if scheme != ingress.SchemeTCP {
			return tunnel.StatusOK, ""
		}
		return tunnel.StatusForbidden, rule.String() + " is a tcp service, for port bindings: the http listener may not reach it"
	case tunnel.KindTLS:
		if rule.TLSPassthrough() {
			return tunnel.StatusOK, ""
		}
		return tunnel.StatusForbidden, rule.String() + " (" + scheme.String() + ") has no tlsPassthrough: true: the tls listener may not reach it"
	}
	return tunnel.StatusForbidden, "unknown stream kind " + kind.String()
}

// refuse answers a stream the listener's kind may not use (see admits).
func (c *Connector) refuse(st tunnel.Stream, status tunnel.Status, msg string, log *slog.Logger) {
	kind := errNoRule
	if status == tunnel.StatusForbidden {
		kind = errListener
	}
	c.m.Error(kind)
	log.Info("connector: stream refused", "reason", msg)
	_ = st.Respond(status, msg)
}

// answerStatus answers an http_status rule: an HTTP response written by the
// connector itself, then an orderly close.
func (c *Connector) answerStatus(st tunnel.Stream, code int) {
	if err := st.Respond(tunnel.StatusOK, ""); err != nil {
		st.Reset()
		return
	}
	if err := ingress.WriteStatusResponse(st, code); err != nil {
		st.Reset()
		return
	}
	_ = st.CloseWrite()
	// Read what the user still sends (the rest of the request) until it
	// closes, so that the response is not lost to a reset; give up after 2s.
	t := time.AfterFunc(2*time.Second, st.Reset)
	bp := pipe.GetBuf()
	for {
		if _, err := st.Read(*bp); err != nil {
			break
		}
	}
	pipe.PutBuf(bp)
	t.Stop()
	_ = st.Close()
}
