package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/cmd/internal/sdnotify"
	"github.com/onramp-net/onramp/l3router/connector"
)

// Until the first connection is up the run loops look every readyPoll,
// so that READY=1 follows it closely; then every statusPoll.
const (
	readyPoll  = 200 * time.Millisecond
	statusPoll = time.Second
)

// runNotifier tells systemd how `tunnel run` or `l3 run` is doing: READY=1
// once the connector is up (its first tunnel connection, its first
// WireGuard handshake), STATUS= when its state line changes, RELOADING=1
// and READY=1 around a SIGHUP reload, STOPPING=1 when it drains, and
// WATCHDOG=1 keep-alives while its run loop answers probes.
//
// The run loop selects on C (then calls update) and on probes (then
// closes the channel it received): the watchdog's health check is the
// loop answering, so a wedged loop stops the keep-alives.
type runNotifier struct {
	n      *sdnotify.Notifier
	tick   *time.Ticker
	C      <-chan time.Time
	probes chan chan struct{}

	ready    bool
	status   string
	stopping atomic.Bool
}

func newRunNotifier(ctx context.Context, log *slog.Logger) *runNotifier {
	r := &runNotifier{n: sdnotify.New(log), tick: time.NewTicker(readyPoll), probes: make(chan chan struct{})}
	r.C = r.tick.C
	r.n.Watchdog(ctx, func() bool {
		if r.stopping.Load() {
			return true // the loop drains, bounded by --grace-period and TimeoutStopSec
		}
		reply := make(chan struct{})
		select {
		case r.probes <- reply:
		case <-ctx.Done():
			return false
		}
		select {
		case <-reply:
			return true
		case <-ctx.Done():
			return false
		}
	})
	return r
}

// update records the connector's state: READY=1 the first time it is up,
// STATUS=status whenever that changes.
func (r *runNotifier) update(up bool, status string) {
	switch {
	case up && !r.ready:
		r.ready = true
		r.status = status
		r.n.Ready(status)
		r.tick.Reset(statusPoll)
	case status != r.status:
		r.status = status
		r.n.Status(status)
	}
}

// reload runs apply, the SIGHUP reload, between RELOADING=1 and READY=1
// once the connector has been ready; before, it only runs apply, as
// READY=1 would claim a connection that is not up yet.
func (r *runNotifier) reload(apply func() error) {
	if !r.ready {
		_ = apply()
		return
	}
	if err := r.n.Reload(apply); err == nil {
		r.n.Status(r.status) // a refused one's error stays the STATUS
	}
}

// stop sends STOPPING=1: the connector drains and exits.
func (r *runNotifier) stop() {
	r.stopping.Store(true)
	r.n.Stopping()
}

// close stops the ticker.
func (r *runNotifier) close() { r.tick.Stop() }

// l3StatusLine is `l3 run`'s STATUS= line: whether the WireGuard session is
// up, and with several edges how many are live.
func l3StatusLine(s connector.Stats, now time.Time) string {
	state := "WireGuard session with the edge up"
	if s.LastHandshake.IsZero() {
		state = "waiting for the first WireGuard handshake with the edge"
	} else if !s.Ready(now) {
		state = "edge unreachable: no handshake in the last 3 minutes, or the interface is down"
	}
	if len(s.Edges) > 1 {
		live := 0
		for _, e := range s.Edges {
			if e.Live {
				live++
			}
		}
		state += fmt.Sprintf(" (%d of %d edges live)", live, len(s.Edges))
	}
	return state
}
