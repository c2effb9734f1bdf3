package wg

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RecvBatch is how many datagrams one receive takes (recvmmsg), each a
// GRO super-datagram of up to 64 KiB.
const RecvBatch = recvBatch

// Batch sizes of the socket layer.
const (
	recvBatch   = 16      // datagrams per recvmmsg, each up to recvBufSize with GRO
	recvBufSize = 1 << 16 // a GRO super-datagram is at most 64 KiB
	sendBatch   = 64      // messages per sendmmsg
	maxIovs     = 1024    // iovecs of one sendmmsg, all messages together
	maxSegments = 64      // segments of one GSO message (UDP_MAX_SEGMENTS is 64 or more)
	maxGSOBytes = 65000   // payload of one GSO message (under the 64 KiB datagram limit)
)

// socket is one UDP socket of the device (IPv4 or IPv6; several per family
// share the port with SO_REUSEPORT) and the batch buffers of the one loop
// that receives on it. The loops send on it through their senders, other
// goroutines with sendOne (handshakes, keepalives).
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
	roob   [recvBatch][64]byte
	rbufs  [recvBatch][]byte
	// recvFn is the recvmmsg call for rc.Read, made once (a closure per
	// call would be allocated per batch); it leaves its result in rn,
	// rerr.
	recvFn func(fd uintptr) bool
	rn     int
	rerr   syscall.Errno
}

// sender is one loop's batch of messages to send on a socket: the
// messages, their iovecs, addresses and GSO cmsgs. Only its loop uses it.
type sender struct {
	s      *socket
	smsgs  [sendBatch]unix.Mmsghdr
	snames [sendBatch]unix.RawSockaddrInet6
	soob   [sendBatch][unix.SizeofCmsghdr + 8]byte
	// each message's destination, segment size, segments and bytes
	sdst   [sendBatch]netip.AddrPort
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

// listen opens a socket of network ("udp4" or "udp6") on port with
// SO_REUSEPORT, UDP_GRO where the kernel has it, and 4 MiB buffers where
// allowed.
func listen(network string, port int) (*socket, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	addr := fmt.Sprintf(":%d", port)
	pc, err := lc.ListenPacket(context.Background(), network, addr)
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
		s.gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
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

// port returns the socket's local port.
func (s *socket) port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

// recv waits for datagrams and returns how many it read into s.rbufs;
// datagram i is s.rbufs[i][:s.rmsgs[i].Len] from s.source(i), in
// segments of s.segment(i) bytes.
func (s *socket) recv() (int, error) {
	for i := range s.rmsgs {
		h := &s.rmsgs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.Control = &s.roob[i][0]
		h.SetControllen(len(s.roob[i]))
		h.Flags = 0
	}
	if s.recvFn == nil {
		s.recvFn = func(fd uintptr) bool {
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.rmsgs[0])), recvBatch, 0, 0, 0)
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

// segment returns the GRO segment size of datagram i, or its length if it
// is a single datagram.
func (s *socket) segment(i int) int {
	n := int(s.rmsgs[i].Len)
	h := &s.rmsgs[i].Hdr
	oob := s.roob[i][:h.Controllen]
	for len(oob) >= unix.SizeofCmsghdr {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if c.Len < unix.SizeofCmsghdr || int(c.Len) > len(oob) {
			break
		}
		if c.Level == unix.IPPROTO_UDP && c.Type == unix.UDP_GRO && c.Len >= unix.SizeofCmsghdr+2 {
			g := int(*(*uint16)(unsafe.Pointer(&oob[unix.SizeofCmsghdr])))
			if g > 0 && g < n {
				return g
			}
			break
		}
		oob = oob[cmsgAlign(int(c.Len)):]
	}
	return n
}

func cmsgAlign(n int) int { return (n + 7) &^ 7 }

// queue adds msg (one datagram) for dst to the pending batch. Consecutive
// datagrams to one address of equal size (the last may be shorter) go out
// as one GSO message. msg must stay untouched until flush.
func (s *sender) queue(dst netip.AddrPort, msg []byte) error {
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
	h.Name, h.Namelen = putSockaddr(&s.snames[i], dst, s.s.v6)
	s.sdst[i], s.sseg[i], s.nsegs[i], s.nbytes[i] = dst, len(msg), 1, len(msg)
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

// flush sends the pending messages. A message that fails is dropped (UDP
// semantics); the error returned is the last one, for the log.
func (s *sender) flush() error {
	if s.nmsgs == 0 {
		return nil
	}
	for i := 0; i < s.nmsgs; i++ {
		h := &s.smsgs[i].Hdr
		if s.nsegs[i] > 1 {
			oob := s.soob[i][:]
			c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			c.Level, c.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
			c.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&oob[unix.SizeofCmsghdr])) = uint16(s.sseg[i])
			h.Control = &oob[0]
			h.SetControllen(unix.CmsgSpace(2))
		}
	}
	if s.sendFn == nil {
		s.sendFn = func(fd uintptr) bool {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.smsgs[s.done])), uintptr(s.nmsgs-s.done), 0, 0, 0)
			if e == unix.EAGAIN {
				return false
			}
			s.sn, s.serr = int(r), e
			return true
		}
	}
	var last error
	s.done = 0
	for s.done < s.nmsgs {
		done := s.done
		err := s.s.rc.Write(s.sendFn)
		n, errno := s.sn, s.serr
		if err != nil {
			last = err
			break
		}
		if errno != 0 {
			if errno == unix.EIO && s.smsgs[done].Hdr.Controllen > 0 {
				// No UDP GSO on this path: send segment by
				// segment from now on.
				s.s.noGSO.Store(true)
				s.sendSplit(done)
			} else {
				last = errno
			}
			s.done = done + 1 // drop the message at fault, go on with the rest
			continue
		}
		s.done = done + n
	}
	s.nmsgs, s.niovs, s.lastOpen = 0, 0, false
	return last
}

// sendSplit sends message i's segments one by one (the fallback when the
// kernel refuses UDP_SEGMENT).
func (s *sender) sendSplit(i int) {
	var buf []byte
	for _, v := range unsafe.Slice(s.smsgs[i].Hdr.Iov, s.smsgs[i].Hdr.Iovlen) {
		buf = append(buf, unsafe.Slice(v.Base, v.Len)...)
	}
	for off := 0; off < len(buf); off += s.sseg[i] {
		s.s.sendOne(s.sdst[i], buf[off:min(off+s.sseg[i], len(buf))])
	}
}

// sendOne sends one datagram at once; safe for concurrent use.
func (s *socket) sendOne(dst netip.AddrPort, msg []byte) error {
	if !s.v6 {
		dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	}
	_, err := s.conn.WriteToUDPAddrPort(msg, dst)
	return err
}
