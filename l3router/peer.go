package l3router

import (
	"fmt"
	"net/netip"
	"sync/atomic"
)

// PeerID names a WireGuard peer of the edge device. It is the name used in
// the configuration, routes, ACL rules and statistics; mapping it to the
// peer's public key is the caller's business.
type PeerID string

// PeerKind is the role of a peer, which the default ACL policy looks at.
type PeerKind uint8

// Peer kinds.
const (
	// KindClient is a user's device running a standard WireGuard client.
	// It owns its virtual addresses (one /32 and/or one /128 each).
	KindClient PeerKind = iota + 1
	// KindConnector is a connector inside a private network. It owns the
	// subnets it advertises.
	KindConnector
)

// String returns "client" or "connector".
func (k PeerKind) String() string {
	switch k {
	case KindClient:
		return "client"
	case KindConnector:
		return "connector"
	}
	return fmt.Sprintf("PeerKind(%d)", uint8(k))
}

// MarshalText implements encoding.TextMarshaler.
func (k PeerKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: "client" or
// "connector".
func (k *PeerKind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "client":
		*k = KindClient
	case "connector":
		*k = KindConnector
	default:
		return fmt.Errorf("peer kind %q: want client or connector: %w", b, ErrBadConfig)
	}
	return nil
}

// PeerConfig describes a peer.
type PeerConfig struct {
	Name PeerID   `yaml:"name"`
	Kind PeerKind `yaml:"kind"`
	// Groups are ACL group names the peer belongs to.
	Groups []string `yaml:"groups"`
	// Routes are the prefixes the peer owns: a client's virtual addresses
	// (single hosts: /32 and /128), a connector's advertised subnets.
	Routes []netip.Prefix `yaml:"routes"`
}

// DropReason says why the router dropped a packet.
type DropReason uint8

// Drop reasons. The String values are stable metric label values.
const (
	// DropMalformed: the packet does not parse as IPv4 or IPv6, its
	// IPv4 header checksum is wrong, or its TCP/UDP header is truncated.
	DropMalformed DropReason = iota
	// DropSpoofed: no peer owns the source address (the router's routes
	// disagree with the device's AllowedIPs).
	DropSpoofed
	// DropNoRoute: no peer owns the destination address.
	DropNoRoute
	// DropACL: an ACL rule or the default policy denied the packet.
	DropACL
	// DropTTL: the TTL or hop limit was 0 or 1.
	DropTTL
	// DropTooBig: the packet is larger than the router's MTU.
	DropTooBig

	// NumDropReasons is the number of drop reasons.
	NumDropReasons
)

var dropReasonNames = [NumDropReasons]string{
	DropMalformed: "malformed",
	DropSpoofed:   "spoofed",
	DropNoRoute:   "no_route",
	DropACL:       "acl",
	DropTTL:       "ttl",
	DropTooBig:    "too_big",
}

// String returns the metric label of r, e.g. "no_route".
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropReasonNames[r]
	}
	return fmt.Sprintf("DropReason(%d)", uint8(r))
}

// peer is the router's state of a peer. Pointers to it are stable while
// the peer is configured (its counters survive route changes), and the data
// path reaches it through the route table. A forgotten peer is left to the
// batches still holding it; its index goes to a tombstone (no id, no kind,
// no groups: in no ACL set) until a new peer takes it.
type peer struct {
	id     PeerID
	kind   PeerKind
	groups []string
	idx    int // index in Router.peers, bit position in ACL peer sets

	rxPackets, rxBytes atomic.Uint64 // received from the peer (by source)
	txPackets, txBytes atomic.Uint64 // sent to the peer (by destination)
	drops              [NumDropReasons]atomic.Uint64
	// att is what Attach attached: the data path's own handle of the
	// peer, returned by Route.
	att atomic.Pointer[attachment]
}

type attachment struct{ v any }

// PeerStats is a snapshot of a peer's counters.
type PeerStats struct {
	Kind PeerKind
	// RxPackets and RxBytes count packets received from the peer (whose
	// source address the peer owns), whatever became of them.
	RxPackets, RxBytes uint64
	// TxPackets and TxBytes count packets sent to the peer: forwarded
	// packets and ICMP errors whose destination the peer owns.
	TxPackets, TxBytes uint64
	// Drops counts packets from the peer dropped, by reason.
	Drops [NumDropReasons]uint64
}

// Stats is a snapshot of the router's counters.
type Stats struct {
	Peers map[PeerID]PeerStats
	// Unattributed counts drops that no peer can be blamed for: a
	// malformed packet, or a source that is not the sender's (its
	// counters are not charged for what it cannot send).
	Unattributed [NumDropReasons]uint64
	// ICMPErrors counts ICMP errors made (PutReply); ICMPRateLimited
	// those not made because of the rate limit. The packets they answer
	// are counted in the sending peer's Drops by the reason of the error.
	ICMPErrors, ICMPRateLimited uint64
}

func (p *peer) stats() PeerStats {
	s := PeerStats{
		Kind:      p.kind,
		RxPackets: p.rxPackets.Load(),
		RxBytes:   p.rxBytes.Load(),
		TxPackets: p.txPackets.Load(),
		TxBytes:   p.txBytes.Load(),
	}
	for i := range s.Drops {
		s.Drops[i] = p.drops[i].Load()
	}
	return s
}

// PeerStats returns the counters of the peer id, or false if the router
// has no such peer. Unlike Stats, it does not copy every peer's.
func (r *Router) PeerStats(id PeerID) (PeerStats, bool) {
	r.mu.Lock()
	p, ok := r.byName[id]
	r.mu.Unlock()
	if !ok {
		return PeerStats{}, false
	}
	return p.stats(), true
}

// Add adds o's counters to s's.
func (s *PeerStats) Add(o PeerStats) {
	s.RxPackets += o.RxPackets
	s.RxBytes += o.RxBytes
	s.TxPackets += o.TxPackets
	s.TxBytes += o.TxBytes
	for i := range s.Drops {
		s.Drops[i] += o.Drops[i]
	}
}
