//go:build linux

package wg

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// memNet is a network in memory. The device's binds on it (memBind) and
// wireguard-go's (memWGBind) exchange datagrams through queues, so that
// protocol tests run without sockets, ports or a kernel, and a test sees
// and decides the fate of every datagram.
type memNet struct {
	mu     sync.Mutex
	queues map[netip.AddrPort]chan memDatagram // binds on one address and port share its queue (SO_REUSEPORT)
	next   uint16
	// filter, if set, is asked about each datagram before it is
	// delivered: false drops it.
	filter func(memDatagram) bool
}

type memDatagram struct {
	b        []byte
	src, dst netip.AddrPort
}

func newMemNet() *memNet {
	return &memNet{queues: map[netip.AddrPort]chan memDatagram{}, next: 51820}
}

// open returns the queue of addr and port (0: a new port).
func (n *memNet) open(addr netip.Addr, port uint16) (netip.AddrPort, chan memDatagram) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if port == 0 {
		port = n.next
		n.next++
	}
	ap := netip.AddrPortFrom(addr, port)
	q := n.queues[ap]
	if q == nil {
		q = make(chan memDatagram, 4096)
		n.queues[ap] = q
	}
	return ap, q
}

// deliver sends a copy of msg from src to dst, dropped (as UDP drops it)
// where no bind is or its queue is full.
func (n *memNet) deliver(src, dst netip.AddrPort, msg []byte) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	n.mu.Lock()
	q, filter := n.queues[dst], n.filter
	n.mu.Unlock()
	d := memDatagram{bytes.Clone(msg), src, dst}
	if q == nil || filter != nil && !filter(d) {
		return
	}
	select {
	case q <- d:
	default:
	}
}

// listenAt returns a listenFunc of binds on ip4 (udp4) and ip6 (udp6).
func (n *memNet) listenAt(ip4, ip6 netip.Addr) listenFunc {
	return func(network string, addr netip.Addr, port int) (bind, error) {
		ip := ip4
		if network == "udp6" {
			ip = ip6
		}
		if addr.IsValid() && !addr.IsUnspecified() && addr != ip {
			return nil, fmt.Errorf("memnet: %s is not %s's address", addr, network)
		}
		ap, q := n.open(ip, uint16(port))
		return &memBind{n: n, addr: ap, q: q, closed: make(chan struct{})}, nil
	}
}

// memBind is the device's bind on a memNet.
type memBind struct {
	n      *memNet
	addr   netip.AddrPort
	q      chan memDatagram
	closed chan struct{}
	once   sync.Once
	got    [recvBatch]memDatagram
}

func (b *memBind) recv() (int, error) {
	select {
	case b.got[0] = <-b.q:
	case <-b.closed:
		return 0, net.ErrClosed
	}
	n := 1
	for ; n < len(b.got); n++ {
		select {
		case b.got[n] = <-b.q:
		default:
			return n, nil
		}
	}
	return n, nil
}

func (b *memBind) datagram(i int) ([]byte, int, netip.AddrPort, local) {
	d := b.got[i]
	return d.b, len(d.b), d.src, local{addr: d.dst.Addr()}
}

func (b *memBind) sendOne(dst endpoint, msg []byte) (bool, error) {
	b.n.deliver(b.addr, dst.AddrPort, msg)
	return false, nil
}

func (b *memBind) newBatch() batch { return &memBatch{b: b} }
func (b *memBind) port() int       { return int(b.addr.Port()) }
func (b *memBind) close() error    { b.once.Do(func() { close(b.closed) }); return nil }

// memBatch is a batch on a memBind: the messages are sent at flush.
type memBatch struct {
	b    *memBind
	msgs []memDatagram
}

func (m *memBatch) queue(_ *Peer, dst endpoint, msg []byte) error {
	m.msgs = append(m.msgs, memDatagram{b: msg, dst: dst.AddrPort})
	return nil
}

func (m *memBatch) flush() error {
	for _, d := range m.msgs {
		m.b.n.deliver(m.b.addr, d.dst, d.b)
	}
	m.msgs = m.msgs[:0]
	return nil
}

// memWGBind is a wireguard-go conn.Bind on a memNet, at one address.
type memWGBind struct {
	n      *memNet
	ip     netip.Addr
	mu     sync.Mutex
	addr   netip.AddrPort
	closed chan struct{}
}

type memEndpoint netip.AddrPort

func (e memEndpoint) ClearSrc()           {}
func (e memEndpoint) SrcToString() string { return "" }
func (e memEndpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e memEndpoint) DstToBytes() []byte  { b, _ := netip.AddrPort(e).MarshalBinary(); return b }
func (e memEndpoint) DstIP() netip.Addr   { return netip.AddrPort(e).Addr() }
func (e memEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

func (w *memWGBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	ap, q := w.n.open(w.ip, port)
	closed := make(chan struct{})
	w.mu.Lock()
	w.addr, w.closed = ap, closed
	w.mu.Unlock()
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case d := <-q:
			sizes[0] = copy(packets[0], d.b)
			eps[0] = memEndpoint(d.src)
			return 1, nil
		case <-closed:
			return 0, net.ErrClosed
		}
	}
	return []conn.ReceiveFunc{recv}, ap.Port(), nil
}

func (w *memWGBind) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed != nil {
		close(w.closed)
		w.closed = nil
	}
	return nil
}

func (w *memWGBind) SetMark(uint32) error { return nil }
func (w *memWGBind) BatchSize() int       { return 1 }

func (w *memWGBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	w.mu.Lock()
	src := w.addr
	w.mu.Unlock()
	for _, b := range bufs {
		w.n.deliver(src, netip.AddrPort(ep.(memEndpoint)), b)
	}
	return nil
}

func (w *memWGBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	return memEndpoint(ap), err
}

var (
	memEdge4 = netip.MustParseAddr("198.18.0.1")
	memEdge6 = netip.MustParseAddr("fd00::1")
)

// newMemRig is newRig on a memNet: the device and two stock wireguard-go
// nodes (the client at client, the site at 198.18.0.3 or fd00::3), no
// socket anywhere. The nodes dial the device's address of host's family.
func newMemRig(t *testing.T, mn *memNet, host netip.Addr, client netip.Addr, opts ...func(*Config)) *rig {
	t.Helper()
	router := testRouter(t)
	cfg := Config{PrivateKey: newKey(t), Router: router, Logger: testLogger}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := newDevice(cfg, mn.listenAt(memEdge4, memEdge6))
	if err != nil {
		t.Fatal(err)
	}
	site := netip.MustParseAddr("198.18.0.3")
	if host.Is6() {
		site = netip.MustParseAddr("fd00::3")
	}
	return startRig(t, d, router, true, host.String(), &memWGBind{n: mn, ip: client}, &memWGBind{n: mn, ip: site})
}

// TestMemBind runs the device's protocol on its socket seam, with no
// socket: handshakes with two stock wireguard-go peers, forwarding both
// ways over IPv4 and IPv6, each peer's endpoint learnt from its datagrams
// and every reply sent from the address the peer wrote to.
func TestMemBind(t *testing.T) {
	for _, host := range []netip.Addr{memEdge4, memEdge6} {
		t.Run(host.String(), func(t *testing.T) {
			mn := newMemNet()
			client := netip.MustParseAddr("198.18.0.2")
			if host.Is6() {
				client = netip.MustParseAddr("fd00::2")
			}
			var mu sync.Mutex
			fromEdge, wrongSource := 0, 0
			mn.filter = func(d memDatagram) bool {
				mu.Lock()
				defer mu.Unlock()
				if d.src.Addr() == memEdge4 || d.src.Addr() == memEdge6 {
					fromEdge++
					if d.src.Addr() != host {
						wrongSource++
					}
				}
				return true
			}
			r := newMemRig(t, mn, host, client)
			if _, ok := r.dev.sockFor(netip.AddrPortFrom(host, 1)).(*memBind); !ok {
				t.Fatalf("the device's bind is %T, want the memBind", r.dev.sockFor(netip.AddrPortFrom(host, 1)))
			}
			r.both(t, "first", 10*time.Second)
			for i := range 50 {
				r.both(t, fmt.Sprint("packet ", i), 5*time.Second)
			}
			if ep := r.pClient.Stats().Endpoint; ep.Addr() != client {
				t.Errorf("client endpoint %v, want %v", ep, client)
			}
			rs := r.router.Stats().Peers["site"]
			if rs.RxPackets < 51 || rs.TxPackets < 51 {
				t.Errorf("router counted site rx %d tx %d packets, want >= 51", rs.RxPackets, rs.TxPackets)
			}
			mu.Lock()
			defer mu.Unlock()
			if fromEdge < 102 || wrongSource != 0 {
				t.Errorf("%d datagrams from the edge, %d of them not from %v: want >= 102, none", fromEdge, wrongSource, host)
			}
		})
	}
}

// TestMemBindLostResponse: the device's response to the client's first
// initiation is lost (a test decides it on the memNet); the client tries
// again and the session comes up, once.
func TestMemBindLostResponse(t *testing.T) {
	mn := newMemNet()
	var mu sync.Mutex
	responses := 0
	mn.filter = func(d memDatagram) bool {
		if len(d.b) != sizeResponse || d.b[0] != typeResponse {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		responses++
		return responses > 2 // the first response to each node is lost
	}
	r := newMemRig(t, mn, memEdge4, netip.MustParseAddr("198.18.0.2"))
	r.both(t, "after a lost response", 15*time.Second)
	mu.Lock()
	n := responses
	mu.Unlock()
	if n < 3 {
		t.Errorf("%d responses sent, want the lost ones and more", n)
	}
	if hs := r.dev.HandshakeStats(); hs.ResponsesSent < 3 {
		t.Errorf("%d responses counted, want >= 3", hs.ResponsesSent)
	}
}

// TestOnHandshake: Config.OnHandshake hears of each handshake completed,
// with the peer's address (the edge proves it to its XDP pre-filter).
func TestOnHandshake(t *testing.T) {
	var mu sync.Mutex
	seen := map[netip.Addr]int{}
	client := netip.MustParseAddr("198.18.0.2")
	r := newMemRig(t, newMemNet(), memEdge4, client, func(c *Config) {
		c.OnHandshake = func(a netip.Addr) {
			mu.Lock()
			seen[a]++
			mu.Unlock()
		}
	})
	r.both(t, "first", 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if seen[client] < 1 || seen[netip.MustParseAddr("198.18.0.3")] < 1 || len(seen) != 2 {
		t.Errorf("handshakes heard of: %v, want the client's and the site's", seen)
	}
}
