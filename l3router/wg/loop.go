//go:build linux

package wg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// loop is the state of one receive loop.
type loop struct {
	d      *Device
	s      *socket
	out4   *sender
	out6   *sender
	dec    l3router.Decision
	nonce  [12]byte
	arena  []byte // ICMP errors of the current batch
	used   int
	cIdx   uint32 // the last index looked up in this batch, and its keypair
	cKP    *keypair
	cValid bool
	// local is the local end of the datagram being handled: where its
	// peer's endpoint says replies leave from.
	local local
	// TUN device: packets decrypted straight into tunMem, written to the
	// TUN in batches of tunBatchLen.
	tunMem   [][]byte
	tunBatch [][]byte
	ntun     int
}

const (
	// tunOffset is where packets start in TUN buffers: room for a
	// transport header (and the TUN's virtio-net header before it).
	tunOffset   = sizeTransportHdr
	tunBatchLen = 128
	tunBufSize  = tunOffset + 1<<16
)

func (l *loop) initTUN() {
	l.tunMem = make([][]byte, tunBatchLen)
	l.tunBatch = make([][]byte, tunBatchLen)
	for i := range l.tunMem {
		l.tunMem[i] = make([]byte, tunBufSize)
	}
}

const arenaSize = 64 << 10

func (d *Device) loop(s *socket) {
	defer d.wg.Done()
	k := 0
	for i, o := range d.socks4 {
		if o == s {
			k = i
		}
	}
	for i, o := range d.socks6 {
		if o == s {
			k = i
		}
	}
	l := &loop{d: d, s: s, arena: make([]byte, arenaSize)}
	if d.tun != nil {
		l.initTUN()
	}
	if len(d.socks4) > 0 {
		l.out4 = &sender{s: d.socks4[k%len(d.socks4)]}
	}
	if len(d.socks6) > 0 {
		l.out6 = &sender{s: d.socks6[k%len(d.socks6)]}
	}
	for {
		n, err := s.recv()
		if err != nil {
			select {
			case <-d.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.debug("receive", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := d.now()
		l.cValid, l.used = false, 0
		for i := 0; i < n; i++ {
			size := int(s.rmsgs[i].Len)
			buf := s.rbufs[i][:size]
			seg, to := s.control(i)
			src := s.source(i)
			l.local = to
			for off := 0; off < size; off += seg {
				l.handle(buf[off:min(off+seg, size)], src, now)
			}
		}
		l.flush()
		l.cKP = nil // a session dropped meanwhile must not stay reachable from an idle loop
	}
}

func (l *loop) flush() {
	if l.ntun > 0 {
		l.flushTUN()
	}
	for _, o := range []*sender{l.out4, l.out6} {
		if o != nil {
			if err := o.flush(); err != nil {
				l.d.debug("send", "err", err)
			}
		}
	}
}

// handle takes one datagram.
func (l *loop) handle(b []byte, src netip.AddrPort, now int64) {
	if len(b) < 4 {
		l.d.drop(DropMalformed)
		return
	}
	c := &l.d.hsCount
	switch binary.LittleEndian.Uint32(b) {
	case typeTransport:
		l.transport(b, src, now)
	case typeInitiation:
		c.initsRecv.Add(1)
		l.d.consumeInitiation(b, endpoint{src, l.local}, now)
	case typeResponse:
		c.respsRecv.Add(1)
		l.d.consumeResponse(b, endpoint{src, l.local}, now)
	case typeCookie:
		c.cookiesRecv.Add(1)
		l.d.consumeCookie(b, now)
	default:
		l.d.drop(DropMalformed)
	}
}

// transport decrypts a transport message in place and forwards what it
// carries.
func (l *loop) transport(b []byte, src netip.AddrPort, now int64) {
	if len(b) < sizeKeepalive {
		l.d.drop(DropMalformed)
		return
	}
	idx := binary.LittleEndian.Uint32(b[4:8])
	var kp *keypair
	if l.cValid && l.cIdx == idx {
		kp = l.cKP
	} else {
		kp = l.d.lookup(idx).kp
		l.cIdx, l.cKP, l.cValid = idx, kp, true
	}
	if !kp.fresh(now) {
		l.d.drop(DropNoSession)
		return
	}
	ctr := binary.LittleEndian.Uint64(b[8:16])
	binary.LittleEndian.PutUint64(l.nonce[4:], ctr)
	ct := b[sizeTransportHdr:]
	var pt []byte
	var err error
	if l.tunMem != nil {
		// Decrypt into the TUN batch (the TUN's GRO coalesces there).
		if l.ntun == len(l.tunMem) {
			l.flushTUN()
		}
		pt, err = kp.recv.Open(l.tunMem[l.ntun][tunOffset:tunOffset], l.nonce[:], ct, nil)
	} else {
		pt, err = kp.recv.Open(ct[:0], l.nonce[:], ct, nil)
	}
	runtime.KeepAlive(kp) // its keys are zeroed once it is unreachable (wipeWhenUnreachable)
	if err != nil {
		l.d.drop(DropDecrypt)
		return
	}
	// The window of a TUN device (a connector) takes the reordering of
	// the edge's loops sharing one send counter (see replayWindow).
	blocks := replayBlocksRouter
	if l.tunMem != nil {
		blocks = replayBlocksTUN
	}
	kp.replayMu.Lock()
	ok := kp.replay.accept(ctr, blocks)
	kp.replayMu.Unlock()
	if !ok {
		l.d.drop(DropReplay)
		return
	}
	p := kp.peer
	p.rxBytes.Add(uint64(len(b)))
	p.lastRecv.Store(now)
	if p.unanswered.Load() != 0 {
		p.unanswered.Store(0)
	}
	if ep := p.endpoint.Load(); ep == nil || ep.AddrPort != src || ep.local != l.local {
		p.setEndpoint(endpoint{src, l.local})
	}
	if kp != p.current.Load() && kp == p.next.Load() {
		l.d.confirm(p, kp, now)
	}
	// Receiving on an old session we started: renew it before it
	// expires (the current one only: packets still in flight on the
	// previous one must not start another).
	if kp.initiator && now-kp.created >= int64(rejectAfterTime-keepaliveTimeout-rekeyTimeout) && kp == p.current.Load() {
		l.d.initiate(p, now)
	}
	if len(pt) == 0 {
		return // keepalive
	}
	p.lastRecvData.Store(now)
	if l.tunMem != nil {
		l.toTUN(p, pt)
		return
	}
	l.d.router.Route(pt, p, &l.dec)
	switch l.dec.Action {
	case l3router.ActForward:
		dst, _ := l.dec.To.(*Peer)
		if dst == nil {
			return
		}
		clear(pt[l.dec.Len:])
		l.send(dst, b, len(pt), now)
	case l3router.ActReply:
		room := l.arena[l.used:]
		if len(room) < sizeTransportHdr+l.d.mtu+sizeTag {
			return // the batch's reply space is used up: the error is not sent
		}
		m := l.d.router.PutReply(room[sizeTransportHdr:sizeTransportHdr+l.d.mtu], &l.dec)
		if m == 0 {
			return
		}
		n := padded(m, l.d.mtu)
		clear(room[sizeTransportHdr+m : sizeTransportHdr+n])
		msg := room[:sizeTransportHdr+n+sizeTag]
		l.used += len(msg)
		l.send(p, msg, n, now)
	}
}

// padded is the plaintext length of an n-byte packet: a multiple of 16,
// at most the MTU (or n).
func padded(n, mtu int) int {
	return max(n, min((n+15)&^15, mtu))
}

// send encrypts msg[16:16+n] in place for p and queues msg[:16+n+16] for
// p's endpoint. Without a session it stages the packet and starts a
// handshake.
func (l *loop) send(p *Peer, msg []byte, n int, now int64) {
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

// sendPlain encrypts pkt (nil: a keepalive) for p into a new buffer and
// sends it at once. It reports false if p has no session.
func (d *Device) sendPlain(p *Peer, pkt []byte, now int64) bool {
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
		d.sendPlain(p, nil, now)
		return
	}
	for _, sp := range staged {
		if !d.sendPlain(p, sp.b, now) {
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
		d.sendPlain(p, sp.b, now)
	}
}

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
	if e, ok := d.index[i]; ok && e.peer == p && e.kp == nil {
		delete(d.index, i)
	}
	d.idxMu.Unlock()
}

// setIndex makes index i name e.
func (d *Device) setIndex(i uint32, e indexEntry) {
	d.idxMu.Lock()
	d.index[i] = e
	d.idxMu.Unlock()
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

// toTUN queues the decrypted packet pt (in tunMem[ntun]) for the TUN if
// its source is in p's allowed IPs.
func (l *loop) toTUN(p *Peer, pt []byte) {
	n, src, _ := ipAddrs(pt)
	if n == 0 || !p.allows(src) {
		p.dropped.Add(1)
		return
	}
	l.tunBatch[l.ntun] = l.tunMem[l.ntun][:tunOffset+n]
	l.ntun++
}

func (l *loop) flushTUN() {
	if _, err := l.d.tun.Write(l.tunBatch[:l.ntun], tunOffset); err != nil {
		l.d.debug("write to TUN", "err", err)
	}
	l.ntun = 0
}

// ipAddrs returns the IP length of the packet at the start of b (0 if b
// is not a whole IPv4 or IPv6 packet) and its addresses.
func ipAddrs(b []byte) (n int, src, dst netip.Addr) {
	if len(b) < 20 {
		return 0, src, dst
	}
	switch b[0] >> 4 {
	case 4:
		n = int(binary.BigEndian.Uint16(b[2:4]))
		if n < 20 || n > len(b) {
			return 0, src, dst
		}
		return n, netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	case 6:
		if len(b) < 40 {
			return 0, src, dst
		}
		n = 40 + int(binary.BigEndian.Uint16(b[4:6]))
		if n > len(b) {
			return 0, src, dst
		}
		return n, netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	}
	return 0, src, dst
}

// tunReader reads packets from the TUN, encrypts them in place for the
// peer and sends them in GSO batches.
func (d *Device) tunReader() {
	defer d.wg.Done()
	l := &loop{d: d}
	if len(d.socks4) > 0 {
		l.out4 = &sender{s: d.socks4[0]}
	}
	if len(d.socks6) > 0 {
		l.out6 = &sender{s: d.socks6[0]}
	}
	bs := max(1, d.tun.BatchSize())
	mem := make([][]byte, bs)
	bufs := make([][]byte, bs)
	sizes := make([]int, bs)
	for i := range mem {
		mem[i] = make([]byte, tunOffset+max(d.mtu, 1<<16)+sizeTag+16)
	}
	for {
		copy(bufs, mem)
		n, err := d.tun.Read(bufs, sizes, tunOffset)
		if p := d.tunPeer.Load(); p != nil && n > 0 {
			l.fromTUN(p, mem, sizes[:n], d.now())
		}
		if err != nil {
			select {
			case <-d.closed:
				return
			default:
			}
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if !errors.Is(err, tun.ErrTooManySegments) {
				d.debug("read from TUN", "err", err)
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// fromTUN encrypts the packets read from the TUN (packet i at
// mem[i][tunOffset:][:sizes[i]]) in place for p and sends them.
func (l *loop) fromTUN(p *Peer, mem [][]byte, sizes []int, now int64) {
	for i, m := range sizes {
		pkt := mem[i][tunOffset : tunOffset+m]
		if k, _, dst := ipAddrs(pkt); k == 0 || !p.allows(dst) {
			continue // not for the peer (wireguard-go drops these too)
		}
		pad := padded(m, l.d.mtu)
		clear(mem[i][tunOffset+m : tunOffset+pad])
		l.send(p, mem[i], pad, now)
	}
	l.flush()
}
