package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The sockmap strategy. sockmap.c's stream verdict program, attached to a
// SOCKHASH, redirects the bytes each registered socket receives to its
// peer's send side inside the kernel and counts them per direction (bytes
// and the time of the last one, which the idle timer reads). User space
// registers the pair, then per direction only waits for the end of the
// stream: at EOF it waits until the peer's socket has taken every byte the
// kernel redirected (the kernel's psock queue is not the socket's: a
// shutdown before it drained would cut the stream), then half-closes the
// peer; an error resets both.
//
// The program passes a socket's bytes to user space instead (its own
// receive queue, where they are charged to it) while its peer is not in
// the sockhash, or while the peer's psock queue holds more than
// Config.PipeSize bytes, or while bytes it passed before are not yet
// forwarded. User space reads them, waits until the peer's socket has
// taken everything redirected before them, and writes them: the order
// holds, nothing is lost at registration, and a peer whose reader stalls
// makes the source's window close, as with the other strategies, instead
// of growing the kernel's queue without bound. Bytes a socket received
// before it joined the sockhash go through the program when its direction
// starts (kick).
//
// What the kernel (6.18) does not do, and this works around: bound the
// psock queue (above); skip the part of a retransmitted segment TCP had
// already received, nor the part of a segment its user read before the
// relay (the program cuts it, by sequence number); take an empty skb (a
// bare FIN) from the psock queue without breaking the socket's pipe (the
// program drops it; TCP has marked the end already); keep copied_seq
// right when a read runs the program (kick does not read); keep POLLIN
// meaningful (the direction waits for RDHUP, an error or SIOCINQ). And a
// psock has one queue for the bytes redirected to its socket and those
// its program passes to it: a socket's passed bytes wait behind those its
// peer sends it, until its own reader takes them.
//
// A pair whose first socket a cannot join the sockhash (closed, reset or
// half-closed already, or the maps full) is spliced. If only b cannot,
// b's direction is spliced and a's program passes everything, which user
// space forwards.

// maxSockmapPairs is how many pairs the maps hold (two sockets each:
// MAX_SOCKETS in sockmap.c); past it a relay is spliced.
const maxSockmapPairs = 32768

// The state of a TCP socket, as TCP_INFO reports it.
const (
	tcpEstablished = 1
	tcpClose       = 7
)

var (
	// errEngineClosed ends the relays still running when their engine
	// closes.
	errEngineClosed = errors.New("relay engine closed")
	// errBroken ends a relay whose program met a retransmitted segment it
	// could not cut to its new bytes: the stream would be wrong.
	errBroken = errors.New("sockmap: a retransmitted segment could not be trimmed")
)

// smFlowBroken is sockmap.c's FLOW_BROKEN.
const smFlowBroken = 2

// smCtl and smFlow are sockmap.c's struct ctl and struct flow.
type smCtl struct{ Peer, Base, Fwd, Max uint64 }
type smFlow struct {
	Redirected, Passed, Last uint64
	Next, Flags              uint32
}

type sockmap struct {
	objs sockmapObjects

	mu     sync.Mutex
	closed bool
	live   map[*smPair]struct{}
	wg     sync.WaitGroup // one per live pair

	redirected, forwarded, spliced atomic.Int64
}

func newSockmap() (*sockmap, error) {
	spec, err := loadSockmap()
	if err != nil {
		return nil, err
	}
	s := &sockmap{live: map[*smPair]struct{}{}}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the kernel's verifier refused the program: %+v", ve)
		}
		return nil, fmt.Errorf("load the sk_skb program (needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON): %w", err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  s.objs.Socks.FD(),
		Program: s.objs.RelayVerdict,
		Attach:  ebpf.AttachSkSKBStreamVerdict,
	}); err != nil {
		s.objs.Close()
		return nil, fmt.Errorf("attach the stream verdict program to the sockhash: %w", err)
	}
	return s, nil
}

// close ends the relays still running (resetting their sockets), waits
// until they have left the maps, and releases the eBPF objects.
func (s *sockmap) close() error {
	s.mu.Lock()
	s.closed = true
	for p := range s.live {
		p.r.abort(errEngineClosed)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return s.objs.Close()
}

func (s *sockmap) pairs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

func (s *sockmap) stats(st *Stats) {
	st.SockmapPairs = s.pairs()
	st.SockmapRedirected = s.redirected.Load()
	st.SockmapForwarded = s.forwarded.Load()
	st.SockmapSpliced = s.spliced.Load()
}

// smSide is one socket of a registered pair.
type smSide struct {
	c      *net.TCPConn
	rc     syscall.RawConn
	cookie uint64
	// base is what the socket had taken to send (taken) when the relay
	// started: the peer's bytes it takes are counted from there.
	base uint64
	// in: the socket is in the sockhash (its bytes go through the
	// program); else its direction is spliced.
	in bool
	// entries: its ctls and flows entries exist.
	entries bool
	// redirected is the kernel's final count, read at the end.
	redirected uint64
}

// smPair is a relay registered in the sockmap.
type smPair struct {
	s    *sockmap
	r    *run
	a, b smSide
}

// ctl is the direction from src's entry in ctls: its peer, what user space
// forwarded, and how much the peer's psock queue may hold (as much as a
// splice pipe would).
func (p *smPair) ctl(src, dst *smSide, fwd int64) smCtl {
	return smCtl{Peer: dst.cookie, Base: dst.base, Fwd: uint64(fwd), Max: uint64(p.r.e.pipes.size)}
}

// sockmapRuns maps the runs registered in a sockmap to their pair, for
// the idle timer.
var sockmapRuns sync.Map // *run → *smPair

func init() {
	lastActiveHook = func(r *run) int64 {
		if p, ok := sockmapRuns.Load(r); ok {
			return p.(*smPair).lastActive()
		}
		return 0
	}
}

// relay relays r through the sockmap. ok=false: the pair could not be
// registered (no socket of it is in the maps) and r is untouched.
func (s *sockmap) relay(ctx context.Context, r *run) (Result, bool) {
	p := s.register(r)
	if p == nil {
		s.spliced.Add(1)
		return Result{}, false
	}
	stop := r.start(ctx)
	var res Result
	var fwdA, fwdB int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fwdA, res.AEnd = p.direction(&p.a, &p.b)
	}()
	fwdB, res.BEnd = p.direction(&p.b, &p.a)
	wg.Wait()
	stop()
	p.unregister()
	_ = r.a.Close()
	_ = r.b.Close()
	s.forget(p)
	res.AToB = int64(p.a.redirected) + fwdA
	res.BToA = int64(p.b.redirected) + fwdB
	s.redirected.Add(int64(p.a.redirected + p.b.redirected))
	s.forwarded.Add(fwdA + fwdB)
	add(r.o.AToB, int(res.AToB))
	add(r.o.BToA, int(res.BToA))
	r.finish(&res)
	return res, true
}

// register puts r's sockets in the maps: both entries first, then a in
// the sockhash, then b. It returns nil, with nothing left in the maps,
// when r's sockets are not two established TCP sockets, the maps are
// full, or a cannot go in; if b cannot (it was closed or half-closed
// meanwhile), the pair runs with b's direction spliced: a's program
// passes all of a's bytes to user space, which forwards them.
func (s *sockmap) register(r *run) *smPair {
	a, okA := r.a.(*net.TCPConn)
	b, okB := r.b.(*net.TCPConn)
	if !okA || !okB {
		return nil
	}
	p := &smPair{s: s, r: r, a: smSide{c: a}, b: smSide{c: b}}
	s.mu.Lock()
	if s.closed || len(s.live) >= maxSockmapPairs {
		s.mu.Unlock()
		return nil
	}
	s.live[p] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	fail := func() *smPair {
		p.unregister()
		s.forget(p)
		return nil
	}
	for _, sd := range []*smSide{&p.a, &p.b} {
		rc, err := sd.c.SyscallConn()
		if err != nil {
			return fail()
		}
		sd.rc = rc
		var state uint8
		var serr error
		if err := rc.Control(func(fd uintptr) {
			sd.cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
			if serr == nil {
				sd.base, state, serr = takenExact(int(fd))
			}
		}); err != nil || serr != nil || state != tcpEstablished {
			return fail()
		}
	}
	for _, sd := range []*[2]*smSide{{&p.a, &p.b}, {&p.b, &p.a}} {
		src, dst := sd[0], sd[1]
		if err := s.objs.Flows.Put(src.cookie, smFlow{}); err != nil {
			return fail()
		}
		src.entries = true
		if err := s.objs.Ctls.Put(src.cookie, p.ctl(src, dst, 0)); err != nil {
			return fail()
		}
	}
	registerStep("entries")
	if !s.insert(&p.a) {
		return fail()
	}
	registerStep("a")
	s.insert(&p.b)
	registerStep("b")
	sockmapRuns.Store(r, p)
	return p
}

// sockmapRegisterHook, if set (by tests), runs at each step of register:
// "entries" made, "a" inserted, "b" inserted (or not).
var sockmapRegisterHook func(step string)

func registerStep(step string) {
	if sockmapRegisterHook != nil {
		sockmapRegisterHook(step)
	}
}

// insert puts sd's socket in the sockhash.
func (s *sockmap) insert(sd *smSide) bool {
	var uerr error
	if err := sd.rc.Control(func(fd uintptr) {
		uerr = s.objs.Socks.Update(sd.cookie, uint64(fd), ebpf.UpdateNoExist)
	}); err != nil || uerr != nil {
		return false
	}
	sd.in = true
	return true
}

// unregister takes the pair out of the maps, reading the kernel's counts
// first. The sockets leave the sockhash first, so that the program no
// longer counts.
func (p *smPair) unregister() {
	m := &p.s.objs
	for _, sd := range []*smSide{&p.a, &p.b} {
		if sd.in {
			// Gone already if the socket was closed or reset.
			_ = m.Socks.Delete(sd.cookie)
		}
	}
	for _, sd := range []*smSide{&p.a, &p.b} {
		if !sd.entries {
			continue
		}
		var f smFlow
		if err := m.Flows.Lookup(sd.cookie, &f); err == nil {
			sd.redirected = f.Redirected
		}
		_ = m.Flows.Delete(sd.cookie)
		_ = m.Ctls.Delete(sd.cookie)
	}
}

// forget drops a pair that has left the maps.
func (s *sockmap) forget(p *smPair) {
	sockmapRuns.Delete(p.r)
	s.mu.Lock()
	delete(s.live, p)
	s.mu.Unlock()
	s.wg.Done()
}

// lastActive returns when the program last saw a byte of the pair, in
// unix nanoseconds (0: never).
func (p *smPair) lastActive() int64 {
	var last uint64
	for _, sd := range []*smSide{&p.a, &p.b} {
		var f smFlow
		if sd.in && p.s.objs.Flows.Lookup(sd.cookie, &f) == nil {
			last = max(last, f.Last)
		}
	}
	if last == 0 {
		return 0
	}
	var mono unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono) != nil {
		return 0
	}
	return time.Now().UnixNano() - (mono.Nano() - int64(last))
}

// flow reads the kernel's counts of the direction from sd.
func (p *smPair) flow(sd *smSide) (smFlow, error) {
	var f smFlow
	err := p.s.objs.Flows.Lookup(sd.cookie, &f)
	return f, err
}

// direction relays from src to dst until EOF (then half-closes dst) or an
// error (then aborts the relay), and returns the bytes user space wrote
// to dst (the kernel counts the rest). A src outside the sockhash is
// spliced.
func (p *smPair) direction(src, dst *smSide) (int64, error) {
	r := p.r
	if !src.in {
		return r.direction(dst.c, src.c, nil)
	}
	var fwd int64
	fail := func(err error) (int64, error) {
		r.abort(err)
		return fwd, r.abortErr
	}
	if err := kick(src.rc); err != nil {
		return fail(err)
	}
	for {
		if err := src.rc.Read(smReadable); err != nil {
			return fail(err)
		}
		bp := getBuf(true)
		n, err := readOnce(src.rc, *bp)
		if n > 0 {
			// Passed bytes: after everything redirected before them.
			err := p.waitTaken(src, dst, fwd)
			if err == nil {
				_, err = dst.c.Write((*bp)[:n])
			}
			putBuf(bp)
			if err != nil {
				return fail(err)
			}
			fwd += int64(n)
			if err := p.s.objs.Ctls.Put(src.cookie, p.ctl(src, dst, fwd)); err != nil {
				return fail(err)
			}
			continue
		}
		putBuf(bp)
		switch err {
		case nil:
			// EOF. Bytes the program passed may still wait in src's psock
			// queue (behind bytes redirected to src, which go first).
			f, ferr := p.flow(src)
			if ferr == nil && f.Flags&smFlowBroken != 0 {
				ferr = errBroken
			}
			if ferr != nil {
				return fail(ferr)
			}
			if f.Passed != uint64(fwd) {
				if err := p.pause(); err != nil {
					return fail(err)
				}
				continue
			}
			if err := p.waitTaken(src, dst, fwd); err != nil {
				return fail(err)
			}
			if err := closeWrite(dst.c); err != nil {
				return fail(err)
			}
			return fwd, nil
		case unix.EAGAIN, unix.EINTR:
		default:
			return fail(err)
		}
	}
}

// kick runs the program over what a socket received before it joined the
// sockhash: the kernel does not until more comes. Setting SO_RCVLOWAT
// makes TCP signal the data (tcp_data_ready), under the socket's lock, as
// an arrival would. (A read would too, but tcp_bpf_recvmsg_parser then
// rewinds the socket's copied_seq over the bytes redirected meanwhile:
// TCP would report them unread forever, and poll the socket readable.)
func kick(rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// smReadable reports whether a socket in the sockhash has something for
// its direction: the end of its stream, an error, or bytes the program
// passed (SIOCINQ counts those). POLLIN does not tell: the kernel wakes
// the socket's readers for every skb it redirects, and TCP may count
// redirected bytes unread (see kick).
func smReadable(fd uintptr) bool {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLRDHUP}
	var ts unix.Timespec // zero: do not wait
	n, _, errno := unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	if errno != 0 {
		return errno != unix.EINTR // let the read find out
	}
	if n > 0 && pfd.Revents&(unix.POLLRDHUP|unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
		return true
	}
	inq, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	return err != nil || inq > 0
}

// readOnce reads once from rc without waiting: n > 0 bytes, or n == 0
// and err nil at EOF, or an error (EAGAIN: nothing to read).
func readOnce(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var err error
	if cerr := rc.Read(func(fd uintptr) bool {
		n, err = unix.Read(int(fd), b)
		return true
	}); cerr != nil {
		return 0, cerr
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// pause sleeps a little, unless the relay was aborted.
func (p *smPair) pause() error {
	if p.r.aborted.Load() {
		return p.r.abortErr
	}
	time.Sleep(time.Millisecond)
	return nil
}

// waitTaken waits until dst's socket has taken every byte of src's
// direction: those the kernel redirected and the fwd user space wrote.
func (p *smPair) waitTaken(src, dst *smSide, fwd int64) error {
	f, err := p.flow(src)
	if err != nil {
		return err
	}
	if f.Flags&smFlowBroken != 0 {
		return errBroken
	}
	want := dst.base + f.Redirected + uint64(fwd)
	for d := 20 * time.Microsecond; ; d = min(2*d, 10*time.Millisecond) {
		if p.r.aborted.Load() {
			return p.r.abortErr
		}
		var got uint64
		var state uint8
		var terr error
		if err := dst.rc.Control(func(fd uintptr) { got, state, terr = taken(int(fd)) }); err != nil {
			return err
		}
		if terr != nil {
			return terr
		}
		if got >= want {
			return nil
		}
		if state == tcpClose {
			// Reset or closed: the rest will never be sent.
			return syscall.ECONNRESET
		}
		time.Sleep(d)
	}
}

// taken returns the bytes a TCP socket has taken to send since it was
// made: acknowledged, plus in its write queue, and its state. An
// acknowledgement that comes between the two reads makes it count less,
// never more.
func taken(fd int) (uint64, uint8, error) {
	n, _, state, err := takenAcked(fd)
	return n, state, err
}

func takenAcked(fd int) (n, acked uint64, state uint8, err error) {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, 0, 0, err
	}
	outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return 0, 0, 0, err
	}
	return info.Bytes_acked + uint64(outq), info.Bytes_acked, info.State, nil
}

// takenExact is taken for a socket nothing writes to: it reads again
// until no acknowledgement came between the reads.
func takenExact(fd int) (uint64, uint8, error) {
	for {
		n, acked, state, err := takenAcked(fd)
		if err != nil {
			return 0, 0, err
		}
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return 0, 0, err
		}
		if info.Bytes_acked == acked {
			return n, state, nil
		}
	}
}
