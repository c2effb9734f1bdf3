package testnet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// CI reports whether the tests run under CI=true, where a missing
// capability is a failure, not a skip.
func CI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test with the reason, or fails it under CI=true.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("CI=true and the testbed cannot run: %s", msg)
	}
	t.Skip(msg)
}

var (
	probeOnce sync.Once
	probeErr  error
)

// Available reports why the testbed cannot run here, or nil if it can:
// it needs root, ip(8) and tc(8), and the right to make network namespaces.
func Available() error {
	probeOnce.Do(func() {
		if os.Geteuid() != 0 {
			probeErr = fmt.Errorf("testnet needs root (running as uid %d)", os.Geteuid())
			return
		}
		for _, tool := range []string{"ip", "tc"} {
			if _, err := exec.LookPath(tool); err != nil {
				probeErr = fmt.Errorf("testnet needs %s(8) from iproute2: %w (run make deps)", tool, err)
				return
			}
		}
		ns := fmt.Sprintf("%s%d-probe", TestPrefix, os.Getpid())
		if err := ip(context.Background(), "netns", "add", ns); err != nil {
			probeErr = fmt.Errorf("cannot create a network namespace: %w", err)
			return
		}
		if err := deleteNS(ns); err != nil {
			probeErr = fmt.Errorf("cannot delete a network namespace: %w", err)
		}
	})
	return probeErr
}

// New brings topo up for the test t and removes it in t.Cleanup, whether the
// test passes, fails or panics. It skips t (fails it under CI=true) when the
// testbed cannot run here. Command and process output goes to t.Log.
func New(t testing.TB, topo Topology) *Net {
	t.Helper()
	if err := Available(); err != nil {
		SkipOrFail(t, "%v", err)
	}
	var mu sync.Mutex
	done := false
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf(format, args...)
		}
	}
	n, err := Build(context.Background(), topo, Options{Logf: logf})
	if err != nil {
		t.Fatalf("testnet: build %s: %v", topo.Name, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("testnet: close %s: %v", topo.Name, err)
		}
		mu.Lock()
		done = true
		mu.Unlock()
	})
	return n
}

// Main is for TestMain in packages that use the testbed: it sweeps what
// killed earlier runs left behind, runs the tests, and then fails the run if
// any namespace of this process is left.
//
//	func TestMain(m *testing.M) { testnet.Main(m) }
func Main(m *testing.M) {
	if os.Geteuid() == 0 {
		if gone, err := Sweep(); err != nil {
			fmt.Fprintf(os.Stderr, "testnet: sweep: %v\n", err)
		} else if len(gone) > 0 {
			fmt.Fprintf(os.Stderr, "testnet: swept %d namespaces left by earlier runs\n", len(gone))
		}
	}
	code := m.Run()
	RemoveBinaries()
	if os.Geteuid() == 0 {
		mine := fmt.Sprintf("%s%d-", TestPrefix, os.Getpid())
		if left, _ := SweepPrefix(mine); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "testnet: FAIL: tests left namespaces behind: %v\n", left)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}
