// Package pipe is the copy loop both halves of the L4 tunnel share: bytes
// both ways between a socket and a tunnel stream with pooled buffers,
// half-close and resets propagated, an idle timeout, and back-pressure
// instead of buffering.
package pipe

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/dataplane/sockio"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// Copy buffers. Each direction of a proxied connection reads into a
// pooled buffer whose size follows the traffic:
//
//   - SmallBufSize while little arrives at a time (interactive traffic,
//     and the start of every direction);
//   - BigBufSize once a read fills the small buffer, that is once data
//     arrives faster than it is written out (a bulk transfer). A read then
//     takes up to 256 KiB from the socket or stream and the write hands all
//     of it on at once: eight times fewer system calls, wake-ups and
//     QUIC/HTTP/2 write hand-offs than with 32 KiB. A read shorter than
//     SmallBufSize moves the direction back to a small buffer.
//
// A direction that reads a TCP or Unix socket or an HTTP/2 tunnel stream
// holds no buffer at all while there is nothing to read: after a read that
// did not fill its buffer it puts the buffer back and waits for the source
// to become readable without one (see readWaiter), then takes one of the
// same size. A QUIC stream waits with a peek of one byte (see quiet.go):
// 1000 idle connections hold no buffer over either transport, instead of
// 4 MiB of small ones.
const (
	SmallBufSize = 4 << 10
	BigBufSize   = 256 << 10
)

// BufSize is the size of the buffers of GetBuf, for reading a request head
// or draining a connection.
const BufSize = 32 << 10

// The pools hold *[]byte of exactly their size. A buffer belongs to the
// goroutine that took it until it puts it back; nothing keeps a reference.
var (
	bufPool   = sync.Pool{New: func() any { b := make([]byte, BufSize); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, SmallBufSize); return &b }}
	bigPool   = sync.Pool{New: func() any { b := make([]byte, BigBufSize); return &b }}
)

// GetBuf takes a BufSize buffer from the pool; the caller owns it until PutBuf.
func GetBuf() *[]byte { return bufPool.Get().(*[]byte) }

// PutBuf returns a buffer taken with GetBuf; the caller must not use it after.
func PutBuf(b *[]byte) { bufPool.Put(b) }

// readWaiter is a Side (or socket) that can wait until a Read would not
// block without being given a buffer: the HTTP/2 tunnel streams, and TCP
// and Unix sockets on Linux.
type readWaiter interface {
	// WaitReadable returns when a Read would return at once (data, EOF or
	// an error); an error it returns comes again from the Read.
	WaitReadable() error
}

// WaitReadable waits, holding no buffer, until a read from c would not
// block (data, EOF or an error), within c's read deadline, whose expiry it
// returns. Where it cannot wait so (c is not a TCP or Unix socket, or the
// system is not Linux) it returns nil at once.
func WaitReadable(c net.Conn) error {
	if w := newReadWaiter(ConnSide{c}); w != nil {
		return w.WaitReadable()
	}
	return nil
}

// heldBufs counts the copy buffers CopyLoop holds now (for the tests).
var heldBufs atomic.Int64

// copyBuf is the buffer of one direction: none, small or big.
type copyBuf struct {
	bp  *[]byte
	big bool
}

func (b *copyBuf) get(big bool) {
	if big {
		b.bp = bigPool.Get().(*[]byte)
	} else {
		b.bp = smallPool.Get().(*[]byte)
	}
	b.big = big
	heldBufs.Add(1)
}

func (b *copyBuf) put() {
	if b.bp == nil {
		return
	}
	if b.big {
		bigPool.Put(b.bp)
	} else {
		smallPool.Put(b.bp)
	}
	b.bp = nil
	heldBufs.Add(-1)
}

// Side is one end of a proxied connection: the user's (or origin's) socket
// wrapped in a ConnSide, or the tunnel stream.
type Side interface {
	io.Reader
	io.Writer
	// CloseWrite propagates EOF to the peer.
	CloseWrite() error
	// Reset aborts both directions so that the peer sees an error, not EOF.
	Reset()
	// Close is an orderly full close.
	Close() error
}

// ConnSide adapts a net.Conn.
type ConnSide struct{ net.Conn }

// CloseWrite half-closes c (a raw shutdown on a TCP or Unix socket, see
// sockio.CloseWrite), or closes it if it cannot half-close.
func (c ConnSide) CloseWrite() error { return sockio.CloseWrite(c.Conn) }

// Reset closes with SO_LINGER 0 so that a TCP peer gets an RST.
func (c ConnSide) Reset() {
	nc := c.Conn
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		nc = u.NetConn()
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = nc.Close()
}

func (c ConnSide) Close() error { return c.Conn.Close() }

// A tunnel.Stream is a Side as it is.
var _ Side = tunnel.Stream(nil)

// ErrIdle is the abort reason after the idle timeout.
var ErrIdle = errors.New("idle timeout")

// Proxy copies bytes both ways between a (the user's or the origin's socket)
// and b (the tunnel stream), one goroutine per direction, with back-pressure:
// each direction holds one buffer and writes what it read before reading
// again, so nothing is queued beyond the buffer.
//
// EOF on one Side half-closes the other (closeWrite). A read or write error on
// either Side resets both. When both directions are done, both are closed.
type Proxy struct {
	A, B Side
	// Prefix is written to b before copying a to b (bytes already read
	// from a while peeking at it). Start writes it before it returns, so
	// that it leaves with what the caller wrote to b just before (a tunnel
	// stream's request): one packet or record, not two. The Proxy drops it
	// once written; the caller may reuse its memory once Start returned.
	Prefix []byte
	// PrefixBuf, if set, is the pooled buffer (GetBuf) Prefix is in: the
	// Proxy puts it back once Prefix is written, so that a caller whose
	// goroutine goes on in the proxy (RunIn) does not hold it.
	PrefixBuf *[]byte
	// AToB and BToA count the bytes copied; nil counters are not used.
	AToB, BToA prometheus.Counter
	// Idle, if positive, aborts the proxy after that long without a read on
	// either side (the group's sweeper looks at least every Idle/2, so
	// it ends within 1.5 Idle, and within Idle plus a second).
	Idle time.Duration
	// OnRefused, if set, is called when the first Read of b fails with a
	// *tunnel.StreamError before anything was written to a. It answers the
	// user if it can; the Proxy then closes a in an orderly way.
	OnRefused func(err *tunnel.StreamError)

	last      atomic.Int64 // unix nanoseconds of the last read on either Side
	refused   atomic.Bool
	bMu       sync.Mutex
	bEnded    bool          // guarded by bMu: the direction from B has ended
	bWait     chan struct{} // guarded by bMu: made by a failAToB that waits, closed when bEnded is set
	abortOnce sync.Once
	abortErr  error // set once, before aborted is set
	aborted   atomic.Bool
	prefixN   int64 // Prefix's bytes written by Start (on success)
	prefixErr error // the error writing Prefix, for the direction from A
	ad        *aDir // the direction from A when it parks (see aDir)
	bd        *bDir // the direction from B when it parks (see bDir)
	qd        *qDir // the direction from B when B is a QUIC stream (see qDir)

	// Set by Start; the direction that ends second finishes the Proxy.
	done func(Result)
	g    *Group
	// In g's list, guarded by g.mu.
	prev, next *Proxy
	ended      atomic.Int32
	res        Result // AToB, BToA and Refused, each set by its direction before it ends
}

// Result is what a finished Proxy reports.
type Result struct {
	AToB, BToA int64
	// Err is the reason the connection was aborted (nil after an orderly
	// close on both sides).
	Err error
	// Refused is set if B's first read returned a *tunnel.StreamError.
	Refused *tunnel.StreamError
	// Idle is set if the idle timeout fired.
	Idle bool
}

// Run copies until both directions are done, then closes both sides.
// When ctx is done first, the Proxy is aborted with [ErrStopped].
func (p *Proxy) Run(ctx context.Context) Result {
	ch := make(chan Result, 1)
	p.Start(ctx, func(r Result) { ch <- r })
	return <-ch
}

// Start is StartIn with a group of its own, for one proxy.
func (p *Proxy) Start(ctx context.Context, done func(Result)) {
	g := NewGroup(ctx)
	p.StartIn(g, done)
	g.Close()
}

// StartIn is Run in group g without waiting: it returns at once, and done
// is called with the result, once, from a goroutine of the Proxy, when
// both directions are done and both sides closed. When g's context is
// done first, the Proxy is aborted with [ErrStopped].
//
// A held stream costs no goroutine of its caller: each direction parks
// while its source is quiet where the source can (see aDir and bDir), and
// otherwise runs in a goroutine of its own, started here with a small
// stack (the caller's has grown with its dial and handshake), which a
// quiet QUIC stream's direction trades for a fresh one (see qDir). Nor
// does it cost a timer or a callback of its own: g's sweeper and g's
// callback on the context stand in for them.
func (p *Proxy) StartIn(g *Group, done func(Result)) {
	p.begin(g, done)
	if p.ad != nil {
		go p.ad.step()
	} else {
		go p.runAToB()
	}
}

// RunIn is StartIn, except that the direction from A to B begins on the
// calling goroutine: RunIn returns when that direction parks, A quiet
// (see aDir), or ends (where A cannot park, at the end of the
// connection). A caller that would end its goroutine after StartIn lends
// it to the proxy instead: a new connection then costs one goroutine
// start (and the growth of its stack) less. The caller's stack, grown
// by its dial or handshake, is given back when the direction first
// parks, lingerFor after A's last bytes.
func (p *Proxy) RunIn(g *Group, done func(Result)) {
	p.begin(g, done)
	if p.ad != nil {
		p.ad.step()
	} else {
		p.runAToB()
	}
}

// begin is StartIn's and RunIn's: the Proxy listed in g, Prefix written,
// the direction from B to A started.
func (p *Proxy) begin(g *Group, done func(Result)) {
	p.done = done
	p.touch()
	p.ad, p.bd = p.newADir(), p.newBDir()
	if p.bd == nil {
		p.qd = p.newQDir()
	}
	if !g.add(p) {
		go p.abort(ErrStopped)
	}
	p.writePrefix()
	if p.bd != nil {
		go p.bd.step()
	} else if p.qd != nil {
		go p.qd.run()
	} else {
		go func() {
			n, err, eof := CopyLoop(p.A, p.B, p.BToA, &p.last)
			p.endBToA(n, err, eof)
		}()
	}
}

// runAToB is the direction from A to B where it cannot park.
func (p *Proxy) runAToB() {
	p.res.AToB = p.copyAToB()
	p.dirEnded()
}

// dirEnded counts an ended direction; the second finishes the Proxy:
// both sides closed, the result reported.
func (p *Proxy) dirEnded() {
	if p.ended.Add(1) != 2 {
		return
	}
	p.g.remove(p)
	_ = p.A.Close()
	_ = p.B.Close()
	res := p.res
	if p.aborted.Load() {
		res.Err = p.abortErr
		res.Idle = p.abortErr == ErrIdle
	}
	p.done(res)
}

// ErrStopped is the abort reason when the server shuts down.
var ErrStopped = errors.New("server shutting down")

func (p *Proxy) touch() { p.last.Store(time.Now().UnixNano()) }

// abort resets both sides once, recording why.
func (p *Proxy) abort(err error) {
	p.abortOnce.Do(func() {
		p.abortErr = err
		p.aborted.Store(true)
		p.A.Reset()
		p.B.Reset()
		// A parked direction would wait for a socket that is gone.
		p.ad.takeParked(func() {})
	})
}

// writePrefix writes Prefix to b from Start's caller, right after what
// the caller wrote to b (a stream's request), and drops it; a failure is
// the direction from A's to handle (prefixFailed).
func (p *Proxy) writePrefix() {
	if len(p.Prefix) > 0 {
		if _, err := p.B.Write(p.Prefix); err != nil {
			p.prefixErr = err
		} else {
			p.prefixN = int64(len(p.Prefix))
			add(p.AToB, len(p.Prefix))
		}
	}
	p.Prefix = nil // not held for the connection's life
	if p.PrefixBuf != nil {
		PutBuf(p.PrefixBuf)
		p.PrefixBuf = nil
	}
}

// prefixFailed fails the direction from A if Start could not write the
// prefix, once.
func (p *Proxy) prefixFailed() bool {
	err := p.prefixErr
	if err == nil {
		return false
	}
	p.prefixErr = nil
	p.failAToB(err)
	return true
}

func (p *Proxy) copyAToB() int64 {
	if p.prefixFailed() {
		return 0
	}
	m, err, eof := CopyLoop(p.B, p.A, p.AToB, &p.last)
	p.endAToB(err, eof)
	return p.prefixN + m
}

// endAToB ends the direction from a to b: EOF half-closes b, an error
// fails the direction (failAToB).
func (p *Proxy) endAToB(err error, eof bool) {
	switch {
	case eof:
		if err := p.B.CloseWrite(); err != nil {
			p.failAToB(err)
		}
	case err != nil:
		p.failAToB(err)
	}
}

// refusalWait bounds how long a failed write to b waits for the other
// direction to read why (see failAToB).
const refusalWait = 2 * time.Second

// failAToB handles an error copying a to b: after a refusal the stream is
// already gone and the user's answer is on its way, so a is only drained.
// A refused stream fails writes too (the connector stops reading it), and
// a write may fail before the other direction has read the refusal, which
// an abort would destroy: so failAToB waits for that direction (at most
// refusalWait) before it decides. The wait costs nothing on the way of a
// stream that does not fail.
func (p *Proxy) failAToB(err error) {
	if !p.refused.Load() {
		p.waitBToA()
	}
	if p.refused.Load() {
		drain(p.A)
		return
	}
	p.abort(err)
}

// waitBToA waits until the direction from B has ended, at most refusalWait.
func (p *Proxy) waitBToA() {
	p.bMu.Lock()
	if p.bEnded {
		p.bMu.Unlock()
		return
	}
	if p.bWait == nil {
		p.bWait = make(chan struct{})
	}
	ch := p.bWait
	p.bMu.Unlock()
	t := time.NewTimer(refusalWait)
	select {
	case <-ch:
	case <-t.C:
	}
	t.Stop()
}

// endBToA ends the direction from b to a after n bytes: EOF half-closes
// a, an error aborts, and a refusal (the first read of b fails with a
// *tunnel.StreamError) is answered (OnRefused) and a drained.
func (p *Proxy) endBToA(n int64, err error, eof bool) {
	p.res.BToA = n
	p.res.Refused = p.refusal(n, err, eof)
	p.bMu.Lock()
	p.bEnded = true
	if p.bWait != nil {
		close(p.bWait)
	}
	p.bMu.Unlock()
	p.dirEnded()
}

// refusal handles the end of the direction from b (see endBToA) and
// returns the refusal, if it was one.
func (p *Proxy) refusal(n int64, err error, eof bool) *tunnel.StreamError {
	switch {
	case eof:
		if err := p.A.CloseWrite(); err != nil {
			p.abort(err)
		}
	case err != nil:
		var se *tunnel.StreamError
		if n == 0 && errors.As(err, &se) {
			p.refused.Store(true)
			if p.OnRefused != nil {
				p.OnRefused(se)
			}
			p.B.Reset()
			if p.OnRefused == nil {
				// Nothing to tell the user: close at once. A parked
				// direction would never wake (closing a socket is no
				// event for the poller): it ends here.
				_ = p.A.Close()
				p.ad.takeParked(func() {})
				return se
			}
			_ = p.A.CloseWrite()
			if c, ok := p.A.(ConnSide); ok {
				// Unblock the other direction if the user keeps the connection
				// open; it drains until then.
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			}
			// A parked direction has no read to unblock: drain here.
			p.ad.takeParked(func() { drain(p.A) })
			return se
		}
		p.abort(err)
	}
	return nil
}

// drain reads and discards from s (whose read deadline is set) so that
// closing it does not send an RST that destroys the answer just written.
func drain(s Side) {
	bp := GetBuf()
	defer PutBuf(bp)
	for range 64 {
		if _, err := s.Read(*bp); err != nil {
			return
		}
	}
}

// CopyLoop copies from src to dst until EOF (eof=true, err=nil) or an error.
// It does not allocate per read: its buffer comes from a pool and follows
// the traffic, SmallBufSize or BigBufSize (see [SmallBufSize]); while a
// socket src has nothing to read it holds no buffer.
//
// A ConnSide over a TCP or Unix socket is read and written with raw
// system calls on Go's poller (dataplane/sockio): the runtime's
// bookkeeping of a blocking call costs a proxy of small messages more
// than the call itself.
func CopyLoop(dst, src io.ReadWriter, c prometheus.Counter, last *atomic.Int64) (n int64, err error, eof bool) {
	var cp copier // on the stack: no allocation per call
	cp.init(dst, src, c, last)
	eof, _, err = cp.loop()
	return cp.n, err, eof
}

// copier is the state of a copy loop, kept across the goroutines of a
// direction that parks (see aDir).
type copier struct {
	src  io.Reader
	dst  io.Writer
	rd   *sockio.Reader // src's raw reads, if a socket
	wr   *sockio.Writer // dst's raw writes, if a socket
	w    readWaiter     // nil: src cannot wait without a buffer
	c    prometheus.Counter
	last *atomic.Int64
	n    int64 // bytes copied
	big  bool  // the buffer size to take next
	// dir, if set, is the direction's own wait for src (see lingerer),
	// instead of w.WaitReadable.
	dir lingerer
}

// lingerer is the wait of a direction that parks or moves its wait (aDir,
// bDir, qDir): an interface on the direction rather than funcs, so that
// setting it allocates nothing.
type lingerer interface {
	// linger waits for src without a buffer; true means src stayed
	// dry: the loop returns to park.
	linger() bool
	// parkOn says whether a read error is linger's deadline (a read
	// after the wait may come after it): the loop parks then too.
	parkOn(error) bool
}

func (cp *copier) init(dst, src io.ReadWriter, c prometheus.Counter, last *atomic.Int64) {
	*cp = copier{src: src, dst: dst, w: newReadWaiter(src), c: c, last: last}
	if cs, ok := src.(ConnSide); ok {
		cp.rd = sockio.NewReader(cs.Conn)
	}
	if cs, ok := dst.(ConnSide); ok {
		cp.wr = sockio.NewWriter(cs.Conn)
	}
}

func (cp *copier) read(p []byte) (int, error) {
	if cp.rd != nil {
		return cp.rd.Read(p)
	}
	return cp.src.Read(p)
}

func (cp *copier) write(p []byte) (int, error) {
	if cp.wr != nil {
		return cp.wr.Write(p)
	}
	return cp.dst.Write(p)
}

// loop copies until EOF, an error, or (with linger) src stays dry: park.
func (cp *copier) loop() (eof, park bool, err error) {
	var b copyBuf
	defer b.put()
	for {
		var nr int
		var rerr error
		switch {
		case b.bp != nil:
			nr, rerr = cp.read(*b.bp)
		default:
			switch {
			case cp.dir != nil:
				if cp.dir.linger() {
					return false, true, nil
				}
			case cp.w != nil:
				// An error (deadline, closed) comes again from the Read.
				_ = cp.w.WaitReadable()
			}
			b.get(cp.big)
			nr, rerr = cp.read(*b.bp)
		}
		if nr > 0 {
			cp.last.Store(time.Now().UnixNano())
			nw, werr := cp.write((*b.bp)[:nr])
			cp.n += int64(nw)
			add(cp.c, nw)
			if werr != nil {
				return false, false, werr
			}
			if nw != nr {
				return false, false, io.ErrShortWrite
			}
		}
		if rerr != nil {
			switch {
			case rerr == io.EOF:
				return true, false, nil
			case nr == 0 && cp.dir != nil && cp.dir.parkOn(rerr):
				return false, true, nil
			}
			return false, false, rerr
		}
		size := SmallBufSize
		if cp.big {
			size = BigBufSize
		}
		switch {
		case !cp.big && nr == size:
			cp.big = true
			b.put()
		case cp.big && nr < SmallBufSize:
			cp.big = false
			b.put()
		case cp.w != nil && nr < size:
			// The source is drained: wait for more without a buffer. On a
			// bulk transfer from a socket that costs a ppoll per read,
			// which finds data at once.
			b.put()
		}
	}
}

func add(c prometheus.Counter, n int) {
	if c != nil && n > 0 {
		c.Add(float64(n))
	}
}
