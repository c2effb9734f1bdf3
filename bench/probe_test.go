package bench

import (
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestProbe samples with the machine probe pinned to CPU 0 and checks
// that it measured, and that every thread of the process has its
// affinity back (a probe that pinned the whole harness would move the
// load generators onto the SUT CPU).
func TestProbe(t *testing.T) {
	var was unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		t.Fatal(err)
	}
	var p machineProbe
	p.sample("0")
	p.sample("0")
	if len(p.copy) != 2*probeSamples {
		t.Errorf("%d copy samples, want %d", len(p.copy), 2*probeSamples)
	}
	r := p.result()
	if !(r.Seal > 0) || !(r.Copy > 0) {
		t.Fatalf("probe measured nothing: %+v", r)
	}
	if s := r.String(); !strings.Contains(s, "sealed") || !strings.Contains(s, "copied") {
		t.Errorf("String: %q", s)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err != nil {
			continue // the thread ended
		}
		if set != was {
			t.Errorf("thread %d: affinity %d CPUs after the probe, %d before", tid, set.Count(), was.Count())
		}
	}
	if s := (ProbeResult{Seal: math.NaN(), Copy: math.NaN()}).String(); s != "no sample" {
		t.Errorf("empty probe: %q", s)
	}
}
