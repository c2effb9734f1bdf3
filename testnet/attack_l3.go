package testnet

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/unix"

	"github.com/onramp-net/onramp/dataplane/packet"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// WireGuard handshake messages as the flood shapes them (see
// wireguard.com/protocol): an initiation is 148 bytes, its mac1 at
// 116:132 and mac2 at 132:148; a cookie reply is 64 bytes.
const (
	wgInitiationLen = 148
	wgCookieLen     = 64
)

// HandshakeFlood is an attacker at an L3 edge's WireGuard port holding an
// IPv6 /64. It sends initiation-shaped messages (random keys, a valid
// mac1: anyone who knows the edge's public key can make one) as raw IPv6
// UDP, each from a new address of the /64, and answers every cookie reply
// the edge sends back to one of them with the same message carrying the
// cookie's mac2, as an attacker that receives on its whole /64 can: the
// answers are what the edge's per-source limit of handshakes under load
// has to hold back.
type HandshakeFlood struct {
	prefix netip.Prefix
	answer bool // answers the cookie replies (see StartSpoofedHandshakeFlood)

	sent, answered, cookies, errs atomic.Int64
	elapsed                       atomic.Int64 // ns, once done
	lastErr                       atomic.Pointer[error]

	stop chan struct{}
	done chan struct{}
}

// floodEntry is a message sent, kept until its cookie reply comes.
type floodEntry struct {
	idx uint32
	src netip.Addr
	msg [wgInitiationLen]byte
}

// StartHandshakeFlood starts the flood from node at edge (the edge's
// WireGuard address and port, IPv6) whose public key is edgeKey: rate
// fresh messages a second (spread over milliseconds) from random
// addresses of prefix (a /64 the node holds: see [Node.HoldPrefix]),
// source port port, for at most d. The sockets are made in node's
// namespace.
func (node *Node) StartHandshakeFlood(prefix netip.Prefix, port uint16, edge netip.AddrPort, edgeKey l3config.Key, rate int, d time.Duration) (*HandshakeFlood, error) {
	return node.startHandshakeFlood(prefix, port, edge, edgeKey, rate, d, true)
}

func (node *Node) startHandshakeFlood(prefix netip.Prefix, port uint16, edge netip.AddrPort, edgeKey l3config.Key, rate int, d time.Duration, answer bool) (*HandshakeFlood, error) {
	if !prefix.Addr().Is6() || prefix.Bits() > 64 || !edge.Addr().Is6() {
		return nil, fmt.Errorf("handshake flood: want an IPv6 prefix of /64 or wider and an IPv6 edge, have %v, %v", prefix, edge)
	}
	var raw int
	var rx *net.UDPConn
	err := node.Do(func() error {
		var err error
		// IPPROTO_RAW: the flood writes the IPv6 header, any source.
		if raw, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW); err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		rx, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6unspecified, Port: int(port)})
		if err != nil {
			unix.Close(raw)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("handshake flood: %w", err)
	}
	f := &HandshakeFlood{prefix: prefix, answer: answer, stop: make(chan struct{}), done: make(chan struct{})}
	replies := make(chan [wgCookieLen]byte, 4096)
	go f.receive(rx, replies)
	go func() {
		defer close(f.done)
		defer rx.Close() // ends receive
		defer unix.Close(raw)
		f.send(raw, port, edge, edgeKey, rate, d, replies)
	}()
	return f, nil
}

// receive passes the cookie replies on to the sender until rx closes.
func (f *HandshakeFlood) receive(rx *net.UDPConn, replies chan<- [wgCookieLen]byte) {
	var b [2048]byte
	for {
		n, err := rx.Read(b[:])
		if err != nil {
			return
		}
		if n != wgCookieLen || b[0] != 3 {
			continue
		}
		f.cookies.Add(1)
		select {
		case replies <- [wgCookieLen]byte(b[:wgCookieLen]):
		default: // the sender is behind: this one goes unanswered
		}
	}
}

func (f *HandshakeFlood) send(raw int, port uint16, edge netip.AddrPort, edgeKey l3config.Key, rate int, d time.Duration, replies <-chan [wgCookieLen]byte) {
	mac1Key := blake2s.Sum256(append([]byte("mac1----"), edgeKey[:]...))
	cookieKey := blake2s.Sum256(append([]byte("cookie--"), edgeKey[:]...))
	aead, _ := chacha20poly1305.NewX(cookieKey[:])
	ring := make([]floodEntry, 1<<14)
	dst := &unix.SockaddrInet6{Addr: edge.Addr().As16()}
	pkt := make([]byte, 0, 40+8+wgInitiationLen)
	start := time.Now()
	defer func() { f.elapsed.Store(int64(time.Since(start))) }()
	transmit := func(src netip.Addr, msg []byte) {
		pkt = pkt[:0]
		pkt, _ = packet.AppendIPv6(pkt, &packet.IPv6Header{NextHeader: packet.ProtoUDP, HopLimit: 64, Src: src, Dst: edge.Addr()}, 8+len(msg))
		pkt, _ = packet.AppendUDP(pkt, &packet.UDPHeader{SrcPort: port, DstPort: edge.Port()}, len(msg))
		pkt = append(pkt, msg...)
		_ = packet.PutUDPChecksum(pkt[40:], packet.PseudoHeaderSum(src, edge.Addr(), packet.ProtoUDP, uint32(8+len(msg))))
		if err := unix.Sendto(raw, pkt, 0, dst); err != nil {
			f.errs.Add(1)
			f.lastErr.Store(&err)
		}
	}
	perTick := max(1, rate/1000)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var idx uint32
	for time.Since(start) < d {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		// Answer the cookies that came: the same message with mac2.
	answers:
		for {
			select {
			case r := <-replies:
				if !f.answer {
					continue
				}
				i := binary.LittleEndian.Uint32(r[4:8])
				e := &ring[i%uint32(len(ring))]
				if e.idx != i {
					continue
				}
				var cookie [16]byte
				if _, err := aead.Open(cookie[:0], r[8:32], r[32:64], e.msg[116:132]); err != nil {
					continue
				}
				msg := e.msg
				wgMAC(msg[132:148], cookie[:], msg[:132])
				transmit(e.src, msg[:])
				f.answered.Add(1)
			default:
				break answers
			}
		}
		for range perTick {
			idx++
			e := &ring[idx%uint32(len(ring))]
			e.idx = idx
			a := f.prefix.Addr().As16()
			rand.Read(a[8:])
			e.src = netip.AddrFrom16(a)
			e.msg = [wgInitiationLen]byte{0: 1}
			binary.LittleEndian.PutUint32(e.msg[4:8], idx)
			rand.Read(e.msg[8:116]) // ephemeral, static and timestamp: junk
			wgMAC(e.msg[116:132], mac1Key[:], e.msg[:116])
			transmit(e.src, e.msg[:])
			f.sent.Add(1)
		}
	}
}

// wgMAC writes the keyed BLAKE2s-128 of msg, WireGuard's MAC, into out.
func wgMAC(out, key, msg []byte) {
	m, _ := blake2s.New128(key)
	m.Write(msg)
	m.Sum(out[:0])
}

// Stop ends the flood early and waits for it; Wait waits for its end.
func (f *HandshakeFlood) Stop() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

// Wait waits until the flood has run its time.
func (f *HandshakeFlood) Wait() { <-f.done }

// Counts returns the fresh messages sent, the cookie replies received and
// the messages sent again with their mac2.
func (f *HandshakeFlood) Counts() (sent, cookies, answered int64) {
	return f.sent.Load(), f.cookies.Load(), f.answered.Load()
}

// String reports the counts and rates.
func (f *HandshakeFlood) String() string {
	sent, cookies, answered := f.Counts()
	s := fmt.Sprintf("handshake flood from %v: %d initiations sent, %d cookie replies received, %d answered with mac2", f.prefix, sent, cookies, answered)
	if el := time.Duration(f.elapsed.Load()); el > 0 {
		s += fmt.Sprintf(" in %v (%.0f/s sent)", el.Round(time.Millisecond), float64(sent+answered)/el.Seconds())
	}
	if n := f.errs.Load(); n > 0 {
		s += fmt.Sprintf("; %d send errors, last %v", n, *f.lastErr.Load())
	}
	return s
}

// HoldPrefix makes node receive on every address of prefix (an AnyIP
// local route, as a host owning the prefix would), and the node named via
// route prefix to node's address on their link: the attacker's /64.
func (n *Net) HoldPrefix(ctx context.Context, node, via string, prefix netip.Prefix) error {
	if err := n.Node(node).IP(ctx, "-6", "route", "add", "local", prefix.String(), "dev", "lo"); err != nil {
		return err
	}
	return n.Node(via).IP(ctx, "-6", "route", "add", prefix.String(), "via", n.Addr(node, via, true).String())
}
