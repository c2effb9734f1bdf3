package connector

import (
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// BenchmarkTunDev measures the connector's only per-packet code: counting
// a batch of conn.IdealBatchSize packets at the TUN, each way (the fake
// TUN below does no work). Everything else per packet happens inside
// wireguard-go and the kernel.
func BenchmarkTunDev(b *testing.B) {
	sizes := make([]int, conn.IdealBatchSize)
	for i := range sizes {
		sizes[i] = 1420
	}
	f := &fakeTUN{events: make(chan tun.Event), sizes: sizes}
	d := newTunDev(f)
	defer f.Close()
	bufs := make([][]byte, conn.IdealBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, 16+1420)
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
	})
}
