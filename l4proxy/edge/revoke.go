package edge

import (
	"encoding/hex"
	"log/slog"
	"slices"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// Revalidate asks [Options.Admit] again about every live connection of the
// tunnel and closes those it refuses, with its reason (the tunnel deleted,
// the token rotated), and returns how many it closed. Call it after each
// store change that can revoke a tunnel's connections, once the change is
// committed: registrations wait for it, so a connection that authenticated
// before the change is either closed here or refused when it registers.
// The closed connections take no new stream or flow from then on. Without
// Admit it closes nothing.
func (s *Server) Revalidate(id [16]byte) int {
	if s.opts.Admit == nil {
		return 0
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	n := 0
	for _, lc := range s.liveConns(id) {
		if lc.revoked.Load() {
			continue // closed already, unregistered soon
		}
		if r := s.opts.Admit(id, lc.conn.Generation()); r != tunnel.AuthOK {
			s.revoke(lc, r, "live", s.connLog(lc))
			n++
		}
	}
	if n > 0 {
		s.log.Info("edge: tunnel connections revoked", "tunnel", tunnelName(id), "connections", n)
	}
	return n
}

// DropTunnel closes every live connection of the tunnel (after it was
// deleted), telling the connector why. Users then find the tunnel offline.
// Without [Options.Admit] a connection that authenticated before the
// deletion may still register after DropTunnel; with it, use Revalidate.
func (s *Server) DropTunnel(id [16]byte) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	n := 0
	for _, lc := range s.liveConns(id) {
		if !lc.revoked.Load() {
			s.revoke(lc, tunnel.AuthTunnelDeleted, "live", s.connLog(lc))
			n++
		}
	}
	if n > 0 {
		s.log.Info("edge: tunnel dropped", "tunnel", tunnelName(id), "connections", n)
	}
}

// liveConns returns the registered connections of the tunnel.
func (s *Server) liveConns(id [16]byte) []*liveConn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if te := s.tunnels[id]; te != nil {
		return slices.Clone(te.conns)
	}
	return nil
}

func (s *Server) connLog(lc *liveConn) *slog.Logger {
	id, cid := lc.conn.TunnelID(), lc.conn.ConnectorID()
	return s.log.With("tunnel", tunnelName(id), "connector", hex.EncodeToString(cid[:]), "protocol", lc.conn.Protocol(), "remote", lc.conn.RemoteAddr())
}

// revoke closes lc for reason, at stage "registration" (Admit refused it)
// or "live" (Revalidate or DropTunnel), and counts it.
func (s *Server) revoke(lc *liveConn, reason tunnel.AuthReason, stage string, log *slog.Logger) {
	lc.revoked.Store(true)
	msg := reason.String()
	if reason == tunnel.AuthRotated {
		msg = "token rotated: the tunnel has a new token (edge tunnel rotate); this one no longer works"
	}
	s.revocations.count(reason, stage)
	log.Info("edge: connector connection revoked", "reason", reason.String(), "stage", stage)
	_ = lc.conn.CloseWithError(tunnel.CloseAuthRefused+uint64(reason), msg)
}

// revocationMetrics counts onramp_edge_connector_revocations_total.
type revocationMetrics struct {
	c *prometheus.CounterVec
}

func newRevocationMetrics(reg prometheus.Registerer, log *slog.Logger) *revocationMetrics {
	m := &revocationMetrics{c: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onramp_edge_connector_revocations_total",
		Help: "Authenticated connector connections closed because the tunnel was deleted or its token rotated, by reason and stage (registration: refused as it registered; live: dropped).",
	}, []string{"reason", "stage"})}
	for _, r := range []tunnel.AuthReason{tunnel.AuthTunnelDeleted, tunnel.AuthRotated} {
		for _, stage := range []string{"registration", "live"} {
			m.c.WithLabelValues(authLabel(r), stage)
		}
	}
	if reg != nil {
		if err := reg.Register(m.c); err != nil {
			log.Warn("edge: metrics not registered", "err", err)
		}
	}
	return m
}

func (m *revocationMetrics) count(r tunnel.AuthReason, stage string) {
	m.c.WithLabelValues(authLabel(r), stage).Inc()
}
