package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/onramp-net/onramp/dataplane/sockio"
	"golang.org/x/sys/unix"
)

// An idle connection should cost what its sockets cost. With a goroutine
// per direction waiting on Go's poller, every idle relay holds two
// goroutine stacks; HAProxy holds a few hundred bytes. So the splice
// strategy parks a direction whose source has nothing to read (the splice
// from it returned EAGAIN, its pipe empty and given back) in the engine's
// own epoll set (a sockio.Poller), one-shot, and its goroutine ends; when the source
// becomes readable (data, EOF or an error), the engine's poller starts a
// goroutine that splices until the source runs dry again. An idle relay
// then holds no goroutine, no buffer and no pipe, only its state and its
// two sockets. A direction that waits to write (its destination does not
// take more) keeps its goroutine on Go's poller: that is a peer that
// stopped reading, bounded by the connection limits, not an idle one.

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
	sp           spliceDir
	until        int64                 // the source's read deadline (unix ns, maybe past; 0: none)
	noPipe       bool                  // the last wait found no pipe free: copy
	wait         func(fd uintptr) bool // spliceWait, made once
	read         func(fd uintptr)      // readRaw, made once
	cbuf         []byte                // readRaw's buffer, during a copyOnce
	cn           int                   // what readRaw read
	cerr         error                 // readRaw's error

	// pk parks the direction in the engine's sockio.Poller; it starts
	// d.splice when the source becomes readable.
	pk *sockio.Parker
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
	d := &adir{r: r, src: src, dst: dst, srcRC: srcRC, dstRC: dstRC, c: c}
	d.sp.pool = r.e.pipes
	d.sp.drain = d.sp.spliceOut
	d.wait, d.read = d.spliceWait, d.readRaw
	d.pk = r.e.poller.NewParker(srcRC, d.splice)
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

// park puts d in the poller's set for its source to become readable; its
// goroutine ends. From the moment the set holds it, the poller or an
// abort may take it: d is not touched after.
func (d *adir) park() {
	if err := d.pk.Park(); err != nil {
		d.finish(err, false)
	}
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
	r.dirDone()
}

// abortParked, after the sockets were reset, ends the directions that are
// parked: nothing else would wake them.
func (r *arun) abortParked() {
	for _, d := range r.dirs {
		if d != nil && d.pk.Unpark() {
			d.end = r.abortErr
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
