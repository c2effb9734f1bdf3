package testnet

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// FloodKind is a shape of datagram in a [UDPFlood]: the garbage and the
// handshake openers an edge's UDP ports get from the Internet.
type FloodKind int

// The kinds. The first three are garbage that the edge's XDP pre-filter
// drops for their shape; the last two pass its stateless rules and meet
// its rate limits.
const (
	// FloodRandom is random bytes, 1 to 1400 of them.
	FloodRandom FloodKind = iota
	// FloodTruncatedWG is a WireGuard message of a valid type (1 to 4,
	// reserved bytes zero) and a length that type never has.
	FloodTruncatedWG
	// FloodShortInitial is a QUIC version 1 Initial (long header, type 0)
	// in a datagram under 1200 bytes.
	FloodShortInitial
	// FloodInitiation is a WireGuard initiation: 148 bytes, type 1,
	// random content (no valid mac1).
	FloodInitiation
	// FloodInitial is a QUIC version 1 Initial of 1200 to 1350 bytes with
	// random content after a well-formed header.
	FloodInitial
	NumFloodKinds
)

var floodKindNames = [NumFloodKinds]string{"random", "truncated-wireguard", "short-initial", "initiation", "initial"}

func (k FloodKind) String() string {
	if k >= 0 && k < NumFloodKinds {
		return floodKindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// FloodTarget is a destination of a flood and the kinds it gets, in turn.
type FloodTarget struct {
	Dst   netip.AddrPort
	Kinds []FloodKind
}

// FloodOptions shape [Node.StartUDPFlood].
type FloodOptions struct {
	Targets []FloodTarget
	// From4 and From6 are the prefixes the spoofed sources are drawn
	// from, for the IPv4 and IPv6 targets (every datagram a new address
	// and source port). They must lie in the test ranges and hold no
	// address of the test network that could answer.
	From4, From6 netip.Prefix
	// Rate is datagrams a second over all targets (in bursts every
	// millisecond); 0 sends as fast as the senders can.
	Rate int
	// Duration bounds the flood.
	Duration time.Duration
	// Senders is the number of goroutines sending (default 1), each with
	// its own sockets; Rate is shared among them.
	Senders int
	// Batch is how many datagrams one sendmmsg carries (default 64).
	Batch int
}

// UDPFlood is a spoofed-source UDP flood from one node: raw sockets
// (IPPROTO_RAW, the flood writes the IP headers) and sendmmsg batches.
type UDPFlood struct {
	opt     FloodOptions
	sent    [NumFloodKinds]atomic.Int64
	errs    atomic.Int64
	lastErr atomic.Pointer[error]
	elapsed atomic.Int64 // ns, once done
	stop    chan struct{}
	done    chan struct{}
}

// StartUDPFlood starts a flood from node with opt. The sockets are made
// in node's namespace; the sending runs in goroutines until
// opt.Duration has passed or [UDPFlood.Stop].
func (node *Node) StartUDPFlood(opt FloodOptions) (*UDPFlood, error) {
	if len(opt.Targets) == 0 || opt.Duration <= 0 || opt.Rate < 0 {
		return nil, fmt.Errorf("testnet: udp flood: want targets, a duration and a rate of 0 or more")
	}
	if opt.Senders <= 0 {
		opt.Senders = 1
	}
	if opt.Batch <= 0 {
		opt.Batch = 64
	}
	for _, p := range []netip.Prefix{opt.From4, opt.From6} {
		if p.IsValid() && (!Allowed(p.Addr()) || !Allowed(lastAddr(p))) {
			return nil, fmt.Errorf("testnet: udp flood: %s is outside the test ranges", p)
		}
	}
	for _, t := range opt.Targets {
		from := opt.From4
		if t.Dst.Addr().Is6() {
			from = opt.From6
		}
		if !Allowed(t.Dst.Addr()) || !from.IsValid() || len(t.Kinds) == 0 {
			return nil, fmt.Errorf("testnet: udp flood: target %v: want a test address, kinds and a source prefix of its family", t.Dst)
		}
	}
	f := &UDPFlood{opt: opt, stop: make(chan struct{}), done: make(chan struct{})}
	socks := make([][]int, opt.Senders)
	err := node.Do(func() error {
		for i := range socks {
			for _, t := range opt.Targets {
				fd, err := rawSocketTo(t.Dst.Addr())
				if err != nil {
					return err
				}
				socks[i] = append(socks[i], fd)
			}
		}
		return nil
	})
	if err != nil {
		for _, s := range socks {
			for _, fd := range s {
				unix.Close(fd)
			}
		}
		return nil, fmt.Errorf("testnet: udp flood: %w", err)
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				for _, fd := range socks[i] {
					unix.Close(fd)
				}
			}()
			rate := opt.Rate / opt.Senders
			if opt.Rate > 0 {
				rate = max(rate, 1)
			}
			f.send(socks[i], rate, start, uint64(i))
		}()
	}
	go func() {
		wg.Wait()
		f.elapsed.Store(int64(time.Since(start)))
		close(f.done)
	}()
	return f, nil
}

// rawSocketTo returns a raw socket that writes its own IP headers,
// connected to dst.
func rawSocketTo(dst netip.Addr) (int, error) {
	var fd int
	var err error
	var sa unix.Sockaddr
	if dst.Is4() {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	} else {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		sa = &unix.SockaddrInet6{Addr: dst.As16()}
	}
	if err != nil {
		return -1, fmt.Errorf("raw socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect raw socket to %v: %w", dst, err)
	}
	return fd, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// floodPayloads are the payloads of a kind a sender cycles through,
// made once: the send loop only changes the addresses and ports.
const floodPayloads = 64

func makeFloodPayload(k FloodKind, r *rand.Rand) []byte {
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
	switch k {
	case FloodTruncatedWG:
		// Any length but the type's own: 4 to 200, not 148/92/64, and
		// for transport under 32.
		typ := byte(1 + r.IntN(4))
		n := 4 + r.IntN(197)
		if typ == 4 {
			n = 4 + r.IntN(28)
		}
		for n == 148 || n == 92 || n == 64 {
			n = 4 + r.IntN(197)
		}
		b := make([]byte, n)
		fill(b)
		b[0], b[1], b[2], b[3] = typ, 0, 0, 0
		return b
	case FloodShortInitial:
		return quicInitial(r, 40+r.IntN(1100))
	case FloodInitial:
		return quicInitial(r, 1200+r.IntN(151))
	case FloodInitiation:
		b := make([]byte, wgInitiationLen)
		fill(b)
		b[0], b[1], b[2], b[3] = 1, 0, 0, 0
		return b
	default: // FloodRandom
		b := make([]byte, 1+r.IntN(1400))
		fill(b)
		return b
	}
}

// quicInitial is a QUIC version 1 Initial's long header (8-byte
// connection IDs, no token, a length) followed by random bytes, n in all.
func quicInitial(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[0] = 0xc0 | byte(r.IntN(4)) // long, fixed, type 0 (Initial), packet number length
	binary.BigEndian.PutUint32(b[1:5], 1)
	b[5] = 8  // DCID length; 6..14 the DCID
	b[14] = 8 // SCID length; 15..23 the SCID
	b[23] = 0 // token length
	rest := n - 26
	b[24], b[25] = 0x40|byte(rest>>8), byte(rest) // length, 2-byte varint
	return b
}

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func (f *UDPFlood) send(socks []int, rate int, start time.Time, seed uint64) {
	opt := f.opt
	r := rand.New(rand.NewPCG(uint64(start.UnixNano()), seed))
	// The payloads of each target's kinds.
	type kindPayloads struct {
		kind FloodKind
		p    [][]byte
	}
	payloads := make([][]kindPayloads, len(opt.Targets))
	for i, t := range opt.Targets {
		for _, k := range t.Kinds {
			kp := kindPayloads{kind: k}
			for range floodPayloads {
				kp.p = append(kp.p, makeFloodPayload(k, r))
			}
			payloads[i] = append(payloads[i], kp)
		}
	}
	batch := opt.Batch
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 40+8+1500)
	}
	iovs := make([]unix.Iovec, batch)
	msgs := make([]mmsghdr, batch)
	kinds := make([]FloodKind, batch)
	for i := range msgs {
		iovs[i].Base = &bufs[i][0]
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.Iovlen = 1
	}
	var tick *time.Ticker
	if rate > 0 {
		tick = time.NewTicker(time.Millisecond)
		defer tick.Stop()
	}
	var seq uint64
	var done int64 // datagrams this sender sent or tried
	for time.Since(start) < opt.Duration {
		budget := batch
		if tick != nil {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			// What the rate allows by now, less what went: a late tick
			// catches up (up to a second's worth).
			due := int64(time.Since(start).Seconds() * float64(rate))
			budget = int(min(due-done, int64(rate)))
			if budget <= 0 {
				continue
			}
			done += int64(budget)
		} else {
			select {
			case <-f.stop:
				return
			default:
			}
		}
		for budget > 0 {
			n := min(budget, batch)
			budget -= n
			// One target per batch (its socket is connected to it).
			ti := int(seq % uint64(len(opt.Targets)))
			t := opt.Targets[ti]
			for i := range n {
				kp := payloads[ti][int((seq/uint64(len(opt.Targets))+uint64(i))%uint64(len(payloads[ti])))]
				p := kp.p[r.IntN(len(kp.p))]
				kinds[i] = kp.kind
				pkt := f.build(bufs[i][:0], t.Dst, p, r)
				iovs[i].SetLen(len(pkt))
			}
			seq++
			sent, err := sendmmsg(socks[ti], msgs[:n])
			for i := range sent {
				f.sent[kinds[i]].Add(1)
			}
			if err != nil && err != unix.ENOBUFS && err != unix.EAGAIN {
				f.errs.Add(1)
				f.lastErr.Store(&err)
			}
		}
	}
}

// build writes the IP and UDP headers and p for dst from a random
// source of the flood's prefix of dst's family.
func (f *UDPFlood) build(b []byte, dst netip.AddrPort, p []byte, r *rand.Rand) []byte {
	sport := uint16(1024 + r.IntN(64512))
	if dst.Addr().Is4() {
		src := randomAddr(f.opt.From4, r)
		b = b[:28]
		clear(b)
		b[0] = 0x45
		b[8] = 64
		b[9] = unix.IPPROTO_UDP
		s, d := src.As4(), dst.Addr().As4()
		copy(b[12:16], s[:])
		copy(b[16:20], d[:])
		// The kernel fills in the total length, ID and IP checksum; the
		// UDP checksum stays 0 (none, allowed in IPv4).
		binary.BigEndian.PutUint16(b[20:], sport)
		binary.BigEndian.PutUint16(b[22:], dst.Port())
		binary.BigEndian.PutUint16(b[24:], uint16(8+len(p)))
		return append(b, p...)
	}
	src := randomAddr(f.opt.From6, r)
	b, _ = packet.AppendIPv6(b, &packet.IPv6Header{NextHeader: packet.ProtoUDP, HopLimit: 64, Src: src, Dst: dst.Addr()}, 8+len(p))
	b, _ = packet.AppendUDP(b, &packet.UDPHeader{SrcPort: sport, DstPort: dst.Port()}, len(p))
	b = append(b, p...)
	_ = packet.PutUDPChecksum(b[40:], packet.PseudoHeaderSum(src, dst.Addr(), packet.ProtoUDP, uint32(8+len(p))))
	return b
}

// randomAddr is a random address of p other than its first.
func randomAddr(p netip.Prefix, r *rand.Rand) netip.Addr {
	base := p.Masked().Addr().AsSlice()
	for {
		b := append([]byte(nil), base...)
		for i := p.Bits(); i < len(b)*8; i++ {
			if r.Uint32()&1 == 1 {
				b[i/8] |= 0x80 >> (i % 8)
			}
		}
		a, _ := netip.AddrFromSlice(b)
		if a != p.Masked().Addr() {
			return a
		}
	}
}

func sendmmsg(fd int, msgs []mmsghdr) (int, error) {
	total := 0
	for total < len(msgs) {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[total])), uintptr(len(msgs)-total), 0, 0, 0)
		if e != 0 {
			if e == unix.EINTR {
				continue
			}
			return total, e
		}
		total += int(n)
		if n == 0 {
			break
		}
	}
	return total, nil
}

// Stop ends the flood early and waits for it; Wait waits for its end.
func (f *UDPFlood) Stop() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

// Wait waits until the flood has run its time.
func (f *UDPFlood) Wait() { <-f.done }

// Done is closed when the flood has ended.
func (f *UDPFlood) Done() <-chan struct{} { return f.done }

// Sent returns the datagrams sent so far of kind k.
func (f *UDPFlood) Sent(k FloodKind) int64 { return f.sent[k].Load() }

// Total returns the datagrams sent so far of every kind.
func (f *UDPFlood) Total() int64 {
	var n int64
	for k := range NumFloodKinds {
		n += f.sent[k].Load()
	}
	return n
}

// Elapsed is how long the flood ran (0 before its end).
func (f *UDPFlood) Elapsed() time.Duration { return time.Duration(f.elapsed.Load()) }

// String reports the counts by kind, the rate and any send errors.
func (f *UDPFlood) String() string {
	var parts []string
	for k := range NumFloodKinds {
		if n := f.sent[k].Load(); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	s := fmt.Sprintf("UDP flood to %d targets: %d datagrams (%s)", len(f.opt.Targets), f.Total(), strings.Join(parts, ", "))
	if el := f.Elapsed(); el > 0 {
		s += fmt.Sprintf(" in %v (%.0f/s)", el.Round(time.Millisecond), float64(f.Total())/el.Seconds())
	}
	if n := f.errs.Load(); n > 0 {
		s += fmt.Sprintf("; %d send errors, last %v", n, *f.lastErr.Load())
	}
	return s
}
