package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ParseCPUList parses a taskset-style CPU list such as "0", "1,3" or "0-3".
func ParseCPUList(s string) ([]int, error) {
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		if a < 0 || b < a || b > 1023 {
			return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// cpuSetOf is the CPU set of a taskset-style list.
func cpuSetOf(list string) (unix.CPUSet, error) {
	var set unix.CPUSet
	cpus, err := ParseCPUList(list)
	if err != nil {
		return set, err
	}
	for _, c := range cpus {
		set.Set(c)
	}
	return set, nil
}

// PinProcess sets the CPU affinity of every thread of pid to the CPUs of
// list. Threads created afterwards inherit it from their creator.
func PinProcess(pid int, list string) error {
	set, err := cpuSetOf(list)
	if err != nil {
		return err
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("pin %d: %w", pid, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pin %d thread %d to %s: %w", pid, tid, list, err)
		}
	}
	return nil
}

// pinThread sets the calling thread's CPU affinity (only its: the
// process's other threads stay where they are).
func pinThread(list string) error {
	set, err := cpuSetOf(list)
	if err != nil {
		return err
	}
	return unix.SchedSetaffinity(0, &set)
}

// DefaultPinning splits the CPUs this process may use between the load
// (the harness, iperf3, load generators, origins) and the system under
// test: with two CPUs load on the first and SUT on the second; with more,
// the lower half for load and the upper half for the SUT; with one, no
// pinning.
func DefaultPinning() (sut, load, all string) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return "", "", ""
	}
	var cpus []int
	for c := 0; c < 1024 && len(cpus) < set.Count(); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	all = joinCPUs(cpus)
	if len(cpus) < 2 {
		return "", "", all
	}
	half := len(cpus) / 2
	return joinCPUs(cpus[half:]), joinCPUs(cpus[:half]), all
}

func joinCPUs(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}
