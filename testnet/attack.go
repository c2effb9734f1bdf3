package testnet

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Loop is a user who keeps being served while a test plays an attacker:
// it runs an operation again and again until stopped, counting what
// succeeded and what failed. The attack tests print its [Loop.String] and
// check [Loop.Rate].
type Loop struct {
	Name string

	ok, failed atomic.Int64
	mu         sync.Mutex
	lastErr    error
	stop       chan struct{}
	done       chan struct{}
	stopOnce   sync.Once
}

// StartLoop runs op every interval (back to back if op takes longer) in its
// own goroutine until [Loop.Stop]. Each op should bound its own time (a
// client timeout): a hung op holds the loop.
func StartLoop(name string, interval time.Duration, op func() error) *Loop {
	l := &Loop{Name: name, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if err := op(); err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				l.lastErr = err
				l.mu.Unlock()
			} else {
				l.ok.Add(1)
			}
			select {
			case <-l.stop:
				return
			case <-t.C:
			}
		}
	}()
	return l
}

// Stop ends the loop and waits for its last operation. It is idempotent.
func (l *Loop) Stop() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

// Counts returns the operations that succeeded and failed so far.
func (l *Loop) Counts() (ok, failed int64) { return l.ok.Load(), l.failed.Load() }

// Rate is the fraction of operations that succeeded (0 before the first).
func (l *Loop) Rate() float64 {
	ok, failed := l.Counts()
	if ok+failed == 0 {
		return 0
	}
	return float64(ok) / float64(ok+failed)
}

// String reports the counts, the success rate and the last error.
func (l *Loop) String() string {
	ok, failed := l.Counts()
	s := fmt.Sprintf("%s: %d/%d ok (%.2f%%)", l.Name, ok, ok+failed, 100*l.Rate())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastErr != nil {
		s += fmt.Sprintf("; last error: %v", l.lastErr)
	}
	return s
}

// MemStatus returns the process's resident set size now (VmRSS) and its
// peak (VmHWM), in bytes: what an attack made the process hold.
func (p *Proc) MemStatus() (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	var found int
	for _, line := range strings.Split(string(b), "\n") {
		for _, f := range []struct {
			key string
			v   *int64
		}{{"VmRSS:", &rss}, {"VmHWM:", &peak}} {
			if v, ok := strings.CutPrefix(line, f.key); ok {
				var kb int64
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
					return 0, 0, err
				}
				*f.v = kb << 10
				found++
			}
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("no VmRSS or VmHWM in /proc/%d/status", p.Cmd.Process.Pid)
	}
	return rss, peak, nil
}

// MiB formats a byte count in MiB for test output.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// Metrics returns the Prometheus /metrics text served at addr, fetched from
// inside the node.
func (node *Node) Metrics(addr string) (string, error) {
	resp, err := node.HTTPClient(5 * time.Second).Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s/metrics: %s", addr, resp.Status)
	}
	return string(b), err
}

// MetricValue returns the value of the first sample of name in a /metrics
// text whose labels contain every labels entry (`key="value"`), or 0.
func MetricValue(text, name string, labels ...string) float64 {
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(rest, l)
		}
		if !match {
			continue
		}
		f := strings.Fields(rest)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		return v
	}
	return 0
}
