package steer

import (
	"crypto/rand"
	"fmt"

	"github.com/quic-go/quic-go"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// The connection IDs the edge issues: ConnIDLen bytes, the first with
// the marker in its top two bits and random below, the second the index
// of the socket (so of the Transport) that issued it, the rest random.
// quic.c has the same constants.
const (
	ConnIDLen        = 8
	MaxSockets       = 256 // the index is one byte
	connIDMarker     = 0x80
	connIDMarkerMask = 0xc0
)

// How says how a datagram was steered.
type How uint8

// The ways, as quic.c numbers them.
const (
	ByHash   How = iota // the kernel's 4-tuple hash modulo the sockets
	ByConnID            // the socket its destination connection ID names
)

func (h How) String() string {
	if h == ByConnID {
		return "conn_id"
	}
	return "hash"
}

// QUICSocket is the steering program's choice, in Go, among n sockets for
// a UDP datagram with payload p whose 4-tuple the kernel hashed to hash:
// the socket named by the destination connection ID of a QUIC packet that
// passes the pre-filter's rules (dataplane/prefilter.Classify) if it is
// no Initial and the ID is one the edge issues (the marker, an index
// under n); otherwise hash modulo n.
func QUICSocket(p []byte, hash uint32, n int) (int, How) {
	if n <= 0 || n > MaxSockets {
		return 0, ByHash
	}
	byHash := int(hash % uint32(n))
	h, err := packet.ClassifyQUIC(p, ConnIDLen)
	if err != nil || h.DCIDLen != ConnIDLen {
		return byHash, ByHash
	}
	if h.Long {
		typ := p[0] >> 4 & 3
		if h.Version == packet.QUICVersion1 && typ == 0 || h.Version == packet.QUICVersion2 && typ == 1 {
			return byHash, ByHash // an Initial, or one under 1200 bytes the pre-filter drops
		}
	}
	id, _ := h.DCID.Bytes()
	if i, ok := ConnIDSocket(id[:ConnIDLen]); ok && i < n {
		return i, ByConnID
	}
	return byHash, ByHash
}

// ConnIDSocket returns the socket index a connection ID of the edge's
// names, and false for an ID of another length or without the marker.
func ConnIDSocket(id []byte) (int, bool) {
	if len(id) != ConnIDLen || id[0]&connIDMarkerMask != connIDMarker {
		return 0, false
	}
	return int(id[1]), true
}

// ConnIDGenerator issues the connection IDs of the Transport on one
// socket of a group: a quic.ConnectionIDGenerator. Apart from the marker
// bits and the index, the IDs are crypto/rand's.
type ConnIDGenerator struct{ index uint8 }

var _ quic.ConnectionIDGenerator = (*ConnIDGenerator)(nil)

// NewConnIDGenerator returns the generator of the socket with index i (0
// to MaxSockets-1).
func NewConnIDGenerator(i int) (*ConnIDGenerator, error) {
	if i < 0 || i >= MaxSockets {
		return nil, fmt.Errorf("steer: socket index %d: want 0 to %d", i, MaxSockets-1)
	}
	return &ConnIDGenerator{index: uint8(i)}, nil
}

// GenerateConnectionID returns a new connection ID naming g's socket.
func (g *ConnIDGenerator) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [ConnIDLen]byte
	if _, err := rand.Read(b[:]); err != nil {
		return quic.ConnectionID{}, err
	}
	b[0] = b[0]&^connIDMarkerMask | connIDMarker
	b[1] = g.index
	return quic.ConnectionIDFromBytes(b[:]), nil
}

// ConnectionIDLen returns ConnIDLen.
func (g *ConnIDGenerator) ConnectionIDLen() int { return ConnIDLen }
