// Package prefilter is the edge's XDP pre-filter: an eBPF program on the
// edge's public interface that drops UDP datagrams to its WireGuard and
// QUIC ports which cannot be valid, before they cost a socket wake-up, and
// passes everything else untouched.
//
// The rules are the Go classifiers' of dataplane/packet:
//
//   - WireGuard ([packet.ClassifyWireGuard]): a type other than the four
//     defined, reserved bytes that are not zero, a size that cannot match
//     the type (initiation 148, response 92, cookie reply 64, transport at
//     least 32: its padding stops at the sender's MTU, so no multiple of
//     16 can be asked).
//   - QUIC ([packet.ClassifyQUIC]): a packet too short for its header, the
//     fixed bit clear (versions 1 and 2), a connection ID longer than 20
//     bytes (versions 1 and 2); and an Initial in a datagram under 1200
//     bytes (RFC 9000 section 14.1). Version negotiation and unknown
//     versions stay with user space.
//
// Handshake openers that pass (WireGuard initiations, QUIC Initials) are
// then rate-limited ([Limits]): per source, an IPv4 address or an IPv6
// /64, in an LRU map a flood cannot grow; and above a global ceiling only
// sources the edge has proven ([Filter.Prove]) get through.
//
// [Classify] applies the stateless rules in Go; the tests hold the eBPF program
// (prefilter.c, compiled by bpf2go) to it, packet for packet. Each
// verdict is counted by [Reason] in a per-CPU map.
package prefilter

import (
	"errors"
	"fmt"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// Reason is why the pre-filter passed or dropped a packet. The values are
// prefilter.c's enum reason.
type Reason uint32

// The reasons. Those from WireGuardTruncated on are drops.
const (
	PassOther Reason = iota // not UDP to one of the ports, or not parsed
	PassWireGuard
	PassQUIC
	WireGuardTruncated
	WireGuardType
	WireGuardReserved
	WireGuardLength
	QUICTruncated
	QUICFixedBit
	QUICConnIDLength
	QUICSmallInitial
	WireGuardSourceRate // an initiation over its source's rate
	WireGuardGlobalRate // an initiation from an unproven source over the ceiling
	QUICSourceRate      // an Initial over its source's rate
	QUICGlobalRate      // an Initial from an unproven source over the ceiling
	NumReasons
)

var reasonNames = [NumReasons]string{
	"pass_other", "pass_wireguard", "pass_quic",
	"wireguard_truncated", "wireguard_type", "wireguard_reserved", "wireguard_length",
	"quic_truncated", "quic_fixed_bit", "quic_conn_id_length", "quic_small_initial",
	"wireguard_source_rate", "wireguard_global_rate", "quic_source_rate", "quic_global_rate",
}

// String returns the reason's metric label.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}

// Drop reports whether the pre-filter drops a packet for r.
func (r Reason) Drop() bool { return r >= WireGuardTruncated && r < NumReasons }

// Port says which of the edge's ports a datagram is for.
type Port int

// The ports.
const (
	WireGuard Port = iota
	QUIC
)

// MinQUICInitial is the least datagram size of a QUIC Initial (RFC 9000
// section 14.1).
const MinQUICInitial = 1200

// Classify is the pre-filter's verdict on the UDP payload p to port, in Go:
// what the eBPF program decides for the same datagram. shortDCIDLen is
// the length of the connection IDs the QUIC endpoint issues (0 to 20).
func Classify(p []byte, port Port, shortDCIDLen int) Reason {
	if port == WireGuard {
		_, err := packet.ClassifyWireGuard(p)
		switch {
		case err == nil:
			return PassWireGuard
		case errors.Is(err, packet.ErrTruncated):
			return WireGuardTruncated
		case errors.Is(err, packet.ErrBadType):
			return WireGuardType
		case errors.Is(err, packet.ErrReservedNonZero):
			return WireGuardReserved
		default:
			return WireGuardLength
		}
	}
	h, err := packet.ClassifyQUIC(p, shortDCIDLen)
	switch {
	case errors.Is(err, packet.ErrTruncated):
		return QUICTruncated
	case errors.Is(err, packet.ErrFixedBit):
		return QUICFixedBit
	case errors.Is(err, packet.ErrBadConnIDLength):
		return QUICConnIDLength
	case err != nil:
		return PassOther
	}
	typ := p[0] >> 4 & 3
	initial := h.Long && (h.Version == packet.QUICVersion1 && typ == 0 || h.Version == packet.QUICVersion2 && typ == 1)
	if initial && len(p) < MinQUICInitial {
		return QUICSmallInitial
	}
	return PassQUIC
}

// Config is what the pre-filter filters: the UDP ports (0: none), the
// length of the QUIC connection IDs the edge issues, and the limits on
// handshake openers.
type Config struct {
	WireGuardPort, QUICPort uint16
	QUICConnIDLen           int
	Limits                  Limits
}

// Limits bound the handshake openers (WireGuard initiations, QUIC
// Initials) that pass the pre-filter, a second; zero is no limit.
type Limits struct {
	// PerSource and PerSourceBurst: from one IPv4 address or IPv6 /64.
	PerSource, PerSourceBurst int
	// Unproven and UnprovenBurst: from all sources the edge has not
	// proven, together.
	Unproven, UnprovenBurst int
}

// gcra returns the GCRA interval and burst allowance in nanoseconds of a
// rate a second with burst (at least 1).
func gcra(rate, burst int) (interval, allowance uint64) {
	if rate <= 0 {
		return 0, 0
	}
	interval = uint64(1e9 / rate)
	return interval, uint64(max(burst, 1)-1) * interval
}

func (c Config) validate() error {
	if c.QUICConnIDLen < 0 || c.QUICConnIDLen > packet.MaxConnIDLen {
		return fmt.Errorf("prefilter: QUIC connection ID length %d: want 0 to %d", c.QUICConnIDLen, packet.MaxConnIDLen)
	}
	l := c.Limits
	if l.PerSource < 0 || l.PerSourceBurst < 0 || l.Unproven < 0 || l.UnprovenBurst < 0 || l.PerSource > 1e9 || l.Unproven > 1e9 {
		return fmt.Errorf("prefilter: limits %+v: want rates from 0 to 1e9 a second and bursts of 0 or more", l)
	}
	if c.WireGuardPort != 0 && c.WireGuardPort == c.QUICPort {
		return fmt.Errorf("prefilter: WireGuard and QUIC on one port (%d)", c.QUICPort)
	}
	return nil
}
