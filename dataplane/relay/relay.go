// Package relay moves bytes both ways between two connected stream
// sockets (TCP, or a Unix stream socket on one side) until both directions
// are closed, without the payload passing through user space where the
// kernel can do it. It is the engine of every plain TCP-to-TCP path of
// onramp: the edge's direct L4 proxy (an origin the edge reaches itself)
// and the connector's local forward.
//
// One API, three strategies ([Strategy]):
//
//   - [Splice]: splice(2) from the source socket into a pipe and from the
//     pipe into the destination, on Go's poller (syscall.RawConn waits; no
//     goroutine blocked in a system call). A direction takes a pipe from
//     the engine's pool only while its source has data, and gives it back
//     when the source runs dry: an idle connection holds no pipe. The pool
//     is capped (Config.MaxPipes); past it a direction copies that burst
//     through a pooled buffer, as HAProxy does past its maxpipes. A
//     direction quiet for a few milliseconds parks in the engine's own
//     epoll set and its goroutine ends (park_linux.go): an idle relay
//     started with [Engine.Start] holds no goroutine either.
//   - [Sockmap]: an sk_skb eBPF program redirects each socket's data to
//     its peer inside the kernel once the pair is registered; user space
//     only waits for the close (see sockmap_linux.go), and forwards what
//     the program passes it while a peer falls behind (the kernel does
//     not bound its queue). Measured on Linux 6.18 it answers small
//     requests far sooner and cheaper than splice (no wake-up of user
//     space per message), but moves bulk slower and at a higher CPU cost
//     per byte, and sets up connections slower (BenchmarkRelay, and the
//     direct-* scenarios of make bench), so it is used only when forced.
//   - [Copy]: read and write through pooled buffers, the portable
//     fallback.
//
// All three behave alike: EOF from one side half-closes the other
// (shutdown SHUT_WR), a read or write error resets both (RST), an idle
// timeout resets both, and the result counts the bytes each way and says
// why each direction ended. [New] checks once which strategies work on the
// running kernel and picks the default ([Engine.Strategy]).
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/dataplane/sockio"
)

// Strategy is how an [Engine] moves bytes.
type Strategy string

const (
	// Auto picks the fastest strategy that passes the engine's self-test
	// on the running kernel (see [New]).
	Auto    Strategy = ""
	Splice  Strategy = "splice"
	Sockmap Strategy = "sockmap"
	Copy    Strategy = "copy"
)

// ParseStrategy parses a configuration value: "auto" (or empty),
// "splice", "sockmap" or "copy".
func ParseStrategy(s string) (Strategy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return Auto, nil
	case "splice":
		return Splice, nil
	case "sockmap":
		return Sockmap, nil
	case "copy":
		return Copy, nil
	}
	return Auto, fmt.Errorf("relay: unknown strategy %q (want auto, splice, sockmap or copy)", s)
}

func (s Strategy) String() string {
	if s == Auto {
		return "auto"
	}
	return string(s)
}

// Counter is a running byte count (a prometheus.Counter is one).
type Counter interface{ Add(float64) }

// Config configures an [Engine].
type Config struct {
	// Strategy forces a strategy; [Auto] (the default) picks the fastest
	// one that works here. A forced strategy that does not work on this
	// kernel is an error of New.
	Strategy Strategy
	// PipeSize is the capacity of each splice pipe (F_SETPIPE_SZ), in
	// bytes; default DefaultPipeSize. The kernel rounds it up to a power
	// of two pages and caps it at /proc/sys/fs/pipe-max-size for
	// unprivileged processes. With the sockmap strategy it bounds the
	// bytes of a direction the kernel holds on the way (see
	// sockmap_linux.go).
	PipeSize int
	// MaxPipes caps the pipes in use at once (two descriptors each);
	// default DefaultMaxPipes. Past it a direction copies in user space
	// until a pipe is free.
	MaxPipes int
	// Log receives the line that says which strategy was picked and why.
	Log *slog.Logger
}

// DefaultPipeSize is 256 KiB: on loopback, pipes of 64 KiB, 256 KiB and
// 1 MiB moved a bulk transfer equally fast within the noise of a 2-core
// machine, and a smaller pipe bounds what users who stop reading can park
// in the kernel (MaxPipes x PipeSize: 1 GiB at the defaults, beside the
// socket buffers every proxy pays).
const (
	DefaultPipeSize = 256 << 10
	DefaultMaxPipes = 4096
	// idlePipes is how many free pipes the pool keeps open for reuse.
	idlePipes = 256
)

// Engine relays connections with one strategy. It is safe for concurrent
// use; Close releases its pooled pipes and eBPF objects.
type Engine struct {
	strategy Strategy
	why      string
	pipes    *pipePool
	poller   *sockio.Poller // parks idle directions (splice, Linux)
	sm       *sockmap       // nil unless the strategy is Sockmap

	closeOnce sync.Once
}

// New checks which strategies work on the running kernel (a short relay
// over loopback each: data both ways with a checksum, half-close) and
// returns an engine with cfg.Strategy, or with the default: splice where
// it works, else copy. The sockmap strategy is used only when forced (see
// the package documentation of the measurements). No eBPF means no
// sockmap: forced, it is an error; never forced, it is never needed.
func New(cfg Config) (*Engine, error) {
	if cfg.PipeSize <= 0 {
		cfg.PipeSize = DefaultPipeSize
	}
	if cfg.MaxPipes <= 0 {
		cfg.MaxPipes = DefaultMaxPipes
	}
	e := &Engine{pipes: newPipePool(cfg.PipeSize, cfg.MaxPipes)}
	switch cfg.Strategy {
	case Copy:
		e.strategy, e.why = Copy, "forced by configuration"
	case Splice:
		if err := e.selfTest(Splice); err != nil {
			e.Close()
			return nil, fmt.Errorf("relay: splice does not work here: %w", err)
		}
		e.strategy, e.why = Splice, "forced by configuration"
	case Sockmap:
		sm, err := newSockmap()
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("relay: sockmap: %w", err)
		}
		e.sm = sm
		if err := e.selfTest(Sockmap); err != nil {
			e.Close()
			return nil, fmt.Errorf("relay: sockmap does not work here: %w", err)
		}
		e.strategy, e.why = Sockmap, "forced by configuration"
	case Auto:
		if err := e.selfTest(Splice); err != nil {
			e.strategy, e.why = Copy, "splice failed its self-test: "+err.Error()
		} else {
			e.strategy, e.why = Splice, "the fastest strategy that passed its self-test"
		}
	default:
		return nil, fmt.Errorf("relay: unknown strategy %q", cfg.Strategy)
	}
	if e.strategy == Splice {
		// Without it a direction waits on Go's poller, holding its
		// goroutine while idle.
		e.poller, _ = sockio.NewPoller()
	}
	if cfg.Log != nil {
		cfg.Log.Info("relay: strategy for TCP-to-TCP paths", "strategy", e.strategy.String(), "why", e.why)
	}
	return e, nil
}

// Strategy returns the strategy the engine relays with.
func (e *Engine) Strategy() Strategy { return e.strategy }

// Why says why the engine relays with its strategy.
func (e *Engine) Why() string { return e.why }

// Close releases the pooled pipes and the sockmap's eBPF objects. Relays
// still running end as if their sockets had failed.
func (e *Engine) Close() error {
	var err error
	e.closeOnce.Do(func() {
		e.pipes.close()
		if e.poller != nil {
			e.poller.Close()
		}
		if e.sm != nil {
			err = e.sm.close()
		}
	})
	return err
}

// Stats are the engine's resource counts, for tests and metrics.
type Stats struct {
	PipesInUse, PipesIdle int
	// PipeFallbacks counts the bursts copied in user space because
	// MaxPipes pipes were in use.
	PipeFallbacks int64
	// SockmapPairs is the number of socket pairs registered in the
	// sockmap now.
	SockmapPairs int
	// Parked is the number of idle directions that hold no goroutine,
	// waiting in the engine's epoll set.
	Parked int
	// SockmapRedirected and SockmapForwarded count the bytes of finished
	// sockmap relays that the kernel redirected and that user space
	// forwarded (bytes the program passed to it, and directions it
	// could not register); SockmapSpliced counts the relays it could not
	// register at all, spliced instead.
	SockmapRedirected, SockmapForwarded, SockmapSpliced int64
}

// Stats returns the engine's resource counts now.
func (e *Engine) Stats() Stats {
	s := e.pipes.stats()
	if e.sm != nil {
		e.sm.stats(&s)
	}
	if e.poller != nil {
		s.Parked = int(e.poller.Parked())
	}
	return s
}

// Options are one relay's settings.
type Options struct {
	// Idle, if positive, resets both sides after that long without a byte
	// moving either way.
	Idle time.Duration
	// AToB and BToA, if set, are added the bytes as they move (with the
	// sockmap strategy, when the relay ends).
	AToB, BToA Counter
}

// Result is what a finished relay reports.
type Result struct {
	// AToB and BToA are the bytes written to b and to a.
	AToB, BToA int64
	// AEnd and BEnd say why the direction from a (to b) and from b (to a)
	// ended: nil after EOF (passed on as a half-close), else the read or
	// write error, or the abort reason.
	AEnd, BEnd error
	// Err is why the relay was aborted, resetting both sides: the first
	// error of either direction, [ErrIdle] or [ErrStopped]; nil after an
	// orderly close both ways.
	Err error
	// Idle is set if the idle timeout fired.
	Idle bool
}

var (
	// ErrIdle is the abort reason after the idle timeout.
	ErrIdle = errors.New("idle timeout")
	// ErrStopped is the abort reason when the relay's context is done.
	ErrStopped = errors.New("relay stopped")
)

// Relay moves bytes between a and b until both directions are done or it
// is aborted, then closes both; it owns a and b. With the splice and
// sockmap strategies a and b must be *net.TCPConn or *net.UnixConn
// (anything else is copied). When ctx is done first, both sides are reset
// and the result's Err is [ErrStopped].
func (e *Engine) Relay(ctx context.Context, a, b net.Conn, o Options) Result {
	if e.strategy == Splice {
		ch := make(chan Result, 1)
		if e.startParked(ctx, a, b, o, func(res Result) { ch <- res }) {
			return <-ch
		}
	}
	return e.relay(ctx, a, b, o)
}

// Start is Relay without waiting for the end: it calls done with the
// result when the relay ends, from another goroutine or, if the relay
// ends at once, this one. With the splice strategy an idle relay started
// so holds no goroutine at all; Start itself moves what a has to say
// first before it returns (it may wait for b to take it).
func (e *Engine) Start(ctx context.Context, a, b net.Conn, o Options, done func(Result)) {
	if e.strategy == Splice && e.startParked(ctx, a, b, o, done) {
		return
	}
	go func() { done(e.relay(ctx, a, b, o)) }()
}

// relay relays with a goroutine per direction, waiting on Go's poller.
func (e *Engine) relay(ctx context.Context, a, b net.Conn, o Options) Result {
	r := &run{e: e, a: a, b: b, o: o}
	if e.strategy == Sockmap {
		if res, ok := e.sm.relay(ctx, r); ok {
			return res
		}
		// The pair could not be registered: splice it.
	}
	return r.run(ctx)
}

// run is one relay in progress.
type run struct {
	e    *Engine
	a, b net.Conn
	o    Options

	last      atomic.Int64 // unix nanoseconds of the last byte either way
	timerMu   sync.Mutex
	timer     *time.Timer
	finished  bool // guarded by timerMu
	abortOnce sync.Once
	abortErr  error // set once, before aborted
	aborted   atomic.Bool
	// afterAbort, if set, runs once the sockets are reset (parked
	// directions end there).
	afterAbort func()
}

func (r *run) touch() { r.last.Store(time.Now().UnixNano()) }

// start arms the idle timer and the stop callback; the returned function
// disarms both.
func (r *run) start(ctx context.Context) (stop func()) {
	r.touch()
	if r.o.Idle > 0 {
		r.timerMu.Lock()
		r.timer = time.AfterFunc(r.o.Idle, r.checkIdle)
		r.timerMu.Unlock()
	}
	stopCtx := context.AfterFunc(ctx, func() { r.abort(ErrStopped) })
	return func() {
		stopCtx()
		r.timerMu.Lock()
		r.finished = true
		if r.timer != nil {
			r.timer.Stop()
		}
		r.timerMu.Unlock()
	}
}

// lastActive returns when a byte last moved; the sockmap strategy
// overrides it with the kernel's record.
var lastActiveHook func(r *run) int64

func (r *run) checkIdle() {
	r.timerMu.Lock()
	defer r.timerMu.Unlock()
	if r.finished || r.aborted.Load() {
		return
	}
	last := r.last.Load()
	if lastActiveHook != nil {
		last = max(last, lastActiveHook(r))
	}
	since := time.Duration(time.Now().UnixNano() - last)
	if since >= r.o.Idle {
		go r.abort(ErrIdle) // a reset may block; not under timerMu
		return
	}
	r.timer.Reset(r.o.Idle - since)
}

// abort resets both sides once, recording why.
func (r *run) abort(err error) {
	r.abortOnce.Do(func() {
		r.abortErr = err
		r.aborted.Store(true)
		reset(r.a)
		reset(r.b)
		if r.afterAbort != nil {
			r.afterAbort()
		}
	})
}

// run relays with the splice or copy strategy: one goroutine per
// direction (this one and another).
func (r *run) run(ctx context.Context) Result {
	stop := r.start(ctx)
	var res Result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res.AToB, res.AEnd = r.direction(r.b, r.a, r.o.AToB)
	}()
	res.BToA, res.BEnd = r.direction(r.a, r.b, r.o.BToA)
	wg.Wait()
	stop()
	_ = r.a.Close()
	_ = r.b.Close()
	r.finish(&res)
	return res
}

// finish fills in the abort reason.
func (r *run) finish(res *Result) {
	if r.aborted.Load() {
		res.Err = r.abortErr
		res.Idle = r.abortErr == ErrIdle
	}
}

// direction moves bytes from src to dst until EOF (then half-closes dst)
// or an error (then aborts the relay).
func (r *run) direction(dst, src net.Conn, c Counter) (int64, error) {
	var n int64
	var err error
	var eof bool
	if r.e.strategy == Copy {
		n, err, eof = r.copyLoop(dst, src, c)
	} else {
		n, err, eof = r.spliceLoop(dst, src, c)
	}
	if eof {
		if err := closeWrite(dst); err != nil {
			r.abort(err)
			return n, r.abortErr
		}
		return n, nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	// The first error aborts the relay; a direction cut by an abort (its
	// socket reset under it) ended because of the abort's reason.
	r.abort(err)
	return n, r.abortErr
}

func add(c Counter, n int) {
	if c != nil && n > 0 {
		c.Add(float64(n))
	}
}

// closeWrite passes EOF on: shutdown(SHUT_WR) (see sockio.CloseWrite).
func closeWrite(c net.Conn) error { return sockio.CloseWrite(c) }

// reset closes c with SO_LINGER 0 so that a TCP peer gets an RST.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
