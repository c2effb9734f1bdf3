package edge

import (
	"slices"
	"sync"
	"sync/atomic"
)

// edgeAdvert is what the edge tells connectors of the edges they may dial.
type edgeAdvert struct {
	list atomic.Pointer[[]string] // sorted; nil: nothing to advertise
}

// SetEdges sets the edge addresses advertised to connectors (host:port,
// each passing tunnel.CheckEdgeAddr): every live connection hears the new
// list, and each new connection as it registers, so that connectors spread
// over edges added after their token was made and leave removed ones. An
// empty list advertises nothing.
func (s *Server) SetEdges(addrs []string) {
	addrs = slices.Compact(slices.Sorted(slices.Values(addrs)))
	if cur := s.adv.list.Load(); cur != nil && slices.Equal(*cur, addrs) || cur == nil && len(addrs) == 0 {
		return
	}
	if len(addrs) == 0 {
		s.adv.list.Store(nil)
		return
	}
	s.adv.list.Store(&addrs)
	s.log.Info("edge: advertising edges to connectors", "edges", addrs)
	s.mu.RLock()
	var all []*liveConn
	for _, te := range s.tunnels {
		all = append(all, te.conns...)
	}
	s.mu.RUnlock()
	for _, lc := range all {
		go s.advertise(lc)
	}
}

// advertise sends lc the current list unless it has it: the last sender
// sends the latest, whatever order the goroutines run in.
func (s *Server) advertise(lc *liveConn) {
	lc.advMu.Lock()
	defer lc.advMu.Unlock()
	p := s.adv.list.Load()
	if p == nil || p == lc.advSent || lc.conn.Context().Err() != nil {
		return
	}
	if err := lc.conn.AdvertiseEdges(*p); err != nil {
		s.connLog(lc).Debug("edge: edge list not sent", "err", err)
		return
	}
	lc.advSent = p
}

// advState is a connection's part of the advertisement.
type advState struct {
	advMu   sync.Mutex
	advSent *[]string
}
