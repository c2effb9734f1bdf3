package packet

import "encoding/binary"

// WireGuardType is a WireGuard message type (the first byte of the
// little-endian 32-bit type field).
type WireGuardType uint8

// WireGuard message types and sizes (the WireGuard paper section 5.4,
// wireguard-go device/noise-protocol.go).
const (
	WireGuardInitiation  WireGuardType = 1
	WireGuardResponse    WireGuardType = 2
	WireGuardCookieReply WireGuardType = 3
	WireGuardTransport   WireGuardType = 4

	WireGuardInitiationLen      = 148
	WireGuardResponseLen        = 92
	WireGuardCookieReplyLen     = 64
	WireGuardTransportHeaderLen = 16 // type, receiver index, counter
	WireGuardMinTransportLen    = 32 // header and the 16-byte AEAD tag (a keepalive)
)

// WireGuardMsg is the result of [ClassifyWireGuard].
type WireGuardMsg struct {
	Type WireGuardType
	// Index is the sender index of an initiation and the receiver index of
	// a response, cookie reply or transport message, read little-endian as
	// WireGuard writes it.
	Index uint32
}

var (
	errWGShort    = newErr(LayerWireGuard, "type", ErrTruncated)
	errWGType     = newErr(LayerWireGuard, "type", ErrBadType)
	errWGReserved = newErr(LayerWireGuard, "reserved", ErrReservedNonZero)
	errWGLen      = newErr(LayerWireGuard, "message length", ErrLengthMismatch)
)

// ClassifyWireGuard classifies the UDP payload p as a WireGuard message. It
// checks the type byte (1 to 4), that the three reserved bytes after it are
// zero, and the exact size: 148 for an initiation, 92 for a response, 64 for
// a cookie reply, and for transport data at least 32 bytes (the 16-byte
// header and the 16-byte tag). No more can be said of a transport
// message's length: WireGuard pads plaintext to a multiple of 16 bytes
// but never past the sender's MTU, so a full-sized packet through a
// 1420-byte MTU is 1452 bytes, not a multiple of 16 after the header.
// Errors: ErrTruncated if len(p) < 4, ErrBadType, ErrReservedNonZero,
// ErrLengthMismatch.
func ClassifyWireGuard(p []byte) (WireGuardMsg, error) {
	if len(p) < 4 {
		return WireGuardMsg{}, errWGShort
	}
	t := WireGuardType(p[0])
	if t < WireGuardInitiation || t > WireGuardTransport {
		return WireGuardMsg{}, errWGType
	}
	if p[1]|p[2]|p[3] != 0 {
		return WireGuardMsg{}, errWGReserved
	}
	var off int
	switch t {
	case WireGuardInitiation:
		if len(p) != WireGuardInitiationLen {
			return WireGuardMsg{}, errWGLen
		}
		off = 4 // sender index
	case WireGuardResponse:
		if len(p) != WireGuardResponseLen {
			return WireGuardMsg{}, errWGLen
		}
		off = 8 // receiver index, after the sender index
	case WireGuardCookieReply:
		if len(p) != WireGuardCookieReplyLen {
			return WireGuardMsg{}, errWGLen
		}
		off = 4 // receiver index
	case WireGuardTransport:
		if len(p) < WireGuardMinTransportLen {
			return WireGuardMsg{}, errWGLen
		}
		off = 4 // receiver index
	}
	return WireGuardMsg{Type: t, Index: binary.LittleEndian.Uint32(p[off : off+4])}, nil
}
