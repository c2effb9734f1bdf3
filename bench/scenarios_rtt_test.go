package bench

import (
	"strings"
	"testing"
)

// TestParseFirstByte reads tunnel-RTTs/op by path from go test -bench
// output, ignores other sub-benchmarks, and fails when there is none.
func TestParseFirstByte(t *testing.T) {
	out := `goos: linux
pkg: github.com/onramp-net/onramp/l4proxy/edge
BenchmarkFirstByte/quic/tcp-2     	      15	 103646628 ns/op	       102.9 first-byte-ms	         1.029 tunnel-RTTs/op
BenchmarkFirstByte/quic/tls-request-2         	      15	 206692402 ns/op	       206.7 first-byte-ms	         2.067 tunnel-RTTs/op
BenchmarkFirstByte/quic/udp       	      15	 102763590 ns/op	       102.8 first-byte-ms	         1.028 tunnel-RTTs/op
BenchmarkFirstByte/http2/tcp-2                	      15	 103548568 ns/op	       103.2 first-byte-ms	         1.5 tunnel-RTTs/op
PASS
`
	v, err := ParseFirstByte(out, "quic")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"tcp": 1.029, "tls_request": 2.067, "udp": 1.028}
	if len(v) != len(want) {
		t.Fatalf("got %v, want %v", v, want)
	}
	for k, x := range want {
		if v[k] != x {
			t.Errorf("%s = %v, want %v", k, v[k], x)
		}
	}
	if _, err := ParseFirstByte(out, "floor"); err == nil || !strings.Contains(err.Error(), "no BenchmarkFirstByte/floor result") {
		t.Errorf("no floor lines: %v", err)
	}
	if _, err := ParseFirstByte("BenchmarkFirstByte/floor/tcp-2 10 1 ns/op x tunnel-RTTs/op\n", "floor"); err == nil {
		t.Error("a bad number was accepted")
	}
}

// TestFirstByteRegistered: the area and its scenarios pass Validate and
// each tunnel has its goals against the floor.
func TestFirstByteRegistered(t *testing.T) {
	all := Scenarios()
	if err := Validate(all, Areas); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range all {
		if s.Area == firstByteArea.Key {
			n++
			if s.Onramp && len(s.Goals) == 0 {
				t.Errorf("%s has no goal", s.Name)
			}
		}
	}
	if n != 3 {
		t.Errorf("%d scenarios in %s, want 3", n, firstByteArea.Key)
	}
}
