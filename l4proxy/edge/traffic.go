package edge

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Traffic per connector connection and per tunnel. Each byte a tunnel
// stream moves is counted three times: in the edge's global counter
// (onramp_edge_bytes_total{direction}), on its connector connection and on
// its tunnel. A connection holds one byteCounter per direction, made when
// it registers; its streams' copy loops add to it as they add to the
// global counter (pipe.Proxy's AToB and BToA): two atomic adds more per
// write, no allocation and no lock. UDP datagrams of a tunnel's flows
// count on the connection and the tunnel only (their payload bytes): the
// global byte counter is the streams' (onramp_edge_datagrams_total counts
// datagrams).

// byteCounter is a prometheus.Counter (the global one it embeds) that also
// adds to a connection's count and its tunnel's.
type byteCounter struct {
	prometheus.Counter                // the edge's global counter of the direction
	conn               *atomic.Uint64 // the connection's bytes of the direction
	tunnel             *atomic.Uint64 // the tunnel's bytes of the direction
}

// Add counts v bytes (the copy loops add whole writes, never less than 0).
func (c *byteCounter) Add(v float64) {
	c.Counter.Add(v)
	n := uint64(v)
	c.conn.Add(n)
	c.tunnel.Add(n)
}

// Inc counts one byte.
func (c *byteCounter) Inc() { c.Add(1) }

// traffic is the bytes moved both ways, on a connection or a tunnel.
type traffic struct {
	toOrigin, toUser atomic.Uint64
}

// addDatagram counts a UDP datagram's payload of n bytes on the connection
// lc and its tunnel te, toward the origin or the user.
func addDatagram(lc *liveConn, te *tunnelEntry, n int, toOrigin bool) {
	if toOrigin {
		lc.bytes.toOrigin.Add(uint64(n))
		te.bytes.toOrigin.Add(uint64(n))
		return
	}
	lc.bytes.toUser.Add(uint64(n))
	te.bytes.toUser.Add(uint64(n))
}

// TunnelBytes is a tunnel's traffic on this edge since it started: the
// bytes of its streams and UDP datagrams toward the origin and toward the
// users, over all its connections, those already gone included.
type TunnelBytes struct {
	ToOrigin, ToUser uint64
}

// TunnelBytes returns the traffic of every tunnel that had a connection to
// this Server, by tunnel ID. The counts only grow while the Server runs.
func (s *Server) TunnelBytes() map[[16]byte]TunnelBytes {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[[16]byte]TunnelBytes, len(s.tunnels))
	for id, te := range s.tunnels {
		out[id] = TunnelBytes{ToOrigin: te.bytes.toOrigin.Load(), ToUser: te.bytes.toUser.Load()}
	}
	return out
}
