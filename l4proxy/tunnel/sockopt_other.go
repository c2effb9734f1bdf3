//go:build !linux

package tunnel

import "net"

// setSocketBuffers is a no-op outside Linux: quic-go sets what the OS allows.
func setSocketBuffers(c *net.UDPConn, size int) {}

// tcpSegments has no count outside Linux.
func tcpSegments(net.Conn) (sent, retrans uint64) { return 0, 0 }
