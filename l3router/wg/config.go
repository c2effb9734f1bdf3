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
