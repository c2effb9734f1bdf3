//go:build linux

package wg

import "net/netip"

// bind is the device's socket seam, as wireguard-go's conn.Bind is its
// device's: what the loops, the handshake and the timers need of a UDP
// socket. socket (io_linux.go: recvmmsg and sendmmsg, GRO and GSO, the
// sticky source) is the one outside tests; memBind (membind_test.go)
// carries datagrams between devices in memory, so that protocol tests run
// without sockets, ports or a kernel.
type bind interface {
	// recv waits for a batch of datagrams and returns how many it read.
	// It fails with net.ErrClosed once the bind is closed.
	recv() (int, error)
	// datagram returns datagram i of the last batch: its bytes, valid
	// until the next recv, in segments of seg bytes (a GRO
	// super-datagram; seg is len(b) for a single datagram), its source,
	// and the local end it arrived at.
	datagram(i int) (b []byte, seg int, src netip.AddrPort, to local)
	// newBatch returns a batch of messages to send on the bind, for the
	// use of one goroutine.
	newBatch() batch
	// sendOne sends one datagram at once; safe for concurrent use. If
	// the local address of dst is gone from the host, it sends without
	// it and reports gone.
	sendOne(dst endpoint, msg []byte) (gone bool, err error)
	// port returns the bind's local port.
	port() int
	// close closes the bind.
	close() error
}

// batch is a loop's batch of messages to send on a bind.
type batch interface {
	// queue adds msg for p (nil for no peer) at dst. msg must stay
	// untouched until flush.
	queue(p *Peer, dst endpoint, msg []byte) error
	// flush sends what is queued. A message whose local address is gone
	// goes without it, and its peer forgets the address
	// (Peer.forgetLocal). The error is the last one, for the log.
	flush() error
}

// listenFunc opens a bind of network ("udp4" or "udp6") on addr (invalid
// or unspecified: every address of the family) and port (0: any; the
// device's later binds take the port of its first).
type listenFunc func(network string, addr netip.Addr, port int) (bind, error)

// endpoint is where a peer is: its address, and the local end its packets
// arrived at, which what the device sends it leaves from (the sticky
// source, as wireguard-go's StdNetEndpoint and kernel WireGuard keep it).
// On a host with several addresses, a reply must come from the address the
// peer wrote to: a NAT in front of the peer drops one from another address
// (it matches no connection), and so do firewalls that track UDP flows.
type endpoint struct {
	netip.AddrPort
	local local
}

// local is the local end of a datagram (IP_PKTINFO, IPV6_PKTINFO): the
// address it was sent to and the interface it came in on. Sent back in the
// same control message, the address is the source of the reply and the
// interface its way out: the one the peer's packets take, which an IPv6
// link-local peer needs (its address means nothing without it) and which
// keeps the route of a host with several uplinks symmetric. The zero local
// is unknown: the routing table picks the source.
type local struct {
	addr    netip.Addr
	ifindex uint32
}
