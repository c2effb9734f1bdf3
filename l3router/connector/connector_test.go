package connector

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/onramp-net/onramp/l3router/l3config"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// testConfig is a valid connector configuration with test addresses, as
// ParseConnector fills it.
func testConfig(t testing.TB) *l3config.Connector {
	t.Helper()
	priv, err := l3config.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	edge, err := l3config.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &l3config.Connector{
		Name:       "site-a",
		PrivateKey: priv,
		Addresses:  []netip.Prefix{pfx("198.18.96.2/32"), pfx("fd00:96::2/128")},
		Edge:       l3config.EdgePeer{PublicKey: edge.PublicKey(), Endpoint: "198.18.20.1:51820"},
		Subnets:    []netip.Prefix{pfx("198.18.30.0/24"), pfx("fd00:30::/64")},
		Routes:     []netip.Prefix{pfx("198.18.96.0/20"), pfx("fd00:96::/48")},
	}
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c, err = l3config.ParseConnector(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPlan(t *testing.T) {
	cfg := testConfig(t)
	cfg.Addresses = cfg.Addresses[:1] // IPv4 only
	p := NewPlan(cfg)
	want := []Route{
		{Dst: pfx("198.18.96.0/20"), Src: netip.MustParseAddr("198.18.96.2")},
		{Dst: pfx("fd00:96::/48")}, // no IPv6 address: no source
	}
	if !slices.Equal(p.Routes, want) {
		t.Fatalf("routes %v, want %v", p.Routes, want)
	}
	if !slices.Equal(p.AllowedIPs, cfg.Routes) {
		t.Fatalf("allowed IPs %v, want the routes %v", p.AllowedIPs, cfg.Routes)
	}
	if !p.Forward4 || !p.Forward6 {
		t.Fatalf("forwarding %v %v, want both", p.Forward4, p.Forward6)
	}
	steps := strings.Join(p.Steps(), "\n")
	for _, s := range []string{
		"create TUN onr0, MTU 1420",
		"route 198.18.96.0/20 dev onr0 src 198.18.96.2\n",
		"route fd00:96::/48 dev onr0\n",
		"at 198.18.20.1:51820 from a random UDP port, keepalive 25s",
		"enable IPv6 forwarding",
	} {
		if !strings.Contains(steps, s) {
			t.Errorf("steps lack %q:\n%s", s, steps)
		}
	}

	// Forwarding only for the families in use, and none when turned off.
	cfg.Routes = cfg.Routes[:1]
	cfg.Subnets = cfg.Subnets[:1]
	if p := NewPlan(cfg); !p.Forward4 || p.Forward6 {
		t.Fatalf("IPv4-only config: forwarding %v %v, want IPv4 only", p.Forward4, p.Forward6)
	}
	off := false
	cfg.Forwarding = &off
	if p := NewPlan(cfg); p.Forward4 || p.Forward6 {
		t.Fatal("forwarding: false still enables forwarding")
	}
	cfg.Routes = nil
	if s := strings.Join(NewPlan(cfg).Steps(), "\n"); !strings.Contains(s, "accept no packets from the edge") {
		t.Fatalf("empty routes not pointed out:\n%s", s)
	}
}

func TestStatsReady(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		s    Stats
		want bool
	}{
		{Stats{LinkUp: true}, false},
		{Stats{LinkUp: true, LastHandshake: now.Add(-10 * time.Second)}, true},
		{Stats{LinkUp: true, LastHandshake: now.Add(-ReadyWindow - time.Second)}, false},
		{Stats{LinkUp: false, LastHandshake: now}, false},
	} {
		if got := tc.s.Ready(now); got != tc.want {
			t.Errorf("%+v: ready %v, want %v", tc.s, got, tc.want)
		}
	}
}

// fakeTUN is a tun.Device that returns batches of fixed sizes.
type fakeTUN struct {
	events   chan tun.Event
	sizes    []int // of each Read's packets
	written  int
	writeErr error
	dsts     []netip.Addr // of the packets written, if record
	record   bool
}

func (f *fakeTUN) File() *os.File           { return nil }
func (f *fakeTUN) MTU() (int, error)        { return 1420, nil }
func (f *fakeTUN) Name() (string, error)    { return "fake", nil }
func (f *fakeTUN) Events() <-chan tun.Event { return f.events }
func (f *fakeTUN) Close() error             { close(f.events); return nil }
func (f *fakeTUN) BatchSize() int           { return len(f.sizes) }

func (f *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return copy(sizes, f.sizes), nil
}

func (f *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	f.written += len(bufs)
	if f.record {
		for _, b := range bufs {
			f.dsts = append(f.dsts, ipDst(b[offset:]))
		}
	}
	return len(bufs), f.writeErr
}

// ipPacket returns a TUN buffer (offset 16) with an IP packet of size
// bytes in all from src to dst (only the header fields the connector
// reads are set).
func ipPacket(src, dst netip.Addr, size int) []byte {
	b := make([]byte, 16+size)
	p := b[16:]
	if dst.Is4() {
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:4], uint16(size))
		s, d := src.As4(), dst.As4()
		copy(p[12:16], s[:])
		copy(p[16:20], d[:])
		return b
	}
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:6], uint16(size-40))
	s, d := src.As16(), dst.As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	return b
}

// ipDst returns the destination of an IP packet (the zero Addr if it has
// none).
func ipDst(p []byte) netip.Addr {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		return netip.AddrFrom4([4]byte(p[16:20]))
	case len(p) >= 40 && p[0]>>4 == 6:
		return netip.AddrFrom16([16]byte(p[24:40]))
	}
	return netip.Addr{}
}

func TestTunDev(t *testing.T) {
	f := &fakeTUN{events: make(chan tun.Event), sizes: []int{100, 1400, 60}}
	d := newTunDev(f, NewPlan(testConfig(t)))
	bufs := make([][]byte, 3)
	for i := range bufs {
		bufs[i] = make([]byte, 2000)
	}
	sizes := make([]int, 3)
	if n, err := d.Read(bufs, sizes, 16); n != 3 || err != nil {
		t.Fatalf("read %d %v", n, err)
	}
	client, lan := netip.MustParseAddr("198.18.96.10"), netip.MustParseAddr("198.18.30.2")
	out := [][]byte{ipPacket(client, lan, 84), ipPacket(client, lan, 1280)}
	if _, err := d.Write(out, 16); err != nil {
		t.Fatal(err)
	}
	f.writeErr = errors.New("refused")
	if _, err := d.Write([][]byte{ipPacket(client, lan, 84)}, 16); err == nil {
		t.Fatal("write error lost")
	}

	// Up and down are recorded, not passed on; MTU updates are.
	f.events <- tun.EventDown
	f.events <- tun.EventUp
	f.events <- tun.EventMTUUpdate
	select {
	case e := <-d.Events():
		if e != tun.EventMTUUpdate {
			t.Fatalf("event %v passed to the device", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("MTU update not passed on")
	}
	var s Stats
	d.stats(&s)
	want := Stats{ToEdgePackets: 3, ToEdgeBytes: 1560, FromEdgePackets: 3, FromEdgeBytes: 84 + 1280 + 84,
		TUNWriteErrors: 1, LinkUp: true}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("stats\n%+v, want\n%+v", s, want)
	}

	f.events <- tun.EventDown
	f.Close()
	if _, ok := <-d.Events(); ok {
		t.Fatal("device's event channel not closed after the TUN's")
	}
	d.stats(&s)
	if s.LinkUp {
		t.Fatal("link down not recorded")
	}
}

// TestTunDevAccept: of the packets the edge sends, only those to the
// connector's subnets and its own addresses reach the TUN, so the host
// does not route the rest to itself, its other networks or the internet;
// the others are dropped and counted.
func TestTunDevAccept(t *testing.T) {
	f := &fakeTUN{events: make(chan tun.Event), record: true}
	cfg := testConfig(t) // subnets 198.18.30.0/24, fd00:30::/64; addresses 198.18.96.2, fd00:96::2
	d := newTunDev(f, NewPlan(cfg))
	defer f.Close()
	client4, client6 := netip.MustParseAddr("198.18.96.10"), netip.MustParseAddr("fd00:96::10")
	var in, out []netip.Addr
	for _, s := range []string{"198.18.30.2", "198.18.30.255", "fd00:30::2", "fd00:30::ffff:1", "198.18.96.2", "fd00:96::2"} {
		in = append(in, netip.MustParseAddr(s))
	}
	for _, s := range []string{
		"198.18.31.2",    // next to the subnet
		"198.18.20.2",    // the host's uplink
		"198.18.96.11",   // another client: the edge routes those itself
		"198.18.255.255", // broadcast
		"fd00:31::2",     // next to the IPv6 subnet
		"fd00:96::11",    // another client
		"fd00:30:0:1::2", // the next /64
		"ff02::1",        // multicast
	} {
		out = append(out, netip.MustParseAddr(s))
	}
	var batch [][]byte
	for i := range max(len(in), len(out)) {
		for _, l := range [][]netip.Addr{in, out} {
			if i < len(l) {
				src := client4
				if l[i].Is6() {
					src = client6
				}
				batch = append(batch, ipPacket(src, l[i], 100))
			}
		}
	}
	// Not IP packets, or too short for a destination.
	batch = append(batch, make([]byte, 16+100), ipPacket(client4, in[0], 100)[:16+19], ipPacket(client6, in[2], 100)[:16+39], make([]byte, 16))
	if _, err := d.Write(batch, 16); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.dsts, in) {
		t.Errorf("written to the TUN: %v, want %v", f.dsts, in)
	}
	var s Stats
	d.stats(&s)
	if want := uint64(len(out) + 4); s.DroppedDestination != want || s.FromEdgePackets != uint64(len(in)) {
		t.Errorf("dropped %d, written %d; want %d, %d", s.DroppedDestination, s.FromEdgePackets, want, len(in))
	}

	// A reload with another subnet: its packets go in, the old one's not.
	cfg.Subnets = []netip.Prefix{pfx("198.18.31.0/24")}
	d.setAccept(NewPlan(cfg))
	f.dsts = nil
	if _, err := d.Write([][]byte{ipPacket(client4, out[0], 60), ipPacket(client4, in[0], 60), ipPacket(client4, in[4], 60)}, 16); err != nil {
		t.Fatal(err)
	}
	if want := []netip.Addr{out[0], in[4]}; !slices.Equal(f.dsts, want) {
		t.Errorf("after the reload: written %v, want %v", f.dsts, want)
	}
}
