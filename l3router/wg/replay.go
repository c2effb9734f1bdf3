package wg

// replayWindow is the receive side's sliding window of counters (RFC 6479:
// a ring of 64-bit blocks, cleared a block at a time as the window moves).
// It accepts each counter at most once and none more than replayWindowSize
// behind the greatest seen.
type replayWindow struct {
	last   uint64 // greatest counter accepted
	blocks [replayBlocks]uint64
}

const (
	replayBlocks     = 32 // 2048 bits
	replayWindowSize = (replayBlocks - 1) * 64
)

// accept reports whether ctr is new and inside the window, and marks it
// seen.
func (w *replayWindow) accept(ctr uint64) bool {
	if ctr >= rejectAfterMessages {
		return false
	}
	block := ctr >> 6
	if ctr > w.last {
		cur := w.last >> 6
		d := min(block-cur, replayBlocks)
		for i := uint64(1); i <= d; i++ {
			w.blocks[(cur+i)%replayBlocks] = 0
		}
		w.last = ctr
	} else if w.last-ctr > replayWindowSize {
		return false
	}
	i, bit := block%replayBlocks, uint64(1)<<(ctr&63)
	if w.blocks[i]&bit != 0 {
		return false
	}
	w.blocks[i] |= bit
	return true
}
