package packet

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// TestClassifyWireGuardStock holds ClassifyWireGuard to real traffic: two
// stock wireguard-go devices (MTU 1420) talk through a relay on loopback
// that classifies every datagram either way, while IP packets of every
// length from 28 bytes to the MTU cross them. Each datagram must classify
// as what it is. (A rule read from the protocol alone, a transport length
// a multiple of 16, once dropped every full-sized packet.)
func TestClassifyWireGuardStock(t *testing.T) {
	ka, kb := key(t), key(t)
	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	a, ta := stockDevice(t, ka, kb, relay.LocalAddr().String(), "198.18.0.2/32")
	b, tb := stockDevice(t, kb, ka, "", "198.18.0.1/32")
	pa, pb := stockPort(t, a), stockPort(t, b)

	// The relay: a's datagrams to b, b's to a, each classified.
	var mu sync.Mutex
	var bad []string
	types := map[WireGuardType]int{}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := relay.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m, err := ClassifyWireGuard(buf[:n])
			mu.Lock()
			if err != nil {
				bad = append(bad, fmt.Sprintf("%d bytes, type %d: %v", n, buf[0], err))
			} else {
				types[m.Type]++
			}
			mu.Unlock()
			to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), pb)
			if from.Port() == pb {
				to = netip.AddrPortFrom(to.Addr(), pa)
			}
			relay.WriteToUDPAddrPort(buf[:n], to)
		}
	}()
	// b learns the relay as a's endpoint from a's first datagrams.
	src, dst := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	for n := 28; n <= tuntest.DefaultMTU; n++ {
		p := udpPacket(t, src, dst, n)
		ta.Outbound <- p
		select {
		case got := <-tb.Inbound:
			if !bytes.Equal(got, p) {
				t.Fatalf("%d bytes: b got %d other bytes", n, len(got))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the %d-byte packet did not arrive", n)
		}
		if n%97 == 0 || n == tuntest.DefaultMTU { // and some the other way
			tb.Outbound <- udpPacket(t, dst, src, n)
			select {
			case <-ta.Inbound:
			case <-time.After(5 * time.Second):
				t.Fatalf("the %d-byte packet back did not arrive", n)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("datagrams by type: %v", types)
	if len(bad) > 0 {
		t.Fatalf("%d of wireguard-go's datagrams refused, first: %s", len(bad), strings.Join(bad[:min(5, len(bad))], "; "))
	}
	if types[WireGuardInitiation] == 0 || types[WireGuardResponse] == 0 || types[WireGuardTransport] < tuntest.DefaultMTU-28 {
		t.Fatalf("datagrams by type %v: want a handshake and every packet", types)
	}
}

func key(t *testing.T) l3config.Key {
	t.Helper()
	k, err := l3config.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// stockDevice starts a wireguard-go device with key, peered with peer at
// endpoint (none: it waits to be reached), routing allowed to it.
func stockDevice(t *testing.T, key, peer l3config.Key, endpoint, allowed string) (*device.Device, *tuntest.ChannelTUN) {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	d := device.NewDevice(ct.TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, ""))
	t.Cleanup(d.Close)
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nallowed_ip=%s\n", key.Hex(), peer.PublicKey().Hex(), allowed)
	if endpoint != "" {
		cfg += "endpoint=" + endpoint + "\n"
	}
	if err := d.IpcSet(cfg); err != nil {
		t.Fatal(err)
	}
	if err := d.Up(); err != nil {
		t.Fatal(err)
	}
	return d, ct
}

func stockPort(t *testing.T, d *device.Device) uint16 {
	t.Helper()
	s, err := d.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			var p uint16
			fmt.Sscan(v, &p)
			return p
		}
	}
	t.Fatal("no listen port")
	return 0
}

// udpPacket builds an n-byte IPv4 UDP packet from src to dst.
func udpPacket(t *testing.T, src, dst netip.Addr, n int) []byte {
	t.Helper()
	b, err := AppendIPv4(nil, &IPv4Header{TTL: 64, Protocol: ProtoUDP, Src: src, Dst: dst}, n-20)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = AppendUDP(b, &UDPHeader{SrcPort: 1, DstPort: 2}, n-28); err != nil {
		t.Fatal(err)
	}
	return append(b, make([]byte, n-28)...)
}
