package connector

import (
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// BenchmarkTunDev measures the connector's own per-packet code: counting
// a batch of conn.IdealBatchSize packets at the TUN each way and, on the
// way in, checking each destination against the subnets and addresses
// (the fake TUN does no work). Everything else per packet happens in the
// WireGuard device and the kernel.
func BenchmarkTunDev(b *testing.B) {
	sizes := make([]int, conn.IdealBatchSize)
	for i := range sizes {
		sizes[i] = 1420
	}
	f := &fakeTUN{events: make(chan tun.Event), sizes: sizes}
	cfg := testConfig(b)
	// A few more subnets, as a site with several LANs has; the packets
	// go to the last.
	cfg.Subnets = append([]netip.Prefix{pfx("198.18.40.0/24"), pfx("198.18.50.0/24"), pfx("fd00:40::/64")}, cfg.Subnets...)
	d := newTunDev(f, NewPlan(cfg))
	defer f.Close()
	bufs := make([][]byte, conn.IdealBatchSize)
	for i := range bufs {
		bufs[i] = ipPacket(netip.MustParseAddr("fd00:96::10"), netip.MustParseAddr("fd00:30::2"), 1420)
	}
	got := make([]int, len(bufs))
	b.Run("Read", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(bufs) * 1420))
		for b.Loop() {
			if _, err := d.Read(bufs, got, 16); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Write", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(bufs) * 1420))
		for b.Loop() {
			if _, err := d.Write(bufs, 16); err != nil {
				b.Fatal(err)
			}
		}
		if f.written == 0 {
			b.Fatal("nothing written")
		}
	})
}
