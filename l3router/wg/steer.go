//go:build linux

package wg

import (
	"strings"
	"sync"
	"syscall"

	"github.com/onramp-net/onramp/dataplane/steer"
)

// steering is the device's use of the WireGuard steering program
// (Config.Steer): with it, each family's first socket is the handshake
// socket (slot 0) and the others are the loops' (slots 1 to loops), and
// every local index the device makes is steered to its peer's loop.
type steering struct {
	prog *steer.WireGuard // nil: the kernel's hash spreads datagrams

	mu    sync.Mutex
	peers []int         // peers per loop slot ([0], the handshake socket's, unused)
	slot  map[*Peer]int // each peer's loop slot, from its first index on
}

// startSteering loads the steering program over the sockets, loops of
// them per family after the handshake socket. Where it cannot, the device
// says so and closes the handshake sockets: the kernel's hash spreads
// datagrams over the loops.
func (d *Device) startSteering(loops int) {
	groups := [2][]syscall.RawConn{}
	for fam, socks := range [][]bind{d.socks4, d.socks6} {
		if len(socks) != loops+1 {
			continue // the family is missing, or short of sockets: no steering for it
		}
		for _, b := range socks {
			s, ok := b.(*socket)
			if !ok {
				break
			}
			groups[fam] = append(groups[fam], s.rc)
		}
		if len(groups[fam]) != loops+1 {
			groups[fam] = nil
		}
	}
	var err error
	if groups[0] != nil || groups[1] != nil {
		d.steer.prog, err = steer.NewWireGuard(loops, groups[0], groups[1])
	}
	if d.steer.prog == nil {
		d.log.Warn("l3 wireguard: steering off, the kernel's hash spreads datagrams over the loops", "err", err)
		for _, socks := range []*[]bind{&d.socks4, &d.socks6} {
			if len(*socks) > loops {
				(*socks)[0].close()
				*socks = (*socks)[1:]
			}
		}
		return
	}
	// A family the program does not steer keeps its extra socket as one
	// more loop.
	d.steer.peers = make([]int, loops+1)
	d.steer.slot = map[*Peer]int{}
	var fams []string
	for i, name := range []string{"ipv4", "ipv6"} {
		if groups[i] != nil {
			fams = append(fams, name)
		}
	}
	d.log.Info("l3 wireguard: steering on", "loops", loops, "families", strings.Join(fams, ","))
}

// steerIndex steers transport messages to local index i to p's loop,
// giving p the loop with the fewest peers if it has none yet.
func (d *Device) steerIndex(i uint32, p *Peer) {
	if d.steer.prog == nil || p == nil {
		return
	}
	d.steer.mu.Lock()
	s, ok := d.steer.slot[p]
	if !ok {
		s = 1
		for k := 2; k < len(d.steer.peers); k++ {
			if d.steer.peers[k] < d.steer.peers[s] {
				s = k
			}
		}
		d.steer.peers[s]++
		d.steer.slot[p] = s
	}
	d.steer.mu.Unlock()
	if err := d.steer.prog.Assign(i, s); err != nil {
		d.debug("steer", "err", err) // the hash picks the loop of this index
	}
}

// loopOf returns the loop slot steering keeps p on; 0 if none. It reads
// the device's own record, not the program's map: a metrics scrape reads
// every peer's stats, and a map lookup is a syscall.
func (d *Device) loopOf(p *Peer) int {
	if d.steer.prog == nil {
		return 0
	}
	d.steer.mu.Lock()
	defer d.steer.mu.Unlock()
	return d.steer.slot[p]
}

// unsteerIndex stops steering local index i.
func (d *Device) unsteerIndex(i uint32) {
	if d.steer.prog != nil {
		d.steer.prog.Forget(i)
	}
}

// releaseSlot forgets removed peer p's loop.
func (d *Device) releaseSlot(p *Peer) {
	if d.steer.prog == nil {
		return
	}
	d.steer.mu.Lock()
	if s, ok := d.steer.slot[p]; ok {
		d.steer.peers[s]--
		delete(d.steer.slot, p)
	}
	d.steer.mu.Unlock()
}

// Steering returns the steering program's counters.
func (d *Device) Steering() (SteeringStats, error) {
	var st SteeringStats
	if d.steer.prog == nil {
		return st, nil
	}
	st.On = true
	var err error
	if st.V4, st.Unsteered, err = d.steer.prog.Steered(false); err != nil {
		return st, err
	}
	if st.V6, _, err = d.steer.prog.Steered(true); err != nil {
		return st, err
	}
	d.steer.mu.Lock()
	st.Peers = append([]int(nil), d.steer.peers...)
	d.steer.mu.Unlock()
	return st, nil
}

// SteeredSlot returns the loop slot local index i is steered to, as the
// program's map has it (tests read flows back from it).
func (d *Device) SteeredSlot(i uint32) (int, bool) {
	if d.steer.prog == nil {
		return 0, false
	}
	return d.steer.prog.Slot(i)
}
