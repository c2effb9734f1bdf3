package tunnel

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	cases := []Request{
		{Kind: KindTCP, Hostname: "ssh"},
		{Kind: KindTLS, Hostname: "db.internal", Remote: netip.MustParseAddrPort("198.18.0.7:51000")},
		{Kind: KindHTTP, Hostname: strings.Repeat("h", MaxHostnameLen), Path: strings.Repeat("/", MaxPathLen), Remote: netip.MustParseAddrPort("[fd00::1]:443")},
		{Kind: KindHTTP, Remote: netip.MustParseAddrPort("[::ffff:198.18.0.1]:80")},
	}
	for _, r := range cases {
		b := AppendRequest([]byte("prefix"), &r)
		got, n, err := ParseRequest(b[6:])
		if err != nil || n != len(b)-6 || got != r {
			t.Fatalf("round trip %+v: got %+v n=%d err=%v", r, got, n, err)
		}
		got, err = ReadRequest(io.MultiReader(bytes.NewReader(b[6:]), strings.NewReader("payload")))
		if err != nil || got != r {
			t.Fatalf("ReadRequest: %+v %v", got, err)
		}
		for i := 0; i < len(b)-6; i++ {
			if _, _, err := ParseRequest(b[6 : 6+i]); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("prefix %d: %v", i, err)
			}
		}
	}
	if len(AppendRequest(nil, &cases[2])) != MaxRequestLen {
		t.Fatalf("MaxRequestLen %d, longest request %d", MaxRequestLen, len(AppendRequest(nil, &cases[2])))
	}
}

func TestReadRequestLeavesPayload(t *testing.T) {
	r := &Request{Kind: KindTCP, Hostname: "svc"}
	src := bytes.NewReader(append(AppendRequest(nil, r), "payload"...))
	if _, err := ReadRequest(src); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(src)
	if string(rest) != "payload" {
		t.Fatalf("payload %q", rest)
	}
}

func TestRequestInvalid(t *testing.T) {
	for _, r := range []Request{
		{Kind: 0},
		{Kind: 9},
		{Kind: KindTCP, Hostname: strings.Repeat("h", MaxHostnameLen+1)},
		{Kind: KindHTTP, Path: strings.Repeat("p", MaxPathLen+1)},
	} {
		if r.Validate() == nil {
			t.Errorf("%+v validated", r)
		}
	}
	good := AppendRequest(nil, &Request{Kind: KindTCP, Hostname: "a"})
	bad := func(mut func([]byte) []byte, want error) {
		t.Helper()
		b := mut(bytes.Clone(good))
		if _, _, err := ParseRequest(b); !errors.Is(err, want) {
			t.Errorf("got %v, want %v", err, want)
		}
	}
	bad(func(b []byte) []byte { b[2] = 2; return b }, ErrUnsupportedVersion)
	bad(func(b []byte) []byte { b[3] = 7; return b }, ErrMalformed)
	bad(func(b []byte) []byte { b[len(b)-1] = 9; return b }, ErrMalformed) // address family 9
	bad(func(b []byte) []byte { b[0], b[1] = 0xff, 0xff; return b }, ErrTooLong)
	bad(func(b []byte) []byte { b[1]++; return append(b, 0) }, ErrMalformed) // trailing byte
	if _, err := ReadRequest(bytes.NewReader([]byte{0xff, 0xff})); !errors.Is(err, ErrTooLong) {
		t.Errorf("ReadRequest long: %v", err)
	}
	if _, err := ReadRequest(bytes.NewReader(nil)); !errors.Is(err, io.EOF) {
		t.Errorf("ReadRequest empty: %v", err)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, r := range []Response{{StatusOK, ""}, {StatusOriginUnreachable, "dial tcp 198.18.0.1:22: connection refused"}} {
		b := AppendResponse(nil, &r)
		got, n, err := ParseResponse(b)
		if err != nil || n != len(b) || got != r {
			t.Fatalf("%+v: %+v %d %v", r, got, n, err)
		}
		got, err = ReadResponse(bytes.NewReader(b))
		if err != nil || got != r {
			t.Fatalf("ReadResponse %+v: %+v %v", r, got, err)
		}
	}
	long := Response{Status: StatusInternal, Message: strings.Repeat("m", 300)}
	got, _, err := ParseResponse(AppendResponse(nil, &long))
	if err != nil || len(got.Message) != MaxMessageLen {
		t.Fatalf("long message: %d %v", len(got.Message), err)
	}
}

func TestDatagramCodec(t *testing.T) {
	b := AppendDatagram(nil, 0xdeadbeef, []byte("payload"))
	typ, flow, body, err := ParseDatagram(b)
	if err != nil || typ != DatagramData || flow != 0xdeadbeef || string(body) != "payload" {
		t.Fatalf("%v %x %q %v", typ, flow, body, err)
	}
	if &body[0] != &b[DatagramHeaderLen] {
		t.Fatal("payload is a copy")
	}
	inPlace := make([]byte, 64)
	copy(inPlace[DatagramHeaderLen:], "payload")
	if f := FrameDatagram(inPlace, 0xdeadbeef, len("payload")); string(f) != string(b) {
		t.Fatalf("FrameDatagram = %x, AppendDatagram = %x", f, b)
	}
	fo := FlowOpen{Hostname: "dns", Remote: netip.MustParseAddrPort("[fd00::53]:53")}
	b, err = AppendFlowOpen(nil, 3, &fo)
	if err != nil {
		t.Fatal(err)
	}
	typ, flow, body, err = ParseDatagram(b)
	if err != nil || typ != DatagramFlowOpen || flow != 3 {
		t.Fatal(typ, flow, err)
	}
	if got, err := ParseFlowOpen(body); err != nil || got != fo {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := AppendFlowOpen(nil, 3, &FlowOpen{Hostname: strings.Repeat("x", 256)}); !errors.Is(err, ErrTooLong) {
		t.Fatal(err)
	}
	typ, flow, body, err = ParseDatagram(AppendFlowClose(nil, 9, FlowUnknown))
	if err != nil || typ != DatagramFlowClose || flow != 9 {
		t.Fatal(typ, flow, err)
	}
	if r, err := ParseFlowClose(body); err != nil || r != FlowUnknown {
		t.Fatal(r, err)
	}
	for _, bad := range [][]byte{nil, {0, 0, 0, 0}, {7, 0, 0, 0, 0}} {
		if _, _, _, err := ParseDatagram(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: %v", bad, err)
		}
	}
}

func TestDatagramCodecAllocs(t *testing.T) {
	payload := make([]byte, 1200)
	buf := make([]byte, 0, 2048)
	bad := []byte{1, 2}
	allocs := testing.AllocsPerRun(1000, func() {
		b := AppendDatagram(buf[:0], 42, payload)
		if _, _, p, err := ParseDatagram(b); err != nil || len(p) != len(payload) {
			panic("parse")
		}
		if _, _, _, err := ParseDatagram(bad); err == nil {
			panic("bad parsed")
		}
	})
	if allocs != 0 {
		t.Fatalf("datagram codec allocates %v per run", allocs)
	}
}
