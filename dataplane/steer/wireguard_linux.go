package steer

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/onramp-net/onramp/dataplane/internal/closing"
	"golang.org/x/sys/unix"
)

// WireGuard is the loaded WireGuard steering program, attached to a
// device's socket groups (one per address family).
type WireGuard struct {
	objs  wireguardObjects
	loops int
	// guard keeps the maps from being used while, or after, Close
	// releases them: a metrics scrape may read the counters while
	// the device shuts down.
	guard closing.Guard
}

// NewWireGuard loads the WireGuard steering program for groups of loops
// loop sockets and attaches it to v4 and v6 (either may be empty): each is
// one address family's group, bound to one port with SO_REUSEPORT, the
// handshake socket first and then the loops' (loops+1 sockets). It needs
// CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN; the error says what
// failed, and the sockets are then left as they were (the kernel's hash
// spreads datagrams over all of them).
func NewWireGuard(loops int, v4, v6 []syscall.RawConn) (*WireGuard, error) {
	if loops < 1 || loops > MaxLoops {
		return nil, fmt.Errorf("steer: %d loops: want 1 to %d", loops, MaxLoops)
	}
	for _, g := range [][]syscall.RawConn{v4, v6} {
		if len(g) != 0 && len(g) != loops+1 {
			return nil, fmt.Errorf("steer: a group of %d sockets for %d loops: want the handshake socket and one per loop", len(g), loops)
		}
	}
	spec, err := loadWireguard()
	if err != nil {
		return nil, fmt.Errorf("steer: %w", err)
	}
	if err := spec.Variables["loops"].Set(uint32(loops)); err != nil {
		return nil, fmt.Errorf("steer: set loops: %w", err)
	}
	w := &WireGuard{loops: loops}
	if err := spec.LoadAndAssign(&w.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("steer: the kernel's verifier refused the WireGuard program: %+v", ve)
		}
		return nil, fmt.Errorf("steer: load the WireGuard program (needs root or CAP_BPF and CAP_NET_ADMIN): %w", err)
	}
	for fam, g := range [][]syscall.RawConn{v4, v6} {
		if err := w.attach(g, uint32(fam*slots)); err != nil {
			w.objs.Close()
			return nil, err
		}
	}
	return w, nil
}

// attach puts the sockets of group g in the map from key base on, then
// attaches the program to the group.
func (w *WireGuard) attach(g []syscall.RawConn, base uint32) error {
	for i, rc := range g {
		var uerr error
		if err := rc.Control(func(fd uintptr) {
			uerr = w.objs.Sockets.Put(base+uint32(i), uint64(fd))
		}); err != nil {
			return fmt.Errorf("steer: %w", err)
		}
		if uerr != nil {
			return fmt.Errorf("steer: socket %d into the map: %w", i, uerr)
		}
	}
	if len(g) == 0 {
		return nil
	}
	var serr error
	if err := g[0].Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, w.objs.SteerWireguard.FD())
	}); err != nil {
		return fmt.Errorf("steer: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("steer: attach the WireGuard program to the socket group (SO_ATTACH_REUSEPORT_EBPF): %w", serr)
	}
	return nil
}

// Assign steers transport messages to receiver index i to loop slot
// (1 to loops). The map holds 262,144 indexes; past that the hash picks
// the loop of a new index.
func (w *WireGuard) Assign(i uint32, slot int) error {
	if slot < 1 || slot > w.loops {
		return fmt.Errorf("steer: slot %d: want 1 to %d", slot, w.loops)
	}
	if !w.guard.Use() {
		return fmt.Errorf("steer: assign index %#x: %w", i, os.ErrClosed)
	}
	defer w.guard.Done()
	if err := w.objs.Sessions.Put(i, uint32(slot)); err != nil {
		return fmt.Errorf("steer: assign index %#x: %w", i, err)
	}
	return nil
}

// Forget stops steering receiver index i.
func (w *WireGuard) Forget(i uint32) {
	if !w.guard.Use() {
		return
	}
	defer w.guard.Done()
	_ = w.objs.Sessions.Delete(i)
}

// Slot returns the loop slot index i is steered to, as the map has it.
func (w *WireGuard) Slot(i uint32) (int, bool) {
	if !w.guard.Use() {
		return 0, false
	}
	defer w.guard.Done()
	var s uint32
	if w.objs.Sessions.Lookup(i, &s) != nil {
		return 0, false
	}
	return int(s), true
}

// Steered returns the datagrams the program put on each socket of a
// family (v6 false: IPv4), by slot (0: the handshake socket), summed over
// the CPUs, and those it could not put on the socket it chose (the
// kernel's hash placed them).
func (w *WireGuard) Steered(v6 bool) (bySlot []uint64, unsteered uint64, err error) {
	if !w.guard.Use() {
		return nil, 0, fmt.Errorf("steer: read the counters: %w", os.ErrClosed)
	}
	defer w.guard.Done()
	base := 0
	if v6 {
		base = slots
	}
	read := func(k int) (uint64, error) {
		var per []uint64
		if err := w.objs.Steered.Lookup(uint32(k), &per); err != nil {
			return 0, fmt.Errorf("steer: read the counters: %w", err)
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		return n, nil
	}
	bySlot = make([]uint64, w.loops+1)
	for s := range bySlot {
		if bySlot[s], err = read(base + s); err != nil {
			return nil, 0, err
		}
	}
	unsteered, err = read(2 * slots)
	return bySlot, unsteered, err
}

// Close unloads the program. The sockets keep it until they close (or
// are detached); a device closes its sockets first.
func (w *WireGuard) Close() error { return w.guard.Close(w.objs.Close) }
