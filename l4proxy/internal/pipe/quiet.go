package pipe

import (
	"errors"
	"os"
	"sync/atomic"
	"time"
)

// A QUIC stream can wait for data without a buffer (a peek of one byte),
// but only in a goroutine of its own: quic-go has no callback to park on,
// as the user's socket (aDir) and an HTTP/2 stream (bDir) have. So the
// direction from a QUIC stream keeps one goroutine, and what a held stream
// costs is mostly that goroutine's stack: grown to 4 or 8 KiB by the
// copying it did (writes to a socket, quic-go's read path), and kept at
// that size, as the runtime only halves a stack whose goroutine uses less
// than a quarter of it.
//
// A direction whose stream has been quiet for rescueAfter is therefore
// moved to a fresh goroutine, which waits on the smallest stack the
// runtime gives: the sweeper (see Group), one goroutine for the process
// while proxies run, sets a read deadline in the past on the stream
// (which wakes the wait), the woken goroutine clears it, starts the
// fresh one and ends, and its stack is freed. A stream that moves bytes
// is never woken; a stream quiet for hours is moved once per quiet spell.

// rescueAfter is how long both directions of a proxy must have read
// nothing before the direction from its stream moves to a fresh
// goroutine; the sweeper looks every rescueEvery. Tests shorten them.
var rescueAfter, rescueEvery atomic.Int64 // time.Duration

func init() {
	rescueAfter.Store(int64(time.Second))
	rescueEvery.Store(int64(time.Second))
}

// deadlineWaiter is a stream that waits without a buffer (WaitReadable)
// and whose wait a read deadline ends: a QUIC stream.
type deadlineWaiter interface {
	readWaiter
	SetReadDeadline(time.Time) error
}

// The states of a qDir's wait.
const (
	qRunning  int32 = iota // copying, or waiting where the sweeper must not wake it
	qWaiting               // in linger's wait: the sweeper may wake it
	qRescuing              // the sweeper is setting the deadline that wakes it
)

// qDir is the direction from B to A where B is a deadlineWaiter.
type qDir struct {
	p     *Proxy
	cp    copier
	w     deadlineWaiter
	state atomic.Int32
}

// newQDir returns the direction from B to A where B is a deadlineWaiter,
// or nil.
func (p *Proxy) newQDir() *qDir {
	w, ok := p.B.(deadlineWaiter)
	if !ok {
		return nil
	}
	d := &qDir{p: p, w: w}
	d.cp.init(p.A, p.B, p.BToA, &p.last)
	d.cp.dir = d
	return d
}

// run copies from B until the direction ends, or until the sweeper woke a
// quiet wait: then a fresh goroutine takes over the wait.
func (d *qDir) run() {
	eof, park, err := d.cp.loop()
	if park {
		go d.wait()
		return
	}
	d.p.endBToA(d.cp.n, err, eof)
}

// wait is a fresh goroutine's wait for B, which the sweeper leaves alone
// (state qRunning); it copies on when B has data, EOF or an error.
func (d *qDir) wait() {
	_ = d.w.WaitReadable() // an error comes again from the read
	d.run()
}

// linger is the loop's wait for B: true when the sweeper woke it to move
// it to a fresh goroutine, false when B has data, EOF or an error.
func (d *qDir) linger() bool {
	d.state.Store(qWaiting)
	err := d.w.WaitReadable()
	if d.state.CompareAndSwap(qWaiting, qRunning) {
		return false
	}
	// The sweeper took the wait (qRescuing) and sets the deadline under
	// the group's lock: once that is free, the deadline is set and can be
	// cleared.
	d.p.g.mu.Lock()
	//lint:ignore SA2001 an empty critical section: waiting for the sweeper
	d.p.g.mu.Unlock()
	_ = d.w.SetReadDeadline(time.Time{})
	d.state.Store(qRunning)
	// Data may have come with the deadline: then the loop reads it here.
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// parkOn: a read error after the wait is the stream's; linger clears the
// deadline it was woken with before the loop reads.
func (d *qDir) parkOn(error) bool { return false }
