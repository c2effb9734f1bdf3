//go:build linux

package wg

import (
	"bytes"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// The handshake as the device runs it: initiations started and given up,
// messages of the Noise IK handshake (noise.go) and cookie replies
// consumed, refusals counted.

// initiate sends a handshake initiation to p unless one went out less than
// rekeyTimeout ago.
func (d *Device) initiate(p *Peer, now int64) {
	if t := p.initAt.Load(); t != 0 && now-t < int64(rekeyTimeout) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed || p.hsState == hsInitSent && now-p.lastInitSent < int64(rekeyTimeout) {
		return
	}
	if p.hsState != hsInitSent {
		p.hsStarted = now
	}
	d.sendInitiationLocked(p, now)
}

// sendInitiationLocked sends a new initiation to p's endpoint; it replaces
// the one in progress, if any. p.mu is held.
func (d *Device) sendInitiationLocked(p *Peer, now int64) {
	ep := p.endpoint.Load()
	if ep == nil {
		return
	}
	d.endHandshakeLocked(p)
	idx := d.newIndex(indexEntry{peer: p})
	msg := make([]byte, sizeInitiation)
	var err error
	if p.hs.ephPriv, err = l3config.GeneratePrivateKey(); err == nil {
		err = d.id.createInitiation(&p.hs, msg, &p.remote, idx, time.Now())
	}
	if err != nil {
		p.hs.clear()
		d.dropPending(idx, p)
		d.debug("handshake initiation", "peer", p.name, "err", err)
		return
	}
	p.lastMAC1 = addMACs(msg, p.remote.mac1Key[:], p.cookieFor(now))
	p.hsState, p.lastInitSent = hsInitSent, now
	p.initAt.Store(now)
	d.sendControl(p, *ep, msg)
	p.lastSent.Store(now)
	d.debug("handshake initiated", "peer", p.name, "to", *ep, "index", idx)
}

// endHandshakeLocked ends the handshake p initiated, if one is in
// progress (it completes no more: given up, replaced, or its peer
// removed): its index is forgotten and its state zeroed. p.mu is held.
func (d *Device) endHandshakeLocked(p *Peer) {
	if p.hsState == hsInitSent {
		d.dropPending(p.hs.localIndex, p)
	}
	p.hs.clear()
	p.hsState = hsNone
	p.initAt.Store(0)
}

// cookieFor returns p's cookie if it is fresh. p.mu is held.
func (p *Peer) cookieFor(now int64) *[16]byte {
	if p.hasCookie && now-p.cookieSet < int64(cookieRefreshTime) {
		return &p.cookie
	}
	return nil
}

// dropPending forgets index i if it names p's handshake in progress.
func (d *Device) dropPending(i uint32, p *Peer) {
	d.idxMu.Lock()
	e, ok := d.index[i]
	ok = ok && e.peer == p && e.kp == nil
	if ok {
		delete(d.index, i)
	}
	d.idxMu.Unlock()
	if ok {
		d.unsteerIndex(i)
	}
}

// setIndex makes index i name e.
func (d *Device) setIndex(i uint32, e indexEntry) {
	d.idxMu.Lock()
	d.index[i] = e
	d.idxMu.Unlock()
	d.steerIndex(i, e.peer)
}

// rejectReasons name the refusals of handshake messages that went on to
// the handshake (HandshakeStats.Rejected), by rejectReason.
var rejectReasons = [...]string{
	"invalid",        // failed authentication or a low-order key: not from the peer it names, or not to us
	"unknown_peer",   // an initiation from a key that is no peer's
	"replay",         // an initiation whose timestamp is not newer than the last one accepted
	"flood",          // an initiation within initiationMinGap of the last one accepted
	"stray_response", // a response to no initiation in progress
}

// rejectCounts counts refused handshake messages by reason.
type rejectCounts [len(rejectReasons)]atomic.Uint64

func (c *rejectCounts) snapshot() map[string]uint64 {
	m := make(map[string]uint64, len(c))
	for i := range c {
		m[rejectReasons[i]] = c[i].Load()
	}
	return m
}

// rejectReason is the index in rejectReasons of err.
func rejectReason(err error) int {
	switch err {
	case errUnknown:
		return 1
	case errReplay:
		return 2
	case errFlood:
		return 3
	case errStray:
		return 4
	}
	return 0
}

// rejectHandshake counts a refused handshake message and logs it at
// debug level (what it carries is the sender's to choose).
func (d *Device) rejectHandshake(err error, msg string, args ...any) {
	d.rejected[rejectReason(err)].Add(1)
	d.debug(msg, append(args, "err", err)...)
}

func (d *Device) peerByKey(k l3config.Key) *Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.peers[k]
}

// consumeInitiation answers a handshake initiation.
func (d *Device) consumeInitiation(b []byte, src endpoint, now int64) {
	if len(b) != sizeInitiation || !d.id.checkMAC1(b) || !d.admitHandshake(b, src, now) {
		return
	}
	// The handshake's state lives in in until the response is made
	// (createResponse zeroes it, consumeInitiation does on failure); the
	// deferred clear covers the refusals in between.
	var in initiation
	defer in.hs.clear()
	// The lookup locks the initiator's peer: its remote's static secret
	// (zeroed when the peer is removed) is read under p.mu.
	var p *Peer
	r, err := d.id.consumeInitiation(&in, b, func(k l3config.Key) *remote {
		q := d.peerByKey(k)
		if q == nil {
			return nil
		}
		q = q.pathFrom(src.AddrPort) // one of several endpoints: the one it came from
		q.mu.Lock()
		if q.removed {
			q.mu.Unlock()
			return nil
		}
		p = q
		return &q.remote
	})
	if err != nil {
		if p != nil {
			p.mu.Unlock()
		}
		d.rejectHandshake(err, "handshake initiation", "from", src)
		return
	}
	// Replays and floods (wireguard-go's ConsumeMessageInitiation): the
	// timestamp must be newer than the last accepted one, and accepted
	// initiations at least initiationMinGap apart.
	if p.seenInit && bytes.Compare(in.timestamp[:], p.lastTimestamp[:]) <= 0 {
		p.mu.Unlock()
		d.rejectHandshake(errReplay, "handshake initiation", "peer", p.name, "from", src)
		return
	}
	if p.seenInit && now-p.lastInitRecv <= int64(initiationMinGap) {
		p.mu.Unlock()
		d.rejectHandshake(errFlood, "handshake initiation", "peer", p.name, "from", src)
		return
	}
	p.seenInit, p.lastTimestamp, p.lastInitRecv = true, in.timestamp, now
	// The index is published as a handshake's (which no response
	// matches) until the session is whole.
	local := d.newIndex(indexEntry{peer: p})
	kp := &keypair{peer: p, created: now, local: local, remoteIndex: in.hs.remoteIndex}
	msg := make([]byte, sizeResponse)
	var keys sessionKeys
	if in.hs.ephPriv, err = l3config.GeneratePrivateKey(); err == nil {
		err = createResponse(msg, &in.hs, r, local, &keys)
	}
	if err != nil {
		d.dropPending(local, p)
		p.mu.Unlock()
		d.debug("handshake response", "peer", p.name, "err", err)
		return
	}
	kp.send, kp.recv = keys.aeads()
	wipeWhenUnreachable(kp, kp.send, kp.recv)
	d.setIndex(local, indexEntry{peer: p, kp: kp})
	if old := p.next.Swap(kp); old != nil {
		d.dropIndex(old.local, p)
	}
	p.lastMAC1 = addMACs(msg, p.remote.mac1Key[:], p.cookieFor(now))
	p.setEndpoint(src)
	p.lastHandshake.Store(time.Now().UnixNano())
	p.handshakes.Add(1)
	p.mu.Unlock()
	p.lastRecv.Store(now)
	// Told before the answer leaves: once the peer has it, its traffic
	// (and whoever waits for it) may outrun this goroutine.
	d.handshakeDone(src)
	d.sendControl(p, src, msg)
	p.lastSent.Store(now)
	d.debug("handshake answered", "peer", p.name, "from", src, "index", kp.local)
}

// consumeResponse completes a handshake this device initiated.
func (d *Device) consumeResponse(b []byte, src endpoint, now int64) {
	if len(b) != sizeResponse || !d.id.checkMAC1(b) || !d.admitHandshake(b, src, now) {
		return
	}
	idx := binary.LittleEndian.Uint32(b[8:12])
	e := d.lookup(idx)
	p := e.peer
	if p == nil || e.kp != nil {
		d.rejectHandshake(errStray, "handshake response", "from", src)
		return
	}
	p.mu.Lock()
	if p.removed || p.hsState != hsInitSent || p.hs.localIndex != idx {
		p.mu.Unlock()
		d.rejectHandshake(errStray, "handshake response", "peer", p.name, "from", src)
		return
	}
	var keys sessionKeys
	remoteIdx, err := d.id.consumeResponse(b, &p.hs, &p.remote, &keys)
	if err != nil {
		p.mu.Unlock()
		d.rejectHandshake(err, "handshake response", "peer", p.name, "from", src)
		return
	}
	kp := &keypair{peer: p, created: now, initiator: true, local: idx, remoteIndex: remoteIdx}
	kp.send, kp.recv = keys.aeads()
	wipeWhenUnreachable(kp, kp.send, kp.recv)
	d.setIndex(idx, indexEntry{peer: p, kp: kp})
	// The handshake is complete: its state goes (its index now names
	// the session).
	p.hs.clear()
	p.hsState = hsNone
	p.initAt.Store(0)
	// The new session becomes current; the one before stays usable for
	// receiving as previous. That is a session we answered and the peer
	// has not used yet, if there is one (handshakes crossed: it may be
	// the one the peer sends on now), else the current one.
	prev := p.next.Swap(nil)
	cur := p.current.Swap(kp)
	if prev == nil {
		prev = cur
	} else if cur != nil {
		d.dropIndex(cur.local, p)
	}
	if old := p.previous.Swap(prev); old != nil {
		d.dropIndex(old.local, p)
	}
	p.setEndpoint(src)
	p.lastHandshake.Store(time.Now().UnixNano())
	p.handshakes.Add(1)
	staged := d.takeStagedLocked(p)
	p.mu.Unlock()
	p.lastRecv.Store(now)
	p.unanswered.Store(0)
	d.debug("handshake completed", "peer", p.name, "from", src, "index", idx, "staged", len(staged))
	d.handshakeDone(src) // before the staged packets leave, as above
	d.sendStaged(p, staged, now)
}

// consumeCookie takes a peer's cookie reply to our last handshake message.
// It allocates nothing.
func (d *Device) consumeCookie(b []byte, now int64) {
	if len(b) != sizeCookie {
		return
	}
	e := d.lookup(binary.LittleEndian.Uint32(b[4:8]))
	p := e.peer
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastMAC1 == ([16]byte{}) {
		return // we sent the peer nothing: no reply is due (wireguard-go's hasLastMAC1)
	}
	c, err := consumeCookie(b, &p.remote, &p.lastMAC1)
	if err != nil {
		return
	}
	p.cookie, p.cookieSet, p.hasCookie = c, now, true
}

// handshakeDone tells Config.OnHandshake of a handshake completed with the
// peer at src.
func (d *Device) handshakeDone(src endpoint) {
	if d.onHandshake != nil {
		d.onHandshake(src.Addr())
	}
}
