//go:build !linux

package sockio

import "net"

// NewUDP returns c itself outside Linux.
func NewUDP(c *net.UDPConn) net.PacketConn { return c }
