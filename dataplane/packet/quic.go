package packet

import "encoding/binary"

// QUIC versions with a known header layout.
const (
	QUICVersionNegotiation uint32 = 0          // RFC 8999 section 6
	QUICVersion1           uint32 = 0x00000001 // RFC 9000
	QUICVersion2           uint32 = 0x6b3343cf // RFC 9369
)

// MaxConnIDLen is the longest connection ID in QUIC versions 1 and 2
// (RFC 9000 section 17.2); [ConnID] holds this many bytes.
const MaxConnIDLen = 20

// ConnID is a QUIC connection ID of up to MaxConnIDLen bytes, as a
// comparable value.
type ConnID struct {
	b [MaxConnIDLen]byte
	n uint8
}

// ConnIDFrom returns the connection ID holding b[:min(len(b), 20)].
func ConnIDFrom(b []byte) ConnID {
	var c ConnID
	c.n = uint8(copy(c.b[:], b))
	return c
}

// Len returns the length in bytes.
func (c ConnID) Len() int { return int(c.n) }

// Bytes returns a copy of the ID bytes as an array and its length; use
// id[:n].
func (c ConnID) Bytes() (id [MaxConnIDLen]byte, n int) { return c.b, int(c.n) }

// AppendTo appends the ID bytes to b.
func (c ConnID) AppendTo(b []byte) []byte { return append(b, c.b[:c.n]...) }

// QUICHeader is the result of [ClassifyQUIC]: the version-independent
// fields of RFC 8999.
type QUICHeader struct {
	Long    bool   // long header (form bit set)
	Version uint32 // long header only; 0 is version negotiation
	// DCID is the destination connection ID, and SCID the source
	// connection ID of a long header. In a long header of an unknown
	// version an ID may be up to 255 bytes: DCIDLen and SCIDLen give the
	// wire lengths and DCID and SCID hold the first 20 bytes.
	DCID, SCID       ConnID
	DCIDLen, SCIDLen uint8
}

var (
	errQUICShort     = newErr(LayerQUIC, "header", ErrTruncated)
	errQUICFixed     = newErr(LayerQUIC, "fixed bit", ErrFixedBit)
	errQUICDCIDLen   = newErr(LayerQUIC, "DCID length", ErrBadConnIDLength)
	errQUICSCIDLen   = newErr(LayerQUIC, "SCID length", ErrBadConnIDLength)
	errQUICDCIDShort = newErr(LayerQUIC, "DCID", ErrTruncated)
	errQUICSCIDShort = newErr(LayerQUIC, "SCID", ErrTruncated)
	errQUICShortLen  = newErr(LayerQUIC, "configured short-header DCID length", ErrBadConnIDLength)
)

// ClassifyQUIC reads the invariant header of the QUIC packet at the start of
// the UDP payload p (RFC 8999, RFC 9000 section 17).
//
// Long header (first bit 1): 1 byte, 4-byte version, DCID length byte,
// DCID, SCID length byte, SCID. For versions 1 and 2 the fixed bit (0x40)
// must be set and each ID must be at most 20 bytes; for version negotiation
// (version 0) and unknown versions only the RFC 8999 bound of 255 applies
// and the fixed bit is not checked.
//
// Short header (first bit 0): the fixed bit must be set and the DCID is the
// shortDCIDLen bytes after the first byte; shortDCIDLen is the connection ID
// length the endpoint issues (0 to 20), as a short header does not carry it.
//
// Errors: ErrTruncated, ErrFixedBit, ErrBadConnIDLength (also when
// shortDCIDLen is out of range for a short header). Coalesced packets and
// the fields after the IDs are not examined.
func ClassifyQUIC(p []byte, shortDCIDLen int) (h QUICHeader, err error) {
	if len(p) < 1 {
		return QUICHeader{}, errQUICShort
	}
	if p[0]&0x80 == 0 {
		if shortDCIDLen < 0 || shortDCIDLen > MaxConnIDLen {
			return QUICHeader{}, errQUICShortLen
		}
		if p[0]&0x40 == 0 {
			return QUICHeader{}, errQUICFixed
		}
		if len(p) < 1+shortDCIDLen {
			return QUICHeader{}, errQUICDCIDShort
		}
		h.DCIDLen = uint8(shortDCIDLen)
		h.DCID.n = uint8(copy(h.DCID.b[:], p[1:1+shortDCIDLen]))
		return h, nil
	}
	if len(p) < 5 {
		return QUICHeader{}, errQUICShort
	}
	h.Long, h.Version = true, binary.BigEndian.Uint32(p[1:5])
	known := h.Version == QUICVersion1 || h.Version == QUICVersion2
	if known && p[0]&0x40 == 0 {
		return QUICHeader{}, errQUICFixed
	}
	if len(p) < 6 {
		return QUICHeader{}, errQUICDCIDShort
	}
	h.DCIDLen = p[5]
	if known && h.DCIDLen > MaxConnIDLen {
		return QUICHeader{}, errQUICDCIDLen
	}
	off := 6 + int(h.DCIDLen)
	if len(p) < off {
		return QUICHeader{}, errQUICDCIDShort
	}
	if len(p) < off+1 {
		return QUICHeader{}, errQUICSCIDShort
	}
	h.DCID.n = uint8(copy(h.DCID.b[:], p[6:off]))
	h.SCIDLen = p[off]
	if known && h.SCIDLen > MaxConnIDLen {
		return QUICHeader{}, errQUICSCIDLen
	}
	if len(p) < off+1+int(h.SCIDLen) {
		return QUICHeader{}, errQUICSCIDShort
	}
	h.SCID.n = uint8(copy(h.SCID.b[:], p[off+1:off+1+int(h.SCIDLen)]))
	return h, nil
}
