package bench

import (
	"os"
	"slices"
	"testing"
)

func TestParseIperf3(t *testing.T) {
	for _, tc := range []struct {
		file    string
		streams int
		bytes   float64
		bps     float64
		retrans int
		each    []float64 // per stream, as its receiver counted
	}{
		{"testdata/iperf3-P1.json", 1, 842530816, 6731280462.42405, 2, []float64{842530816}},
		{"testdata/iperf3-P2.json", 2, 488767488, 3892107768.707577, 1, []float64{245104640, 243662848}},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseIperf3(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if r.Streams != tc.streams || r.Bytes != tc.bytes || r.BitsPerSecond != tc.bps || r.Retransmits != tc.retrans || r.Seconds <= 0 {
			t.Errorf("%s: got %+v", tc.file, r)
		}
		if !slices.Equal(r.StreamBytes, tc.each) {
			t.Errorf("%s: per-stream bytes %v, want %v", tc.file, r.StreamBytes, tc.each)
		}
	}
}

func TestParseIperf3Errors(t *testing.T) {
	for _, in := range []string{
		`not json`,
		`{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`,
		`{"start":{},"end":{}}`,
	} {
		if _, err := ParseIperf3([]byte(in)); err == nil {
			t.Errorf("ParseIperf3(%q): no error", in)
		}
	}
}
