// Package delay is a relay for tests that holds every TCP chunk and every UDP
// datagram it forwards for a fixed one-way delay, in each direction, so that
// a test on loopback sees the round-trip time of a long path. The test
// machines' kernel has no netem qdisc; this stands in for it.
//
// A relay listens on one address and forwards to one target: [ListenTCP]
// relays each accepted connection to its own connection to the target,
// [ListenUDP] relays the datagrams of each client address through its own
// socket connected to the target. A round trip through a relay therefore
// takes 2 × Delay more than without it.
//
// Each direction is a FIFO of chunks stamped with the time they are due
// (arrival + Delay), written out by one goroutine that waits until the head
// is due. The delay is the same for every chunk, so due times only grow: a
// chunk never waits longer than its own delay, and a burst leaves as it came
// in. Throughput is bounded by the chunks in flight per direction
// (Options.Slots), not by the delay per chunk. Memory is bounded the same
// way: when a direction holds Slots chunks, TCP stops reading (the sender
// feels back-pressure) and UDP drops the datagram (as a full router queue
// does), counted in [Stats].Dropped.
//
// What is not modelled: the TCP handshake (the relay accepts at once and
// dials the target at once, so a new connection through it costs no round
// trip; its bytes, FIN and reset do), loss, jitter and bandwidth limits.
//
// Only loopback addresses and the test ranges 198.18.0.0/15 and fd00::/8 are
// accepted, for the listening address and for the target.
package delay

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a relay.
type Options struct {
	// Delay is held in each direction. Zero forwards at once.
	Delay time.Duration
	// Slots is how many chunks (TCP reads of up to 16 KiB) or datagrams one
	// direction of one connection or UDP client queues. Default 256. The
	// direction holds at most Slots+2 buffers: the queue, the chunk being
	// written, and (TCP) the read waiting for room.
	Slots int
	// MaxSessions bounds the UDP client addresses relayed at once; the
	// datagrams of further clients are dropped. Default 64. Sessions last
	// until the relay is closed.
	MaxSessions int
}

func (o Options) withDefaults() (Options, error) {
	if o.Delay < 0 {
		return o, fmt.Errorf("delay: Options.Delay is %v: must not be negative", o.Delay)
	}
	if o.Slots < 0 || o.MaxSessions < 0 {
		return o, fmt.Errorf("delay: Options.Slots (%d) and MaxSessions (%d) must not be negative", o.Slots, o.MaxSessions)
	}
	if o.Slots == 0 {
		o.Slots = 256
	}
	if o.MaxSessions == 0 {
		o.MaxSessions = 64
	}
	return o, nil
}

// Stats counts what a relay did, both directions together.
type Stats struct {
	// Forwarded is the number of TCP chunks or UDP datagrams written out.
	Forwarded uint64
	// Bytes is their payload.
	Bytes uint64
	// Dropped counts UDP datagrams not forwarded: the direction's queue was
	// full, the client was over MaxSessions, the datagram was over 65535
	// bytes, or the write failed.
	Dropped uint64
	// MaxLate is the most any chunk was written after its due time: the
	// relay's own scheduling error (and time spent blocked in a write).
	MaxLate time.Duration
}

type stats struct {
	forwarded, bytes, dropped atomic.Uint64
	maxLate                   atomic.Int64
}

func (s *stats) snapshot() Stats {
	return Stats{
		Forwarded: s.forwarded.Load(), Bytes: s.bytes.Load(), Dropped: s.dropped.Load(),
		MaxLate: time.Duration(s.maxLate.Load()),
	}
}

func (s *stats) late(d time.Duration) {
	for {
		cur := s.maxLate.Load()
		if int64(d) <= cur || s.maxLate.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// testPrefixes are the non-loopback ranges a relay may use.
var testPrefixes = []netip.Prefix{
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("fd00::/8"),
}

// checkAddr parses addr ("ip:port") and refuses anything but loopback and
// the test ranges. field names the argument in the error.
func checkAddr(field, addr string, needPort bool) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ap, fmt.Errorf("delay: %s %q: want an IP literal and a port: %v", field, addr, err)
	}
	a := ap.Addr().Unmap()
	ok := a.IsLoopback()
	for _, p := range testPrefixes {
		ok = ok || p.Contains(a)
	}
	if !ok {
		return ap, fmt.Errorf("delay: %s %s: only loopback, 198.18.0.0/15 and fd00::/8 are allowed", field, addr)
	}
	if needPort && ap.Port() == 0 {
		return ap, fmt.Errorf("delay: %s %s: port 0", field, addr)
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

// chunk kinds
const (
	kindData  = iota
	kindFIN   // TCP: the sender half-closed
	kindReset // TCP: the sender's connection failed or was reset
)

// chunk is one read (or one datagram) waiting for its due time. Its buffer
// belongs to the queue from push to the write.
type chunk struct {
	due  time.Time
	bp   *[]byte
	n    int
	kind uint8
}

// line is one direction of a relayed connection or UDP session.
type line struct {
	delay time.Duration
	q     chan chunk // capacity Slots: the bound on what the direction holds
	st    *stats
}

func newLine(o Options, st *stats) *line {
	return &line{delay: o.Delay, q: make(chan chunk, o.Slots), st: st}
}

// push queues c, due Delay from now, waiting for room. It reports false if
// done closed first (the chunk was not queued).
func (l *line) push(c chunk, done <-chan struct{}) bool {
	c.due = time.Now().Add(l.delay)
	select {
	case l.q <- c:
		return true
	case <-done:
		return false
	}
}

// offer queues c, due Delay from now, if there is room.
func (l *line) offer(c chunk) bool {
	c.due = time.Now().Add(l.delay)
	select {
	case l.q <- c:
		return true
	default:
		return false
	}
}

// run hands each chunk to write when it is due, in order, until the queue
// is closed or done is. write owns the chunk's buffer.
func (l *line) run(done <-chan struct{}, write func(chunk)) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-l.q:
			if !ok {
				return
			}
		case <-done:
			return
		}
		if d := time.Until(c.due); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-done:
				t.Stop()
				return
			}
		}
		l.st.late(time.Since(c.due))
		write(c)
	}
}

// Buffer pools: TCP reads go straight into a tcpChunk buffer; a UDP datagram
// is copied into the smallest class that holds it.
const (
	tcpChunk = 16 << 10
	dgSmall  = 2048
	dgLarge  = 65535
)

var (
	tcpPool   = sync.Pool{New: func() any { b := make([]byte, tcpChunk); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, dgSmall); return &b }}
	largePool = sync.Pool{New: func() any { b := make([]byte, dgLarge); return &b }}
)

// getDG returns a pooled buffer of at least n bytes (n <= dgLarge).
func getDG(n int) *[]byte {
	if n <= dgSmall {
		return smallPool.Get().(*[]byte)
	}
	return largePool.Get().(*[]byte)
}

func putDG(bp *[]byte) {
	if len(*bp) == dgSmall {
		smallPool.Put(bp)
	} else {
		largePool.Put(bp)
	}
}

// resetConn closes c so that a TCP peer gets an RST.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
