package wg

import (
	"fmt"
	"sync/atomic"
	"time"
)

// stagedPacket is a copy of a packet waiting for its peer's session.
type stagedPacket struct {
	b  []byte
	at int64 // device clock when staged
}

// Reasons a staged packet is dropped (StagingStats).
const (
	stageDropPeerFull = iota
	stageDropDeviceFull
	stageDropExpired
	stageDropRemoved
	numStageDrops
)

// staging is the device's account of staged packets.
type staging struct {
	max     int64 // bytes
	bytes   atomic.Int64
	packets atomic.Int64
	drops   [numStageDrops]atomic.Uint64
	// warned is the device clock of the last warning that the budget
	// was reached (0: none yet).
	warned atomic.Int64
}

// stagingWarnEvery spaces the warnings that the budget was reached.
const stagingWarnEvery = int64(time.Minute)

func stagedCost(pkt []byte) int64 { return int64(len(pkt)) + stagedOverhead }

// stageLocked keeps a copy of pkt for p, within p's and the device's
// bounds. p.mu is held.
func (d *Device) stageLocked(p *Peer, pkt []byte, now int64) {
	d.expireStagedLocked(p, now)
	if len(p.staged) >= maxStaged {
		d.dropStagedLocked(p, 1, stageDropPeerFull)
	}
	st := &d.staging
	cost := stagedCost(pkt)
	if st.bytes.Add(cost) > st.max {
		st.bytes.Add(-cost)
		st.drops[stageDropDeviceFull].Add(1)
		if w := st.warned.Load(); (w == 0 || now-w >= stagingWarnEvery) && st.warned.CompareAndSwap(w, now) {
			d.log.Warn(fmt.Sprintf("l3 wireguard: l3.max_staged_bytes (%d) reached: packets for peers without a session "+
				"are dropped until those held are sent or expire", st.max), "peer", p.name)
		}
		return
	}
	st.packets.Add(1)
	b := make([]byte, len(pkt))
	copy(b, pkt)
	p.staged = append(p.staged, stagedPacket{b: b, at: now})
}

// dropStagedLocked drops p's n oldest staged packets, counted for reason.
// p.mu is held.
func (d *Device) dropStagedLocked(p *Peer, n int, reason int) {
	if n <= 0 {
		return
	}
	d.unstage(p.staged[:n])
	d.staging.drops[reason].Add(uint64(n))
	if n == len(p.staged) {
		p.staged = nil // the queue's memory goes too
		return
	}
	k := copy(p.staged, p.staged[n:])
	clear(p.staged[k:]) // no reference left to the dropped packets
	p.staged = p.staged[:k]
}

// expireStagedLocked drops p's staged packets older than a handshake
// attempt. p.mu is held.
func (d *Device) expireStagedLocked(p *Peer, now int64) {
	n := 0
	for n < len(p.staged) && now-p.staged[n].at >= int64(rekeyAttemptTime) {
		n++
	}
	d.dropStagedLocked(p, n, stageDropExpired)
}

// takeStagedLocked returns p's staged packets, to be sent, and empties its
// queue. p.mu is held.
func (d *Device) takeStagedLocked(p *Peer) []stagedPacket {
	s := p.staged
	p.staged = nil
	d.unstage(s)
	return s
}

// unstage takes ps off the device's account.
func (d *Device) unstage(ps []stagedPacket) {
	var cost int64
	for _, sp := range ps {
		cost += stagedCost(sp.b)
	}
	d.staging.bytes.Add(-cost)
	d.staging.packets.Add(-int64(len(ps)))
}

// StagingStats returns the counts of packets held for peers without a
// session and of those dropped.
func (d *Device) StagingStats() StagingStats {
	st := &d.staging
	return StagingStats{
		Packets: st.packets.Load(), Bytes: st.bytes.Load(),
		PeerFull:   st.drops[stageDropPeerFull].Load(),
		DeviceFull: st.drops[stageDropDeviceFull].Load(),
		Expired:    st.drops[stageDropExpired].Load(),
		Removed:    st.drops[stageDropRemoved].Load(),
	}
}
