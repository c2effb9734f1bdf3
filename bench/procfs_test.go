package bench

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses; utime 1234, stime 567,
	// cutime 89, cstime 10 (fields 14-17).
	line := "4242 (we(ird) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 567 89 10 20 0 12 0 123456 987654 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	s, err := ParseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != 4242 || s.Comm != "we(ird) name" || s.State != 'S' || s.PPID != 1 {
		t.Errorf("got %+v", s)
	}
	if s.UTime != 1234 || s.STime != 567 || s.CUTime != 89 || s.CSTime != 10 {
		t.Errorf("times: %+v", s)
	}
	if got, want := s.CPUSeconds(), float64(1234+567+89+10)/100; got != want {
		t.Errorf("CPUSeconds = %g; want %g", got, want)
	}
	for _, bad := range []string{"", "12 no parens", "12 (x) S 1 2", "x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q): no error", bad)
		}
	}
}

func TestParseStatSelf(t *testing.T) {
	s, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.PPID != os.Getppid() {
		t.Errorf("self: %+v", s)
	}
	m, err := ReadMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.VmRSS == 0 || m.VmHWM < m.VmRSS {
		t.Errorf("self memory: %+v", m)
	}
	if _, err := TreeCPUSeconds([]int{os.Getpid()}); err != nil {
		t.Error(err)
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tedge\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 1300000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\nThreads:\t9\n"
	m, err := ParseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if m.VmHWM != 51234 || m.VmRSS != 40000 {
		t.Errorf("got %+v", m)
	}
	if _, err := ParseStatus([]byte("Name:\tkthreadd\nState:\tS\n")); err == nil {
		t.Error("kernel thread (no VmRSS): no error")
	}
	if _, err := ParseStatus([]byte("VmHWM:\t12 MB\nVmRSS:\t1 kB\n")); err == nil {
		t.Error("unit MB: no error")
	}
}

func TestParseCPUList(t *testing.T) {
	got, err := ParseCPUList("0,2-4, 7")
	if err != nil {
		t.Fatal(err)
	}
	want := []int{0, 2, 3, 4, 7}
	if len(got) != len(want) {
		t.Fatalf("got %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v; want %v", got, want)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "-1", "1-x"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q): no error", bad)
		}
	}
}

func TestParseCPUTicks(t *testing.T) {
	stat := []byte(`cpu  1803513 269 998105 3149716 7070 0 332403 21419 0 0
cpu0 100 1 50 800 9 0 20 5 7 0
cpu1 200 0 100 600 1 4 30 10 0 0
intr 208178382 0 0
`)
	got, err := ParseCPUTicks(stat, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	if want := (CPUTicks{Busy: 200 + 100 + 4 + 30 + 10, Total: 200 + 100 + 600 + 1 + 4 + 30 + 10}); got != want {
		t.Errorf("cpu1: %+v, want %+v", got, want)
	}
	both, err := ParseCPUTicks(stat, []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	// guest (7) is in user already: not counted twice.
	if want := (CPUTicks{Busy: 344 + 100 + 1 + 50 + 20 + 5, Total: 945 + 985}); both != want {
		t.Errorf("cpu0,1: %+v, want %+v", both, want)
	}
	if d := both.Sub(got); d.Busy != 176 || d.Total != 985 {
		t.Errorf("Sub: %+v", d)
	}
	if _, err := ParseCPUTicks(stat, []int{2}); err == nil {
		t.Error("a missing CPU: no error")
	}
}
