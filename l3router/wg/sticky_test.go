//go:build linux

package wg

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The sticky source: what the device sends a peer leaves from the local
// address the peer's packets arrived at (IP_PKTINFO, IPV6_PKTINFO).

func TestParseKernelVersion(t *testing.T) {
	for _, tc := range []struct {
		release      string
		major, minor int
		ok, gro      bool
	}{
		{"6.18.44-fc-v1252", 6, 18, true, true},
		{"6.1.0-18-cloud-amd64", 6, 1, true, true},
		{"5.12.0", 5, 12, true, true},
		{"5.12", 5, 12, true, true},
		{"5.11.22-generic", 5, 11, true, false},
		{"5.4.0-150-generic", 5, 4, true, false},
		{"4.19.0-26-amd64", 4, 19, true, false},
		{"3.10.0-1160.el7.x86_64", 3, 10, true, false},
		{"10.0", 10, 0, true, true},
		{"5", 0, 0, false, false},
		{"5.", 0, 0, false, false},
		{"5.x", 0, 0, false, false},
		{".12", 0, 0, false, false},
		{"", 0, 0, false, false},
		{"linux", 0, 0, false, false},
		{"5.1234567", 0, 0, false, false},
	} {
		major, minor, ok := parseKernelVersion(tc.release)
		if major != tc.major || minor != tc.minor || ok != tc.ok {
			t.Errorf("parseKernelVersion(%q) = %d, %d, %v; want %d, %d, %v", tc.release, major, minor, ok, tc.major, tc.minor, tc.ok)
		}
		if gro := ok && (major > 5 || major == 5 && minor >= 12); gro != tc.gro {
			t.Errorf("%q: GRO %v, want %v", tc.release, gro, tc.gro)
		}
	}
}

// cmsgs returns the control messages in oob.
func cmsgs(t *testing.T, oob []byte) (hs []unix.Cmsghdr, data [][]byte) {
	t.Helper()
	for len(oob) > 0 {
		h, d, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			t.Fatalf("control data %x: %v", oob, err)
		}
		hs, data, oob = append(hs, h), append(data, d), rest
	}
	return hs, data
}

// groCmsg returns a UDP_GRO control message of segment size seg, as the
// kernel writes it (an int).
func groCmsg(seg int) []byte {
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = int32(seg)
	return b
}

func TestControlIPv4(t *testing.T) {
	src := local{addr: netip.MustParseAddr("198.18.0.7"), ifindex: 3}
	oob := make([]byte, controlBufSize)
	n := putControl(oob, 1420, src)
	hs, data := cmsgs(t, oob[:n])
	if len(hs) != 2 {
		t.Fatalf("%d control messages, want GSO and packet info", len(hs))
	}
	if h := hs[0]; h.Level != unix.IPPROTO_UDP || h.Type != unix.UDP_SEGMENT || len(data[0]) != 2 ||
		*(*uint16)(unsafe.Pointer(&data[0][0])) != 1420 {
		t.Errorf("GSO cmsg %+v %x, want UDP_SEGMENT 1420", h, data[0])
	}
	if h := hs[1]; h.Level != unix.IPPROTO_IP || h.Type != unix.IP_PKTINFO || len(data[1]) != unix.SizeofInet4Pktinfo {
		t.Fatalf("source cmsg %+v, want IP_PKTINFO", h)
	}
	pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[1][0]))
	if pi.Spec_dst != src.addr.As4() || pi.Ifindex != 3 || pi.Addr != [4]byte{} {
		t.Errorf("IP_PKTINFO %+v, want spec_dst %v ifindex 3", *pi, src.addr)
	}
	// Without GSO, the packet info alone; without a source, nothing.
	if n := putControl(oob, 0, src); n != unix.CmsgSpace(unix.SizeofInet4Pktinfo) {
		t.Errorf("packet info alone: %d bytes", n)
	}
	if n := putControl(oob, 0, local{}); n != 0 {
		t.Errorf("no GSO, no source: %d bytes of control data", n)
	}

	// What the kernel hands a receive: GRO and the packet info. Where
	// the datagram went is spec_dst (ipi_addr is the header's).
	recv := groCmsg(1200)
	pkt := make([]byte, controlBufSize)
	recv = append(recv, pkt[:putControl(pkt, 0, src)]...)
	if seg, to := parseControl(recv, 3000); seg != 1200 || to != src {
		t.Errorf("parseControl = %d, %+v; want 1200, %+v", seg, to, src)
	}
	if seg, to := parseControl(recv, 1000); seg != 1000 || to != src {
		t.Errorf("a single datagram: parseControl = %d, %+v; want 1000, %+v", seg, to, src)
	}
	if seg, to := parseControl(nil, 1000); seg != 1000 || to != (local{}) {
		t.Errorf("no control data: %d, %+v", seg, to)
	}
	// A header longer than the data is not read past.
	bad := bytes.Clone(recv)
	(*unix.Cmsghdr)(unsafe.Pointer(&bad[0])).SetLen(len(bad) + 8)
	if seg, to := parseControl(bad, 3000); seg != 3000 || to != (local{}) {
		t.Errorf("malformed control data: %d, %+v", seg, to)
	}
}

func TestControlIPv6(t *testing.T) {
	src := local{addr: netip.MustParseAddr("fe80::7"), ifindex: 5}
	oob := make([]byte, controlBufSize)
	n := putControl(oob, 1280, src)
	hs, data := cmsgs(t, oob[:n])
	if len(hs) != 2 || hs[0].Type != unix.UDP_SEGMENT {
		t.Fatalf("control messages %+v, want GSO and packet info", hs)
	}
	if h := hs[1]; h.Level != unix.IPPROTO_IPV6 || h.Type != unix.IPV6_PKTINFO || len(data[1]) != unix.SizeofInet6Pktinfo {
		t.Fatalf("source cmsg %+v, want IPV6_PKTINFO", h)
	}
	pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[1][0]))
	if pi.Addr != src.addr.As16() || pi.Ifindex != 5 {
		t.Errorf("IPV6_PKTINFO %+v, want %v on interface 5", *pi, src.addr)
	}
	if n > controlBufSize {
		t.Errorf("%d bytes of control data, buffers hold %d", n, controlBufSize)
	}
	recv := append(groCmsg(1280), oob[unix.CmsgSpace(2):n]...)
	if seg, to := parseControl(recv, 4000); seg != 1280 || to != src {
		t.Errorf("parseControl = %d, %+v; want 1280, %+v", seg, to, src)
	}
	// A datagram to a multicast group (ff02::1 reaches every socket on
	// the port): no source to reply from.
	n = putControl(oob, 0, local{addr: netip.MustParseAddr("ff02::1"), ifindex: 5})
	if seg, to := parseControl(oob[:n], 148); seg != 148 || to != (local{}) {
		t.Errorf("multicast: parseControl = %d, %+v; want 148 and no source", seg, to)
	}
}

// TestRecvLocal: the device's sockets report where each datagram went,
// from the kernel.
func TestRecvLocal(t *testing.T) {
	for _, tc := range []struct {
		network string
		to      []string
	}{
		{"udp4", []string{"127.0.0.1", "127.0.0.2"}},
		{"udp6", []string{"::1"}},
	} {
		s, err := listen(tc.network, netip.Addr{}, 0)
		if err != nil {
			if tc.network == "udp6" {
				t.Logf("no IPv6: %v", err)
				continue
			}
			t.Fatal(err)
		}
		defer s.conn.Close()
		c, err := net.ListenUDP(tc.network, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, a := range tc.to {
			if _, err := c.WriteToUDPAddrPort([]byte("hello "+a), netip.AddrPortFrom(netip.MustParseAddr(a), uint16(s.port()))); err != nil {
				t.Fatal(err)
			}
		}
		got := map[netip.Addr]local{}
		s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for len(got) < len(tc.to) {
			n, err := s.recv()
			if err != nil {
				t.Fatalf("%s: %v", tc.network, err)
			}
			for i := 0; i < n; i++ {
				seg, to := s.control(i)
				if seg != int(s.rmsgs[i].Len) {
					t.Errorf("a single datagram of %d bytes in segments of %d", s.rmsgs[i].Len, seg)
				}
				got[to.addr] = to
			}
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range tc.to {
			if to, ok := got[netip.MustParseAddr(a)]; !ok || to.ifindex != uint32(lo.Index) {
				t.Errorf("%s: the datagram to %s reported the local end %+v, want %s on lo (%d); got %v", tc.network, a, to, a, lo.Index, got)
			}
		}
	}
}

// notLocal returns an address of the benchmarking range that is not the
// host's, the source address of a peer whose address has gone.
func notLocal(t *testing.T, v6 bool) netip.Addr {
	a := netip.MustParseAddr("198.18.255.254")
	if v6 {
		a = netip.MustParseAddr("fd00:ffff::fe")
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, ia := range addrs {
		if p, ok := netip.AddrFromSlice(ia.(*net.IPNet).IP); ok && p.Unmap() == a {
			t.Skipf("%v is an address of this host", a)
		}
	}
	return a
}

// readFrom reads n datagrams from c and returns their sources.
func readFrom(t *testing.T, c *net.UDPConn, n int) []netip.AddrPort {
	t.Helper()
	var from []netip.AddrPort
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(from) < n {
		_, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%d of %d datagrams arrived: %v", len(from), n, err)
		}
		from = append(from, src)
	}
	return from
}

// TestSourceGone: a peer's source address that is no longer the host's
// (or whose interface is gone) does not cut the peer off: the messages go
// without it, from the routing table's source, and the peer forgets it,
// on the data path (sendmmsg, with and without GSO) and on the control
// path (handshakes, keepalives). A source that is still there is used.
func TestSourceGone(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		rcv     string // the peer's address
		src     local  // the device's remembered source for it
		sticky  bool   // the source is there: messages leave from it
	}{
		{"IPv4 address gone", "udp4", "127.0.0.1", local{addr: notLocal(t, false)}, false},
		{"IPv4 interface gone", "udp4", "127.0.0.1", local{addr: netip.MustParseAddr("127.0.0.1"), ifindex: 1 << 30}, false},
		{"IPv4 still there", "udp4", "127.0.0.1", local{addr: netip.MustParseAddr("127.0.0.2"), ifindex: 1}, true},
		{"IPv6 address gone", "udp6", "::1", local{addr: notLocal(t, true)}, false},
		{"IPv6 still there", "udp6", "::1", local{addr: netip.MustParseAddr("::1"), ifindex: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(Config{PrivateKey: newKey(t), Router: testRouter(t), Loops: 1, Logger: testLogger})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			socks := d.socks4
			if tc.network == "udp6" {
				socks = d.socks6
			}
			rcv, err := net.ListenUDP(tc.network, &net.UDPAddr{IP: net.ParseIP(tc.rcv)})
			if len(socks) == 0 || err != nil {
				t.Skipf("no %s: %v", tc.network, err)
			}
			defer rcv.Close()
			p, err := d.AddPeer("client", newKey(t).PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			ep := endpoint{rcv.LocalAddr().(*net.UDPAddr).AddrPort(), tc.src}
			wantFrom := func(from []netip.AddrPort) {
				t.Helper()
				for _, f := range from {
					if tc.sticky && f.Addr() != tc.src.addr || !tc.sticky && f.Addr() != ep.Addr() {
						t.Errorf("a message came from %v; source remembered %v (there: %v)", f, tc.src.addr, tc.sticky)
					}
				}
				want := tc.src
				if !tc.sticky {
					want = local{}
				}
				if got := p.endpoint.Load(); got.AddrPort != ep.AddrPort || got.local != want {
					t.Errorf("the peer's endpoint is %+v, want %v from %+v", *got, ep.AddrPort, want)
				}
			}

			// The data path: three equal segments (one GSO message)
			// and a longer message.
			p.setEndpoint(ep)
			o := socks[0].newBatch()
			buf := make([]byte, 3*100+200)
			for _, m := range [][]byte{buf[0:100], buf[100:200], buf[200:300], buf[300:500]} {
				if err := o.queue(p, *p.endpoint.Load(), m); err != nil {
					t.Fatal(err)
				}
			}
			if err := o.flush(); err != nil {
				t.Fatalf("flush: %v", err)
			}
			wantFrom(readFrom(t, rcv, 4))

			// The control path.
			p.setEndpoint(ep)
			d.sendControl(p, *p.endpoint.Load(), []byte("handshake"))
			wantFrom(readFrom(t, rcv, 1))
		})
	}
}

// udpNAT stands for a NAT in front of a client: what the client sends to
// its front socket it forwards to the target from a socket connected to
// the target, and what comes back on that socket it returns to the
// client. The kernel gives a connected socket only datagrams from the
// address it is connected to: a reply from another address of the
// target's host is dropped, as a NAT drops it (it matches no mapping).
type udpNAT struct {
	front, back *net.UDPConn
	client      atomic.Pointer[netip.AddrPort]
	returned    atomic.Int64
}

func newUDPNAT(t *testing.T, target netip.AddrPort) *udpNAT {
	t.Helper()
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, net.UDPAddrFromAddrPort(target))
	if err != nil {
		t.Fatal(err)
	}
	n := &udpNAT{front: front, back: back}
	t.Cleanup(func() { front.Close(); back.Close() })
	go func() {
		buf := make([]byte, 1<<16)
		for {
			k, from, err := front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			n.client.Store(&from)
			back.Write(buf[:k])
		}
	}()
	go func() {
		buf := make([]byte, 1<<16)
		for {
			k, err := back.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if c := n.client.Load(); err == nil && c != nil {
				n.returned.Add(1)
				front.WriteToUDPAddrPort(buf[:k], *c)
			}
		}
	}()
	return n
}

// addr is the address the client dials.
func (n *udpNAT) addr() string { return n.front.LocalAddr().String() }

// TestStickySource: a stock WireGuard client behind a NAT writes to the
// device's second address (127.0.0.2; the routing table's source towards
// the NAT is 127.0.0.1): the handshake response, the cookie reply under
// load and the forwarded data must all come back from 127.0.0.2, or the
// NAT drops them.
func TestStickySource(t *testing.T) {
	for _, underLoad := range []bool{false, true} {
		t.Run(fmt.Sprint("underLoad=", underLoad), func(t *testing.T) {
			if underLoad {
				underLoadForTest.Store(true)
				t.Cleanup(func() { underLoadForTest.Store(false) }) // after the rig's cleanups
			}
			r := newRig(t, false) // the site dials 127.0.0.1; the client is set up below
			nat := newUDPNAT(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(r.dev.Port())))
			if err := r.client.dev.IpcSet(fmt.Sprintf("public_key=%s\nendpoint=%s\npersistent_keepalive_interval=1\n",
				r.dev.PublicKey().Hex(), nat.addr())); err != nil {
				t.Fatal(err)
			}
			r.both(t, "through the NAT", 15*time.Second)
			for i := range 10 {
				r.both(t, fmt.Sprint("packet ", i), 5*time.Second)
			}
			ep := r.pClient.endpoint.Load()
			if ep == nil || ep.AddrPort != nat.back.LocalAddr().(*net.UDPAddr).AddrPort() || ep.local.addr != netip.MustParseAddr("127.0.0.2") {
				t.Errorf("the client's endpoint is %+v, want the NAT's %v writing to 127.0.0.2", ep, nat.back.LocalAddr())
			}
			if st := r.dev.HandshakeStats(); underLoad && st.Cookies == 0 {
				t.Errorf("under load, no cookie reply was sent: %+v", st)
			}
			t.Logf("%d datagrams came back through the NAT", nat.returned.Load())
		})
	}
}

// TestListenAddr: a device given one address listens there alone, on its
// family, and serves peers that write to it.
func TestListenAddr(t *testing.T) {
	for _, a := range []string{"127.0.0.2", "::1"} {
		t.Run(a, func(t *testing.T) {
			addr := netip.MustParseAddr(a)
			router := testRouter(t)
			d, err := New(Config{PrivateKey: newKey(t), Router: router, ListenAddr: addr, Loops: 2, Logger: testLogger})
			if err != nil {
				if addr.Is6() {
					t.Skipf("no IPv6: %v", err)
				}
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			socks, other := d.socks4, d.socks6
			if addr.Is6() {
				socks, other = d.socks6, d.socks4
			}
			if len(socks) != 2 || len(other) != 0 {
				t.Fatalf("%d sockets of the family of %v, %d of the other; want 2 and 0", len(socks), addr, len(other))
			}
			for _, s := range socks {
				if got := s.(*socket).conn.LocalAddr().(*net.UDPAddr).AddrPort(); got != netip.AddrPortFrom(addr, uint16(d.Port())) {
					t.Errorf("socket bound to %v, want %v port %d", got, addr, d.Port())
				}
			}
			kc, ks := newKey(t), newKey(t)
			pc, err := d.AddPeer("client", kc.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.AddPeer("site", ks.PublicKey()); err != nil {
				t.Fatal(err)
			}
			r := &rig{dev: d, router: router, pClient: pc}
			r.client = newNode(t, d, "client", kc, true, a)
			r.site = newNode(t, d, "site", ks, true, a)
			r.both(t, "to one address", 10*time.Second)
		})
	}
	if _, err := New(Config{PrivateKey: newKey(t), Router: testRouter(t), ListenAddr: notLocal(t, false), Logger: testLogger}); err == nil ||
		!bytes.Contains([]byte(err.Error()), []byte("198.18.255.254:0")) {
		t.Errorf("listening on an address not the host's: %v, want an error naming it", err)
	}
}

// TestStickyForwardAllocs: recording where a peer's packets arrive and
// sending with that source (IP_PKTINFO on every message of the batch)
// allocates nothing per packet.
func TestStickyForwardAllocs(t *testing.T) {
	d, l, kc, src := benchRig(t)
	if !l.local.addr.IsValid() || !peerNamed(t, d, "site").endpoint.Load().local.addr.IsValid() {
		t.Fatal("the bench rig's packets carry no local address")
	}
	pkt := udp(t, clientIP, hostIP, string(make([]byte, 1000)))
	msg := sealFor(kc, 1, 0, pkt)
	m := make([]byte, len(msg))
	allocs := testing.AllocsPerRun(200, func() {
		copy(m, msg)
		kc.replay.reset() // the same message again
		l.transport(m, src, d.now())
		l.flush()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per forwarded packet, want 0", allocs)
	}
	if ep := kc.peer.endpoint.Load(); ep.AddrPort != src || ep.local != l.local {
		t.Errorf("the client's endpoint is %+v, want %v to %+v", *ep, src, l.local)
	}
	if st := d.router.Stats().Peers["site"]; st.TxPackets < 200 {
		t.Errorf("forwarded %d packets, want 200 or more", st.TxPackets)
	}
}

// peerNamed returns d's peer named name.
func peerNamed(t *testing.T, d *Device, name string) *Peer {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.peers {
		if string(p.name) == name {
			return p
		}
	}
	t.Fatalf("no peer %q", name)
	return nil
}
