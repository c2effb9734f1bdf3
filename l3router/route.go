package l3router

import "fmt"

// Route and Attach are the router's data path interface: the edge's own
// WireGuard device (package wg) decrypts a packet, asks Route where it
// goes, and encrypts it in place for that peer (or writes the ICMP error
// PutReply makes back to the sender). Nothing is queued or copied.

// RouteAction is what Route decided for a packet.
type RouteAction uint8

// Actions.
const (
	// ActDrop: the packet is dropped (and counted).
	ActDrop RouteAction = iota
	// ActForward: send the packet, TTL or hop limit decremented, to the
	// peer whose attached value is Decision.To.
	ActForward
	// ActReply: send the ICMP error that PutReply writes back to the
	// sender; the packet itself is dropped (and counted).
	ActReply
)

// Decision is Route's verdict on one packet.
type Decision struct {
	Action RouteAction
	// To is the value attached to the destination peer (ActForward).
	To any
	// Len is the packet's IP length (ActForward): bytes after it are
	// padding.
	Len int
	v   verdict
}

// Attach attaches v to the configured peer id: Route returns it as the
// destination of packets to that peer and compares it with its from
// argument. A peer replaced by ReplacePeer must be attached again.
func (r *Router) Attach(id PeerID, v any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byName[id]
	if !ok {
		return fmt.Errorf("attach %q: %w", id, ErrUnknownPeer)
	}
	p.att.Store(&attachment{v: v})
	return nil
}

// Route decides the fate of pkt, an IP packet the peer attached as from
// sent (decrypted, possibly followed by padding): the packet must parse
// (else an unattributed DropMalformed) and its source must belong to from
// (else an unattributed DropSpoofed: the packet is not the sender's to
// send); then come the route, the ACL, the TTL and the MTU. For ActForward
// it has decremented the TTL or hop limit in place. It counts the packet:
// received from the sender, and for ActForward sent to the destination
// (the caller encrypts it at once), or dropped by reason.
//
// Route allocates nothing and is safe for concurrent use (the device's
// loops call it at once).
func (r *Router) Route(pkt []byte, from any, d *Decision) {
	st := r.state.Load()
	v := &d.v
	r.classify(st, pkt, v, from)
	d.Action, d.To = ActDrop, nil
	if v.src == nil {
		return
	}
	v.src.rxPackets.Add(1)
	v.src.rxBytes.Add(uint64(len(v.pkt)))
	switch v.kind {
	case vForward:
		a := v.dst.att.Load()
		if a == nil {
			v.src.drops[DropNoRoute].Add(1)
			return
		}
		v.dst.txPackets.Add(1)
		v.dst.txBytes.Add(uint64(len(v.pkt)))
		d.Action, d.To, d.Len = ActForward, a.v, len(v.pkt)
	case vICMP:
		d.Action = ActReply
	}
}

// PutReply writes the ICMP error of a decision with ActReply into dst
// and returns its length; 0 if the packet must not be answered (an ICMP
// error, a fragment, a multicast address) or dst is too small. The packet
// Route saw must not have changed.
func (r *Router) PutReply(dst []byte, d *Decision) int {
	if d.Action != ActReply {
		return 0
	}
	n := r.putICMP(dst, &d.v)
	if n > 0 {
		r.icmpErrors.Add(1)
		d.v.src.txPackets.Add(1)
		d.v.src.txBytes.Add(uint64(n))
	}
	return n
}
