package testnet

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// FloodSpoofedUDP sends UDP datagrams of size bytes to dst from inside the
// node, as fast as one goroutine can for d, each from a random address of
// from (never one of not) and a random port: a spoofed-source flood, sent on
// a raw IPv4 socket that writes its own IP header (IP_HDRINCL). It returns
// how many were sent.
func (node *Node) FloodSpoofedUDP(dst netip.AddrPort, from netip.Prefix, not []netip.Addr, size int, d time.Duration) (sent int64, err error) {
	if !dst.Addr().Is4() || !from.Addr().Is4() || size < 0 || size > 1400 {
		return 0, fmt.Errorf("testnet: spoofed flood: IPv4 only, payload up to 1400 bytes")
	}
	for _, p := range []netip.Prefix{from, netip.PrefixFrom(dst.Addr(), 32)} {
		if !Allowed(p.Addr()) || !Allowed(p.Masked().Addr()) {
			return 0, fmt.Errorf("testnet: spoofed flood: %s is outside the test ranges", p)
		}
	}
	err = node.Do(func() error {
		// IPPROTO_RAW implies IP_HDRINCL; the kernel fills in the IP
		// checksum and total length. The UDP checksum is left 0 (none).
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		pkt := make([]byte, 28+size)
		pkt[0] = 0x45
		pkt[8] = 64
		pkt[9] = unix.IPPROTO_UDP
		da := dst.Addr().As4()
		copy(pkt[16:20], da[:])
		pkt[22], pkt[23] = byte(dst.Port()>>8), byte(dst.Port())
		pkt[24], pkt[25] = byte((8+size)>>8), byte(8+size)
		base := from.Masked().Addr().As4()
		hostBits := 32 - from.Bits()
		to := &unix.SockaddrInet4{Addr: da}
		deadline := time.Now().Add(d)
		for i := 0; ; i++ {
			if i&1023 == 0 && time.Now().After(deadline) {
				return nil
			}
			r := rand.Uint64()
			host := uint32(r) & (1<<hostBits - 1)
			src := netip.AddrFrom4([4]byte{base[0] | byte(host>>24), base[1] | byte(host>>16), base[2] | byte(host>>8), base[3] | byte(host)})
			if src == from.Masked().Addr() || slices.Contains(not, src) {
				continue
			}
			sa := src.As4()
			copy(pkt[12:16], sa[:])
			pkt[20], pkt[21] = byte(r>>32), byte(r>>40) // source port
			if err := unix.Sendto(fd, pkt, 0, to); err != nil {
				if err == unix.ENOBUFS || err == unix.EAGAIN {
					continue
				}
				return fmt.Errorf("send spoofed datagram: %w", err)
			}
			sent++
		}
	})
	return sent, err
}
