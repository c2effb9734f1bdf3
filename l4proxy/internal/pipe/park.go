package pipe

import (
	"errors"
	"os"
	"time"

	"github.com/onramp-net/onramp/dataplane/sockio"
)

// A held stream should cost what its sockets cost, and a goroutine's
// stack (4 to 8 KiB) is most of what an idle one costs beyond them. So
// the direction from the socket (A) to the tunnel stream (B) parks: once
// the socket has been quiet for lingerFor, its goroutine ends and the
// socket waits in the process's sockio.Poller, without a goroutine, a
// buffer or a timer; when it becomes readable (data, EOF or an error) the
// poller starts a goroutine that copies until the socket is quiet again.
// The other direction reads the stream, which has no such wait in
// quic-go: it keeps its goroutine (and Run's caller is that goroutine).

// lingerFor is how long the socket direction, its socket dry, waits on
// Go's poller before it parks. A busy connection's next bytes come sooner
// (bulk: microseconds; a chatty protocol: a round trip), and parking and
// waking again costs an epoll_ctl, the poller's wake-up and a goroutine.
// The deadline is moved on lazily, so a quiet socket parks between
// lingerFor/2 and lingerFor after its last bytes.
const lingerFor = 5 * time.Millisecond

// aDir is the direction from A to B when it parks.
type aDir struct {
	p     *Proxy
	cp    copier
	pk    *sockio.Parker
	until int64 // A's read deadline (unix ns; 0: none yet)
}

// newADir returns the parking direction from A to B, or nil where it
// cannot park (A is not a TCP or Unix socket, or there is no poller).
func (p *Proxy) newADir() *aDir {
	cs, ok := p.A.(ConnSide)
	if !ok {
		return nil
	}
	rc := sockio.RawConn(cs.Conn)
	poller := sockio.SharedPoller()
	if rc == nil || poller == nil {
		return nil
	}
	d := &aDir{p: p}
	d.cp.init(p.B, p.A, p.AToB, &p.last)
	if d.cp.w == nil {
		return nil
	}
	d.cp.dir = d
	d.pk = poller.NewParker(rc, d.step)
	return d
}

// step copies from A until A is quiet (it parks: the poller runs step
// again when A is readable) or the direction ends.
func (d *aDir) step() {
	p := d.p
	if p.prefixFailed() {
		d.finish()
		return
	}
	if p.prefixN > 0 { // written by Start: counted once
		d.cp.n += p.prefixN
		p.prefixN = 0
	}
	eof, park, err := d.cp.loop()
	if park {
		if err = d.pk.Park(); err == nil {
			return
		}
	}
	p.endAToB(err, eof)
	d.finish()
}

// linger waits, holding no buffer, until A is readable; true when A
// stayed quiet for lingerFor and the direction should park.
func (d *aDir) linger() bool {
	p := d.p
	now := time.Now().UnixNano()
	if d.until-now < int64(lingerFor/2) && !p.refused.Load() {
		// After a refusal, A's deadline is the drain's (refusal).
		d.until = now + int64(lingerFor)
		_ = p.A.(ConnSide).SetReadDeadline(time.Unix(0, d.until))
	}
	// Anything but a quiet socket comes again from the read.
	return d.parkOn(d.cp.w.WaitReadable())
}

// parkOn says whether err is linger's deadline, so the direction parks:
// not after a refusal (the deadline is the drain's) or an abort.
func (d *aDir) parkOn(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) && !d.p.refused.Load() && !d.p.aborted.Load()
}

// finish ends the direction. It runs once: in the direction's own
// goroutine, or in takeParked's caller, who owns it by Unpark (the
// Parker's state makes the two exclusive).
func (d *aDir) finish() {
	d.p.res.AToB = d.cp.n
	d.p.dirEnded()
}

// takeParked ends the direction if it is parked, with end run in the
// caller's goroutine: nothing else would wake it.
func (d *aDir) takeParked(end func()) {
	if d != nil && d.pk.Unpark() {
		end()
		d.finish()
	}
}

// The direction from B to A parks too where B can (an HTTP/2 tunnel
// stream: ParkRead); a QUIC stream cannot, and its direction keeps a
// goroutine blocked in its Read.

// readParker is a source that can run a wake when a Read would not block,
// instead of holding a goroutine in a wait (see tunnel's h2stream).
type readParker interface {
	// ParkRead registers wake and returns true, or returns false if a
	// Read would not block now.
	ParkRead(wake func()) bool
}

// directParker is a source that, while its reader is parked, can hand
// arriving bytes to a write that never blocks (see tunnel's h2stream
// ParkReadTo): A's socket takes them from the connection's reader, and
// no goroutine is woken for a message that fits.
type directParker interface {
	ParkReadTo(wake func(), deliver func([]byte) int) bool
}

// bDir is the direction from B to A when B parks.
type bDir struct {
	p    *Proxy
	cp   copier
	pr   readParker
	dp   directParker     // B, if it delivers to a write that never blocks (and A is a socket)
	step func()           // d.run, made once (what the stream starts)
	dl   func([]byte) int // d.deliver, made once, where B delivers
}

// newBDir returns the parking direction from B to A, or nil where B
// cannot park.
func (p *Proxy) newBDir() *bDir {
	pr, ok := p.B.(readParker)
	if !ok {
		return nil
	}
	d := &bDir{p: p, pr: pr}
	d.cp.init(p.A, p.B, p.BToA, &p.last)
	if d.cp.w == nil {
		return nil
	}
	d.step = d.run
	d.cp.dir = d
	if dp, ok := p.B.(directParker); ok && d.cp.wr != nil {
		d.dp, d.dl = dp, d.deliver
	}
	return d
}

// linger parks whenever the loop has read B dry: no wait first, as a wake
// is only a goroutine started by the stream, no system call.
func (d *bDir) linger() bool {
	if d.dp != nil {
		return d.dp.ParkReadTo(d.step, d.dl)
	}
	return d.pr.ParkRead(d.step)
}

// parkOn: B's read errors are the stream's, never a wait's deadline.
func (d *bDir) parkOn(error) bool { return false }

// deliver writes what B hands it while the direction is parked: one
// write(2) to A that never waits. It returns the bytes A took; an error
// or a full socket leaves the rest to run, which B then starts.
func (d *bDir) deliver(p []byte) int {
	n, _ := d.cp.wr.TryWrite(p) // an error comes again from run's write
	if n > 0 {
		d.cp.last.Store(time.Now().UnixNano())
		d.cp.n += int64(n)
		add(d.cp.c, n)
	}
	return n
}

// run copies from B until B is dry (parked: B starts run again when it
// has data, EOF or an error) or the direction ends.
func (d *bDir) run() {
	eof, park, err := d.cp.loop()
	if park {
		return
	}
	d.p.endBToA(d.cp.n, err, eof)
}
