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
//
// The connector runs the same device in TUN mode (Config.TUN): one peer,
// the edge; a message from it is decrypted straight into a buffer of the
// TUN's write batch (whose virtio-net GRO coalesces TCP segments before
// the kernel sees them), and packets read from the TUN (super-segments
// split by its GSO) are encrypted in place and sent with UDP GSO. Allowed
// IPs are checked both ways, as wireguard-go's cryptokey routing does.
//
// Handshakes (Noise IK, noise.go) are handled on the loop that receives
// them, limited to handshakesPerSecond for the whole device; under load the
// device asks for cookies and limits each proven source, an IPv4 address
// or an IPv6 /64, in a capped table (cookie.go; see [HandshakeStats]), and
// it honours the cookie replies of its peers. Timers (retransmission of
// initiations, keepalives, rekeying, expiry) run on one housekeeping
// goroutine. As wireguard-go does, the device zeroes a handshake's secrets
// when it completes, gives up or its peer is removed, and a session's keys
// once it is dropped (noise.go says how far Go lets it).
package wg

import (
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
	// ListenPort is the UDP port on every address; 0 picks a free one.
	ListenPort int
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
	// Logger receives peers' handshake failures at debug level.
	Logger *slog.Logger
}

// PeerStats is what the device knows of a peer.
type PeerStats struct {
	LastHandshake    time.Time // zero if none yet
	Endpoint         netip.AddrPort
	Handshakes       uint64 // completed handshakes, as initiator or responder
	RxBytes, TxBytes uint64 // encrypted bytes received and sent
	Dropped          uint64 // TUN device: packets from the peer dropped (source not allowed, malformed)
}

// HandshakeStats counts what became of the handshake messages (initiations
// and responses with a valid mac1) the device received.
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
	// (handshakesPerSecond), while not under load.
	OverBudget uint64
	// Cookies were answered with a cookie reply (under load, no valid
	// mac2).
	Cookies uint64
	// SourceLimited were refused for their source's limit (under load:
	// perAddrPerSecond per IPv4 address or IPv6 /64).
	SourceLimited uint64
	// TableFull were refused because the table of source limits was full
	// (maxAddrLimits) and theirs was a new source.
	TableFull uint64
	// Sources is the number of sources in the table now.
	Sources int
	// Rejected counts the messages (Processed or Proven) that the
	// handshake then refused, by reason: "invalid" (failed
	// authentication, a low-order public key), "unknown_peer" (an
	// initiation from a key that is no peer's), "replay" (an initiation
	// whose timestamp is not newer than the last accepted), "flood" (an
	// initiation within 1/50 s of the last accepted), "stray_response" (a
	// response to no initiation in progress).
	Rejected map[string]uint64
}
