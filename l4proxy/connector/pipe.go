package connector

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// This file is the same code as l4proxy/edge/pipe.go (the copy loop of both
// halves of the tunnel); a shared internal package should hold it once.

// bufSize is the size of the pooled copy buffers: one per direction of each
// proxied connection, held only while the direction is copying.
const bufSize = 32 << 10

// bufPool holds *[]byte of exactly bufSize bytes. A buffer belongs to the
// goroutine that took it until it puts it back; nothing keeps a reference.
var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// side is one end of a proxied connection: the user's (or origin's) socket, or
// the tunnel stream.
type side interface {
	io.Reader
	io.Writer
	// closeWrite propagates EOF to the peer.
	closeWrite() error
	// reset aborts both directions so that the peer sees an error, not EOF.
	reset()
	// close is an orderly full close.
	close() error
}

// connSide adapts a net.Conn.
type connSide struct{ net.Conn }

func (c connSide) closeWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// reset closes with SO_LINGER 0 so that a TCP peer gets an RST.
func (c connSide) reset() {
	nc := c.Conn
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		nc = u.NetConn()
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = nc.Close()
}

func (c connSide) close() error { return c.Conn.Close() }

// streamSide adapts a tunnel.Stream.
type streamSide struct{ tunnel.Stream }

func (s streamSide) closeWrite() error { return s.Stream.CloseWrite() }
func (s streamSide) reset()            { s.Stream.Reset() }
func (s streamSide) close() error      { return s.Stream.Close() }

// errIdle is the abort reason after the idle timeout.
var errIdle = errors.New("idle timeout")

// proxy copies bytes both ways between a (the user's or the origin's socket)
// and b (the tunnel stream), one goroutine per direction, with back-pressure:
// each direction holds one buffer and writes what it read before reading
// again, so nothing is queued beyond the buffer.
//
// EOF on one side half-closes the other (closeWrite). A read or write error on
// either side resets both. When both directions are done, both are closed.
type proxy struct {
	a, b side
	// prefix is written to b before copying a to b (bytes already read
	// from a while peeking at it).
	prefix []byte
	// aToB and bToA count the bytes copied; nil counters are not used.
	aToB, bToA prometheus.Counter
	idle       time.Duration
	// onRefused, if set, is called when the first Read of b fails with a
	// *tunnel.StreamError before anything was written to a. It answers the
	// user if it can; the proxy then closes a in an orderly way.
	onRefused func(err *tunnel.StreamError)

	last      atomic.Int64 // unix nanoseconds of the last read on either side
	timerMu   sync.Mutex
	timer     *time.Timer // the idle timer, re-armed by checkIdle
	finished  bool        // guarded by timerMu: the idle timer must not re-arm
	refused   atomic.Bool
	abortOnce sync.Once
	abortErr  error // set once, before aborted is set
	aborted   atomic.Bool
}

// result is what a finished proxy reports.
type result struct {
	aToB, bToA int64
	// err is the reason the connection was aborted (nil after an orderly
	// close on both sides).
	err error
	// refused is set if b's first read returned a *tunnel.StreamError.
	refused *tunnel.StreamError
	// idle is set if the idle timeout fired.
	idle bool
}

// run copies until both directions are done, then closes both sides.
// stop, if not nil, aborts the proxy when closed.
func (p *proxy) run(stop <-chan struct{}) result {
	p.touch()
	if p.idle > 0 {
		p.timerMu.Lock()
		p.timer = time.AfterFunc(p.idle, p.checkIdle)
		p.timerMu.Unlock()
	}
	var res result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res.aToB = p.copyAToB()
	}()
	done := make(chan struct{})
	if stop != nil {
		go func() {
			select {
			case <-stop:
				p.abort(errStopped)
			case <-done:
			}
		}()
	}
	var refused *tunnel.StreamError
	res.bToA, refused = p.copyBToA()
	wg.Wait()
	close(done)
	p.timerMu.Lock()
	p.finished = true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.timerMu.Unlock()
	_ = p.a.close()
	_ = p.b.close()
	res.refused = refused
	if p.aborted.Load() {
		res.err = p.abortErr
		res.idle = p.abortErr == errIdle
	}
	return res
}

// errStopped is the abort reason when the server shuts down.
var errStopped = errors.New("server shutting down")

func (p *proxy) touch() { p.last.Store(time.Now().UnixNano()) }

func (p *proxy) checkIdle() {
	p.timerMu.Lock()
	defer p.timerMu.Unlock()
	if p.finished || p.aborted.Load() {
		return
	}
	since := time.Duration(time.Now().UnixNano() - p.last.Load())
	if since >= p.idle {
		go p.abort(errIdle) // resets may block; not under timerMu
		return
	}
	p.timer.Reset(p.idle - since)
}

// abort resets both sides once, recording why.
func (p *proxy) abort(err error) {
	p.abortOnce.Do(func() {
		p.abortErr = err
		p.aborted.Store(true)
		p.a.reset()
		p.b.reset()
	})
}

func (p *proxy) copyAToB() int64 {
	var n int64
	if len(p.prefix) > 0 {
		if _, err := p.b.Write(p.prefix); err != nil {
			p.failAToB(err)
			return 0
		}
		n += int64(len(p.prefix))
		add(p.aToB, len(p.prefix))
	}
	m, err, eof := copyLoop(p.b, p.a, p.aToB, &p.last)
	n += m
	switch {
	case eof:
		if err := p.b.closeWrite(); err != nil && !p.refused.Load() {
			p.abort(err)
		}
	case err != nil:
		p.failAToB(err)
	}
	return n
}

// failAToB handles an error copying a to b: after a refusal the stream is
// already gone and the user's answer is on its way, so a is only drained.
func (p *proxy) failAToB(err error) {
	if p.refused.Load() {
		drain(p.a)
		return
	}
	p.abort(err)
}

func (p *proxy) copyBToA() (int64, *tunnel.StreamError) {
	n, err, eof := copyLoop(p.a, p.b, p.bToA, &p.last)
	switch {
	case eof:
		if err := p.a.closeWrite(); err != nil {
			p.abort(err)
		}
	case err != nil:
		var se *tunnel.StreamError
		if n == 0 && errors.As(err, &se) {
			p.refused.Store(true)
			if p.onRefused != nil {
				p.onRefused(se)
			}
			p.b.reset()
			if p.onRefused == nil {
				// Nothing to tell the user: close at once.
				_ = p.a.close()
				return 0, se
			}
			_ = p.a.closeWrite()
			if c, ok := p.a.(connSide); ok {
				// Unblock the other direction if the user keeps the connection
				// open; it drains until then.
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			}
			return 0, se
		}
		p.abort(err)
	}
	return n, nil
}

// drain reads and discards from s (whose read deadline is set) so that
// closing it does not send an RST that destroys the answer just written.
func drain(s side) {
	bp := getBuf()
	defer putBuf(bp)
	for range 64 {
		if _, err := s.Read(*bp); err != nil {
			return
		}
	}
}

// copyLoop copies from src to dst until EOF (eof=true, err=nil) or an error.
// It does not allocate: the buffer comes from bufPool.
func copyLoop(dst, src io.ReadWriter, c prometheus.Counter, last *atomic.Int64) (n int64, err error, eof bool) {
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			last.Store(time.Now().UnixNano())
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			add(c, nw)
			if werr != nil {
				return n, werr, false
			}
			if nw != nr {
				return n, io.ErrShortWrite, false
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return n, nil, true
			}
			return n, rerr, false
		}
	}
}

func add(c prometheus.Counter, n int) {
	if c != nil && n > 0 {
		c.Add(float64(n))
	}
}
