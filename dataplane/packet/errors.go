package packet

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them; test with errors.Is.
var (
	// ErrTruncated means the buffer ends before a header or a length
	// field says it should.
	ErrTruncated = errors.New("truncated")
	// ErrBadVersion means the IP version nibble is not the one expected.
	ErrBadVersion = errors.New("bad version")
	// ErrBadHeaderLength means a header length field is below its minimum
	// or not a multiple of its unit.
	ErrBadHeaderLength = errors.New("bad header length")
	// ErrLengthMismatch means a total or payload length field disagrees
	// with the header length or with the message size.
	ErrLengthMismatch = errors.New("length mismatch")
	// ErrBadOption means an IPv4 option is malformed.
	ErrBadOption = errors.New("bad option")
	// ErrExtensionChainTooLong means an IPv6 packet carries more than
	// MaxIPv6ExtensionHeaders extension headers.
	ErrExtensionChainTooLong = errors.New("extension-header chain too long")
	// ErrBadExtensionOrder means a hop-by-hop options header appears
	// anywhere but first (RFC 8200 section 4.1).
	ErrBadExtensionOrder = errors.New("bad extension-header order")
	// ErrBadType means a message type is unknown to the classifier.
	ErrBadType = errors.New("bad message type")
	// ErrReservedNonZero means reserved bytes that must be zero are not.
	ErrReservedNonZero = errors.New("reserved bits not zero")
	// ErrFixedBit means a QUIC packet has the fixed bit clear.
	ErrFixedBit = errors.New("fixed bit clear")
	// ErrBadConnIDLength means a QUIC connection ID length exceeds the
	// limit of its version, or a configured length is out of range.
	ErrBadConnIDLength = errors.New("bad connection ID length")
	// ErrBadAddress means an address has the wrong family for a builder.
	ErrBadAddress = errors.New("bad address")
	// ErrBufferTooSmall means a builder's destination cannot hold the
	// output.
	ErrBufferTooSmall = errors.New("buffer too small")
	// ErrNoReply means the offending packet must not be answered with an
	// ICMP error (RFC 1812 section 4.3.2.7, RFC 4443 section 2.4 (e)).
	ErrNoReply = errors.New("must not send ICMP error")
)

// Layer names the protocol layer an [Error] was found in.
type Layer uint8

// Layers.
const (
	LayerIPv4 Layer = iota + 1
	LayerIPv6
	LayerTCP
	LayerUDP
	LayerICMPv4
	LayerICMPv6
	LayerWireGuard
	LayerQUIC
)

var layerNames = [...]string{
	LayerIPv4:      "ipv4",
	LayerIPv6:      "ipv6",
	LayerTCP:       "tcp",
	LayerUDP:       "udp",
	LayerICMPv4:    "icmpv4",
	LayerICMPv6:    "icmpv6",
	LayerWireGuard: "wireguard",
	LayerQUIC:      "quic",
}

// String returns the lowercase protocol name.
func (l Layer) String() string {
	if int(l) < len(layerNames) && layerNames[l] != "" {
		return layerNames[l]
	}
	return "unknown"
}

// Error is a malformed-input error: which layer, which field, and the
// sentinel kind. The package returns only package-level *Error values, so
// returning one never allocates, and two errors compare equal with == when
// they describe the same problem.
type Error struct {
	Layer Layer
	Field string
	Kind  error
}

// Error returns "layer field: kind", e.g. "ipv4 total length: truncated".
func (e *Error) Error() string {
	return e.Layer.String() + " " + e.Field + ": " + e.Kind.Error()
}

// Unwrap returns the sentinel kind.
func (e *Error) Unwrap() error { return e.Kind }

func newErr(l Layer, field string, kind error) *Error {
	return &Error{Layer: l, Field: field, Kind: kind}
}
