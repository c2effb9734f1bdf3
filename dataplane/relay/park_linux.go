package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/onramp-net/onramp/dataplane/sockio"
	"golang.org/x/sys/unix"
)

// An idle connection should cost what its sockets cost. With a goroutine
// per direction waiting on Go's poller, every idle relay holds two
// goroutine stacks; HAProxy holds a few hundred bytes. So the splice
// strategy parks a direction whose source has nothing to read (the splice
// from it returned EAGAIN, its pipe empty and given back) in the engine's
// own epoll set, one-shot, and its goroutine ends; when the source
// becomes readable (data, EOF or an error), the engine's poller starts a
// goroutine that splices until the source runs dry again. An idle relay
// then holds no goroutine, no buffer and no pipe, only its state and its
// two sockets. A direction that waits to write (its destination does not
// take more) keeps its goroutine on Go's poller: that is a peer that
// stopped reading, bounded by the connection limits, not an idle one.

// Direction states.
const (
	dirRunning int32 = iota
	dirParked
	dirDone
)

// poller is the engine's epoll set of parked directions and the goroutine
// that wakes them. The set's own descriptor waits on Go's poller (an
// epoll descriptor is readable while it has events), so no thread blocks
// in epoll_wait and a wake-up costs what a socket's does.
type poller struct {
	epfd   int
	file   *os.File // epfd, registered with Go's poller
	rc     syscall.RawConn
	mu     sync.Mutex
	parked map[uint64]*adir // by token
	next   uint64
	n      atomic.Int64 // parked directions, for Stats

	events []unix.EpollEvent // of the last wait (loop only)
	got    int
	wait   func(fd uintptr) bool
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	p := &poller{epfd: epfd, parked: make(map[uint64]*adir), events: make([]unix.EpollEvent, 256)}
	p.file = os.NewFile(uintptr(epfd), "relay-epoll")
	if p.rc, err = p.file.SyscallConn(); err != nil {
		p.file.Close()
		return nil, err
	}
	p.wait = p.poll
	go p.loop()
	return p, nil
}

// poll takes the events ready now; false (wait on Go's poller) if none.
func (p *poller) poll(fd uintptr) bool {
	n, err := epollWaitNow(int(fd), p.events)
	if err != nil && err != unix.EINTR {
		p.got = 0
		return true
	}
	p.got = n
	return n > 0
}

func (p *poller) loop() {
	for {
		if err := p.rc.Read(p.wait); err != nil {
			return // closed
		}
		for i := range p.got {
			tok := uint64(uint32(p.events[i].Fd)) | uint64(uint32(p.events[i].Pad))<<32
			p.mu.Lock()
			d := p.parked[tok]
			delete(p.parked, tok)
			p.mu.Unlock()
			if d != nil && d.state.CompareAndSwap(dirParked, dirRunning) {
				p.n.Add(-1)
				go d.fill()
			}
		}
	}
}

func (p *poller) close() { p.file.Close() }

func (p *poller) token() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	return p.next
}

// unpark takes d out of the set if it is parked: whoever calls it owns d
// (true) and must finish it.
func (p *poller) unpark(d *adir) bool {
	if !d.state.CompareAndSwap(dirParked, dirRunning) {
		return false
	}
	p.n.Add(-1)
	p.mu.Lock()
	delete(p.parked, d.token)
	p.mu.Unlock()
	return true
}

// arun is a relay whose directions park (splice strategy, Linux, TCP or
// Unix sockets on both sides).
type arun struct {
	*run
	dirs  [2]*adir
	ended atomic.Int32
	stop  func()
	done  func(Result)
}

// adir is one direction of an arun.
type adir struct {
	r            *arun
	src, dst     net.Conn
	srcRC, dstRC syscall.RawConn
	c            Counter
	n            int64
	end          error
	state        atomic.Int32
	token        uint64
	sp           spliceDir
	until        int64                 // the source's read deadline (unix ns, maybe past; 0: none)
	noPipe       bool                  // the last wait found no pipe free: copy
	wait         func(fd uintptr) bool // spliceWait, made once
	read         func(fd uintptr)      // readRaw, made once
	cbuf         []byte                // readRaw's buffer, during a copyOnce
	cn           int                   // what readRaw read
	cerr         error                 // readRaw's error
	fill         func()                // d.splice, made once (what the poller starts)

	// parkMu orders the parks of the direction: once parked, the poller
	// may start the next goroutine of the direction, which may park again
	// before the previous park has read its result.
	parkMu sync.Mutex
	armed  bool             // added to the epoll set once
	ctl    func(fd uintptr) // arm, made once
	ctlOp  int
	ctlErr error
}

// startParked relays a and b with parking directions and calls done with
// the result; false if it cannot (no poller, or a socket without a raw
// connection), before taking anything. The direction from a runs in the
// calling goroutine first: it returns when a has been quiet for lingerFor
// (or ended), and waits while b does not take more.
func (e *Engine) startParked(ctx context.Context, a, b net.Conn, o Options, done func(Result)) bool {
	if e.poller == nil {
		return false
	}
	aRC, bRC := rawConn(a), rawConn(b)
	if aRC == nil || bRC == nil {
		return false
	}
	r := &arun{run: &run{e: e, a: a, b: b, o: o}, done: done}
	r.dirs[0] = r.newDir(a, b, aRC, bRC, o.AToB)
	r.dirs[1] = r.newDir(b, a, bRC, aRC, o.BToA)
	r.afterAbort = r.abortParked
	r.stop = r.start(ctx)
	// The user's side usually has something to say first (a request, or
	// the bytes the caller read): it runs in the calling goroutine until
	// it runs dry. The origin's answer, as a rule, comes within a round
	// trip: its side lingers on Go's poller like any direction that ran
	// dry, which costs a goroutine for lingerFor, less than an epoll_ctl,
	// the engine poller's wake-up and a goroutine for every short
	// connection.
	go r.dirs[1].splice()
	r.dirs[0].splice()
	return true
}

func (r *arun) newDir(src, dst net.Conn, srcRC, dstRC syscall.RawConn, c Counter) *adir {
	d := &adir{r: r, src: src, dst: dst, srcRC: srcRC, dstRC: dstRC, c: c, token: r.e.poller.token()}
	d.sp.pool = r.e.pipes
	d.sp.drain = d.sp.spliceOut
	d.wait, d.read, d.ctl, d.fill = d.spliceWait, d.readRaw, d.arm, d.splice
	return d
}

// splice moves what the source has, through a pipe, until it runs dry
// for lingerFor (then it parks) or ends. Each pass is one wait on Go's
// poller that splices as soon as the source is readable: the splice that
// finds the source dry is the one before the wait, never a second. A
// pipe is held only while the source has data: it goes back to the pool
// at each wait. When the pool has none, the pass copies what the source
// has through a pooled buffer instead, and the direction lingers and
// parks all the same.
func (d *adir) splice() {
	r := d.r
	for {
		// The read deadline ends the linger: a source quiet for
		// lingerFor parks. It is moved on lazily, when less than half of
		// it is left, so that a busy connection touches its timer every
		// few milliseconds, not per chunk. (After a park it is past; the
		// next goroutine of the direction moves it on here.)
		now := time.Now().UnixNano()
		if d.until-now < int64(lingerFor/2) {
			d.until = now + int64(lingerFor)
			_ = d.src.SetReadDeadline(time.Unix(0, d.until))
		}
		d.sp.in, d.sp.err = 0, nil
		if err := d.srcRC.Read(d.wait); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				d.finish(err, false)
				return
			}
			d.park() // quiet for lingerFor; it holds no pipe
			return
		}
		if d.noPipe {
			m, err, eof := d.copyOnce()
			d.n += m
			if err != nil || eof {
				d.finish(err, eof)
				return
			}
			if m > 0 {
				r.last.Store(time.Now().UnixNano())
			}
			continue
		}
		switch {
		case d.sp.err != nil:
			d.finish(d.sp.err, false)
			return
		case d.sp.in == 0:
			d.finish(nil, true)
			return
		}
		r.last.Store(time.Now().UnixNano())
		m, werr := d.sp.pump(d.dstRC, d.c)
		d.n += m
		if werr != nil {
			d.finish(werr, false)
			return
		}
	}
}

// copyOnce copies what the source has now (one read, without waiting,
// and its whole write) through a pooled buffer: a pass without a pipe.
// A read that finds nothing after all moves nothing.
func (d *adir) copyOnce() (n int64, err error, eof bool) {
	bp := getBuf(true)
	defer putBuf(bp)
	d.cbuf = *bp
	if err := d.srcRC.Control(d.read); err != nil {
		return 0, err, false
	}
	d.cbuf = nil
	switch {
	case d.cerr == unix.EAGAIN || d.cerr == unix.EINTR:
		return 0, nil, false
	case d.cerr != nil:
		return 0, os.NewSyscallError("read", d.cerr), false
	case d.cn == 0:
		return 0, nil, true
	}
	nw, werr := d.dst.Write((*bp)[:d.cn])
	add(d.c, nw)
	return int64(nw), werr, false
}

// readRaw reads from the source socket fd into d.cbuf, as a raw system
// call: it never waits (see splice).
func (d *adir) readRaw(fd uintptr) {
	n, errno := sockio.ReadFD(fd, d.cbuf)
	d.cn, d.cerr = n, nil
	if errno != 0 {
		d.cn, d.cerr = 0, errno
	}
}

// spliceWait splices from the source socket fd into a pipe; false (wait
// for readability) if it has nothing, after giving the empty pipe back.
// With no pipe to take it only waits for readability (d.noPipe).
func (d *adir) spliceWait(fd uintptr) bool {
	// Set anew at each call: a wait that began without a pipe may end
	// with one (another direction gave one back), and its pass must then
	// pump the pipe, not copy past it.
	d.noPipe = false
	if d.sp.p == nil {
		if d.sp.p = d.sp.pool.get(); d.sp.p == nil {
			d.noPipe = true
			return Readable(fd)
		}
	}
	for {
		d.sp.in, d.sp.err = splice(int(fd), d.sp.p.w, d.sp.pool.size)
		if d.sp.err != unix.EINTR {
			break
		}
	}
	if d.sp.err == unix.EAGAIN {
		// Empty: every pass pumps the pipe dry before it waits again.
		d.sp.pool.put(d.sp.p)
		d.sp.p = nil
		return false
	}
	return true
}

// lingerFor is how long a direction whose source ran dry waits on Go's
// poller before it parks. A busy connection's next bytes come sooner
// (bulk: microseconds; a chatty protocol: a round trip), and parking and
// waking again costs an epoll_ctl, an epoll_wait and a new goroutine: 1
// GiB over loopback parked 12,000 times without it. An idle one parks
// after it (between lingerFor/2 and lingerFor after its last bytes, as
// the deadline is moved lazily): a connection that went quiet holds a
// goroutine that long.
const lingerFor = 5 * time.Millisecond

// park puts d in the epoll set, one-shot, for its source to become
// readable; its goroutine ends. From the moment the set holds it, the
// poller or an abort may take it: d is touched after only under parkMu.
func (d *adir) park() {
	p := d.r.e.poller
	d.parkMu.Lock()
	d.state.Store(dirParked)
	p.n.Add(1)
	p.mu.Lock()
	p.parked[d.token] = d
	p.mu.Unlock()
	d.ctlOp = unix.EPOLL_CTL_MOD
	if !d.armed {
		d.ctlOp = unix.EPOLL_CTL_ADD
	}
	d.ctlErr = nil
	err := d.srcRC.Control(d.ctl)
	if err == nil {
		err = d.ctlErr
	}
	if err == nil {
		d.armed = true
	}
	d.parkMu.Unlock()
	if err != nil && p.unpark(d) {
		d.finish(err, false)
	}
}

// arm adds or re-arms the source socket fd in the epoll set.
func (d *adir) arm(fd uintptr) {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(d.token)), Pad: int32(uint32(d.token >> 32))}
	d.ctlErr = epollCtl(d.r.e.poller.epfd, d.ctlOp, int(fd), &ev)
}

// epollWaitNow and epollCtl are epoll_wait with no timeout and epoll_ctl
// as raw system calls: they never wait, and the first system call a
// quiet process makes through the runtime's bookkeeping wakes its
// monitor thread (see splice).
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// finish ends the direction: after EOF it half-closes the destination,
// after an error it aborts the relay.
func (d *adir) finish(err error, eof bool) {
	r := d.r
	if d.sp.p != nil {
		d.sp.pool.put(d.sp.p)
		d.sp.p = nil
	}
	switch {
	case eof && d.r.ended.Load() == 1 && !r.aborted.Load():
		// The other direction has ended cleanly, so both sockets have
		// read their EOF: the close that follows sends this FIN, and a
		// shutdown first would be one more system call for nothing.
	case eof:
		if cerr := closeWrite(d.dst); cerr != nil {
			r.abort(cerr)
			d.end = r.abortErr
		}
	default:
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		r.abort(err)
		d.end = r.abortErr
	}
	d.state.Store(dirDone)
	r.dirDone()
}

// abortParked, after the sockets were reset, ends the directions that are
// parked: nothing else would wake them.
func (r *arun) abortParked() {
	for _, d := range r.dirs {
		if d != nil && r.e.poller.unpark(d) {
			d.end = r.abortErr
			d.state.Store(dirDone)
			r.dirDone()
		}
	}
}

// dirDone counts an ended direction; the second closes both sockets and
// reports.
func (r *arun) dirDone() {
	if r.ended.Add(1) != 2 {
		return
	}
	r.stop()
	_ = r.a.Close()
	_ = r.b.Close()
	res := Result{AToB: r.dirs[0].n, BToA: r.dirs[1].n, AEnd: r.dirs[0].end, BEnd: r.dirs[1].end}
	r.finish(&res)
	r.done(res)
}
