package steer

import (
	"encoding/binary"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// MaxLoops is the most loop sockets a WireGuard group may have per address
// family (wireguard.c's MAX_LOOPS).
const MaxLoops = 64

// slots is the number of sockets of one family in the program's map: the
// handshake socket (slot 0) and the loops' (wireguard.c's SLOTS).
const slots = MaxLoops + 1

// HashSlot is what [WireGuardSlot] returns for a datagram it leaves to the
// kernel's hash of the 4-tuple (which picks one of the loop sockets).
const HashSlot = -1

// WireGuardSlot is the WireGuard program's decision in Go (wireguard.c's
// wg_slot, which the tests hold to it): the slot of the socket that gets a
// datagram with UDP payload p, in a group of loops loop sockets. Slot 0 is
// the handshake socket: it gets handshake messages (initiation, response,
// cookie reply) and what the pre-filter's rules drop
// ([packet.ClassifyWireGuard]). A transport message goes to the slot
// session gives its receiver index, if it is a loop's; otherwise the hash
// picks ([HashSlot]).
func WireGuardSlot(p []byte, loops int, session func(index uint32) (slot int, ok bool)) int {
	if _, err := packet.ClassifyWireGuard(p); err != nil {
		return 0
	}
	if p[0] != 4 {
		return 0
	}
	if s, ok := session(binary.LittleEndian.Uint32(p[4:8])); ok && s >= 1 && s <= loops {
		return s
	}
	return HashSlot
}
