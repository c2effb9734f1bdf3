package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/dataplane/relay"
	"github.com/onramp-net/onramp/l4proxy/ingress"
)

// Forward is a local port forward: a listener on the connector's host
// whose connections go to the origin that the ingress rule for Service
// names, as a stream of a port binding would, without the edge. Both legs
// are kernel sockets (the origin is tcp://, http:// or unix:), so the
// relay engine moves the bytes (splice where it works: user space never
// sees the payload).
type Forward struct {
	// Service is the hostname matched against the ingress rules.
	Service string
	Rules   *ingress.Config
	Engine  *relay.Engine
	// MaxConns bounds the connections relayed at once; more are reset at
	// accept. Default 1024.
	MaxConns int
	Logger   *slog.Logger

	open atomic.Int64
	// lastWarn (unix nanoseconds) lets one warning a second through.
	lastWarn atomic.Int64
}

// ForwardRule returns the rule Service matches and checks that a forward
// can serve it: a tcp://, http:// or unix: origin (no TLS to originate, no
// UDP, no status answer).
func ForwardRule(rules *ingress.Config, service string) (*ingress.Rule, error) {
	r := rules.Match(service, "/")
	if r == nil {
		return nil, fmt.Errorf("no ingress rule matches %q", service)
	}
	switch s := r.Service(); s.Scheme {
	case ingress.SchemeTCP, ingress.SchemeHTTP, ingress.SchemeUnix:
		return r, nil
	default:
		return nil, fmt.Errorf("%s for %q: a forward needs a tcp://, http:// or unix: origin, not %s", r, service, s.Scheme)
	}
}

// Serve accepts from ln until ctx is done (then it closes ln, resets the
// connections it relays and returns nil) or ln fails.
func (f *Forward) Serve(ctx context.Context, ln net.Listener) error {
	rule, err := ForwardRule(f.Rules, f.Service)
	if err != nil {
		return err
	}
	if f.MaxConns <= 0 {
		f.MaxConns = 1024
	}
	if f.Logger == nil {
		f.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer func() {
		stop()
		cancel()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				f.warn("forward: accept failed", "err", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("forward: %w", err)
		}
		if f.open.Add(1) > int64(f.MaxConns) {
			f.open.Add(-1)
			f.warn("forward: connection refused", "reason", fmt.Sprintf("%d connections open (--max-conns)", f.MaxConns), "user", c.RemoteAddr())
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
			continue
		}
		wg.Add(1)
		go f.relay(ctx, c, rule, func() {
			f.open.Add(-1)
			wg.Done()
		})
	}
}

// relay dials the origin and starts the relay, which calls done when it
// ends; an idle forwarded connection holds no goroutine.
func (f *Forward) relay(ctx context.Context, c net.Conn, rule *ingress.Rule, done func()) {
	origin, err := rule.DialStream(ctx, false)
	if err != nil {
		f.warn("forward: origin unreachable", "service", f.Service, "rule", rule.String(), "err", err)
		c.Close()
		done()
		return
	}
	f.Engine.Start(ctx, c, origin, relay.Options{Idle: rule.IdleTimeout()}, func(res relay.Result) {
		f.Logger.Debug("forward: connection closed", "user", c.RemoteAddr(), "service", f.Service,
			"to_origin", res.AToB, "to_user", res.BToA, "err", res.Err)
		done()
	})
}

// Open returns the connections relayed now.
func (f *Forward) Open() int { return int(f.open.Load()) }

// warn logs at most one line a second.
func (f *Forward) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := f.lastWarn.Load()
	if now-last < int64(time.Second) || !f.lastWarn.CompareAndSwap(last, now) {
		return
	}
	f.Logger.Warn(msg, args...)
}
