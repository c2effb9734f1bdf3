package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen makes a unixgram socket as systemd's notify socket, at a path or,
// with abstract, an "@" name, and sets NOTIFY_SOCKET to it.
func listen(t *testing.T, abstract bool) *net.UnixConn {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify.sock")
	if abstract {
		name = fmt.Sprintf("@onramp-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	return c
}

// read returns the next datagram, or "" after wait.
func read(t *testing.T, c *net.UnixConn, wait time.Duration) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestStates(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run(fmt.Sprintf("abstract=%v", abstract), func(t *testing.T) {
			c := listen(t, abstract)
			n := New(nil)
			if !n.Enabled() {
				t.Fatal("Enabled() false with NOTIFY_SOCKET set")
			}
			n.Ready("")
			if got := read(t, c, time.Second); got != "READY=1\n" {
				t.Errorf("Ready: %q, want READY=1", got)
			}
			n.Ready("2 of 4 connections up")
			if got := read(t, c, time.Second); got != "READY=1\nSTATUS=2 of 4 connections up\n" {
				t.Errorf("Ready with status: %q", got)
			}
			n.Status("line one\nline two")
			if got := read(t, c, time.Second); got != "STATUS=line one line two\n" {
				t.Errorf("Status: %q, want one line", got)
			}
			n.Stopping()
			if got := read(t, c, time.Second); got != "STOPPING=1\n" {
				t.Errorf("Stopping: %q", got)
			}
		})
	}
}

// TestReloadSendsMonotonicUsec: RELOADING=1 with MONOTONIC_USEC, the
// CLOCK_MONOTONIC time in µs that systemd ≥ 253 compares with its reload
// request, then READY=1.
func TestReloadSendsMonotonicUsec(t *testing.T) {
	c := listen(t, false)
	n := New(nil)
	before := monotonicUsec()
	applied := false
	if err := n.Reload(func() error { applied = true; return nil }); err != nil {
		t.Fatal(err)
	}
	after := monotonicUsec()
	if !applied {
		t.Fatal("Reload did not run apply")
	}
	got := read(t, c, time.Second)
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("reload start: %q, want RELOADING=1 and MONOTONIC_USEC=", got)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%d (%v), want CLOCK_MONOTONIC in µs, in [%d, %d]", usec, err, before, after)
	}
	// /proc/uptime is CLOCK_BOOTTIME; CLOCK_MONOTONIC is at most that (it
	// stops in suspend): a sanity check that the unit is µs, not ns or ms.
	if up, err := os.ReadFile("/proc/uptime"); err == nil {
		secs, _ := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
		if float64(usec) > secs*1e6+1e6 || float64(usec) < 1e6 && secs > 10 {
			t.Errorf("MONOTONIC_USEC=%d does not look like µs since boot (uptime %.0fs)", usec, secs)
		}
	}
	if got := read(t, c, time.Second); got != "READY=1\n" {
		t.Errorf("reload end: %q, want READY=1", got)
	}

	// A refused reload: still READY=1 (the old configuration runs), the
	// error in STATUS and returned.
	refused := errors.New("edge.yml: routes[2]: bad hostname")
	if err := n.Reload(func() error { return refused }); !errors.Is(err, refused) {
		t.Errorf("Reload returned %v, want apply's error", err)
	}
	if got := read(t, c, time.Second); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("refused reload start: %q", got)
	}
	if got := read(t, c, time.Second); got != "READY=1\nSTATUS=reload refused, running the previous configuration: "+refused.Error()+"\n" {
		t.Errorf("refused reload end: %q", got)
	}
}

func TestNothingWithoutNotifySocket(t *testing.T) {
	c := listen(t, false) // a socket that must hear nothing
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "100000")
	n := New(nil)
	if n.Enabled() || n.WatchdogInterval() != 0 {
		t.Fatalf("Enabled %v, WatchdogInterval %v without NOTIFY_SOCKET; want false, 0", n.Enabled(), n.WatchdogInterval())
	}
	n.Ready("up")
	n.Reloading()
	n.Stopping()
	n.Status("x")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.Watchdog(ctx, nil)
	if err := n.Send("READY=1"); err != nil {
		t.Errorf("Send without NOTIFY_SOCKET: %v, want nil", err)
	}
	if got := read(t, c, 300*time.Millisecond); got != "" {
		t.Errorf("got %q without NOTIFY_SOCKET", got)
	}
	var nilN *Notifier
	nilN.Ready("") // a nil Notifier is a no-op too
	nilN.Watchdog(ctx, nil)
}

func TestBadNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "vsock:2:1234")
	if err := New(nil).Send("READY=1"); err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
		t.Errorf("Send to %q: %v, want an error naming NOTIFY_SOCKET", "vsock:2:1234", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent.sock"))
	if err := New(nil).Send("READY=1"); err == nil {
		t.Error("Send to a socket nobody listens on: no error")
	}
}

// TestWatchdog: WATCHDOG=1 every half of WATCHDOG_USEC while healthy,
// none while not, none for another process's WATCHDOG_PID.
func TestWatchdog(t *testing.T) {
	c := listen(t, true)
	t.Setenv("WATCHDOG_USEC", "200000") // 200ms: keep-alives every 100ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := New(nil)
	if got := n.WatchdogInterval(); got != 100*time.Millisecond {
		t.Fatalf("WatchdogInterval %v, want 100ms (half of WATCHDOG_USEC=200000)", got)
	}
	var healthy atomic.Bool
	healthy.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	n.Watchdog(ctx, healthy.Load)

	var at []time.Time
	for len(at) < 6 {
		got := read(t, c, time.Second)
		if got != "WATCHDOG=1\n" {
			t.Fatalf("keep-alive %d: %q, want WATCHDOG=1", len(at), got)
		}
		at = append(at, time.Now())
	}
	period := at[len(at)-1].Sub(at[0]) / time.Duration(len(at)-1)
	t.Logf("6 keep-alives, mean period %v", period)
	if period < 80*time.Millisecond || period > 150*time.Millisecond {
		t.Errorf("mean period %v, want about 100ms", period)
	}

	healthy.Store(false)
	_ = read(t, c, 150*time.Millisecond) // one may have been under way
	if got := read(t, c, 400*time.Millisecond); got != "" {
		t.Errorf("unhealthy: got %q, want no keep-alive", got)
	}
	healthy.Store(true)
	if got := read(t, c, time.Second); got != "WATCHDOG=1\n" {
		t.Errorf("healthy again: %q, want WATCHDOG=1", got)
	}
	cancel()
	_ = read(t, c, 150*time.Millisecond)
	if got := read(t, c, 300*time.Millisecond); got != "" {
		t.Errorf("after ctx done: %q, want nothing", got)
	}

	// A blocked health check is a failed one.
	block := make(chan struct{})
	defer close(block)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	New(nil).Watchdog(ctx2, func() bool { <-block; return true })
	if got := read(t, c, 400*time.Millisecond); got != "" {
		t.Errorf("blocked health check: got %q, want no keep-alive", got)
	}
}

func TestWatchdogOtherPID(t *testing.T) {
	c := listen(t, false)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	n := New(nil)
	if n.WatchdogInterval() != 0 {
		t.Errorf("WatchdogInterval %v for WATCHDOG_PID of another process, want 0", n.WatchdogInterval())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.Watchdog(ctx, nil)
	if got := read(t, c, 300*time.Millisecond); got != "" {
		t.Errorf("got %q; the watchdog is another process's", got)
	}
	// WATCHDOG_PID unset: the main process, this one.
	t.Setenv("WATCHDOG_PID", "")
	if got := New(nil).WatchdogInterval(); got != 50*time.Millisecond {
		t.Errorf("WatchdogInterval %v without WATCHDOG_PID, want 50ms", got)
	}
}
