package tunnel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// DatagramType is the first byte of every tunnel datagram.
type DatagramType uint8

// Datagram types.
const (
	// DatagramData carries one UDP payload of an open flow.
	DatagramData DatagramType = 0
	// DatagramFlowOpen (edge to connector) names the service and user of a new
	// flow. Datagrams are unreliable: the edge repeats it until the flow sees
	// traffic back, and the connector treats a repeat for a known flow as a no-op.
	DatagramFlowOpen DatagramType = 1
	// DatagramFlowClose (either way) ends a flow; its body is one reason byte.
	DatagramFlowClose DatagramType = 2
)

// DatagramHeaderLen is the overhead of [AppendDatagram]: type u8 | flow ID u32.
const DatagramHeaderLen = 5

// MaxDatagramLen bounds any tunnel datagram (header included). QUIC carries
// less: one datagram must fit in one packet (about 1200 bytes at minimum MTU);
// [Conn.SendDatagram] reports what does not fit.
const MaxDatagramLen = 65535

// AppendDatagram appends a [DatagramData] datagram for flow carrying payload to b.
// It does not allocate when cap(b)-len(b) >= DatagramHeaderLen+len(payload).
func AppendDatagram(b []byte, flow uint32, payload []byte) []byte {
	b = append(b, byte(DatagramData))
	b = binary.BigEndian.AppendUint32(b, flow)
	return append(b, payload...)
}

// FrameDatagram writes the [DatagramData] header for flow into b[:DatagramHeaderLen],
// in front of a payload of n bytes the caller already placed at b[DatagramHeaderLen:]
// (for example by reading a UDP socket into it), and returns the datagram: no copy of
// the payload. b must hold DatagramHeaderLen+n bytes.
func FrameDatagram(b []byte, flow uint32, n int) []byte {
	b[0] = byte(DatagramData)
	binary.BigEndian.PutUint32(b[1:DatagramHeaderLen], flow)
	return b[:DatagramHeaderLen+n]
}

// ParseDatagram splits a datagram into its type, flow ID and body. body is a
// subslice of b (no copy, no allocation): for [DatagramData] it is the UDP
// payload, for other types the message to pass to [ParseFlowOpen] or
// [ParseFlowClose]. Errors wrap [ErrMalformed].
func ParseDatagram(b []byte) (typ DatagramType, flow uint32, body []byte, err error) {
	if len(b) < DatagramHeaderLen {
		return 0, 0, nil, errShortDatagram
	}
	typ = DatagramType(b[0])
	if typ > DatagramFlowClose {
		return 0, 0, nil, errDatagramType
	}
	return typ, binary.BigEndian.Uint32(b[1:]), b[DatagramHeaderLen:], nil
}

// Preallocated so that the datagram hot path never allocates, even on bad input.
var (
	errShortDatagram = fmt.Errorf("parse datagram: shorter than header: %w", ErrMalformed)
	errDatagramType  = fmt.Errorf("parse datagram: unknown type: %w", ErrMalformed)
)

// FlowOpen is the body of a [DatagramFlowOpen] datagram.
type FlowOpen struct {
	// Hostname is the service name of the UDP port binding, at most [MaxHostnameLen] bytes.
	Hostname string
	// Remote is the user's address as seen by the edge.
	Remote netip.AddrPort
}

// AppendFlowOpen appends a [DatagramFlowOpen] datagram for flow to b.
// A Hostname over [MaxHostnameLen] bytes is an error wrapping [ErrTooLong].
//
// Body layout: version u8 | hostLen u8 | host | addr (as in requests).
func AppendFlowOpen(b []byte, flow uint32, m *FlowOpen) ([]byte, error) {
	if len(m.Hostname) > MaxHostnameLen {
		return b, fmt.Errorf("flow open: hostname of %d bytes: %w", len(m.Hostname), ErrTooLong)
	}
	b = append(b, byte(DatagramFlowOpen))
	b = binary.BigEndian.AppendUint32(b, flow)
	b = append(b, ProtocolVersion, byte(len(m.Hostname)))
	b = append(b, m.Hostname...)
	return appendAddrPort(b, m.Remote), nil
}

// ParseFlowOpen parses the body of a [DatagramFlowOpen] datagram (as returned by
// [ParseDatagram]). The Hostname is a copy.
func ParseFlowOpen(body []byte) (FlowOpen, error) {
	var m FlowOpen
	if len(body) < 2 {
		return m, fmt.Errorf("parse flow open: %w", ErrMalformed)
	}
	if body[0] != ProtocolVersion {
		return m, fmt.Errorf("parse flow open: %w", ErrUnsupportedVersion)
	}
	hl := int(body[1])
	body = body[2:]
	if len(body) < hl {
		return m, fmt.Errorf("parse flow open: hostname: %w", ErrMalformed)
	}
	m.Hostname = string(body[:hl])
	ap, n, err := parseAddrPort(body[hl:])
	if err != nil {
		return m, fmt.Errorf("parse flow open: %w", err)
	}
	if n != len(body)-hl {
		return m, fmt.Errorf("parse flow open: trailing bytes: %w", ErrMalformed)
	}
	m.Remote = ap
	return m, nil
}

// FlowCloseReason says why a flow ended.
type FlowCloseReason uint8

// Flow close reasons; they mirror [Status] where they overlap.
const (
	FlowClosed            FlowCloseReason = 0 // idle timeout or normal end
	FlowOriginUnreachable FlowCloseReason = 1
	FlowNoRule            FlowCloseReason = 2
	FlowTooMany           FlowCloseReason = 3
	FlowUnknown           FlowCloseReason = 4 // data arrived for a flow the receiver does not know; the edge should resend FlowOpen
)

// AppendFlowClose appends a [DatagramFlowClose] datagram for flow to b.
func AppendFlowClose(b []byte, flow uint32, reason FlowCloseReason) []byte {
	b = append(b, byte(DatagramFlowClose))
	b = binary.BigEndian.AppendUint32(b, flow)
	return append(b, byte(reason))
}

// ParseFlowClose parses the body of a [DatagramFlowClose] datagram.
func ParseFlowClose(body []byte) (FlowCloseReason, error) {
	if len(body) != 1 {
		return 0, fmt.Errorf("parse flow close: %w", ErrMalformed)
	}
	return FlowCloseReason(body[0]), nil
}
