//go:build linux

package wg

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// TUN I/O of a connector's device: packets decrypted straight into TUN
// buffers and written in batches; packets read from the TUN sealed for the
// one peer.

// initTUN makes the loop's TUN buffers.
func (l *loop) initTUN() {
	l.tunMem = make([][]byte, tunBatchLen)
	l.tunBatch = make([][]byte, tunBatchLen)
	for i := range l.tunMem {
		l.tunMem[i] = make([]byte, tunBufSize)
	}
}

// toTUN queues the decrypted packet pt (in tunMem[ntun]) for the TUN if
// its source is in p's allowed IPs.
//
// With several paths (paths.go), p is the one it came on, which the source
// is remembered with.
func (l *loop) toTUN(p *Peer, pt []byte) {
	n, src, _ := ipAddrs(pt)
	m := p.owner()
	if n == 0 || !m.allows(src) {
		m.dropped.Add(1)
		return
	}
	if s := m.paths.Load(); s != nil {
		s.learn(src, p)
	}
	l.tunBatch[l.ntun] = l.tunMem[l.ntun][:tunOffset+n]
	l.ntun++
}

func (l *loop) flushTUN() {
	if _, err := l.d.tun.Write(l.tunBatch[:l.ntun], tunOffset); err != nil {
		l.d.debug("write to TUN", "err", err)
	}
	l.ntun = 0
}

// ipAddrs returns the IP length of the packet at the start of b (0 if b
// is not a whole IPv4 or IPv6 packet) and its addresses.
func ipAddrs(b []byte) (n int, src, dst netip.Addr) {
	if len(b) < 20 {
		return 0, src, dst
	}
	switch b[0] >> 4 {
	case 4:
		n = int(binary.BigEndian.Uint16(b[2:4]))
		if n < 20 || n > len(b) {
			return 0, src, dst
		}
		return n, netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	case 6:
		if len(b) < 40 {
			return 0, src, dst
		}
		n = 40 + int(binary.BigEndian.Uint16(b[4:6]))
		if n > len(b) {
			return 0, src, dst
		}
		return n, netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	}
	return 0, src, dst
}

// tunReader reads packets from the TUN, encrypts them in place for the
// peer and sends them in GSO batches.
func (d *Device) tunReader() {
	defer d.wg.Done()
	l := &loop{d: d}
	if len(d.socks4) > 0 {
		l.out4 = d.socks4[0].newBatch()
	}
	if len(d.socks6) > 0 {
		l.out6 = d.socks6[0].newBatch()
	}
	bs := max(1, d.tun.BatchSize())
	mem := make([][]byte, bs)
	bufs := make([][]byte, bs)
	sizes := make([]int, bs)
	for i := range mem {
		mem[i] = make([]byte, tunOffset+max(d.mtu, 1<<16)+sizeTag+16)
	}
	for {
		copy(bufs, mem)
		n, err := d.tun.Read(bufs, sizes, tunOffset)
		if p := d.tunPeer.Load(); p != nil && n > 0 {
			l.fromTUN(p, mem, sizes[:n], d.now())
		}
		if err != nil {
			select {
			case <-d.closed:
				return
			default:
			}
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if !errors.Is(err, tun.ErrTooManySegments) {
				d.debug("read from TUN", "err", err)
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// fromTUN encrypts the packets read from the TUN (packet i at
// mem[i][tunOffset:][:sizes[i]]) in place for p and sends them, each on
// its path if p has several (paths.go).
func (l *loop) fromTUN(p *Peer, mem [][]byte, sizes []int, now int64) {
	for i, m := range sizes {
		pkt := mem[i][tunOffset : tunOffset+m]
		k, _, dst := ipAddrs(pkt)
		if k == 0 || !p.allows(dst) {
			continue // not for the peer (wireguard-go drops these too)
		}
		pad := padded(m, l.d.mtu)
		clear(mem[i][tunOffset+m : tunOffset+pad])
		l.sealAndQueue(p.pathTo(dst, now), mem[i], pad, now)
	}
	l.flush()
}
