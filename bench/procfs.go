package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ClockTicks is USER_HZ, the unit of the times in /proc/PID/stat. It is 100
// on every Linux architecture Go supports (sysconf(_SC_CLK_TCK) needs cgo).
const ClockTicks = 100

// ProcStat is what the harness reads from /proc/PID/stat.
type ProcStat struct {
	PID    int
	Comm   string
	State  byte
	PPID   int
	UTime  uint64 // clock ticks in user mode
	STime  uint64 // clock ticks in kernel mode
	CUTime uint64 // of waited-for children
	CSTime uint64
}

// CPUSeconds is the process's own CPU time plus its reaped children's.
func (s ProcStat) CPUSeconds() float64 {
	return float64(s.UTime+s.STime+s.CUTime+s.CSTime) / ClockTicks
}

// ParseStat parses the contents of /proc/PID/stat. The command name is in
// parentheses and may itself hold spaces and parentheses: fields are
// counted from the last ')'.
func ParseStat(b []byte) (ProcStat, error) {
	var s ProcStat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return s, fmt.Errorf("proc stat: no (comm) in %q", truncate(b))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:open])))
	if err != nil {
		return s, fmt.Errorf("proc stat: pid: %w", err)
	}
	s.PID, s.Comm = pid, string(b[open+1:end])
	// Fields after comm start at field 3 (state).
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 15 {
		return s, fmt.Errorf("proc stat: %d fields after comm, want at least 15", len(f))
	}
	s.State = f[0][0]
	nums := []*uint64{&s.UTime, &s.STime, &s.CUTime, &s.CSTime}
	for i, p := range nums {
		// utime is field 14: index 14-3 = 11 after comm.
		v, err := strconv.ParseInt(f[11+i], 10, 64)
		if err != nil {
			return s, fmt.Errorf("proc stat: field %d: %w", 14+i, err)
		}
		if v < 0 { // cutime and cstime are signed in the kernel
			v = 0
		}
		*p = uint64(v)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return s, fmt.Errorf("proc stat: ppid: %w", err)
	}
	s.PPID = ppid
	return s, nil
}

// ProcMem is the memory of a process from /proc/PID/status, in KiB.
type ProcMem struct {
	VmRSS uint64 // resident now
	VmHWM uint64 // peak resident ("high water mark")
}

// ParseStatus reads VmRSS and VmHWM from the contents of /proc/PID/status.
func ParseStatus(b []byte) (ProcMem, error) {
	var m ProcMem
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch key {
		case "VmRSS":
			dst = &m.VmRSS
		case "VmHWM":
			dst = &m.VmHWM
		default:
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("proc status: %s: unexpected %q", key, strings.TrimSpace(val))
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("proc status: %s: %w", key, err)
		}
		*dst = v
		found++
	}
	if found != 2 {
		return m, fmt.Errorf("proc status: VmRSS or VmHWM missing (kernel thread or exited process?)")
	}
	return m, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, err
	}
	return ParseStat(b)
}

// ReadMem reads /proc/PID/status.
func ReadMem(pid int) (ProcMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcMem{}, err
	}
	return ParseStatus(b)
}

// TreeCPUSeconds returns the CPU seconds of the processes roots and of all
// their live descendants, each including its reaped children. A child that
// exits between two readings moves from its own times into its parent's
// cutime/cstime, so differences of two readings stay right for forking
// servers such as socat.
func TreeCPUSeconds(roots []int) (float64, error) {
	all, err := allStats()
	if err != nil {
		return 0, err
	}
	children := map[int][]int{}
	for _, s := range all {
		children[s.PPID] = append(children[s.PPID], s.PID)
	}
	var total float64
	seen := map[int]bool{}
	var walk func(pid int)
	walk = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		if s, ok := all[pid]; ok {
			total += s.CPUSeconds()
		}
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, r := range roots {
		if _, ok := all[r]; !ok {
			return 0, fmt.Errorf("process %d is gone", r)
		}
		walk(r)
	}
	return total, nil
}

func allStats() (map[int]ProcStat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make(map[int]ProcStat, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s, err := ReadStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		out[pid] = s
	}
	return out, nil
}

// CPUTicks are the clock ticks some CPUs spent, from /proc/stat.
type CPUTicks struct {
	Busy  uint64 // all but idle and iowait (steal included: the CPU was not ours)
	Total uint64
}

// Sub is the ticks between an earlier reading and t.
func (t CPUTicks) Sub(earlier CPUTicks) CPUTicks {
	return CPUTicks{Busy: t.Busy - earlier.Busy, Total: t.Total - earlier.Total}
}

// ParseCPUTicks sums the "cpuN" lines of /proc/stat for the CPUs given. It
// fails if one of them has no line.
func ParseCPUTicks(b []byte, cpus []int) (CPUTicks, error) {
	want := map[string]bool{}
	for _, c := range cpus {
		want["cpu"+strconv.Itoa(c)] = true
	}
	var t CPUTicks
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !want[f[0]] {
			continue
		}
		want[f[0]] = false
		found++
		for i, s := range f[1:] {
			if i >= 8 { // guest and guest_nice are counted in user and nice
				break
			}
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return CPUTicks{}, fmt.Errorf("/proc/stat %s: %w", f[0], err)
			}
			t.Total += v
			if i != 3 && i != 4 { // idle, iowait
				t.Busy += v
			}
		}
	}
	if found != len(cpus) {
		return CPUTicks{}, fmt.Errorf("/proc/stat: %d of CPUs %v found", found, cpus)
	}
	return t, nil
}

// ReadCPUTicks reads the ticks of the CPUs in list (taskset form).
func ReadCPUTicks(list string) (CPUTicks, error) {
	cpus, err := ParseCPUList(list)
	if err != nil {
		return CPUTicks{}, err
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTicks{}, err
	}
	return ParseCPUTicks(b, cpus)
}
