//go:build linux

package wg

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/onramp-net/onramp/dataplane/packet"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// The tests peer this device with stock wireguard-go devices (channel
// TUNs, UDP on 127.0.0.1): every handshake and transport message crosses
// between two implementations.

var (
	clientIP = netip.MustParseAddr("198.18.160.2")
	hostIP   = netip.MustParseAddr("198.18.30.7") // behind the connector
)

type node struct {
	name string
	dev  *device.Device
	ct   *tuntest.ChannelTUN
	key  l3config.Key
}

// newNode starts a wireguard-go device peered with d. With dial it knows
// d's endpoint and keeps the session alive (as clients and connectors
// do); without it, it waits for d to reach it.
func newNode(t *testing.T, d *Device, name string, key l3config.Key, dial bool, host string) *node {
	t.Helper()
	return newNodeOn(t, d, name, key, dial, host, conn.NewDefaultBind())
}

// newNodeOn is newNode with the wireguard-go device on bind.
func newNodeOn(t *testing.T, d *Device, name string, key l3config.Key, dial bool, host string, bind conn.Bind) *node {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	dev := device.NewDevice(ct.TUN(), bind, device.NewLogger(device.LogLevelError, name+": "))
	t.Cleanup(dev.Close)
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=0\npublic_key=%s\nallowed_ip=0.0.0.0/0\n", key.Hex(), d.PublicKey().Hex())
	if dial {
		fmt.Fprintf(&b, "endpoint=%s\npersistent_keepalive_interval=1\n", net.JoinHostPort(host, fmt.Sprint(d.Port())))
	}
	if err := dev.IpcSet(b.String()); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	return &node{name: name, dev: dev, ct: ct, key: key}
}

func (n *node) port(t *testing.T) uint16 {
	t.Helper()
	s, err := n.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "listen_port="); ok {
			p, _ := strconv.Atoi(v)
			return uint16(p)
		}
	}
	t.Fatal("no listen port")
	return 0
}

func (n *node) send(t *testing.T, p []byte) {
	t.Helper()
	select {
	case n.ct.Outbound <- bytes.Clone(p):
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: TUN not read", n.name)
	}
}

// expect waits up to d for the UDP packet carrying tag.
func (n *node) expect(t *testing.T, tag string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case p := <-n.ct.Inbound:
			if bytes.HasSuffix(p, []byte(tag)) {
				return
			}
		case <-deadline:
			t.Fatalf("%q at %s: nothing arrived in %v", tag, n.name, d)
		}
	}
}

func udp(t testing.TB, src, dst netip.Addr, tag string) []byte {
	t.Helper()
	n := 8 + len(tag)
	b, err := packet.AppendIPv4(nil, &packet.IPv4Header{TTL: 64, Protocol: packet.ProtoUDP, Src: src, Dst: dst}, n)
	if err != nil {
		t.Fatal(err)
	}
	start := len(b)
	if b, err = packet.AppendUDP(b, &packet.UDPHeader{SrcPort: 40000, DstPort: 7}, len(tag)); err != nil {
		t.Fatal(err)
	}
	b = append(b, tag...)
	if err := packet.PutUDPChecksum(b[start:], packet.PseudoHeaderSum(src, dst, packet.ProtoUDP, uint32(n))); err != nil {
		t.Fatal(err)
	}
	return b
}

type rig struct {
	dev            *Device
	router         *l3router.Router
	client, site   *node
	pClient, pSite *Peer
}

// newRig starts a device whose router has the client (clientIP) and the
// connector site (198.18.30.0/24), and wireguard-go nodes for both.
func newRig(t *testing.T, clientDials bool) *rig { return newRigOn(t, clientDials, "127.0.0.1") }

// newRigOn is newRig with the nodes dialing the device at host.
func newRigOn(t *testing.T, clientDials bool, host string) *rig {
	t.Helper()
	router := testRouter(t)
	d, err := New(Config{PrivateKey: newKey(t), Router: router, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	return startRig(t, d, router, clientDials, host, conn.NewDefaultBind(), conn.NewDefaultBind())
}

// startRig peers d (whose router is router) with the client and the site,
// wireguard-go nodes on clientBind and siteBind dialing d at host.
func startRig(t *testing.T, d *Device, router *l3router.Router, clientDials bool, host string, clientBind, siteBind conn.Bind) *rig {
	t.Helper()
	t.Cleanup(func() { d.Close() })
	r := &rig{dev: d, router: router}
	kc, ks := newKey(t), newKey(t)
	var err error
	if r.pClient, err = d.AddPeer("client", kc.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if r.pSite, err = d.AddPeer("site", ks.PublicKey()); err != nil {
		t.Fatal(err)
	}
	r.client = newNodeOn(t, d, "client", kc, clientDials, host, clientBind)
	r.site = newNodeOn(t, d, "site", ks, true, host, siteBind)
	return r
}

func (r *rig) both(t *testing.T, tag string, wait time.Duration) {
	t.Helper()
	r.client.send(t, udp(t, clientIP, hostIP, tag+" up"))
	r.site.expect(t, tag+" up", wait)
	r.site.send(t, udp(t, hostIP, clientIP, tag+" down"))
	r.client.expect(t, tag+" down", wait)
}

func TestForward(t *testing.T) {
	r := newRig(t, true)
	r.both(t, "first", 10*time.Second)
	for i := range 50 {
		r.both(t, fmt.Sprint("packet ", i), 5*time.Second)
	}
	st := r.pClient.Stats()
	if st.Handshakes == 0 || st.LastHandshake.IsZero() || !st.Endpoint.IsValid() || st.RxBytes == 0 || st.TxBytes == 0 {
		t.Errorf("client stats: %+v", st)
	}
	rs := r.router.Stats().Peers["site"]
	if rs.RxPackets < 51 || rs.TxPackets < 51 {
		t.Errorf("router counted site rx %d tx %d packets, want >= 51", rs.RxPackets, rs.TxPackets)
	}
}

// TestForwardIPv6: the same over IPv6 (the device's IPv6 sockets).
func TestForwardIPv6(t *testing.T) {
	r := newRigOn(t, true, "::1")
	r.both(t, "first", 10*time.Second)
	for i := range 20 {
		r.both(t, fmt.Sprint("packet ", i), 5*time.Second)
	}
	if ep := r.pSite.Stats().Endpoint; !ep.Addr().Is6() || ep.Addr().Is4In6() {
		t.Errorf("site endpoint %v, want an IPv6 address", ep)
	}
}

// TestSpoofed: a packet whose source is another peer's is dropped and
// counted; the flow goes on.
func TestSpoofed(t *testing.T) {
	r := newRig(t, true)
	r.both(t, "before", 10*time.Second)
	r.site.send(t, udp(t, clientIP, hostIP, "spoofed"))
	r.both(t, "after", 5*time.Second)
	select {
	case p := <-r.site.ct.Inbound:
		t.Fatalf("unexpected packet at site: %x", p)
	case <-time.After(200 * time.Millisecond):
	}
	if n := r.router.Stats().Unattributed[l3router.DropSpoofed]; n != 1 {
		t.Errorf("spoofed drops = %d, want 1", n)
	}
}

// TestInitiate: the device starts the handshake itself when it has a
// packet for a peer it has no session with (a LAN host reaching a client
// whose session ended), holding the packet until the session is up.
func TestInitiate(t *testing.T) {
	r := newRig(t, false)
	r.pClient.SetEndpoint(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r.client.port(t)))
	r.site.send(t, udp(t, hostIP, clientIP, "wake up"))
	r.client.expect(t, "wake up", 10*time.Second)
	r.both(t, "then", 5*time.Second)
	if st := r.pClient.Stats(); st.Handshakes != 1 {
		t.Errorf("client handshakes = %d, want 1", st.Handshakes)
	}
}

// TestSessionTurnover runs sessions through their whole life with the
// timers cut down: the device's sessions expire every three seconds, it
// starts new handshakes, and traffic keeps flowing both ways.
func TestSessionTurnover(t *testing.T) {
	// Restored after the device is closed (cleanups run last first).
	a, b, c, d, e := rekeyAfterTime, rejectAfterTime, rekeyAttemptTime, rekeyTimeout, keepaliveTimeout
	t.Cleanup(func() {
		rekeyAfterTime, rejectAfterTime, rekeyAttemptTime, rekeyTimeout, keepaliveTimeout = a, b, c, d, e
	})
	// A retransmit timer shorter than a loaded machine's round trip
	// (-race, other test binaries) would make every response late.
	rekeyAfterTime, rejectAfterTime, rekeyAttemptTime = 1500*time.Millisecond, 3*time.Second, 6*time.Second
	rekeyTimeout, keepaliveTimeout = time.Second, time.Second
	r := newRig(t, true)
	r.both(t, "first", 10*time.Second)
	// The stock peers keep their own timers (a session of 180 s), so a
	// packet they send on a session this device has just let expire is
	// lost, as on any IP path; the next one goes on the new session.
	// Each round is sent again until it arrives.
	start := time.Now()
	lost := 0
	for i := 0; time.Since(start) < 10*time.Second; i++ {
		for _, dir := range []struct {
			from, to *node
			src, dst netip.Addr
		}{{r.client, r.site, clientIP, hostIP}, {r.site, r.client, hostIP, clientIP}} {
			tag := fmt.Sprint("packet ", i, " from ", dir.from.name)
			deadline := time.Now().Add(5 * time.Second)
		retry:
			dir.from.send(t, udp(t, dir.src, dir.dst, tag))
			select {
			case p := <-dir.to.ct.Inbound:
				if !bytes.HasSuffix(p, []byte(tag)) {
					goto retry
				}
			case <-time.After(250 * time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatalf("%q: not through in 5 s", tag)
				}
				lost++
				goto retry
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d sends lost in 10 s", lost)
	for _, p := range []*Peer{r.pClient, r.pSite} {
		if st := p.Stats(); st.Handshakes < 3 {
			t.Errorf("%s: %d handshakes in 10 s with sessions of 3 s, want >= 3", p.name, st.Handshakes)
		}
	}
}

// TestRemove: a removed peer's packets are no longer taken, at once.
func TestRemove(t *testing.T) {
	r := newRig(t, true)
	r.both(t, "before", 10*time.Second)
	r.dev.RemovePeer(r.client.key.PublicKey())
	r.client.send(t, udp(t, clientIP, hostIP, "after removal"))
	select {
	case p := <-r.site.ct.Inbound:
		if bytes.HasSuffix(p, []byte("after removal")) {
			t.Fatal("a removed peer's packet was forwarded")
		}
	case <-time.After(500 * time.Millisecond):
	}
	r.dev.idxMu.RLock()
	defer r.dev.idxMu.RUnlock()
	for i, e := range r.dev.index {
		if e.peer == r.pClient {
			t.Errorf("index %x still names the removed peer", i)
		}
	}
}

var testLogger = slog.New(slog.DiscardHandler)

func newKey(t testing.TB) l3config.Key {
	k, err := l3config.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestUnderLoad: under load the device answers an initiation without a
// cookie with a cookie reply; stock wireguard-go's next attempt carries
// the cookie (mac2) and gets its session.
func TestUnderLoad(t *testing.T) {
	underLoadForTest.Store(true)
	t.Cleanup(func() { underLoadForTest.Store(false) }) // runs after the rig's cleanups
	r := newRig(t, true)
	r.both(t, "with a cookie", 15*time.Second)
	if n := r.dev.HandshakeStats().Cookies; n < 2 {
		t.Errorf("%d cookie replies sent, want one per node at least", n)
	}
}

// testRouter is a router with the client (clientIP) and the connector
// site (198.18.30.0/24).
func testRouter(tb testing.TB) *l3router.Router {
	router, err := l3router.New(l3router.Config{
		Address4: netip.MustParseAddr("198.18.160.1"),
		Peers: []l3router.PeerConfig{
			{Name: "client", Kind: l3router.KindClient, Routes: []netip.Prefix{netip.PrefixFrom(clientIP, 32)}},
			{Name: "site", Kind: l3router.KindConnector, Routes: []netip.Prefix{netip.MustParsePrefix("198.18.30.0/24")}},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return router
}

// sink returns the address of a UDP socket on 127.0.0.1 that nobody
// reads (the kernel drops what overflows it).
func sink(tb testing.TB) netip.AddrPort {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}
