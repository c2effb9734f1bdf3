package l3router

import (
	"sync/atomic"
)

// slot is one preallocated packet buffer of the ring.
type slot struct {
	// ready is 1 from the moment a producer has written the slot until
	// the consumer has copied it out.
	ready atomic.Uint32
	n     int    // packet length; 0 means a reserved slot left empty
	buf   []byte // len = the router's MTU
	// owner is the peer whose packet (or whose ICMP error) fills the
	// slot; its held count drops when the consumer frees the slot.
	owner *peer
}

// ring is a bounded multi-producer, single-consumer queue of packets in a
// fixed array of preallocated buffers: the router's only packet memory.
//
// Ownership: a producer (Write) owns the slots it reserved from reserve
// until it publishes each with publish; the consumer (Read) owns a published
// slot until it has copied it out and advanced head. Reservations are in
// position order, and the consumer takes slots strictly in that order, so
// one slow producer delays the slots reserved after it (never for long: a
// producer only copies between reserve and publish).
//
// Producers never block: reserve hands out at most the free slots and the
// caller drops the rest.
type ring struct {
	slots []slot
	mask  uint64
	// tail is the next position to reserve (producers, CAS); head is the
	// next position to consume (written by the consumer only). Positions
	// grow without wrapping; slot index is position & mask.
	tail atomic.Uint64
	head atomic.Uint64
	// bell has room for one wake-up; producers ring it after publishing.
	bell chan struct{}
}

func newRing(n, size int) *ring {
	r := &ring{
		slots: make([]slot, n),
		mask:  uint64(n - 1),
		bell:  make(chan struct{}, 1),
	}
	mem := make([]byte, n*size)
	for i := range r.slots {
		r.slots[i].buf = mem[i*size : (i+1)*size : (i+1)*size]
	}
	return r
}

// reserve reserves up to want consecutive slots and returns the first
// position and the count, which is less than want when the ring is full.
func (r *ring) reserve(want int) (pos uint64, n int) {
	for {
		t := r.tail.Load()
		free := uint64(len(r.slots)) - (t - r.head.Load())
		n := uint64(want)
		if n > free {
			n = free
		}
		if n == 0 {
			return t, 0
		}
		if r.tail.CompareAndSwap(t, t+n) {
			return t, int(n)
		}
	}
}

// at returns the slot of a reserved position.
func (r *ring) at(pos uint64) *slot { return &r.slots[pos&r.mask] }

// publish hands the slot at a reserved position to the consumer.
func (r *ring) publish(s *slot) { s.ready.Store(1) }

// wake wakes the consumer if it waits.
func (r *ring) wake() {
	select {
	case r.bell <- struct{}{}:
	default:
	}
}

// drain copies published packets, in order, into bufs[i][offset:], setting
// sizes[i], and returns how many it copied. It stops at the first
// unpublished slot or when bufs is full. Empty slots are skipped. A packet
// that does not fit its buffer is dropped and counted in short. Only one
// goroutine may drain at a time.
//
// The owners of the freed slots get their held counts back, summed over
// runs of one owner (a batch normally has few).
func (r *ring) drain(bufs [][]byte, sizes []int, offset int, short *atomic.Uint64) int {
	h := r.head.Load()
	t := r.tail.Load()
	n := 0
	var owner *peer
	var freed int64
	for h != t && n < len(bufs) {
		s := r.at(h)
		if s.ready.Load() == 0 {
			break
		}
		if s.owner != owner {
			if owner != nil {
				owner.held.Add(-freed)
			}
			owner, freed = s.owner, 0
		}
		if s.owner != nil {
			freed++
		}
		if s.n > 0 {
			if offset+s.n <= len(bufs[n]) {
				sizes[n] = copy(bufs[n][offset:], s.buf[:s.n])
				n++
			} else {
				short.Add(1)
			}
		}
		s.n = 0
		s.owner = nil
		s.ready.Store(0)
		h++
	}
	if owner != nil {
		owner.held.Add(-freed)
	}
	r.head.Store(h)
	return n
}

// len returns the number of reserved or published slots.
func (r *ring) len() int { return int(r.tail.Load() - r.head.Load()) }
