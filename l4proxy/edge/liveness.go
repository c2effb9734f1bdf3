package edge

import (
	"context"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// DefaultQuietAfter is how long a connector connection may go without a
// packet or frame from the connector, plus three of its round trips,
// before the edge stops opening new streams on it. The tunnel's keep-alives (tunnel.Config.KeepAlivePeriod,
// 1 s) make a live connection heard from at least that often, plus a
// round trip; a connection silent for 1.5 s has most likely lost its
// connector (a replica killed, its link down), and new users go to the
// tunnel's other connections at once instead of to a stream that would
// end only at the connection's idle timeout (5 s).
const DefaultQuietAfter = 1500 * time.Millisecond

// livenessEvery is how often the edge samples its connections' liveness.
const livenessEvery = 200 * time.Millisecond

// watchLiveness marks connections quiet (pick skips them) while their
// connector has been silent for QuietAfter, and fresh again when it is
// heard from. It runs until ctx is done.
func (s *Server) watchLiveness(ctx context.Context) {
	t := time.NewTicker(livenessEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.sampleLiveness(now)
		}
	}
}

func (s *Server) sampleLiveness(now time.Time) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, te := range s.tunnels {
		for _, lc := range te.conns {
			l, ok := lc.conn.(tunnel.Liveness)
			if !ok {
				continue
			}
			r := l.Received()
			if r != lc.lastRecv || lc.heard.IsZero() {
				lc.lastRecv, lc.heard = r, now
				if lc.quiet.Swap(false) {
					s.connLog(lc).Info("edge: connector connection heard from again; it takes new streams")
				}
				continue
			}
			// A far connector's keep-alives come later: a round trip
			// later, and quic-go waits 1.5 PTO at least between them.
			after := s.opts.QuietAfter
			if r, ok := lc.conn.(interface{ SmoothedRTT() time.Duration }); ok {
				after += 3 * r.SmoothedRTT()
			}
			if silent := now.Sub(lc.heard); silent >= after && !lc.quiet.Swap(true) {
				s.connLog(lc).Warn("edge: connector connection silent; new streams go to the tunnel's other connections",
					"silent", silent.Round(time.Millisecond))
				s.m.Error(errQuiet)
			}
		}
	}
}
