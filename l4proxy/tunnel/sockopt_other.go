//go:build !linux

package tunnel

import "net"

// setSocketBuffers is a no-op outside Linux: quic-go sets what the OS allows.
func setSocketBuffers(c *net.UDPConn, size int) {}
