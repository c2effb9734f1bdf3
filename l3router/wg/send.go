//go:build linux

package wg

import (
	"encoding/binary"
	"runtime"
)

// The send path: packets sealed into transport messages, queued on a
// loop's batch or sent at once, and packets staged for a peer without a
// session.

// padded is the plaintext length of an n-byte packet: a multiple of 16,
// at most the MTU (or n).
func padded(n, mtu int) int {
	return max(n, min((n+15)&^15, mtu))
}

// sealAndQueue encrypts msg[16:16+n] in place for p and queues msg[:16+n+16] for
// p's endpoint. Without a session it stages the packet and starts a
// handshake.
func (l *loop) sealAndQueue(p *Peer, msg []byte, n int, now int64) {
	out, dst, ok := p.seal(msg, n, now, &l.nonce)
	if !ok {
		l.d.stage(p, msg[sizeTransportHdr:sizeTransportHdr+n], now)
		return
	}
	if p.unanswered.Load() == 0 {
		p.unanswered.Store(now)
	}
	o := l.out6
	if dst.Addr().Is4() {
		o = l.out4
	}
	if o == nil {
		return
	}
	if err := o.queue(p, dst, out); err != nil {
		l.d.debug("send", "err", err)
	}
}

// seal encrypts msg[16:16+n] in place with p's current session and writes
// the transport header; it returns the message (msg[:16+n+16]) and p's
// endpoint, and starts a renewal of a session of ours that is due. Without
// a session (or endpoint) it writes nothing and reports false.
func (p *Peer) seal(msg []byte, n int, now int64, nonce *[12]byte) ([]byte, endpoint, bool) {
	kp := p.current.Load()
	ep := p.endpoint.Load()
	if !kp.fresh(now) || ep == nil {
		return nil, endpoint{}, false
	}
	ctr := kp.sendCtr.Add(1) - 1
	if ctr >= rejectAfterMessages {
		// REJECT_AFTER_MESSAGES: the session sends no more (the packet
		// waits for a new one). The counter is held there, so that it
		// can never wrap around to a nonce already used.
		kp.sendCtr.Store(rejectAfterMessages)
		return nil, endpoint{}, false
	}
	msg = msg[:sizeTransportHdr+n+sizeTag]
	putHeader(msg, kp.remoteIndex, ctr)
	binary.LittleEndian.PutUint64(nonce[4:], ctr)
	kp.send.Seal(msg[sizeTransportHdr:sizeTransportHdr], nonce[:], msg[sizeTransportHdr:sizeTransportHdr+n], nil)
	runtime.KeepAlive(kp) // its keys are zeroed once it is unreachable (wipeWhenUnreachable)
	p.txBytes.Add(uint64(len(msg)))
	p.lastSent.Store(now)
	// Renew the session: after REKEY_AFTER_MESSAGES whichever side
	// started it (as wireguard-go's keepKeyFreshSending), after
	// REKEY_AFTER_TIME if we did.
	if ctr >= rekeyAfterMessages || kp.initiator && now-kp.created >= int64(rekeyAfterTime) {
		p.dev.initiate(p, now)
	}
	return msg, *ep, true
}

func putHeader(msg []byte, receiver uint32, ctr uint64) {
	binary.LittleEndian.PutUint32(msg[0:4], typeTransport)
	binary.LittleEndian.PutUint32(msg[4:8], receiver)
	binary.LittleEndian.PutUint64(msg[8:16], ctr)
}

// stage keeps a copy of pkt until p has a session (within the bounds of
// stage.go), and starts a handshake.
func (d *Device) stage(p *Peer, pkt []byte, now int64) {
	p.mu.Lock()
	if !p.removed {
		d.stageLocked(p, pkt, now)
	}
	p.mu.Unlock()
	// A session the peer has just started (answered, not yet used) is
	// confirmed by its first packet, due within a round trip; the staged
	// packets go then. Starting a handshake of our own now would cross
	// the peer's (wireguard-go, for one, can lose a session when two
	// cross). If the confirmation is late, the timers start one.
	if !p.confirmDue(now) {
		d.initiate(p, now)
	}
}

// confirmDue reports whether p has a session it started, answered by us
// less than rekeyTimeout ago and not used yet: its first packet is due.
func (p *Peer) confirmDue(now int64) bool {
	nx := p.next.Load()
	return nx != nil && now-nx.created < int64(rekeyTimeout)
}

// sealAndSend encrypts pkt (nil: a keepalive) for p into a new buffer and
// sends it at once. It reports false if p has no session.
func (d *Device) sealAndSend(p *Peer, pkt []byte, now int64) bool {
	n := 0
	if len(pkt) > 0 {
		n = padded(len(pkt), d.mtu)
	}
	msg := make([]byte, sizeTransportHdr+n+sizeTag)
	copy(msg[sizeTransportHdr:], pkt)
	var nonce [12]byte
	out, dst, ok := p.seal(msg, n, now, &nonce)
	if ok {
		d.sendControl(p, dst, out)
	}
	return ok
}

// sendStaged sends what waited for a session, or a keepalive if nothing
// did (which confirms a new session to its responder).
func (d *Device) sendStaged(p *Peer, staged []stagedPacket, now int64) {
	if len(staged) == 0 {
		d.sealAndSend(p, nil, now)
		return
	}
	for _, sp := range staged {
		if !d.sealAndSend(p, sp.b, now) {
			return
		}
	}
}

// confirm makes kp, the session p answered as responder, current: the
// initiator has used it.
func (d *Device) confirm(p *Peer, kp *keypair, now int64) {
	p.mu.Lock()
	if p.next.Load() != kp {
		p.mu.Unlock()
		return
	}
	p.next.Store(nil)
	if old := p.previous.Swap(p.current.Swap(kp)); old != nil {
		d.dropIndex(old.local, p)
	}
	staged := d.takeStagedLocked(p)
	p.mu.Unlock()
	d.debug("session confirmed", "peer", p.name, "index", kp.local, "staged", len(staged))
	for _, sp := range staged {
		d.sealAndSend(p, sp.b, now)
	}
}
