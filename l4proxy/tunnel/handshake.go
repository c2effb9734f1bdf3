package tunnel

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Defaults of the handshake limits of [Config].
//
// A pending handshake costs the edge about 75 KiB on QUIC (quic-go's
// connection state, measured with both ends in one process and halved)
// and 12 KiB on HTTP/2 (a goroutine, the TLS state): 1000 of each stay
// under 100 MiB. A connector keeps 4 connections up by default, so 32 per
// source lets 8 connectors behind one address (a site's NAT) reconnect at
// once; a reconnect storm larger than MaxHandshakes is served as the
// connectors retry with their backoff.
const (
	DefaultMaxHandshakes          = 1000
	DefaultMaxHandshakesPerSource = 32
	DefaultQUICRetryAbove         = 100
)

// Reasons the listeners report to [Config.OnAuthFailure] for attempts that
// ended before a verdict. They are never sent on the wire.
const (
	// AuthTLSFailed: the TLS handshake failed (a malformed or refused
	// ClientHello, another ALPN, the peer went away).
	AuthTLSFailed AuthReason = 0x80
	// AuthHandshakeTimeout: TLS or the proof did not complete within
	// [Config.HandshakeTimeout].
	AuthHandshakeTimeout AuthReason = 0x81
)

// errHandshakeLimit refuses a QUIC connection attempt in ConnContext.
var errHandshakeLimit = errors.New("handshake limit reached")

// SourceOf is the source a per-source limit counts by: the IPv4 address
// (IPv4-mapped IPv6 addresses are unmapped), or the /64 of an IPv6 address,
// what one host or site usually holds. Zones are dropped.
func SourceOf(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// SourceString prints a source as what it stands for: an IPv4 address, or
// an IPv6 /64 as a prefix.
func SourceString(a netip.Addr) string {
	if a.Is6() {
		return netip.PrefixFrom(a, 64).String()
	}
	return a.String()
}

// SourceOfAddr is SourceOf for a connection's remote address: a
// *net.UDPAddr, a *net.TCPAddr or one whose String is an address and port
// (an invalid source, one for all, where there is none: a unix socket).
func SourceOfAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return SourceOf(a.AddrPort().Addr())
	case *net.TCPAddr:
		return SourceOf(a.AddrPort().Addr())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return SourceOf(ap.Addr())
}

// handshakeGate counts the pending handshakes of a listener, in total and
// per source, against MaxHandshakes and MaxHandshakesPerSource. A source
// has two counts: all its handshakes, and those from a validated address
// (TCP, or QUIC after a Retry). An attempt from an unvalidated address is
// checked against the first, a validated one against the second: spoofed
// QUIC Initials can fill the first, never the second.
type handshakeGate struct {
	max, perSource int

	mu      sync.Mutex
	pending int
	sources map[netip.Addr]sourceCount
}

type sourceCount struct{ all, validated int }

func newHandshakeGate(cfg *Config) *handshakeGate {
	return &handshakeGate{max: cfg.MaxHandshakes, perSource: cfg.MaxHandshakesPerSource, sources: make(map[netip.Addr]sourceCount)}
}

// acquire takes a slot for a handshake from src. If it cannot, it reports
// which limit refused it.
func (g *handshakeGate) acquire(src netip.Addr, validated bool) (ok, perSource bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending >= g.max {
		return false, false
	}
	sc := g.sources[src]
	n := sc.all
	if validated {
		n = sc.validated
	}
	if n >= g.perSource {
		return false, true
	}
	g.pending++
	sc.all++
	if validated {
		sc.validated++
	}
	g.sources[src] = sc
	return true, false
}

// release gives back a slot taken by acquire with the same arguments.
func (g *handshakeGate) release(src netip.Addr, validated bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending--
	sc := g.sources[src]
	sc.all--
	if validated {
		sc.validated--
	}
	if sc.all <= 0 {
		delete(g.sources, src)
	} else {
		g.sources[src] = sc
	}
}

// needsRetry reports whether a QUIC attempt from src, not yet validated,
// must first prove its address: when src is at its limit (perSource), or
// when more than retryAbove handshakes are pending.
func (g *handshakeGate) needsRetry(src netip.Addr, retryAbove int) (retry, perSource bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sources[src].all >= g.perSource {
		return true, true
	}
	return g.pending > retryAbove, false
}

// counts returns the pending handshakes, in total and of src (for tests).
func (g *handshakeGate) counts(src netip.Addr) (total, fromSrc int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending, g.sources[src].all
}

// handshakeSlot is one QUIC attempt's slot: taken in ConnContext, before
// quic-go does any cryptography, and given back once: when the attempt got
// its verdict, or when its connection ended before authentication started
// (a TLS failure or a timeout, reported as such).
type handshakeSlot struct {
	l         *QUICListener
	src       netip.Addr
	validated bool
	remote    net.Addr

	mu    sync.Mutex
	state int         // slotHandshake, slotAuth, slotDone
	stop  func() bool // unregisters the context callback
	timer *time.Timer // gives the slot back if nothing else did
}

const (
	slotHandshake = iota // quic-go runs the TLS handshake
	slotAuth             // authenticate reads the proof
	slotDone             // given back
)

type slotKey struct{}

// startAuth hands the slot to authenticate. It reports false if the
// connection already ended (the slot is given back and the failure counted).
func (s *handshakeSlot) startAuth() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != slotHandshake {
		return false
	}
	s.state = slotAuth
	return true
}

// done gives the slot back after the verdict.
func (s *handshakeSlot) done() { s.finish(slotAuth) }

// ended runs when the connection ended (cause) or the fallback timer fired
// (cause nil) during the TLS handshake.
func (s *handshakeSlot) ended(cause error) {
	if !s.finish(slotHandshake) {
		return
	}
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	s.l.cfg.authFailed(handshakeFailure(cause), s.remote)
}

// finish gives the slot back if it is in state from, and reports whether
// it did.
func (s *handshakeSlot) finish(from int) bool {
	s.mu.Lock()
	if s.state != from {
		s.mu.Unlock()
		return false
	}
	s.state = slotDone
	stop, timer := s.stop, s.timer
	s.mu.Unlock()
	stop()
	timer.Stop()
	s.l.gate.release(s.src, s.validated)
	return true
}

// handshakeFailure classifies why a connection ended before authentication.
func handshakeFailure(err error) AuthReason {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return AuthHandshakeTimeout
	}
	return AuthTLSFailed
}

// failureBeforeVerdict is the reason to count for an attempt whose proof
// could not be read (reason AuthMalformed, err the read error) or was
// refused: a read that failed because HandshakeTimeout passed (ctx's
// deadline) is a timeout.
func failureBeforeVerdict(ctx context.Context, err error, reason AuthReason) AuthReason {
	if reason != AuthMalformed || err == nil {
		return reason
	}
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return AuthHandshakeTimeout
	}
	return reason
}

// closeNow closes a TCP connection with a reset: no FIN exchange, no
// TIME_WAIT left on this side.
func closeNow(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (c *Config) authFailed(r AuthReason, remote net.Addr) {
	if c.OnAuthFailure != nil {
		c.OnAuthFailure(r, remote)
	}
}

func (c *Config) handshakeRefused(perSource bool, remote net.Addr) {
	if c.OnHandshakeRefused != nil {
		c.OnHandshakeRefused(perSource, remote)
	}
}
