// Package sdnotify tells systemd how a service started with Type=notify is
// doing, as sd_notify(3) does, without cgo or libsystemd: one datagram of
// newline-separated assignments ("READY=1", "STATUS=...") per call on a
// unixgram socket to the address in $NOTIFY_SOCKET (a path, or "@name" in
// the abstract namespace). Without NOTIFY_SOCKET, outside systemd, every
// method does nothing.
//
// It is written here (some 60 lines) rather than taken from go-systemd's
// daemon package, which sends the same datagrams, because the reload
// protocol needs MONOTONIC_USEC and the watchdog needs a health check the
// package has neither of, and the binaries then depend on nothing new.
//
// The protocol, as systemd ≥ 253 expects it:
//
//   - READY=1 once the service does what it is for; `systemctl start`
//     returns then, and units ordered after it start.
//   - RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC, in µs) when a
//     reload starts, READY=1 when it is done, applied or refused: the unit
//     shows "reloading" in between. systemd ≥ 253 matches MONOTONIC_USEC
//     against its reload request (ExecReload sends SIGHUP); older ones
//     ignore it.
//   - STOPPING=1 when the service starts to shut down.
//   - STATUS=text: a one-line state that `systemctl status` shows.
//   - WATCHDOG=1 at least every $WATCHDOG_USEC (WatchdogSec=): systemd kills
//     and, with Restart=on-failure, restarts a service that stops sending
//     it. [Notifier.Watchdog] sends it every half of that while the service
//     is healthy.
package sdnotify

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends the service's state to systemd. The zero value, and a
// Notifier made without NOTIFY_SOCKET, do nothing; a nil *Notifier too.
// Methods are safe for concurrent use.
type Notifier struct {
	addr string        // $NOTIFY_SOCKET; "" does nothing
	wd   time.Duration // how often the watchdog wants WATCHDOG=1; 0: off
	log  *slog.Logger
}

// New reads $NOTIFY_SOCKET and the watchdog's $WATCHDOG_USEC and
// $WATCHDOG_PID. A failure to send is logged to log (at warn), not
// returned: systemd's accounting is never worth stopping the service for.
func New(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.Default()
	}
	n := &Notifier{addr: os.Getenv("NOTIFY_SOCKET"), log: log}
	if n.addr == "" {
		return n
	}
	// WATCHDOG_PID names the process the watchdog is meant for; unset, it
	// is the main process, which a unit's ExecStart is.
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return n
	}
	if usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		n.wd = time.Duration(usec) * time.Microsecond / 2
	} else if os.Getenv("WATCHDOG_USEC") != "" {
		log.Warn("sd_notify: WATCHDOG_USEC is not a positive number of microseconds; no watchdog keep-alives", "WATCHDOG_USEC", os.Getenv("WATCHDOG_USEC"))
	}
	return n
}

// Enabled reports whether the service runs under a service manager that
// listens (NOTIFY_SOCKET is set).
func (n *Notifier) Enabled() bool { return n != nil && n.addr != "" }

// WatchdogInterval is how often [Notifier.Watchdog] sends WATCHDOG=1: half
// of $WATCHDOG_USEC, or 0 when the watchdog is off or meant for another
// process.
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.wd
}

// Send sends the assignments (e.g. "READY=1", "STATUS=up") in one
// datagram and returns what went wrong; it does nothing without
// NOTIFY_SOCKET.
func (n *Notifier) Send(assignments ...string) error {
	if !n.Enabled() {
		return nil
	}
	if n.addr[0] != '/' && n.addr[0] != '@' {
		return fmt.Errorf("sd_notify: NOTIFY_SOCKET %q: want an absolute path or an @abstract name", n.addr)
	}
	// Go maps a leading '@' to the abstract namespace's leading NUL.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(assignments, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// send is Send, logging a failure.
func (n *Notifier) send(assignments ...string) {
	if err := n.Send(assignments...); err != nil {
		n.log.Warn("could not tell systemd the service's state", "state", strings.Join(assignments, " "), "err", err)
	}
}

// Ready sends READY=1, with STATUS=status if status is not empty.
func (n *Notifier) Ready(status string) {
	if status != "" {
		n.send("READY=1", "STATUS="+oneLine(status))
		return
	}
	n.send("READY=1")
}

// Reloading sends RELOADING=1 and MONOTONIC_USEC, the time systemd checks
// against that of the reload request. [Notifier.Ready] must follow.
func (n *Notifier) Reloading() {
	if !n.Enabled() {
		return
	}
	n.send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10))
}

// Reload brackets apply, the service's reload, with RELOADING=1 and
// READY=1, and returns apply's error. A refused reload leaves the service
// running as it was, so READY=1 is sent either way, with the error as the
// STATUS.
func (n *Notifier) Reload(apply func() error) error {
	n.Reloading()
	err := apply()
	if err != nil {
		n.Ready("reload refused, running the previous configuration: " + err.Error())
		return err
	}
	n.Ready("")
	return nil
}

// Stopping sends STOPPING=1.
func (n *Notifier) Stopping() { n.send("STOPPING=1") }

// Status sends STATUS=text (new lines become spaces).
func (n *Notifier) Status(text string) { n.send("STATUS=" + oneLine(text)) }

// Watchdog sends WATCHDOG=1 every [Notifier.WatchdogInterval] until ctx is
// done, each time healthy returns true. It returns at once, running in a
// goroutine of its own, and does nothing when the watchdog is off.
//
// healthy is the service's liveness check, run on the watchdog's
// goroutine: it should touch what a wedged service would hang in (a main
// loop's select, a lock every connection takes). If it blocks, no more
// keep-alives go and systemd ends the service at WatchdogSec, as it
// should; it must not block for a healthy service. nil means always.
func (n *Notifier) Watchdog(ctx context.Context, healthy func() bool) {
	every := n.WatchdogInterval()
	if every <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if healthy == nil || healthy() {
				n.send("WATCHDOG=1")
			} else {
				n.log.Warn("unhealthy: no watchdog keep-alive sent to systemd")
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// stamps its reload requests with.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}
