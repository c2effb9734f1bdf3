package bench

import (
	"fmt"
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

func TestSlowMachineNote(t *testing.T) {
	probe := func(copies ...float64) *MachineProbe {
		m := &MachineProbe{}
		for _, c := range copies {
			m.SealMBps = append(m.SealMBps, 2000)
			m.CopyMBps = append(m.CopyMBps, JSONNum(c))
		}
		return m
	}
	rows := []*ScenarioResult{
		{Name: "tunnel-quic/bulk1", Machine: probe(15000, 14000, 15500)},
		{Name: "rawquic/bulk1", Machine: probe(11000, 15000, 10500)},
		{Name: "haproxy/bulk1", Machine: probe(13500, 13000, 14500)},
		{Name: "old/bulk1"}, // results from before the probe
	}
	got := slowMachineNote(rows)
	want := fmt.Sprintf("the runs of `rawquic/bulk1` (%.1f GB/s) than around those of `tunnel-quic/bulk1` (%.1f GB/s;", 11000.0/1024, 15000.0/1024)
	if !strings.Contains(got, want) || strings.Contains(got, "haproxy") {
		t.Errorf("note:\n%s\nwant it to contain\n%s\nand not haproxy (within 15%%)", got, want)
	}
	if n := slowMachineNote(rows[2:]); n != "" {
		t.Errorf("one scenario with a probe: %q", n)
	}
	if n := slowMachineNote([]*ScenarioResult{rows[0], rows[2]}); n != "" {
		t.Errorf("within 15%%: %q", n)
	}
}
