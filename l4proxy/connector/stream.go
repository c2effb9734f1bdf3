package connector

import (
	"errors"
	"time"

	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/internal/pipe"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// handleStream matches req against the ingress rules, dials the origin and
// proxies st to it.
func (c *Connector) handleStream(ec *edgeConn, st tunnel.Stream, req *tunnel.Request) {
	kind := req.Kind.String()
	log := c.log.With("edge", ec.edge, "kind", kind, "hostname", req.Hostname, "user", req.Remote)
	if c.isStopping() {
		_ = st.Respond(tunnel.StatusDraining, "connector shutting down")
		return
	}
	c.m.StreamsTotal.WithLabelValues(kind).Inc()
	open := c.m.StreamsOpen.WithLabelValues(kind)
	open.Inc()
	ec.streams.Add(1)
	c.active.Add(1)
	defer func() {
		c.active.Add(-1)
		ec.streams.Add(-1)
		open.Dec()
	}()

	cfg := c.ingress.Load()
	if req.Kind == tunnel.KindHTTP && cfg.PathRouted(req.Hostname) {
		// Later requests on the connection may have other paths and so
		// other rules: match each (httproute.go).
		c.serveHTTPRoutes(st, req, cfg, log)
		return
	}
	rule := cfg.Match(req.Hostname, req.Path)
	if rule == nil {
		c.m.Error(errNoRule)
		log.Info("connector: no ingress rule")
		_ = st.Respond(tunnel.StatusNoRule, "no ingress rule for "+req.Hostname)
		return
	}
	log = log.With("rule", rule.Index(), "service", rule.Service().String())
	switch rule.Service().Scheme {
	case ingress.SchemeHTTPStatus:
		c.answerStatus(st, rule.Service().Status)
		return
	case ingress.SchemeUDP:
		c.m.Error(errNoRule)
		log.Info("connector: stream matched a udp rule")
		_ = st.Respond(tunnel.StatusNoRule, rule.String()+" is a udp service; a stream cannot use it")
		return
	}
	origin, err := rule.DialStream(ec.conn.Context(), req.Kind == tunnel.KindTLS)
	if err != nil {
		c.m.Error(errOriginDial)
		log.Warn("connector: origin unreachable", "err", err)
		_ = st.Respond(tunnel.StatusOriginUnreachable, err.Error())
		return
	}
	if err := st.Respond(tunnel.StatusOK, ""); err != nil {
		origin.Close()
		st.Reset()
		log.Debug("connector: respond", "err", err)
		return
	}
	p := &pipe.Proxy{
		A: pipe.ConnSide{Conn: origin}, B: st,
		AToB: c.m.BytesToPeer, BToA: c.m.BytesToOrigin,
		Idle: rule.IdleTimeout(),
	}
	res := p.Run(c.abort)
	switch {
	case res.Idle:
		log.Debug("connector: stream closed after idle timeout", "to_origin", res.BToA, "to_edge", res.AToB)
	case errors.Is(res.Err, pipe.ErrStopped):
		log.Info("connector: stream reset on shutdown", "to_origin", res.BToA, "to_edge", res.AToB)
	case res.Err != nil:
		c.m.Error(errReset)
		log.Info("connector: stream reset", "reason", res.Err, "to_origin", res.BToA, "to_edge", res.AToB)
	default:
		log.Debug("connector: stream closed", "to_origin", res.BToA, "to_edge", res.AToB)
	}
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
