package sockio

import (
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// UDPConn is a UDP socket whose batch reads (recvmmsg) and message writes
// (sendmsg) are raw system calls on Go's poller, as Reader and Writer are
// for streams: for quic-go, which reads its conn through ReadBatch when
// the conn has one and writes every packet (and GSO train) through
// WriteMsgUDP. Everything else is the *net.UDPConn's, which quic-go still
// sees through SyscallConn to set its socket options.
type UDPConn struct {
	*net.UDPConn
	rc     syscall.RawConn
	inet6  bool // an AF_INET6 socket: IPv4 peers as mapped addresses
	rd     udpRead
	writes sync.Pool // of *udpWrite
}

// NewUDP returns c with raw batch reads and message writes, or c itself
// where it cannot (no raw connection, outside Linux).
func NewUDP(c *net.UDPConn) net.PacketConn {
	rc, err := c.SyscallConn()
	if err != nil {
		return c
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) { domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) }); err != nil || serr != nil {
		return c
	}
	u := &UDPConn{UDPConn: c, rc: rc, inet6: domain == unix.AF_INET6}
	u.rd.fn = u.rd.recv
	u.writes.New = func() any { w := &udpWrite{}; w.fn = w.send; return w }
	return u
}

// udpRead is the state of one ReadBatch (quic-go reads from one
// goroutine; a second concurrent reader would need its own).
type udpRead struct {
	mu    sync.Mutex
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	addrs []*net.UDPAddr // the last source address of each slot, handed out again while it does not change
	vlen  int            // headers prepared
	flags int
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// mmsghdr is struct mmsghdr of recvmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// ReadBatch reads up to len(ms) datagrams at once (recvmmsg), waiting on
// Go's poller (within the read deadline) until there is one, as
// ipv4.PacketConn's ReadBatch does: each message's first buffer and OOB
// are filled, N, NN, Flags and Addr (a *net.UDPAddr) set.
func (u *UDPConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	r := &u.rd
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(ms) == 0 {
		return 0, nil
	}
	if len(r.hdrs) < len(ms) {
		r.hdrs = make([]mmsghdr, len(ms))
		r.iovs = make([]unix.Iovec, len(ms))
		r.names = make([]unix.RawSockaddrInet6, len(ms))
		r.addrs = make([]*net.UDPAddr, len(ms))
	}
	for i := range ms {
		h := &r.hdrs[i].hdr
		*h = unix.Msghdr{}
		buf := ms[i].Buffers[0]
		r.iovs[i].Base = unsafe.SliceData(buf)
		r.iovs[i].SetLen(len(buf))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
		if len(ms[i].OOB) > 0 {
			h.Control = unsafe.SliceData(ms[i].OOB)
			h.SetControllen(len(ms[i].OOB))
		}
		r.hdrs[i].len = 0
	}
	r.vlen, r.flags = len(ms), flags
	r.n, r.errno = 0, 0
	if err := u.rc.Read(r.fn); err != nil {
		return 0, &net.OpError{Op: "read", Net: "udp", Source: u.LocalAddr(), Err: err}
	}
	if r.errno != 0 {
		return 0, &net.OpError{Op: "read", Net: "udp", Source: u.LocalAddr(), Err: os.NewSyscallError("recvmmsg", r.errno)}
	}
	for i := range r.n {
		h := &r.hdrs[i]
		ms[i].N = int(h.len)
		ms[i].NN = int(h.hdr.Controllen)
		ms[i].Flags = int(h.hdr.Flags)
		ms[i].Addr = nil
		if a := r.addr(i); a != nil {
			ms[i].Addr = a
		}
	}
	return r.n, nil
}

// recv is one recvmmsg(2) into the prepared headers; false (wait for
// readability) if nothing is there.
func (r *udpRead) recv(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.vlen),
			uintptr(r.flags|unix.MSG_DONTWAIT), 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.n, r.errno = int(n), errno
		return true
	}
}

// addr is slot i's source address: the one handed out last for the slot
// if it is the same (a *net.UDPAddr is never changed once handed out),
// else a new one.
func (r *udpRead) addr(i int) *net.UDPAddr {
	sa := &r.names[i]
	prev := r.addrs[i]
	var ip net.IP
	var port int
	var zone uint32
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port = netPort(&s4.Port)
		if prev != nil && prev.Port == port && prev.Zone == "" && len(prev.IP) == net.IPv4len && [4]byte(prev.IP) == s4.Addr {
			return prev
		}
		ip = net.IP(append([]byte(nil), s4.Addr[:]...))
	case unix.AF_INET6:
		port = netPort(&sa.Port)
		zone = sa.Scope_id
		if prev != nil && prev.Port == port && zone == 0 && prev.Zone == "" && len(prev.IP) == net.IPv6len && [16]byte(prev.IP) == sa.Addr {
			return prev
		}
		ip = net.IP(append([]byte(nil), sa.Addr[:]...))
	default:
		return nil
	}
	a := &net.UDPAddr{IP: ip, Port: port}
	if zone != 0 {
		if ifi, err := net.InterfaceByIndex(int(zone)); err == nil {
			a.Zone = ifi.Name
		}
	}
	r.addrs[i] = a
	return a
}

// udpWrite is the state of one WriteMsgUDP, from a pool: quic-go writes
// from every connection's goroutine at once.
type udpWrite struct {
	hdr   unix.Msghdr
	iov   unix.Iovec
	name  unix.RawSockaddrInet6
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// WriteMsgUDP sends b (and the control messages oob, such as a GSO
// segment size) to addr with one sendmsg(2), waiting on Go's poller
// (within the write deadline) while the socket takes nothing, as
// *net.UDPConn's WriteMsgUDP does.
func (u *UDPConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	w := u.writes.Get().(*udpWrite)
	defer u.writes.Put(w)
	w.hdr = unix.Msghdr{}
	if addr != nil {
		namelen, err := u.sockaddr(&w.name, addr)
		if err != nil {
			return 0, 0, &net.OpError{Op: "write", Net: "udp", Source: u.LocalAddr(), Addr: addr, Err: err}
		}
		w.hdr.Name = (*byte)(unsafe.Pointer(&w.name))
		w.hdr.Namelen = namelen
	}
	if len(b) > 0 {
		w.iov.Base = unsafe.SliceData(b)
		w.iov.SetLen(len(b))
		w.hdr.Iov = &w.iov
		w.hdr.SetIovlen(1)
	}
	if len(oob) > 0 {
		w.hdr.Control = unsafe.SliceData(oob)
		w.hdr.SetControllen(len(oob))
	}
	w.n, w.errno = 0, 0
	if err := u.rc.Write(w.fn); err != nil {
		return 0, 0, &net.OpError{Op: "write", Net: "udp", Source: u.LocalAddr(), Addr: addr, Err: err}
	}
	if w.errno != 0 {
		return 0, 0, &net.OpError{Op: "write", Net: "udp", Source: u.LocalAddr(), Addr: addr, Err: os.NewSyscallError("sendmsg", w.errno)}
	}
	if len(oob) > 0 {
		oobn = len(oob)
	}
	return w.n, oobn, nil
}

// send is one sendmsg(2) of the prepared header; false (wait for
// writability) if the socket takes nothing now.
func (w *udpWrite) send(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&w.hdr)), unix.MSG_NOSIGNAL)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		w.n, w.errno = int(n), errno
		return true
	}
}

// sockaddr writes addr into sa in the socket's family (an IPv4 address
// mapped for an AF_INET6 socket) and returns its length.
func (u *UDPConn) sockaddr(sa *unix.RawSockaddrInet6, addr *net.UDPAddr) (uint32, error) {
	var port uint16
	pb := (*[2]byte)(unsafe.Pointer(&port)) // network order in memory
	pb[0], pb[1] = byte(addr.Port>>8), byte(addr.Port)
	if !u.inet6 {
		ip4 := addr.IP.To4()
		if ip4 == nil {
			return 0, syscall.EAFNOSUPPORT
		}
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: port, Addr: [4]byte(ip4)}
		return unix.SizeofSockaddrInet4, nil
	}
	ip16 := addr.IP.To16()
	if ip16 == nil {
		return 0, syscall.EINVAL
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: port, Addr: [16]byte(ip16)}
	if addr.Zone != "" {
		if ifi, err := net.InterfaceByName(addr.Zone); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	return unix.SizeofSockaddrInet6, nil
}

// netPort reads a sockaddr's port, stored in network order.
func netPort(p *uint16) int {
	b := (*[2]byte)(unsafe.Pointer(p))
	return int(b[0])<<8 | int(b[1])
}
