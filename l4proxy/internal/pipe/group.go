package pipe

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Group is the proxies started with one context (a listener's, a
// connector's): when the context is done, every proxy of the group is
// aborted with [ErrStopped]. The group's one callback on the context and
// its list of proxies stand in for a callback and an idle timer per proxy
// (a held stream costs neither): the sweeper, one goroutine for the
// process while proxies run, walks every group's list now and then, aborts
// the proxies idle for their Idle, and moves the waits of quiet QUIC
// streams to fresh goroutines (see quiet.go).
type Group struct {
	mu      sync.Mutex
	head    *Proxy
	n       int
	minIdle time.Duration // the smallest positive Idle listed so far: the sweeper looks at least twice as often
	stopped bool          // the context is done: listed proxies were aborted, new ones are aborted at once
	closed  bool          // no proxy comes any more: released once the list is empty
	stop    func() bool   // the callback on the context
	// In groups' list, guarded by groups.mu.
	prev, next *Group
	listed     bool
}

// groups is every group not yet released, for the sweeper.
var groups struct {
	mu       sync.Mutex
	head     *Group
	live     atomic.Int64 // proxies listed over all groups
	sweeping atomic.Bool  // a sweeper runs; it ends once live is 0
	every    atomic.Int64 // how often the sweeper looks now (a time.Duration)
	kick     chan struct{}
}

func init() { groups.kick = make(chan struct{}, 1) }

// rescued counts the waits of quiet QUIC streams the sweeper moved to a
// fresh goroutine (for tests).
var rescued atomic.Int64

// minSweep bounds how often the sweeper looks, whatever the idle timeouts.
const minSweep = 10 * time.Millisecond

// NewGroup returns an empty group whose proxies are aborted when ctx is
// done. Close it when no proxy will be started in it any more.
func NewGroup(ctx context.Context) *Group {
	g := &Group{}
	groups.mu.Lock()
	g.next = groups.head
	if groups.head != nil {
		groups.head.prev = g
	}
	groups.head = g
	g.listed = true
	groups.mu.Unlock()
	g.stop = context.AfterFunc(ctx, g.abortAll)
	return g
}

// Close says that no proxy will be started in g any more: the proxies it
// has go on (and are still aborted when the context is done), and g is
// released when the last ends.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	empty := g.n == 0
	g.mu.Unlock()
	if empty {
		g.release()
	}
}

// release takes g off the sweeper's list and its callback off the
// context, once.
func (g *Group) release() {
	groups.mu.Lock()
	if g.listed {
		if g.prev != nil {
			g.prev.next = g.next
		} else {
			groups.head = g.next
		}
		if g.next != nil {
			g.next.prev = g.prev
		}
		g.prev, g.next, g.listed = nil, nil, false
	}
	groups.mu.Unlock()
	g.stop()
}

// add lists p, starting the sweeper if none runs; false if the context is
// done already (the caller aborts p).
func (g *Group) add(p *Proxy) bool {
	p.g = g
	g.mu.Lock()
	p.next = g.head
	if g.head != nil {
		g.head.prev = p
	}
	g.head = p
	g.n++
	if p.Idle > 0 && (g.minIdle == 0 || p.Idle < g.minIdle) {
		g.minIdle = p.Idle
	}
	ok := !g.stopped
	g.mu.Unlock()
	groups.live.Add(1)
	if !groups.sweeping.Load() && groups.sweeping.CompareAndSwap(false, true) {
		go sweep()
	} else if p.Idle > 0 && max(p.Idle/2, minSweep) < time.Duration(groups.every.Load()) {
		// The running sweeper would look too late for this one.
		kickSweeper()
	}
	return ok
}

// kickSweeper makes a running sweeper look now and set its period again.
func kickSweeper() {
	select {
	case groups.kick <- struct{}{}:
	default:
	}
}

// remove takes p, which has ended, off g's list.
func (g *Group) remove(p *Proxy) {
	g.mu.Lock()
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		g.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	}
	p.prev, p.next = nil, nil
	g.n--
	release := g.closed && g.n == 0
	g.mu.Unlock()
	groups.live.Add(-1)
	if release {
		g.release()
	}
}

// abortAll aborts every proxy of g, and those started later at once: the
// context is done.
func (g *Group) abortAll() {
	g.mu.Lock()
	g.stopped = true
	all := make([]*Proxy, 0, g.n)
	for p := g.head; p != nil; p = p.next {
		all = append(all, p)
	}
	g.mu.Unlock()
	// Outside the lock: a reset may block, and a proxy that ends now
	// takes itself off the list. Aborting one that has just ended does
	// nothing it would notice.
	for _, p := range all {
		p.abort(ErrStopped)
	}
}

// sweep looks at every group's proxies every rescueEvery (more often when
// an idle timeout is shorter than twice that): it aborts those that read
// nothing for their Idle, and wakes the waits of quiet QUIC streams
// (qDir). It ends once no proxy is listed.
func sweep() {
	every := time.Duration(rescueEvery.Load())
	groups.every.Store(int64(every))
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-groups.kick: // a shorter idle timeout came: look now, and as often as it needs
		}
		if groups.live.Load() == 0 {
			groups.sweeping.Store(false)
			// A proxy listed meanwhile saw a sweeper running and started
			// none: this one goes on for it, unless another started.
			if groups.live.Load() == 0 || !groups.sweeping.CompareAndSwap(false, true) {
				return
			}
		}
		now := time.Now()
		every = time.Duration(rescueEvery.Load())
		after := rescueAfter.Load()
		groups.mu.Lock()
		for g := groups.head; g != nil; g = g.next {
			g.mu.Lock()
			if g.minIdle > 0 {
				every = min(every, max(g.minIdle/2, minSweep))
			}
			for p := g.head; p != nil; p = p.next {
				since := now.UnixNano() - p.last.Load()
				if p.Idle > 0 && since >= int64(p.Idle) {
					if !p.aborted.Load() {
						go p.abort(ErrIdle) // resets may block; not under the locks
					}
					continue
				}
				if d := p.qd; d != nil && since >= after && d.state.CompareAndSwap(qWaiting, qRescuing) {
					// Under g.mu, which the woken wait takes before it
					// clears the deadline (qDir.linger).
					_ = d.w.SetReadDeadline(now)
					rescued.Add(1)
				}
			}
			g.mu.Unlock()
		}
		groups.mu.Unlock()
		groups.every.Store(int64(every))
		t.Reset(every)
	}
}
