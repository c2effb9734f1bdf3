package wg

// The package's constants, in one place: the protocol's, the limits of
// the device and the sizes of its batches. (The layouts of the kernel's
// control messages stay in io_linux.go and of BLAKE2s's state in mac.go,
// beside the code that reads them.)

import (
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Messages and the protocol (the WireGuard paper, section 6.1).

// Message types and sizes.
const (
	typeInitiation = 1
	typeResponse   = 2
	typeCookie     = 3
	typeTransport  = 4

	sizeInitiation   = 148
	sizeResponse     = 92
	sizeCookie       = 64
	sizeTransportHdr = 16 // type, receiver index, counter
	sizeTag          = chacha20poly1305.Overhead
	// sizeKeepalive is the size of a keepalive: header and tag.
	sizeKeepalive = sizeTransportHdr + sizeTag
)

// Protocol constants (the paper's section 6.1).
const (
	rekeyAfterMessages  = 1 << 60
	rejectAfterMessages = ^uint64(0) - (1 << 13)
	cookieRefreshTime   = 120 * time.Second
	// An initiation closer than this to the last one accepted from its
	// peer is a flood (wireguard-go's HandshakeInitationRate, 50 a second).
	initiationMinGap = time.Second / 50
)

// The protocol's timers; variables only so that tests can run sessions
// through their whole life in seconds.
var (
	rekeyAfterTime   = 120 * time.Second
	rejectAfterTime  = 180 * time.Second
	rekeyAttemptTime = 90 * time.Second
	rekeyTimeout     = 5 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// Handshake states.
const (
	hsNone = iota
	hsInitSent
)

// The device's handshake budget and timers.

// Defaults of HandshakeLimits. The per-source limit is kernel
// WireGuard's (20 packets a second, a burst of 5); a table of 16,384
// sources takes under 1 MiB.
const (
	DefaultHandshakesPerSecond          = 2000
	DefaultHandshakesPerSourcePerSecond = 20
	DefaultHandshakesPerSourceBurst     = 5
	DefaultHandshakeSources             = 1 << 14
)

const (
	// underLoadAfter is how long the device stays under load after the
	// last message that found its budget more than half spent.
	underLoadAfter = time.Second
	// limitLogEvery spaces the warnings about refused sources.
	limitLogEvery = 10 * time.Second
)

const (
	tickEvery = 100 * time.Millisecond
)

// Replay windows and staging.

const (
	// replayBlocksRouter is the window of a router device (the edge),
	// wireguard-go's and the kernel's: 128 blocks, 8,128 counters, 1 KiB
	// per session. Its peers are stock clients and connectors, each
	// sending from one goroutine in order.
	replayBlocksRouter = 128
	// replayBlocksTUN is the window of a TUN device (a connector), whose
	// one peer is the edge sending from all its loops: 1,024 blocks,
	// 65,472 counters (16 loops' full sender batches, or about 90
	// loops' batches of full-sized packets), 8 KiB per session, of which
	// a connector has at most three.
	replayBlocksTUN = 1024
)

const (
	// maxStaged is the most packets held for one peer.
	maxStaged = 128
	// DefaultMaxStagedBytes is the default budget of packets held for
	// peers without a session, device-wide: 16 MiB, about 11,000
	// full-sized packets.
	DefaultMaxStagedBytes = 16 << 20
	// stagedOverhead is what a staged packet costs besides its bytes (its
	// slot in the peer's queue, the rounding of its allocation), counted
	// against the budget, so that a flood of small packets is bounded
	// too.
	stagedOverhead = 64
)

// Batches and buffers.

// RecvBatch is how many datagrams one receive takes (recvmmsg), each a
// GRO super-datagram of up to 64 KiB.
const RecvBatch = recvBatch

// Batch sizes of the socket layer.
const (
	recvBatch   = 16      // datagrams per recvmmsg, each up to recvBufSize with GRO
	recvBufSize = 1 << 16 // a GRO super-datagram is at most 64 KiB
	sendBatch   = 64      // messages per sendmmsg
	maxIovs     = 1024    // iovecs of one sendmmsg, all messages together
	maxSegments = 64      // segments of one GSO message (UDP_MAX_SEGMENTS is 64 or more)
	maxGSOBytes = 65000   // payload of one GSO message (under the 64 KiB datagram limit)
)

const (
	// tunOffset is where packets start in TUN buffers: room for a
	// transport header (and the TUN's virtio-net header before it).
	tunOffset   = sizeTransportHdr
	tunBatchLen = 128
	tunBufSize  = tunOffset + 1<<16
)

// arenaSize is the room for the ICMP errors a receive loop sends in one
// batch.
const arenaSize = 64 << 10
