//go:build !linux

package wg

import (
	"errors"
	"time"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// The device needs Linux (recvmmsg and sendmmsg, UDP GSO and GRO); on other
// systems New fails and the rest builds, so that the binaries do.

var errUnsupported = errors.New("wg: the WireGuard device runs on Linux only")

// Device is a running WireGuard device (Linux only).
type Device struct{}

// Peer is a peer of the device.
type Peer struct{}

// New fails: the device runs on Linux only.
func New(Config) (*Device, error) { return nil, errUnsupported }

// Port returns the UDP port.
func (*Device) Port() int { return 0 }

// AddPeer fails: the device runs on Linux only.
func (*Device) AddPeer(l3router.PeerID, l3config.Key) (*Peer, error) { return nil, errUnsupported }

// RemovePeer does nothing.
func (*Device) RemovePeer(l3config.Key) {}

// HandshakeStats returns nothing.
func (*Device) HandshakeStats() HandshakeStats { return HandshakeStats{} }

// HandshakeLimits returns nothing.
func (*Device) HandshakeLimits() HandshakeLimits { return HandshakeLimits{} }

// Drops returns nothing.
func (*Device) Drops() [NumDatagramDrops]uint64 { return [NumDatagramDrops]uint64{} }

// StagingStats returns nothing.
func (*Device) StagingStats() StagingStats { return StagingStats{} }

// Steering returns nothing: the device runs on Linux only.
func (*Device) Steering() (SteeringStats, error) { return SteeringStats{}, nil }

// Close does nothing.
func (*Device) Close() error { return nil }

// Stats returns nothing.
func (*Peer) Stats() PeerStats { return PeerStats{} }

// LastReceived returns nothing.
func (*Peer) LastReceived() time.Time { return time.Time{} }
