package main

import (
	"context"
	"fmt"
)

// notifyReady tells systemd the edge serves (READY=1: every listener is
// bound and the admin socket answers) and starts the watchdog's
// keep-alives, sent while healthy passes. They go on while the edge stops
// (systemd's watchdog runs then too; TimeoutStopSec bounds the stop).
func (a *app) notifyReady(ctx context.Context) {
	a.notify.Ready(a.statusLine())
	a.notify.Watchdog(context.WithoutCancel(ctx), a.healthy)
}

// healthy is the watchdog's liveness check: the server's table of
// connector connections, whose lock every connector connection and user
// stream takes, answers. A wedged server blocks here, the keep-alives
// stop and systemd restarts the edge. The STATUS line is refreshed with it.
func (a *app) healthy() bool {
	a.notify.Status(a.statusLine())
	return true
}

// statusLine is the edge's STATUS= for systemctl status.
func (a *app) statusLine() string {
	return fmt.Sprintf("serving: %d connector connections", len(a.srv.Connections()))
}
