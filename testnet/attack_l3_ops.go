package testnet

import (
	"net/netip"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// StartSpoofedHandshakeFlood is StartHandshakeFlood by an attacker that
// never answers a cookie reply, as one sending from addresses it does not
// hold: it counts the cookie replies that reach the node, and answers
// none. Every message it sends has a valid mac1 and no mac2.
func (node *Node) StartSpoofedHandshakeFlood(prefix netip.Prefix, port uint16, edge netip.AddrPort, edgeKey l3config.Key, rate int, d time.Duration) (*HandshakeFlood, error) {
	return node.startHandshakeFlood(prefix, port, edge, edgeKey, rate, d, false)
}
