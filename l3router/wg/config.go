// Package wg is the edge's own WireGuard data path: a WireGuard device (the
// protocol of wireguard.com, interoperable with every WireGuard
// implementation) built for one job, forwarding between peers through an
// [l3router.Router].
//
// A general device (wireguard-go's) moves each packet through a pipeline:
// the receive goroutine splits a GRO batch into buffers, a worker decrypts,
// the peer's goroutine writes to the TUN, the TUN reader reads it back, a
// worker encrypts, the peer's goroutine coalesces the batch for GSO and
// sends. Forwarding between two peers, this device does all of that in one
// place and in place: a loop reads a batch of datagrams (recvmmsg with UDP
// GRO, up to 64 KiB each), and for each message decrypts it in the receive
// buffer, asks the router where it goes (l3router.Router.Route), encrypts
// it in the same bytes for the destination peer (a transport header is as
// long as the one it replaces, the padding is kept) and queues those bytes
// for sendmmsg with UDP GSO. The segments of one received super-datagram
// that go to one peer leave as one GSO message pointing into the receive
// buffer. No packet is copied and nothing is allocated per packet.
//
// Each address family has one socket per loop, all on the same port
// (SO_REUSEPORT): the kernel spreads peers over the loops by their
// address, so the device uses as many cores as it has loops (Config.Loops,
// GOMAXPROCS by default) while a peer's packets stay in order on one loop.
// The sockets listen on every address, or on one (Config.ListenAddr). UDP
// GRO is used from kernel 5.12 on and UDP GSO where the kernel has
// UDP_SEGMENT, as wireguard-go decides; elsewhere datagrams go one by one.
//
// Replies leave from the address the peer wrote to (the sticky source, as
// in wireguard-go and kernel WireGuard): each datagram comes with its
// local address and interface (IP_PKTINFO, IPV6_PKTINFO), the peer's
// endpoint keeps them with its address, and every message to the peer
// (data, handshake, cookie reply) carries them back in the same control
// message. On a host with several addresses a peer behind NAT thus gets
// its answers from the address it wrote to, which its NAT lets in; and an
// IPv6 link-local peer is reached on its interface. A remembered source
// that has left the host (the send fails for it) is dropped: the message
// goes again without it, from the routing table's source.
//
// The connector runs the same device in TUN mode (Config.TUN): one peer,
// the edge; a message from it is decrypted straight into a buffer of the
// TUN's write batch (whose virtio-net GRO coalesces TCP segments before
// the kernel sees them), and packets read from the TUN (super-segments
// split by its GSO) are encrypted in place and sent with UDP GSO. Allowed
// IPs are checked both ways, as wireguard-go's cryptokey routing does.
// Its peer may be several edges sharing one key, at one endpoint each
// (Peer.SetEndpoints): a path per edge, each with its own sessions, and
// replies to a client through the edge its packets came through
// (paths.go).
//
// Handshakes (Noise IK, noise.go) are handled on the loop that receives
// them, within a budget for the whole device ([HandshakeLimits]); under
// load the device asks for cookies and limits each proven source, an IPv4
// address or an IPv6 /64, in a capped table (cookie.go; see
// [HandshakeStats]), and it honours the cookie replies of its peers.
// Timers (retransmission of initiations, keepalives, rekeying, expiry) run
// on one housekeeping goroutine. Packets for a peer without a session wait
// for its handshake, bounded per peer, in time and for the whole device
// (stage.go; see [StagingStats]).
//
// Each session's replay window (replay.go) is wireguard-go's, 8,128
// counters, on the edge, and 65,472 on a connector, whose one peer, the
// edge, sends from all its loops with one counter per session.
//
// As wireguard-go does, the device zeroes a handshake's secrets when it
// completes, gives up or its peer is removed, and a session's keys once it
// is dropped (noise.go says how far Go lets it).
//
// The files, as wireguard-go splits its device: receive.go (the loops),
// send.go (sealing, staging), handshake.go (the handshake as the device
// runs it) over noise.go (the Noise messages) and cookie.go with mac.go
// (the handshake budget, cookies and MACs), tun.go (a connector's TUN),
// paths.go (a connector's edges), timers.go, replay.go, stage.go,
// constants.go. The device reaches the network through bind.go's seam
// (wireguard-go's conn.Bind, for this device): io_linux.go's sockets, or
// in tests a network in memory.
package wg

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// Config configures a Device.
type Config struct {
	PrivateKey l3config.Key
	// ListenPort is the UDP port; 0 picks a free one.
	ListenPort int
	// ListenAddr, if set and not unspecified, is the one address the
	// device listens on (its family only) instead of every address.
	ListenAddr netip.Addr
	// Router forwards the decrypted packets. Each peer is attached to it
	// under its name (Router.Attach), by AddPeer.
	Router *l3router.Router
	// TUN, instead of a router, makes a device with one peer (a
	// connector's, whose peer is the edge): packets from the peer whose
	// source is in its allowed IPs are written to the TUN, packets read
	// from it whose destination is in them go to the peer. The device
	// drains the TUN's events and closes it on Close.
	TUN tun.Device
	// MTU is the largest inner packet (l3router.DefaultMTU if 0).
	MTU int
	// Loops is the number of receive loops per address family (and of
	// sockets sharing the port); GOMAXPROCS if 0.
	Loops int
	// Steer puts an eBPF program (dataplane/steer) over each family's
	// sockets, and one more socket, the handshake socket, with its own
	// loop: handshake messages (and garbage) go to it, so a flood of them
	// queues there and never in front of transport packets, and a transport
	// message goes to the loop that owns its receiver index, so a peer
	// stays on its loop when its NAT rebinds its port. Peers are spread
	// over the loops as they make sessions, the fewest on each. Where the
	// program cannot load (no eBPF, no CAP_BPF), the device says so once
	// and the kernel's hash of the 4-tuple spreads the datagrams, as
	// without Steer.
	Steer bool
	// MaxStagedBytes bounds the packets held, all peers together, for
	// peers without a session while their handshake is under way
	// (DefaultMaxStagedBytes if 0; see StagingStats).
	MaxStagedBytes int
	// Logger receives peers' handshake failures at debug level.
	Logger *slog.Logger
	// Handshakes bounds the handshake work strangers can make the device
	// do; a zero field is its default.
	Handshakes HandshakeLimits
	// OnHandshake, if set, is called with the peer's address after each
	// handshake the device completes (as initiator or responder), on the
	// goroutine that completed it: the edge proves the source to its XDP
	// pre-filter. It must not block.
	OnHandshake func(netip.Addr)
}

// HandshakeLimits bound the handshake messages (initiations and responses
// with a valid mac1: each costs the device a Diffie-Hellman or more) the
// device processes.
//
// Every such message takes a token of the device's budget, PerSecond a
// second with a burst of as many. While more than half of it is left, a
// message is processed if it finds a token. Once less than half is left,
// the device is under load, and stays so until a second after the last
// message that found less than half (as the kernel's and wireguard-go's
// devices hold it): it answers a message without a valid mac2 with a
// cookie reply instead of processing it, and processes one with a valid
// mac2 (its source proved its address with our cookie) within the
// source's limit, PerSourcePerSecond with a burst of PerSourceBurst per
// IPv4 address or IPv6 /64, kept in a table of at most MaxSources sources.
// Messages answered with a cookie take a token too (if one is left), so a
// flood that never answers cookies keeps the device under load instead of
// having its messages processed whenever the budget has refilled.
type HandshakeLimits struct {
	PerSecond          int // DefaultHandshakesPerSecond
	PerSourcePerSecond int // DefaultHandshakesPerSourcePerSecond
	PerSourceBurst     int // DefaultHandshakesPerSourceBurst
	MaxSources         int // DefaultHandshakeSources
}

// withDefaults returns l with its zero fields set to the defaults, or an
// error naming a negative field.
func (l HandshakeLimits) withDefaults() (HandshakeLimits, error) {
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"PerSecond", &l.PerSecond, DefaultHandshakesPerSecond},
		{"PerSourcePerSecond", &l.PerSourcePerSecond, DefaultHandshakesPerSourcePerSecond},
		{"PerSourceBurst", &l.PerSourceBurst, DefaultHandshakesPerSourceBurst},
		{"MaxSources", &l.MaxSources, DefaultHandshakeSources},
	} {
		if *f.v < 0 {
			return l, fmt.Errorf("wg: handshake limits: %s: %d is negative", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return l, nil
}

// PeerStats is what the device knows of a peer.
type PeerStats struct {
	LastHandshake    time.Time // zero if none yet
	Endpoint         netip.AddrPort
	Handshakes       uint64 // completed handshakes, as initiator or responder
	RxBytes, TxBytes uint64 // encrypted bytes received and sent
	Dropped          uint64 // TUN device: packets from the peer dropped (source not allowed, malformed)
	// Loop is the receive loop (1 on) the steering program keeps the
	// peer's sessions on; 0 if none (steering off, or no session yet).
	Loop int
}

// SteeringStats is what the steering program did (Device.Steering).
type SteeringStats struct {
	// On reports whether the program steers the device's sockets.
	On bool
	// V4 and V6 are the datagrams steered to each socket of a family, by
	// slot: 0 is the handshake socket, 1 on the loops'.
	V4, V6 []uint64
	// Unsteered counts datagrams whose chosen socket the kernel could not
	// take (its hash placed them).
	Unsteered uint64
	// Peers is the number of peers on each loop slot (0 unused).
	Peers []int
}

// HandshakeStats counts the device's handshake messages: what became of
// those received (initiations and responses with a valid mac1; see
// [HandshakeLimits]), the datagrams of each handshake type, the messages
// sent, the handshakes completed and the load.
type HandshakeStats struct {
	// Processed messages went on to the Noise handshake (whether or not
	// it then succeeded) within the device's budget, while not under
	// load.
	Processed uint64
	// Proven messages went on to the Noise handshake under load: with a
	// valid mac2 (the source got our cookie) and within the source's
	// limit.
	Proven uint64
	// OverBudget were refused for the device's budget
	// (HandshakeLimits.PerSecond), while not under load.
	OverBudget uint64
	// Cookies were answered with a cookie reply (under load, no valid
	// mac2).
	Cookies uint64
	// SourceLimited were refused for their source's limit (under load:
	// HandshakeLimits.PerSourcePerSecond per IPv4 address or IPv6 /64).
	SourceLimited uint64
	// TableFull were refused because the table of source limits was full
	// (HandshakeLimits.MaxSources) and theirs was a new source.
	TableFull uint64
	// Sources is the number of sources in the table now.
	Sources int

	// Datagrams of each handshake type received, whatever became of them
	// (those of the wrong size or with a bad mac1 are dropped before the
	// counts above).
	InitiationsReceived, ResponsesReceived, CookieRepliesReceived uint64
	// Messages sent: initiations, and responses to initiations (the cookie
	// replies are Cookies).
	InitiationsSent, ResponsesSent uint64
	// Completed is the number of handshakes completed, as initiator or
	// responder: the sum of the peers' PeerStats.Handshakes, removed
	// peers' included.
	Completed uint64
	// UnderLoad reports whether the device is under load now;
	// UnderLoadEntered counts the times it went under load.
	UnderLoad        bool
	UnderLoadEntered uint64

	// Rejected counts the messages (Processed or Proven) that the
	// handshake then refused, by reason: "invalid" (failed
	// authentication, a low-order public key), "unknown_peer" (an
	// initiation from a key that is no peer's), "replay" (an initiation
	// whose timestamp is not newer than the last accepted), "flood" (an
	// initiation within 1/50 s of the last accepted), "stray_response" (a
	// response to no initiation in progress).
	Rejected map[string]uint64
}

// DatagramDrop is a reason why the device dropped a datagram before it
// reached a peer's session or the handshake (see Device.Drops).
type DatagramDrop int

// The reasons for dropping a datagram.
const (
	// DropMalformed: shorter than a message, or of no message type.
	DropMalformed DatagramDrop = iota
	// DropNoSession: a transport message for an unknown receiver index
	// or an expired session.
	DropNoSession
	// DropDecrypt: a transport message that failed authentication.
	DropDecrypt
	// DropReplay: a transport message whose counter was received already
	// or is behind the replay window.
	DropReplay
	// NumDatagramDrops is the number of reasons.
	NumDatagramDrops
)

var datagramDropNames = [NumDatagramDrops]string{"malformed", "no_session", "decrypt", "replay"}

// String returns the reason's metric label.
func (r DatagramDrop) String() string {
	if r >= 0 && r < NumDatagramDrops {
		return datagramDropNames[r]
	}
	return "unknown"
}
