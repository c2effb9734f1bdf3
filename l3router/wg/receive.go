//go:build linux

package wg

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/onramp-net/onramp/l3router"
)

// The receive path: a loop per socket reads batches of datagrams, decrypts
// transport messages in place and forwards them (to the router, or to the
// TUN), handing handshake messages to handshake.go.

// loop is the state of one receive loop.
type loop struct {
	d      *Device
	s      bind
	out4   batch
	out6   batch
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

func (d *Device) loop(s bind) {
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
		l.out4 = d.socks4[k%len(d.socks4)].newBatch()
	}
	if len(d.socks6) > 0 {
		l.out6 = d.socks6[k%len(d.socks6)].newBatch()
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
			buf, seg, src, to := s.datagram(i)
			size := len(buf)
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
	for _, o := range []batch{l.out4, l.out6} {
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
		e := l.d.lookup(idx)
		kp = e.kp
		l.cIdx, l.cKP, l.cValid = idx, kp, true
		if kp == nil && e.peer != nil {
			// The index of a session this hub let expire (staleIndex),
			// from the peer's own address: the peer still takes the
			// session for alive; tick starts a new one.
			if ep := e.peer.endpoint.Load(); ep != nil && ep.AddrPort == src {
				e.peer.staleRecv.Store(now)
			}
		}
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
		l.sealAndQueue(dst, b, len(pt), now)
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
		l.sealAndQueue(p, msg, n, now)
	}
}
