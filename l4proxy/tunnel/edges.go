package tunnel

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// MaxAdvertisedEdges bounds the edge addresses one Edges message carries.
const MaxAdvertisedEdges = 32

// ErrBadEdges means an Edges control message is malformed.
var ErrBadEdges = errors.New("malformed edge list")

// AppendEdges encodes the payload of an Edges control message: the edge
// addresses (host:port) a connector may dial, as the edges advertise them
// now. Each must pass CheckEdgeAddr.
func AppendEdges(b []byte, addrs []string) ([]byte, error) {
	if len(addrs) == 0 || len(addrs) > MaxAdvertisedEdges {
		return nil, fmt.Errorf("%w: %d addresses, want 1 to %d", ErrBadEdges, len(addrs), MaxAdvertisedEdges)
	}
	b = append(b, byte(len(addrs)))
	for _, a := range addrs {
		if err := CheckEdgeAddr(a); err != nil {
			return nil, err
		}
		b = append(b, byte(len(a)))
		b = append(b, a...)
	}
	if len(b) > maxCtrlLen {
		return nil, fmt.Errorf("%w: %d bytes, more than a control message holds (%d)", ErrBadEdges, len(b), maxCtrlLen)
	}
	return b, nil
}

// ParseEdges decodes an Edges payload. The addresses are checked as
// AppendEdges checks them: a connector dials nothing else.
func ParseEdges(p []byte) ([]string, error) {
	if len(p) < 1 || p[0] == 0 || int(p[0]) > MaxAdvertisedEdges {
		return nil, fmt.Errorf("%w: bad count", ErrBadEdges)
	}
	n := int(p[0])
	p = p[1:]
	out := make([]string, 0, n)
	for range n {
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return nil, fmt.Errorf("%w: truncated", ErrBadEdges)
		}
		a := string(p[1 : 1+int(p[0])])
		p = p[1+int(p[0]):]
		if err := CheckEdgeAddr(a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the list", ErrBadEdges, len(p))
	}
	return out, nil
}

// CheckEdgeAddr checks an edge address: host:port, a host name or IP
// literal of at most 253 bytes without a zone, and a port 1-65535.
func CheckEdgeAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrBadEdges, a, err)
	}
	if host == "" || len(host) > 253 {
		return fmt.Errorf("%w: %q: bad host", ErrBadEdges, a)
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':') {
			return fmt.Errorf("%w: %q: character %q in the host", ErrBadEdges, a, c)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%w: %q: bad port", ErrBadEdges, a)
	}
	return nil
}
