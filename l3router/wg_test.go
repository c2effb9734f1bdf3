package l3router

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/packet"
	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// wgNode is a wireguard-go device listening on 127.0.0.1 (real UDP).
type wgNode struct {
	dev  *device.Device
	pub  string // hex
	port int
	ct   *tuntest.ChannelTUN // nil for the edge
}

func newWGNode(t testing.TB, name string, td tun.Device, ct *tuntest.ChannelTUN) *wgNode {
	t.Helper()
	var priv [32]byte
	rand.Read(priv[:])
	priv[0] &= 248
	priv[31] = priv[31]&127 | 64
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(td, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, name+": "))
	t.Cleanup(dev.Close)
	if err := dev.IpcSet("private_key=" + hex.EncodeToString(priv[:]) + "\nlisten_port=0\n"); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	cfg, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	n := &wgNode{dev: dev, pub: hex.EncodeToString(pub), ct: ct}
	for _, line := range strings.Split(cfg, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			n.port, _ = strconv.Atoi(v)
		}
	}
	if n.port == 0 {
		t.Fatalf("%s: no listen port in %q", name, cfg)
	}
	return n
}

// addPeer configures other as a peer of n with the given allowed IPs.
func (n *wgNode) addPeer(t testing.TB, other *wgNode, allowed ...netip.Prefix) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "public_key=%s\nendpoint=127.0.0.1:%d\nreplace_allowed_ips=true\n", other.pub, other.port)
	for _, p := range allowed {
		fmt.Fprintf(&b, "allowed_ip=%v\n", p)
	}
	if err := n.dev.IpcSet(b.String()); err != nil {
		t.Fatal(err)
	}
}

// send makes the node's TUN emit p: it is encrypted and sent to the peer
// that owns its destination.
func (n *wgNode) send(t testing.TB, p []byte) {
	t.Helper()
	select {
	case n.ct.Outbound <- bytes.Clone(p):
	case <-time.After(5 * time.Second):
		t.Fatal("send: TUN not read")
	}
}

// expect waits for a packet at the node's TUN for which match is true,
// skipping others.
func (n *wgNode) expect(t testing.TB, what string, match func([]byte) bool) []byte {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case p := <-n.ct.Inbound:
			if match(p) {
				return p
			}
			t.Logf("%s: skipping %x", what, p[:min(len(p), 40)])
		case <-deadline:
			t.Fatalf("%s: nothing arrived", what)
		}
	}
}

// expectNone checks that no packet matching match arrives for d.
func (n *wgNode) expectNone(t testing.TB, what string, d time.Duration, match func([]byte) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case p := <-n.ct.Inbound:
			if match(p) {
				t.Fatalf("%s: arrived: %x", what, p[:min(len(p), 40)])
			}
		case <-deadline:
			return
		}
	}
}

// hub is an edge device with a Router as its TUN and client and connector
// devices with channel TUNs.
type hub struct {
	r                *Router
	edge             *wgNode
	alice, bob, conn *wgNode
}

func newHub(t testing.TB, mod func(*Config)) *hub {
	t.Helper()
	h := &hub{r: newTestRouter(t, mod)}
	h.edge = newWGNode(t, "edge", h.r, nil)
	node := func(name string) *wgNode {
		ct := tuntest.NewChannelTUN()
		return newWGNode(t, name, ct.TUN(), ct)
	}
	h.alice, h.bob, h.conn = node("alice"), node("bob"), node("conn-a")
	everything := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("fd00::/8")}
	for name, n := range map[PeerID]*wgNode{"alice": h.alice, "bob": h.bob, "conn-a": h.conn} {
		h.edge.addPeer(t, n, h.r.AllowedIPs(name)...)
		// A standard client or connector config: everything in the test
		// ranges goes to the edge.
		n.addPeer(t, h.edge, everything...)
	}
	return h
}

func isUDP(src, dst netip.Addr) func([]byte) bool {
	return func(p []byte) bool {
		k, err := packet.ParseFlowKey(p)
		return err == nil && k.Proto == packet.ProtoUDP && k.SrcAddr() == src && k.DstAddr() == dst
	}
}

func isICMPTo(dst netip.Addr) func([]byte) bool {
	return func(p []byte) bool {
		k, err := packet.ParseFlowKey(p)
		return err == nil && (k.Proto == packet.ProtoICMPv4 || k.Proto == packet.ProtoICMPv6) && k.DstAddr() == dst
	}
}

func hopLimit(p []byte) uint8 {
	if p[0]>>4 == 4 {
		return p[8]
	}
	return p[7]
}

// TestWireGuard runs real wireguard-go devices: clients alice and bob and
// connector conn-a, each with a channel TUN, talking over UDP on 127.0.0.1
// to an edge device whose TUN is the Router.
func TestWireGuard(t *testing.T) {
	checkGoroutines(t)
	h := newHub(t, nil)

	t.Run("client to subnet", func(t *testing.T) {
		for _, c := range [][2]netip.Addr{{aliceV4, hostA4}, {aliceV6, hostA6}} {
			in := udpPacket(t, c[0], c[1], 64, 500)
			h.alice.send(t, in)
			got := h.conn.expect(t, "at conn-a", isUDP(c[0], c[1]))
			if hopLimit(got) != 63 || len(got) != len(in) {
				t.Fatalf("%v: hop limit %d len %d", c[1], hopLimit(got), len(got))
			}
			if c[0].Is4() {
				if ip, _ := packet.ParseIPv4(got); !ip.ChecksumValid() {
					t.Fatal("bad IPv4 checksum")
				}
			}
		}
	})
	t.Run("subnet to client", func(t *testing.T) {
		for _, c := range [][2]netip.Addr{{hostA4, aliceV4}, {hostA6, aliceV6}} {
			h.conn.send(t, udpPacket(t, c[0], c[1], 64, 500))
			if got := h.alice.expect(t, "at alice", isUDP(c[0], c[1])); hopLimit(got) != 63 {
				t.Fatalf("hop limit %d", hopLimit(got))
			}
		}
	})
	t.Run("client to client denied", func(t *testing.T) {
		before := h.r.Stats().Peers["alice"].Drops[DropACL]
		h.alice.send(t, udpPacket(t, aliceV4, bobV4, 64, 100))
		h.bob.expectNone(t, "at bob", 300*time.Millisecond, isUDP(aliceV4, bobV4))
		if got := h.r.Stats().Peers["alice"].Drops[DropACL]; got != before+1 {
			t.Fatalf("acl drops %d -> %d", before, got)
		}
	})
	t.Run("client to client rejected", func(t *testing.T) {
		if err := h.r.SetACL(ACLConfig{BuiltinDeny: "reject"}); err != nil {
			t.Fatal(err)
		}
		for _, c := range [][2]netip.Addr{{aliceV4, bobV4}, {aliceV6, bobV6}} {
			h.alice.send(t, udpPacket(t, c[0], c[1], 64, 100))
			_, _, typ, code, _, _ := icmpOf(t, h.alice.expect(t, "ICMP at alice", isICMPTo(c[0])))
			if c[0].Is4() && (typ != 3 || code != 13) || c[0].Is6() && (typ != 1 || code != 1) {
				t.Fatalf("%v: type %d code %d", c[1], typ, code)
			}
		}
	})
	t.Run("client to client allowed", func(t *testing.T) {
		err := h.r.SetACL(ACLConfig{Rules: []RuleConfig{
			{Action: "allow", From: Selector{Peers: []PeerID{"alice"}}, To: Selector{Peers: []PeerID{"bob"}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		h.alice.send(t, udpPacket(t, aliceV6, bobV6, 64, 100))
		h.bob.expect(t, "at bob", isUDP(aliceV6, bobV6))
	})
	t.Run("no route", func(t *testing.T) {
		for _, c := range [][2]netip.Addr{{aliceV4, nowhere4}, {aliceV6, nowhere6}} {
			in := udpPacket(t, c[0], c[1], 64, 300)
			h.alice.send(t, in)
			src, _, typ, code, _, quoted := icmpOf(t, h.alice.expect(t, "ICMP at alice", isICMPTo(c[0])))
			hl := 28
			if c[0].Is4() {
				if src != routerV4 || typ != 3 || code != 0 {
					t.Fatalf("v4: %v type %d code %d", src, typ, code)
				}
			} else {
				hl = 48
				if src != routerV6 || typ != 1 || code != 0 {
					t.Fatalf("v6: %v type %d code %d", src, typ, code)
				}
			}
			if !bytes.Equal(quoted[:hl], in[:hl]) {
				t.Fatalf("quoted header:\n%x\nwant\n%x", quoted[:hl], in[:hl])
			}
		}
	})
	t.Run("ttl 1", func(t *testing.T) {
		for _, c := range [][2]netip.Addr{{aliceV4, hostA4}, {aliceV6, hostA6}} {
			h.alice.send(t, udpPacket(t, c[0], c[1], 1, 300))
			_, _, typ, code, _, _ := icmpOf(t, h.alice.expect(t, "ICMP at alice", isICMPTo(c[0])))
			if c[0].Is4() && typ != 11 || c[0].Is6() && typ != 3 || code != 0 {
				t.Fatalf("type %d code %d", typ, code)
			}
		}
	})
	t.Run("malformed", func(t *testing.T) {
		before := h.r.Stats().Unattributed[DropMalformed]
		good := udpPacket(t, aliceV4, hostA4, 64, 200)
		badSum := bytes.Clone(good)
		badSum[10] ^= 0x55
		garbage := bytes.Clone(good) // IHL says 60 bytes of options: garbage after the header
		garbage[0] = 0x4f
		garbage[20] = 0x44 // an option whose length runs past the header
		garbage[21] = 0xff
		truncUDP := bytes.Clone(good[:24]) // UDP header cut short
		truncUDP[2], truncUDP[3] = 0, 24
		truncUDP[10], truncUDP[11] = 0, 0
		truncUDP[10], truncUDP[11] = byte(packet.Checksum(truncUDP[:20], 0)>>8), byte(packet.Checksum(truncUDP[:20], 0))
		v6bad := udpPacket(t, aliceV6, hostA6, 64, 200)
		v6bad[6] = packet.ProtoDestOpts // claims a destination-options header made of the UDP bytes
		v6bad[41] = 0xff                // 2048 bytes long: longer than the packet
		bad := [][]byte{badSum, garbage, truncUDP}
		for i, p := range append(bad, v6bad) {
			h.alice.send(t, p)
			mark := udpPacket(t, aliceV4, hostA4, 64, 100+i)
			h.alice.send(t, mark)
			h.conn.expect(t, "good flow", func(p []byte) bool { return bytes.Equal(p[12:], mark[12:]) })
		}
		got := h.r.Stats().Unattributed[DropMalformed] - before
		if got != 4 {
			t.Fatalf("malformed drops %d, want 4", got)
		}
	})
	t.Run("overlap refused", func(t *testing.T) {
		err := h.r.AddPeer(PeerConfig{Name: "conn-b", Kind: KindConnector, Routes: []netip.Prefix{lanA4}})
		if !errors.Is(err, ErrOverlap) {
			t.Fatalf("AddPeer: %v", err)
		}
	})
	s := h.r.Stats()
	t.Logf("stats: %+v", s)
	if s.Peers["conn-a"].TxPackets != 6 || s.Peers["alice"].RxPackets < 12 {
		t.Fatalf("counters: %+v", s.Peers)
	}
}
