package wg

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Control message sizes (CMSG_SPACE): a UDP_GRO segment size (an int) or a
// UDP_SEGMENT one (a uint16), and an IP_PKTINFO or IPV6_PKTINFO.
const (
	cmsgSpaceGRO   = unix.SizeofCmsghdr + 8
	cmsgSpacePkt4  = unix.SizeofCmsghdr + (unix.SizeofInet4Pktinfo+7)&^7
	cmsgSpacePkt6  = unix.SizeofCmsghdr + (unix.SizeofInet6Pktinfo+7)&^7
	controlBufSize = cmsgSpaceGRO + cmsgSpacePkt6 // one message's control data, either way
)

// controlBuf holds one message's control data, aligned for the cmsg
// headers and payloads read and written in place.
type controlBuf struct {
	_ [0]uint64
	b [controlBufSize]byte
}

// socket is one UDP socket of the device (IPv4 or IPv6; several per family
// share the port with SO_REUSEPORT) and the batch buffers of the one loop
// that receives on it: the device's bind outside tests. The loops send on
// it through their senders (its batches), other goroutines with sendOne
// (handshakes, keepalives).
type socket struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	v6    bool
	noGSO atomic.Bool // UDP_SEGMENT failed once: send segment by segment
	gro   bool        // UDP_GRO is on

	// receive side
	rmsgs  [recvBatch]unix.Mmsghdr
	riovs  [recvBatch]unix.Iovec
	rnames [recvBatch]unix.RawSockaddrInet6
	roob   [recvBatch]controlBuf
	rbufs  [recvBatch][]byte
	// recvFn is the recvmmsg call for rc.Read, made once (a closure per
	// call would be allocated per batch); it leaves its result in rn,
	// rerr.
	recvFn func(fd uintptr) bool
	rn     int
	rerr   syscall.Errno
}

// sender is one loop's batch of messages to send on a socket (the
// socket's batch): the messages, their iovecs, addresses and control
// messages (GSO, source). Only its loop uses it.
type sender struct {
	s      *socket
	smsgs  [sendBatch]unix.Mmsghdr
	snames [sendBatch]unix.RawSockaddrInet6
	soob   [sendBatch]controlBuf
	// each message's destination, its peer (which forgets a source
	// address that is gone), segment size, segments and bytes
	sdst   [sendBatch]endpoint
	speer  [sendBatch]*Peer
	sseg   [sendBatch]int
	nsegs  [sendBatch]int
	nbytes [sendBatch]int
	siovs  [maxIovs]unix.Iovec
	nmsgs  int
	niovs  int
	// lastOpen: the last message may take more segments (all so far
	// were of its segment size)
	lastOpen bool
	// sendFn is the sendmmsg call for rc.Write from message done on,
	// made once; it leaves its result in sn, serr.
	sendFn func(fd uintptr) bool
	done   int
	sn     int
	serr   syscall.Errno
}

// listen opens a socket of network ("udp4" or "udp6") on addr (invalid or
// unspecified: every address of the family) and port, with SO_REUSEPORT,
// the local end of each datagram reported (IP_PKTINFO, IPV6_RECVPKTINFO),
// UDP GRO where the kernel handles it (groKernel), UDP GSO where it has it,
// and 4 MiB buffers where allowed.
func listen(network string, addr netip.Addr, port int) (*socket, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				serr = fmt.Errorf("SO_REUSEPORT: %w", serr)
				return
			}
			if network == "udp4" {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
			}
			if serr != nil {
				serr = fmt.Errorf("packet info (IP_PKTINFO, IPV6_RECVPKTINFO): %w", serr)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	host := ""
	if addr.IsValid() && !addr.IsUnspecified() {
		host = addr.String()
	}
	pc, err := lc.ListenPacket(context.Background(), network, net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	c := pc.(*net.UDPConn)
	s := &socket{conn: c, v6: network == "udp6"}
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
	if s.rc, err = c.SyscallConn(); err != nil {
		c.Close()
		return nil, err
	}
	s.rc.Control(func(fd uintptr) {
		// As wireguard-go: GRO from kernel 5.12 on, and only if the
		// option reads back on; GSO if the kernel knows UDP_SEGMENT
		// (else a "GSO" message would leave as one huge datagram).
		if groKernel() && unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil {
			v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO)
			s.gro = err == nil && v == 1
		}
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		s.noGSO.Store(err != nil)
	})
	for i := range s.rbufs {
		s.rbufs[i] = make([]byte, recvBufSize)
		s.riovs[i] = unix.Iovec{Base: &s.rbufs[i][0]}
		s.riovs[i].SetLen(recvBufSize)
		h := &s.rmsgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&s.rnames[i]))
		h.Iov = &s.riovs[i]
		h.Iovlen = 1
	}
	return s, nil
}

// groKernel reports whether the kernel is one whose UDP GRO the device
// uses: 5.12 or later, where wireguard-go turns it on (older kernels cannot
// read UDP_GRO back, 98184612aca0, and their GRO is "kind of buggy" in
// wireguard-go's words). The kernel release is read once.
var groKernel = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	major, minor, ok := parseKernelVersion(unix.ByteSliceToString(u.Release[:]))
	return ok && (major > 5 || major == 5 && minor >= 12)
})

// parseKernelVersion returns the major and minor version of a kernel
// release ("6.1.0-18-amd64": 6, 1); ok is false if it does not start with
// them.
func parseKernelVersion(release string) (major, minor int, ok bool) {
	num := func(s string) (int, string, bool) {
		n, i := 0, 0
		for ; i < len(s) && '0' <= s[i] && s[i] <= '9' && i < 6; i++ {
			n = n*10 + int(s[i]-'0')
		}
		return n, s[i:], i > 0
	}
	major, rest, ok := num(release)
	if !ok || len(rest) < 2 || rest[0] != '.' {
		return 0, 0, false
	}
	minor, rest, ok = num(rest[1:])
	if !ok || rest != "" && '0' <= rest[0] && rest[0] <= '9' {
		return 0, 0, false
	}
	return major, minor, true
}

// listenUDP is the device's listenFunc outside tests: listen's socket.
func listenUDP(network string, addr netip.Addr, port int) (bind, error) {
	s, err := listen(network, addr, port)
	if err != nil {
		return nil, err // no typed nil in the interface
	}
	return s, nil
}

// newBatch returns a sender on s.
func (s *socket) newBatch() batch { return &sender{s: s} }

// close closes the socket; a loop in recv returns.
func (s *socket) close() error { return s.conn.Close() }

// datagram returns datagram i of the last recv: see bind.
func (s *socket) datagram(i int) (b []byte, seg int, src netip.AddrPort, to local) {
	seg, to = s.control(i)
	return s.rbufs[i][:s.rmsgs[i].Len], seg, s.source(i), to
}

// port returns the socket's local port.
func (s *socket) port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

// recv waits for datagrams and returns how many it read into s.rbufs;
// datagram i is s.rbufs[i][:s.rmsgs[i].Len] from s.source(i), in
// segments of the size s.control(i) returns, sent to its local end.
func (s *socket) recv() (int, error) {
	for i := range s.rmsgs {
		h := &s.rmsgs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.Control = &s.roob[i].b[0]
		h.SetControllen(len(s.roob[i].b))
		h.Flags = 0
	}
	if s.recvFn == nil {
		s.recvFn = func(fd uintptr) bool {
			// Raw: the socket does not block, and the runtime's syscall
			// bookkeeping would wake sysmon at every batch (see sender.flush).
			r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.rmsgs[0])), recvBatch, 0, 0, 0)
			if e == unix.EAGAIN {
				return false
			}
			s.rn, s.rerr = int(r), e
			return true
		}
	}
	if err := s.rc.Read(s.recvFn); err != nil {
		return 0, err
	}
	if s.rerr != 0 {
		return 0, s.rerr
	}
	return s.rn, nil
}

// source returns the sender of datagram i.
func (s *socket) source(i int) netip.AddrPort {
	sa := &s.rnames[i]
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	if sa.Family == unix.AF_INET {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
}

// control returns the GRO segment size of datagram i (its length if it is
// a single datagram) and its local end.
func (s *socket) control(i int) (seg int, to local) {
	return parseControl(s.roob[i].b[:s.rmsgs[i].Hdr.Controllen], int(s.rmsgs[i].Len))
}

// parseControl reads the control messages oob of an n-byte datagram: its
// GRO segment size (n if it is a single datagram) and its local end (zero
// if oob has no packet info).
func parseControl(oob []byte, n int) (seg int, to local) {
	seg = n
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		switch {
		case h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(data) >= 2:
			if g := int(*(*uint16)(unsafe.Pointer(&data[0]))); g > 0 && g < n {
				seg = g
			}
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			// spec_dst, the local address the reply leaves from (for
			// unicast the destination of the datagram), as
			// wireguard-go and kernel WireGuard take it.
			to = local{addr: netip.AddrFrom4(pi.Spec_dst), ifindex: uint32(pi.Ifindex)}
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			to = local{addr: netip.AddrFrom16(pi.Addr), ifindex: pi.Ifindex}
		}
		oob = rest
	}
	if to.addr.IsMulticast() {
		// An IPv6 datagram to a group the host is in (ff02::1): a
		// reply cannot come from there; the routing table picks.
		to = local{}
	}
	return seg, to
}

// putControl writes a message's control messages into oob (controlBufSize
// bytes at least) and returns their length: the GSO segment size seg (0:
// none) and the source src (zero: none, the routing table picks one).
func putControl(oob []byte, seg int, src local) int {
	n := 0
	if seg > 0 {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(seg)
		n = unix.CmsgSpace(2)
	}
	switch {
	case src.addr.Is4():
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[n]))
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&oob[n+unix.CmsgLen(0)]))
		*pi = unix.Inet4Pktinfo{Ifindex: int32(src.ifindex), Spec_dst: src.addr.As4()}
		n += unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	case src.addr.Is6():
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[n]))
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&oob[n+unix.CmsgLen(0)]))
		*pi = unix.Inet6Pktinfo{Addr: src.addr.As16(), Ifindex: src.ifindex}
		n += unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	}
	return n
}

// sourceGone reports whether a send that named a source address failed
// for it: the address is no longer the host's (EINVAL; ENETUNREACH from
// IPv4 on recent kernels), its interface is gone (ENODEV), or the
// interface no longer routes to the peer (ENETUNREACH). Sent again without
// the source, the message takes the routing table's.
func sourceGone(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENETUNREACH) ||
		errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EADDRNOTAVAIL)
}

// queue adds msg (one datagram) for p at dst to the pending batch.
// Consecutive datagrams to one endpoint of equal size (the last may be
// shorter) go out as one GSO message. msg must stay untouched until flush.
func (s *sender) queue(p *Peer, dst endpoint, msg []byte) error {
	j := s.nmsgs - 1
	if s.lastOpen && !s.s.noGSO.Load() && dst == s.sdst[j] && len(msg) <= s.sseg[j] &&
		s.nsegs[j] < maxSegments && s.nbytes[j]+len(msg) <= maxGSOBytes && s.niovs < maxIovs {
		prev := &s.siovs[s.niovs-1]
		// Segments of one received super-datagram are adjacent: extend
		// the iovec instead of adding one.
		if uintptr(unsafe.Pointer(prev.Base))+uintptr(prev.Len) == uintptr(unsafe.Pointer(&msg[0])) {
			prev.Len += uint64(len(msg))
		} else {
			s.siovs[s.niovs] = unix.Iovec{Base: &msg[0]}
			s.siovs[s.niovs].SetLen(len(msg))
			s.niovs++
			s.smsgs[j].Hdr.Iovlen++
		}
		s.nsegs[j]++
		s.nbytes[j] += len(msg)
		s.lastOpen = len(msg) == s.sseg[j]
		return nil
	}
	if s.nmsgs == sendBatch || s.niovs == maxIovs {
		if err := s.flush(); err != nil {
			return err
		}
	}
	i := s.nmsgs
	s.siovs[s.niovs] = unix.Iovec{Base: &msg[0]}
	s.siovs[s.niovs].SetLen(len(msg))
	h := &s.smsgs[i].Hdr
	*h = unix.Msghdr{Iov: &s.siovs[s.niovs], Iovlen: 1}
	h.Name, h.Namelen = putSockaddr(&s.snames[i], dst.AddrPort, s.s.v6)
	s.sdst[i], s.speer[i], s.sseg[i], s.nsegs[i], s.nbytes[i] = dst, p, len(msg), 1, len(msg)
	s.niovs++
	s.nmsgs++
	s.lastOpen = true
	return nil
}

// putSockaddr writes dst into sa for a socket of the family v6 says.
func putSockaddr(sa *unix.RawSockaddrInet6, dst netip.AddrPort, v6 bool) (*byte, uint32) {
	if !v6 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.Addr().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], dst.Port())
		return (*byte)(unsafe.Pointer(sa4)), unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: dst.Addr().As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], dst.Port())
	return (*byte)(unsafe.Pointer(sa)), unix.SizeofSockaddrInet6
}

// setControl sets message i's control messages: its GSO segment size if
// it has several segments, and the source src.
func (s *sender) setControl(i int, src local) {
	seg := 0
	if s.nsegs[i] > 1 {
		seg = s.sseg[i]
	}
	h := &s.smsgs[i].Hdr
	if n := putControl(s.soob[i].b[:], seg, src); n > 0 {
		h.Control = &s.soob[i].b[0]
		h.SetControllen(n)
	} else {
		h.Control = nil
		h.SetControllen(0)
	}
}

// flush sends the pending messages. A message that fails is dropped (UDP
// semantics); the error returned is the last one, for the log. A message
// whose source address is gone goes again without it, and its peer
// forgets the address.
func (s *sender) flush() error {
	if s.nmsgs == 0 {
		return nil
	}
	for i := 0; i < s.nmsgs; i++ {
		s.setControl(i, s.sdst[i].local)
	}
	if s.sendFn == nil {
		s.sendFn = func(fd uintptr) bool {
			// Raw: the socket does not block (EAGAIN waits on Go's
			// poller), so the runtime need not know the thread is in the
			// kernel. With that bookkeeping (entersyscall) every batch
			// after a quiet spell woke sysmon, which then polled every
			// 20 µs for a millisecond: half of the edge's thread switches
			// in an L3 bulk run on one CPU.
			r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.smsgs[s.done])), uintptr(s.nmsgs-s.done), 0, 0, 0)
			if e == unix.EAGAIN {
				return false
			}
			s.sn, s.serr = int(r), e
			return true
		}
	}
	var last error
	s.done = 0
	retry := -1 // the message sent again without its source
	for s.done < s.nmsgs {
		done := s.done
		err := s.s.rc.Write(s.sendFn)
		n, errno := s.sn, s.serr
		if err != nil {
			last = err
			break
		}
		if errno == 0 {
			if retry == done {
				s.forgetSource(done)
			}
			s.done = done + n
			continue
		}
		switch {
		case errno == unix.EIO && s.nsegs[done] > 1:
			// No UDP GSO on this path: send segment by segment from
			// now on.
			s.s.noGSO.Store(true)
			s.sendSplit(done)
		case retry != done && s.sdst[done].local.addr.IsValid() && sourceGone(errno):
			retry = done
			s.setControl(done, local{})
			continue
		default:
			last = errno
		}
		s.done = done + 1 // drop the message at fault, go on with the rest
	}
	clear(s.speer[:s.nmsgs])
	s.nmsgs, s.niovs, s.lastOpen = 0, 0, false
	return last
}

// forgetSource is for message i, which went out without its source
// address after failing with it: its peer forgets the address, and the
// batch's later messages from it go without it.
func (s *sender) forgetSource(i int) {
	gone := s.sdst[i]
	if p := s.speer[i]; p != nil {
		p.forgetLocal(gone)
	}
	for j := i + 1; j < s.nmsgs; j++ {
		if s.sdst[j].local == gone.local {
			s.setControl(j, local{})
		}
	}
}

// sendSplit sends message i's segments one by one (the fallback when the
// kernel refuses UDP_SEGMENT).
func (s *sender) sendSplit(i int) {
	var buf []byte
	for _, v := range unsafe.Slice(s.smsgs[i].Hdr.Iov, s.smsgs[i].Hdr.Iovlen) {
		buf = append(buf, unsafe.Slice(v.Base, v.Len)...)
	}
	for off := 0; off < len(buf); off += s.sseg[i] {
		if gone, _ := s.s.sendOne(s.sdst[i], buf[off:min(off+s.sseg[i], len(buf))]); gone && s.speer[i] != nil {
			s.speer[i].forgetLocal(s.sdst[i])
		}
	}
}

// sendOne sends one datagram at once; safe for concurrent use. If the
// source address of dst is gone, it sends without it and reports gone.
func (s *socket) sendOne(dst endpoint, msg []byte) (gone bool, err error) {
	to := dst.AddrPort
	if !s.v6 {
		to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	}
	if !dst.local.addr.IsValid() {
		_, err = s.conn.WriteToUDPAddrPort(msg, to)
		return false, err
	}
	var oob controlBuf
	n := putControl(oob.b[:], 0, dst.local)
	_, _, err = s.conn.WriteMsgUDPAddrPort(msg, oob.b[:n], to)
	if err != nil && sourceGone(err) {
		if _, err = s.conn.WriteToUDPAddrPort(msg, to); err == nil {
			return true, nil
		}
	}
	return false, err
}
