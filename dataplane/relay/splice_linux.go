package relay

import (
	"io"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// spliceLoop moves bytes from src to dst through a pipe with splice(2)
// until EOF (eof=true) or an error. It holds a pipe only while src has
// data: when a splice from src finds nothing (EAGAIN) and the pipe is
// empty, the pipe goes back to the pool before the wait. Without a pipe
// (the pool at MaxPipes) or for sockets splice cannot take, it copies.
// It allocates once per direction, not per chunk: the functions it hands
// the poller are made once (see spliceDir).
func (r *run) spliceLoop(dst, src net.Conn, c Counter) (n int64, err error, eof bool) {
	srcRC, dstRC := rawConn(src), rawConn(dst)
	if srcRC == nil || dstRC == nil {
		return r.copyLoop(dst, src, c)
	}
	d := &spliceDir{pool: r.e.pipes}
	d.fill, d.drain = d.spliceIn, d.spliceOut
	defer func() {
		if d.p != nil {
			d.pool.put(d.p)
		}
	}()
	for {
		// Into the pipe, waiting on the poller while src has nothing.
		d.noPipe = false
		werr := srcRC.Read(d.fill)
		if d.noPipe {
			// Copy one burst in user space, then try for a pipe again.
			m, err, eof := r.copyBurst(dst, src, c)
			n += m
			if err != nil || eof {
				return n, err, eof
			}
			continue
		}
		if werr != nil {
			return n, werr, false
		}
		if d.err != nil {
			return n, d.err, false
		}
		if d.in == 0 {
			return n, nil, true
		}
		r.last.Store(time.Now().UnixNano())
		m, werr := d.pump(dstRC, c)
		n += m
		if werr != nil {
			return n, werr, false
		}
	}
}

// pump moves everything in the pipe into the destination, waiting on Go's
// poller while it takes nothing, and returns the bytes moved. After an
// error, bytes left in the pipe mark it dirty: it is not reused.
func (d *spliceDir) pump(dstRC syscall.RawConn, c Counter) (int64, error) {
	var n int64
	for d.in > 0 {
		d.out = 0
		werr := dstRC.Write(d.drain)
		if d.out > 0 {
			d.in -= d.out
			n += int64(d.out)
			add(c, d.out)
		}
		if werr == nil {
			werr = d.err
		}
		if werr != nil {
			d.p.dirty = d.in > 0
			return n, werr
		}
	}
	return n, nil
}

// spliceDir is one direction's state between the poller's calls.
type spliceDir struct {
	pool        *pipePool
	p           *pipe
	in, out     int   // bytes in the pipe; moved out by the last drain
	err         error // of the last splice
	noPipe      bool  // the pool had none
	fill, drain func(fd uintptr) bool
}

// spliceIn moves what the socket fd has into the pipe; false (wait for
// readability) if it has nothing, after giving the empty pipe back.
func (d *spliceDir) spliceIn(fd uintptr) bool {
	if d.p == nil {
		if d.p = d.pool.get(); d.p == nil {
			d.noPipe = true
			return true
		}
	}
	for {
		d.in, d.err = splice(int(fd), d.p.w, d.pool.size)
		if d.err != unix.EINTR {
			break
		}
	}
	if d.err == unix.EAGAIN {
		d.pool.put(d.p) // idle: hold no pipe while waiting
		d.p = nil
		return false
	}
	return true
}

// spliceOut moves what the pipe holds into the socket fd; false (wait for
// writability) if the socket takes nothing now.
func (d *spliceDir) spliceOut(fd uintptr) bool {
	for {
		d.out, d.err = splice(d.p.r, int(fd), d.in)
		if d.err != unix.EINTR {
			break
		}
	}
	return d.err != unix.EAGAIN
}

// copyBurst copies what src has now (one read and its write) through a
// pooled buffer: a direction without a pipe.
func (r *run) copyBurst(dst, src net.Conn, c Counter) (n int64, err error, eof bool) {
	if rc := rawConn(src); rc != nil {
		_ = waitReadable(rc)
	}
	bp := getBuf(true)
	defer putBuf(bp)
	nr, rerr := src.Read(*bp)
	if nr > 0 {
		r.last.Store(time.Now().UnixNano())
		nw, werr := dst.Write((*bp)[:nr])
		add(c, nw)
		if werr != nil {
			return int64(nw), werr, false
		}
		n = int64(nw)
	}
	if rerr != nil {
		if rerr == io.EOF {
			return n, nil, true
		}
		return n, rerr, false
	}
	return n, nil, false
}

// splice moves up to max bytes from in to out, one of them a pipe,
// without waiting (both ends are non-blocking).
//
// It is a raw system call: the runtime is not told of it, as it is of
// one that may block. Telling it costs more than the call saves here.
// On entry to a told call the runtime wakes its monitor thread (sysmon)
// when it sleeps, which it does whenever the process has been idle; and
// a told call longer than 20 µs (a splice into a socket runs the
// receiver's TCP inline on veth and loopback) lets the monitor hand the
// processor to another thread, which the call then has to take back. At
// one 64-byte echo every 130 µs, that was two thread switches per echo
// and a sixth of the edge's CPU. A non-blocking splice returns within
// microseconds, so holding the processor through it costs nothing.
func splice(in, out, max int) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(max),
		unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// pipe is one splice pipe: its read and write ends.
type pipe struct {
	r, w  int
	dirty bool // bytes left in it: close, do not reuse
}

// pipePool hands out pipes of one size, at most max in use; it keeps up
// to idlePipes free ones open for reuse.
type pipePool struct {
	size, max int

	mu        sync.Mutex
	free      []*pipe
	inUse     int
	fallbacks int64
	closed    bool
}

func newPipePool(size, max int) *pipePool { return &pipePool{size: size, max: max} }

// get returns a pipe, or nil when max are in use or none can be made.
func (pp *pipePool) get() *pipe {
	pp.mu.Lock()
	if pp.closed || pp.inUse >= pp.max {
		pp.fallbacks++
		pp.mu.Unlock()
		return nil
	}
	pp.inUse++
	if k := len(pp.free); k > 0 {
		p := pp.free[k-1]
		pp.free[k-1] = nil
		pp.free = pp.free[:k-1]
		pp.mu.Unlock()
		return p
	}
	pp.mu.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		pp.mu.Lock()
		pp.inUse--
		pp.fallbacks++
		pp.mu.Unlock()
		return nil
	}
	// A smaller pipe than asked for works too, with more system calls.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pp.size)
	return &pipe{r: fds[0], w: fds[1]}
}

// put gives p back: kept for reuse, or closed. A pipe that still holds
// bytes is closed even if its user thought it empty: the next relay must
// never receive another connection's bytes.
func (pp *pipePool) put(p *pipe) {
	if !p.dirty && p.buffered() != 0 {
		p.dirty = true
	}
	pp.mu.Lock()
	pp.inUse--
	if p.dirty || pp.closed || len(pp.free) >= idlePipes {
		pp.mu.Unlock()
		p.close()
		return
	}
	pp.free = append(pp.free, p)
	pp.mu.Unlock()
}

// buffered is how many bytes the pipe holds (FIONREAD, alias TIOCINQ),
// -1 if unknown, asked with a raw system call (see splice).
func (p *pipe) buffered() int {
	var n int32
	_, _, errno := unix.RawSyscall(unix.SYS_IOCTL, uintptr(p.r), unix.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return -1
	}
	return int(n)
}

func (p *pipe) close() {
	_ = syscall.Close(p.r)
	_ = syscall.Close(p.w)
}

func (pp *pipePool) close() {
	pp.mu.Lock()
	free := pp.free
	pp.free, pp.closed = nil, true
	pp.mu.Unlock()
	for _, p := range free {
		p.close()
	}
}

func (pp *pipePool) stats() Stats {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return Stats{PipesInUse: pp.inUse, PipesIdle: len(pp.free), PipeFallbacks: pp.fallbacks}
}
