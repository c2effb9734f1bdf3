package wg

// replayWindow is the receive side's sliding window of counters (RFC 6479:
// a ring of 64-bit blocks, cleared a block at a time as the window moves).
// It accepts each counter at most once and none more than window() behind
// the greatest seen.
//
// Its size is the device's (see replayBlocksFor): the ring is allocated
// with the session's first authenticated packet, and nothing after that.
//
// How far apart counters can arrive: this device's loops share one send
// counter per session, and each claims counters for the packets it
// forwards until its sender flushes (at most sendBatch messages of
// maxSegments datagrams, 4,096). A peer that forwards to one destination
// from L loops can thus put up to about L x 4,096 counters between two
// packets sent close together; the network may reorder a little more.
type replayWindow struct {
	last   uint64   // greatest counter accepted
	blocks []uint64 // a power of two of them; nil until the first accept
}

// window returns how far behind the greatest counter seen a counter may
// be.
func (w *replayWindow) window() uint64 { return uint64(len(w.blocks)-1) * 64 }

// accept reports whether ctr is new and inside the window, and marks it
// seen. A window not used yet gets nblocks blocks (a power of two).
func (w *replayWindow) accept(ctr uint64, nblocks int) bool {
	if ctr >= rejectAfterMessages {
		return false
	}
	if w.blocks == nil {
		w.blocks = make([]uint64, nblocks)
	}
	mask := uint64(len(w.blocks) - 1)
	block := ctr >> 6
	if ctr > w.last {
		// Clear the blocks the window moves onto (all of them at
		// most).
		cur := w.last >> 6
		d := min(block-cur, mask+1)
		for i := cur + 1; i <= cur+d; i++ {
			w.blocks[i&mask] = 0
		}
		w.last = ctr
	} else if w.last-ctr > w.window() {
		return false
	}
	i, bit := block&mask, uint64(1)<<(ctr&63)
	if w.blocks[i]&bit != 0 {
		return false
	}
	w.blocks[i] |= bit
	return true
}

// reset empties the window, keeping its ring: only the block of counter 0
// needs clearing, the others are cleared as the window moves onto them.
func (w *replayWindow) reset() {
	w.last = 0
	if w.blocks != nil {
		w.blocks[0] = 0
	}
}
