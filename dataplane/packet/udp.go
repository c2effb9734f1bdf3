package packet

import "encoding/binary"

// UDP header constants.
const (
	UDPHeaderLen      = 8
	UDPChecksumOffset = 6 // offset of the checksum field
)

var (
	errUDPShort    = newErr(LayerUDP, "header", ErrTruncated)
	errUDPLen      = newErr(LayerUDP, "length", ErrLengthMismatch)
	errUDPLenShort = newErr(LayerUDP, "length", ErrTruncated)
)

// UDP is a view of a parsed UDP datagram cut to its length field. It aliases
// the parsed buffer.
type UDP struct {
	b []byte
}

// ParseUDP parses the UDP datagram at the start of b (pass the IP payload).
// It checks that 8 <= length <= len(b) and cuts the view to the length;
// a length of 0 (IPv6 jumbograms, RFC 2675) is ErrLengthMismatch. The
// checksum is not verified (see [UDP.ChecksumValid]).
func ParseUDP(b []byte) (UDP, error) {
	if len(b) < UDPHeaderLen {
		return UDP{}, errUDPShort
	}
	n := int(binary.BigEndian.Uint16(b[4:6]))
	if n < UDPHeaderLen {
		return UDP{}, errUDPLen
	}
	if n > len(b) {
		return UDP{}, errUDPLenShort
	}
	return UDP{b: b[:n:n]}, nil
}

// Bytes returns the datagram, header and payload, cut to the length field.
func (u UDP) Bytes() []byte { return u.b }

// SrcPort returns the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u.b[0:2]) }

// DstPort returns the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u.b[2:4]) }

// Length returns the length field (header and payload).
func (u UDP) Length() int { return len(u.b) }

// Checksum returns the checksum field; 0 means none (IPv4 only).
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u.b[6:8]) }

// Payload returns the bytes after the header up to the length.
func (u UDP) Payload() []byte { return u.b[UDPHeaderLen:] }

// ChecksumValid reports whether the checksum is correct given the
// pseudo-header sum (see [PseudoHeaderSum] with u.Length()). A zero
// checksum field is reported valid: it means "no checksum" over IPv4 (it
// is not allowed over IPv6, which the caller must check).
func (u UDP) ChecksumValid(pseudo uint32) bool {
	return u.Checksum() == 0 || Sum(u.b, pseudo) == 0xffff
}

// SetSrcPort rewrites the source port, fixing a non-zero checksum
// incrementally.
func (u UDP) SetSrcPort(p uint16) { u.setPort(0, p) }

// SetDstPort rewrites the destination port, fixing a non-zero checksum
// incrementally.
func (u UDP) SetDstPort(p uint16) { u.setPort(2, p) }

func (u UDP) setPort(off int, p uint16) {
	old := binary.BigEndian.Uint16(u.b[off:])
	binary.BigEndian.PutUint16(u.b[off:], p)
	if c := u.Checksum(); c != 0 {
		binary.BigEndian.PutUint16(u.b[6:], udpNonZero(UpdateChecksum16(c, old, p)))
	}
}

// UDPHeader describes a UDP header for [AppendUDP].
type UDPHeader struct {
	SrcPort, DstPort uint16
}

var errUDPBuildLen = newErr(LayerUDP, "length", ErrLengthMismatch)

// AppendUDP appends the header h for payloadLen bytes of payload with a zero
// checksum and returns the extended slice. Append the payload, then call
// [PutUDPChecksum]. It fails, returning b unchanged, if 8 + payloadLen
// exceeds 65535.
func AppendUDP(b []byte, h *UDPHeader, payloadLen int) ([]byte, error) {
	n := UDPHeaderLen + payloadLen
	if payloadLen < 0 || n > 0xffff {
		return b, errUDPBuildLen
	}
	b = binary.BigEndian.AppendUint16(b, h.SrcPort)
	b = binary.BigEndian.AppendUint16(b, h.DstPort)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	return append(b, 0, 0), nil
}

// PutUDPChecksum computes and writes the checksum of the UDP datagram seg
// (header and payload) with the pseudo-header sum pseudo, writing a computed
// 0 as 0xffff (RFC 768). It returns an error if len(seg) < 8.
func PutUDPChecksum(seg []byte, pseudo uint32) error {
	if len(seg) < UDPHeaderLen {
		return errUDPShort
	}
	seg[6], seg[7] = 0, 0
	binary.BigEndian.PutUint16(seg[6:], udpNonZero(Checksum(seg, pseudo)))
	return nil
}
