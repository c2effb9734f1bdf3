package testnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const netnsDir = "/run/netns"

// Do runs f on a goroutine whose OS thread has entered the node's network
// namespace, and returns f's error. Sockets that f creates stay in the
// namespace after f returns, so a listener opened here can be served from
// any goroutine. A panic in f is re-raised in the caller.
//
// The thread returns to its original namespace afterwards; if that fails,
// the thread is left locked so the Go runtime discards it.
func (node *Node) Do(f func() error) error {
	return DoNS(node.NS, f)
}

// DoNS is [Node.Do] for a namespace by name (as in ip netns).
func DoNS(ns string, f func() error) error {
	type result struct {
		err     error
		panicV  any
		paniced bool
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("testnet: open current netns: %w", err)}
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, ns))
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("testnet: open netns %s: %w", ns, err)}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("testnet: enter netns %s: %w", ns, err)}
			return
		}
		defer func() {
			if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
		}()
		defer func() {
			if v := recover(); v != nil {
				done <- result{panicV: v, paniced: true}
			}
		}()
		done <- result{err: f()}
	}()
	r := <-done
	if r.paniced {
		panic(r.panicV)
	}
	return r.err
}

// Namespaces lists the names of the network namespaces in /run/netns.
func Namespaces() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// deleteNS kills whatever still runs in the namespace and deletes it.
func deleteNS(ns string) error {
	killNS(ns)
	if err := ip(context.Background(), "netns", "delete", ns); err != nil {
		if _, statErr := os.Stat(filepath.Join(netnsDir, ns)); errors.Is(statErr, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return nil
}

// killNS sends SIGKILL to every process whose network namespace is ns.
func killNS(ns string) {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, ns), &want); err != nil {
		return
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Sweep deletes namespaces left by test runs that no longer exist: those
// named TestPrefix+PID+"-..." whose PID is not a live process. Namespaces
// of live test processes are left alone, so parallel test binaries can
// sweep safely. It returns the names it deleted.
func Sweep() ([]string, error) {
	names, err := Namespaces()
	if err != nil {
		return nil, err
	}
	var gone []string
	var errs []error
	for _, ns := range names {
		rest, ok := strings.CutPrefix(ns, TestPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err == nil && pid != os.Getpid() && processAlive(pid) {
			continue
		}
		if err == nil && pid == os.Getpid() {
			continue
		}
		if err := deleteNS(ns); err != nil {
			errs = append(errs, err)
			continue
		}
		gone = append(gone, ns)
	}
	return gone, errors.Join(errs...)
}

// SweepPrefix deletes every namespace whose name starts with prefix.
func SweepPrefix(prefix string) ([]string, error) {
	names, err := Namespaces()
	if err != nil {
		return nil, err
	}
	var gone []string
	var errs []error
	for _, ns := range names {
		if !strings.HasPrefix(ns, prefix) {
			continue
		}
		if err := deleteNS(ns); err != nil {
			errs = append(errs, err)
			continue
		}
		gone = append(gone, ns)
	}
	return gone, errors.Join(errs...)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
