package packetfuzz

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// refSum is the naive RFC 1071 sum: big-endian byte pairs, an odd last
// byte padded with zero, folded at the end.
func refSum(b []byte, initial uint32) uint32 {
	s := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint32(s)
}

func refChecksum(b []byte, initial uint32) uint16 { return ^uint16(refSum(b, initial)) }

// refPseudo builds the pseudo-header bytes and sums them naively.
func refPseudo(src, dst []byte, proto uint8, length uint32) uint32 {
	var p []byte
	p = append(p, src...)
	p = append(p, dst...)
	if len(src) == 4 {
		p = append(p, 0, proto, byte(length>>8), byte(length))
	} else {
		p = binary.BigEndian.AppendUint32(p, length)
		p = append(p, 0, 0, 0, proto)
	}
	return refSum(p, 0)
}

// sameOnesComplement reports whether two checksums are equal as one's
// complement numbers (0x0000 and 0xffff are both zero).
func sameOnesComplement(a, b uint16) bool {
	return a == b || (a == 0 || a == 0xffff) && (b == 0 || b == 0xffff)
}

var sentinels = []error{
	packet.ErrTruncated, packet.ErrBadVersion, packet.ErrBadHeaderLength, packet.ErrLengthMismatch,
	packet.ErrBadOption, packet.ErrExtensionChainTooLong, packet.ErrBadExtensionOrder, packet.ErrBadType,
	packet.ErrReservedNonZero, packet.ErrFixedBit, packet.ErrBadConnIDLength, packet.ErrBadAddress,
	packet.ErrBufferTooSmall, packet.ErrNoReply,
}

// checkErr fails unless err is nil or a *packet.Error wrapping exactly one
// sentinel.
func checkErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *packet.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *packet.Error", err, err)
	}
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 || pe.Field == "" || pe.Error() == "" {
		t.Fatalf("error %v wraps %d sentinels", err, n)
	}
}

func wantErr(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("got error %v, want %v", err, kind)
	}
}

// refWireGuard classifies p as wireguard-go does on receive (the type is a
// little-endian uint32, so reserved bytes must be zero), plus the
// protocol's 16-byte padding rule for transport data.
func refWireGuard(p []byte) (typ uint8, idx uint32, kind error) {
	if len(p) < 4 {
		return 0, 0, packet.ErrTruncated
	}
	if p[0] < 1 || p[0] > 4 {
		return 0, 0, packet.ErrBadType
	}
	if binary.LittleEndian.Uint32(p[:4]) != uint32(p[0]) {
		return 0, 0, packet.ErrReservedNonZero
	}
	switch p[0] {
	case 1:
		if len(p) != 148 {
			return 0, 0, packet.ErrLengthMismatch
		}
		return 1, binary.LittleEndian.Uint32(p[4:8]), nil
	case 2:
		if len(p) != 92 {
			return 0, 0, packet.ErrLengthMismatch
		}
		return 2, binary.LittleEndian.Uint32(p[8:12]), nil
	case 3:
		if len(p) != 64 {
			return 0, 0, packet.ErrLengthMismatch
		}
		return 3, binary.LittleEndian.Uint32(p[4:8]), nil
	default:
		if len(p) < 16+16 { // padding to 16 stops at the MTU: any longer length is valid
			return 0, 0, packet.ErrLengthMismatch
		}
		return 4, binary.LittleEndian.Uint32(p[4:8]), nil
	}
}

type refQUICHeader struct {
	long       bool
	version    uint32
	dcid, scid []byte
}

// refQUIC reads the RFC 8999 invariants with a cursor, byte by byte.
func refQUIC(p []byte, shortLen int) (h refQUICHeader, kind error) {
	i := 0
	next := func() (byte, bool) {
		if i >= len(p) {
			return 0, false
		}
		i++
		return p[i-1], true
	}
	take := func(n int) ([]byte, bool) {
		if len(p)-i < n {
			return nil, false
		}
		i += n
		return p[i-n : i], true
	}
	first, ok := next()
	if !ok {
		return h, packet.ErrTruncated
	}
	if first&0x80 == 0 {
		if shortLen > 20 {
			return h, packet.ErrBadConnIDLength
		}
		if first&0x40 == 0 {
			return h, packet.ErrFixedBit
		}
		d, ok := take(shortLen)
		if !ok {
			return h, packet.ErrTruncated
		}
		h.dcid = d
		return h, nil
	}
	h.long = true
	v, ok := take(4)
	if !ok {
		return h, packet.ErrTruncated
	}
	h.version = uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
	v1 := h.version == 1 || h.version == 0x6b3343cf
	if v1 && first&0x40 == 0 {
		return h, packet.ErrFixedBit
	}
	for _, id := range []*[]byte{&h.dcid, &h.scid} {
		n, ok := next()
		if !ok {
			return h, packet.ErrTruncated
		}
		if v1 && n > 20 {
			return h, packet.ErrBadConnIDLength
		}
		if *id, ok = take(int(n)); !ok {
			return h, packet.ErrTruncated
		}
	}
	return h, nil
}
