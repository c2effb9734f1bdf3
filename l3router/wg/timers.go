//go:build linux

package wg

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
)

// timers runs the protocol's timers for every peer, every tickEvery:
// initiation retransmits and give-up, keepalives, a new handshake when a
// connector's sends go unanswered or one of its paths is silent
// (paths.go), and the expiry of old sessions.
func (d *Device) timers() {
	defer d.wg.Done()
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-d.closed:
			return
		case <-t.C:
		}
		if pauseTimersForTest.Load() {
			continue
		}
		now := d.now()
		d.mu.Lock()
		peers := make([]*Peer, 0, len(d.peers))
		for _, p := range d.peers {
			peers = append(peers, p.allPaths()...)
		}
		d.mu.Unlock()
		for _, p := range peers {
			d.tick(p, now)
		}
	}
}

// pauseTimersForTest stops the timers of every device: tests that run a
// device on a clock of their own call tick themselves.
var pauseTimersForTest atomic.Bool

func (d *Device) tick(p *Peer, now int64) {
	p.mu.Lock()
	if p.removed {
		p.mu.Unlock()
		return
	}
	if p.hsState == hsInitSent {
		switch {
		case now-p.hsStarted >= int64(rekeyAttemptTime):
			// Give up (its state is zeroed); the next packet for the
			// peer starts again.
			d.endHandshakeLocked(p)
			d.dropStagedLocked(p, len(p.staged), stageDropExpired)
		case now-p.lastInitSent >= int64(rekeyTimeout)+rand.Int64N(int64(time.Second/3)):
			d.sendInitiationLocked(p, now)
		}
	}
	d.expireStagedLocked(p, now)
	// Packets wait for a session the peer started and has not confirmed
	// in time: start one ourselves.
	if len(p.staged) > 0 && p.hsState != hsInitSent && !p.current.Load().fresh(now) && !p.confirmDue(now) {
		p.hsStarted = now
		d.sendInitiationLocked(p, now)
	}
	// Sessions expire at REJECT_AFTER_TIME (their keys are zeroed once
	// no loop refers to them: wipeWhenUnreachable).
	for _, slot := range []*atomic.Pointer[keypair]{&p.previous, &p.next, &p.current} {
		if kp := slot.Load(); kp != nil && !kp.fresh(now) {
			slot.Store(nil)
			if d.tun == nil {
				// A hub keeps the index, without the session, a while:
				// a peer still sending on it is known by it (staleRecv,
				// in transport).
				d.staleIndex(kp.local, p)
				p.expired = append(p.expired, expiredIndex{kp.local, now + int64(keepaliveTimeout+rekeyTimeout)})
			} else {
				d.dropIndex(kp.local, p)
			}
		}
	}
	p.expired = slices.DeleteFunc(p.expired, func(e expiredIndex) bool {
		if now < e.until {
			return false
		}
		d.dropIndex(e.index, p)
		return true
	})
	p.mu.Unlock()
	// Persistent keepalive.
	if ka := p.keepalive.Load(); ka > 0 && now-p.lastSent.Load() >= ka {
		if !d.sealAndSend(p, nil, now) {
			d.initiate(p, now)
		}
	}
	// Passive keepalive: data came in and nothing went out since.
	if r := p.lastRecvData.Load(); r > p.lastSent.Load() && now-r >= int64(keepaliveTimeout) {
		d.sealAndSend(p, nil, now)
	}
	// Sent and heard nothing back for a while: the session may be dead
	// at the other end. A TUN device (a connector) starts a new one
	// then. A hub does only while the peer still sends, from its endpoint,
	// on a session the hub let expire (staleRecv): a peer it no longer hears
	// from at all keeps its session alive itself. When several edges
	// share the key and a client's endpoint (an address routed to one
	// edge or another), the edge the client has moved away from would
	// otherwise send it initiations from that address, each of which
	// resets the client's own timer (stock WireGuard takes any
	// authenticated message as an answer), while its responses go to the
	// other edge: the client would not start a session with the edge it
	// reaches until this one gave up, 90 s on.
	window := int64(keepaliveTimeout + rekeyTimeout)
	if u := p.unanswered.Load(); u != 0 && now-u >= window && (d.tun != nil || now-p.staleRecv.Load() < window) {
		p.unanswered.Store(now)
		d.initiate(p, now)
	}
	// One of several paths, silent for a while: probe it (paths.go).
	if now-p.lastRecv.Load() >= int64(pathProbeAfter) && p.multipath() {
		d.initiate(p, now)
	}
}
