package packet

import "encoding/binary"

// TCP header constants.
const (
	TCPMinHeaderLen    = 20
	TCPChecksumOffset  = 16 // offset of the checksum field
	tcpMaxHeaderLen    = 60
	tcpFlagsMask       = 0x01ff
	tcpDataOffsetShift = 12
)

// TCPFlags are the nine TCP flag bits (NS in bit 8, CWR..FIN in bits 7..0).
type TCPFlags uint16

// TCP flags.
const (
	TCPFlagFIN TCPFlags = 1 << iota
	TCPFlagSYN
	TCPFlagRST
	TCPFlagPSH
	TCPFlagACK
	TCPFlagURG
	TCPFlagECE
	TCPFlagCWR
	TCPFlagNS
)

var (
	errTCPShort     = newErr(LayerTCP, "header", ErrTruncated)
	errTCPOffset    = newErr(LayerTCP, "data offset", ErrBadHeaderLength)
	errTCPOptsShort = newErr(LayerTCP, "options", ErrTruncated)
)

// TCP is a view of a parsed TCP segment (header and payload). It aliases
// the parsed buffer.
type TCP struct {
	b []byte
}

// ParseTCP parses the TCP segment that fills b (pass the IP payload). It
// checks that the data offset is at least 5 and that the header fits in b.
// Options are not interpreted, and the checksum is not verified (see
// [TCP.ChecksumValid]).
func ParseTCP(b []byte) (TCP, error) {
	if len(b) < TCPMinHeaderLen {
		return TCP{}, errTCPShort
	}
	hlen := int(b[12]>>4) * 4
	if hlen < TCPMinHeaderLen {
		return TCP{}, errTCPOffset
	}
	if hlen > len(b) {
		return TCP{}, errTCPOptsShort
	}
	return TCP{b: b}, nil
}

// Bytes returns the segment, header and payload.
func (t TCP) Bytes() []byte { return t.b }

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t.b[0:2]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t.b[2:4]) }

// Seq returns the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t.b[4:8]) }

// Ack returns the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t.b[8:12]) }

// HeaderLen returns the header length in bytes (data offset * 4).
func (t TCP) HeaderLen() int { return int(t.b[12]>>4) * 4 }

// Flags returns the nine flag bits.
func (t TCP) Flags() TCPFlags { return TCPFlags(binary.BigEndian.Uint16(t.b[12:14]) & tcpFlagsMask) }

// Window returns the window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t.b[14:16]) }

// Checksum returns the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t.b[16:18]) }

// Urgent returns the urgent pointer.
func (t TCP) Urgent() uint16 { return binary.BigEndian.Uint16(t.b[18:20]) }

// Options returns the option bytes.
func (t TCP) Options() []byte { return t.b[TCPMinHeaderLen:t.HeaderLen()] }

// Payload returns the bytes after the header.
func (t TCP) Payload() []byte { return t.b[t.HeaderLen():] }

// ChecksumValid reports whether the checksum is correct given the
// pseudo-header sum (see [PseudoHeaderSum] with len(t.Bytes())).
func (t TCP) ChecksumValid(pseudo uint32) bool { return Sum(t.b, pseudo) == 0xffff }

// SetSrcPort rewrites the source port, fixing the checksum incrementally.
func (t TCP) SetSrcPort(p uint16) { t.setPort(0, p) }

// SetDstPort rewrites the destination port, fixing the checksum
// incrementally.
func (t TCP) SetDstPort(p uint16) { t.setPort(2, p) }

func (t TCP) setPort(off int, p uint16) {
	old := binary.BigEndian.Uint16(t.b[off:])
	binary.BigEndian.PutUint16(t.b[off:], p)
	binary.BigEndian.PutUint16(t.b[16:], UpdateChecksum16(t.Checksum(), old, p))
}

// TCPHeader describes a TCP header for [AppendTCP].
type TCPHeader struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            TCPFlags
	Window           uint16
	Urgent           uint16
	Options          []byte // zero-padded to a multiple of 4, at most 40 bytes
}

var errTCPBuildOpts = newErr(LayerTCP, "options", ErrBadHeaderLength)

// AppendTCP appends the header h with a zero checksum and returns the
// extended slice. Append the payload, then call [PutChecksum] with
// TCPChecksumOffset and the pseudo-header sum. It fails, returning b
// unchanged, if the options exceed 40 bytes.
func AppendTCP(b []byte, h *TCPHeader) ([]byte, error) {
	olen := (len(h.Options) + 3) &^ 3
	if olen > tcpMaxHeaderLen-TCPMinHeaderLen {
		return b, errTCPBuildOpts
	}
	b = binary.BigEndian.AppendUint16(b, h.SrcPort)
	b = binary.BigEndian.AppendUint16(b, h.DstPort)
	b = binary.BigEndian.AppendUint32(b, h.Seq)
	b = binary.BigEndian.AppendUint32(b, h.Ack)
	w := uint16((TCPMinHeaderLen+olen)/4)<<tcpDataOffsetShift | uint16(h.Flags)&tcpFlagsMask
	b = binary.BigEndian.AppendUint16(b, w)
	b = binary.BigEndian.AppendUint16(b, h.Window)
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint16(b, h.Urgent)
	b = append(b, h.Options...)
	for i := len(h.Options); i < olen; i++ {
		b = append(b, 0)
	}
	return b, nil
}

var errChecksumOffset = newErr(LayerTCP, "checksum offset", ErrTruncated)

// PutChecksum computes the checksum of the transport segment seg (header
// and payload) with the pseudo-header sum pseudo (0 for ICMPv4), treating
// the 2-byte field at off as zero, and writes it at off. For UDP use
// [PutUDPChecksum], which sends a computed 0 as 0xffff. It returns an error
// if off+2 > len(seg).
func PutChecksum(seg []byte, off int, pseudo uint32) error {
	if off < 0 || off+2 > len(seg) {
		return errChecksumOffset
	}
	seg[off], seg[off+1] = 0, 0
	binary.BigEndian.PutUint16(seg[off:], Checksum(seg, pseudo))
	return nil
}
