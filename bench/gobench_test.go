package bench

import (
	"os"
	"testing"
)

func TestParseGoBench(t *testing.T) {
	b, err := os.ReadFile("testdata/gobench.txt")
	if err != nil {
		t.Fatal(err)
	}
	rs := ParseGoBench(string(b))
	if len(rs) != 6 {
		t.Fatalf("got %d results; want 6: %+v", len(rs), rs)
	}
	r := rs[0]
	if r.Pkg != "github.com/onramp-net/onramp/dataplane/packet" || r.Name != "BenchmarkParseIPv4" || r.Procs != 2 ||
		r.N != 30000000 || r.NsPerOp != 40.10 || r.MBps != 1596.01 || r.BytesPerOp != 0 || r.AllocsPerOp != 0 || !r.HasMem {
		t.Errorf("first: %+v", r)
	}
	if r := rs[3]; r.Name != "BenchmarkChecksum/1500" || r.NsPerOp != 601.5 {
		t.Errorf("sub-benchmark: %+v", r)
	}
	if r := rs[4]; r.Pkg != "github.com/onramp-net/onramp/l4proxy/tunnel" || r.BytesPerOp != 16384 || r.AllocsPerOp != 12 {
		t.Errorf("second package: %+v", r)
	}
	if r := rs[5]; r.Name != "BenchmarkNoMem" || r.Procs != 1 || r.HasMem || r.NsPerOp != 250 {
		t.Errorf("no -benchmem, no procs suffix: %+v", r)
	}

	sums := SummarizeGoBench(rs)
	if len(sums) != 4 {
		t.Fatalf("got %d summaries; want 4", len(sums))
	}
	s := sums[0]
	if s.Runs != 3 || s.NsPerOp.Median != 41.00 || s.NsPerOp.Min != 40.10 || s.NsPerOp.Max != 42.30 || s.MBps.Median != 1560.97 {
		t.Errorf("summary: %+v", s)
	}
}
