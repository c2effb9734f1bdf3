package tunnel

import (
	"bytes"
	"net/netip"
	"testing"
)

func FuzzParseRequest(f *testing.F) {
	f.Add(AppendRequest(nil, &Request{Kind: KindTCP, Hostname: "svc"}))
	f.Add(AppendRequest(nil, &Request{Kind: KindHTTP, Hostname: "a.b", Path: "/x", Remote: netip.MustParseAddrPort("[fd00::1]:1")}))
	f.Add(AppendRequest(nil, &Request{Kind: KindTLS, Hostname: "s", Remote: netip.MustParseAddrPort("198.18.0.1:2")}))
	f.Add([]byte{0, 3, 1, 1, 0})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseRequest(b)
		if err != nil {
			return
		}
		if n > len(b) || n > MaxRequestLen {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed request does not validate: %v", err)
		}
		again := AppendRequest(nil, &r)
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
		r2, err := ReadRequest(bytes.NewReader(b))
		if err != nil || r2 != r {
			t.Fatalf("ReadRequest disagrees: %+v %v", r2, err)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add(AppendResponse(nil, &Response{Status: StatusOK}))
	f.Add(AppendResponse(nil, &Response{Status: StatusNoRule, Message: "no rule"}))
	f.Add([]byte{0, 3, 1, 0, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseResponse(b)
		if err != nil {
			return
		}
		if n > len(b) || n > MaxResponseLen {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		again := AppendResponse(nil, &r)
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
		r2, err := ReadResponse(bytes.NewReader(b))
		if err != nil || r2 != r {
			t.Fatalf("ReadResponse disagrees: %+v %v", r2, err)
		}
	})
}

func FuzzParseDatagram(f *testing.F) {
	f.Add(AppendDatagram(nil, 1, []byte("x")))
	fo, _ := AppendFlowOpen(nil, 2, &FlowOpen{Hostname: "dns", Remote: netip.MustParseAddrPort("198.18.0.1:53")})
	f.Add(fo)
	f.Add(AppendFlowClose(nil, 3, FlowClosed))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, flow, body, err := ParseDatagram(b)
		if err != nil {
			return
		}
		switch typ {
		case DatagramData:
			if !bytes.Equal(AppendDatagram(nil, flow, body), b) {
				t.Fatal("data re-encoding differs")
			}
		case DatagramFlowOpen:
			m, err := ParseFlowOpen(body)
			if err != nil {
				return
			}
			again, err := AppendFlowOpen(nil, flow, &m)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("flow open re-encoding differs: %v", err)
			}
		case DatagramFlowClose:
			if r, err := ParseFlowClose(body); err == nil && !bytes.Equal(AppendFlowClose(nil, flow, r), b) {
				t.Fatal("flow close re-encoding differs")
			}
		}
	})
}

// FuzzH2Frames feeds arbitrary bytes to the HTTP/2 frame reader, as the
// server (what a connector reads from an edge) and as the client (what an
// edge reads from anything that completed TLS with it, before
// authentication): it must end with an error or EOF, never panic, and
// keep within its limits.
func FuzzH2Frames(f *testing.F) {
	server := func() *h2Frames { return &h2Frames{b: []byte(h2Preface)} }
	f.Add(false, server().settings().headers(1, ":method", "POST", ":path", h2PathStream).
		frame(h2FrameData, h2FlagEndStream, 1, []byte("hello")).b)
	f.Add(false, server().settings().frame(h2FrameHeaders, 0, 1, nil).frame(h2FrameContinuation, h2FlagEndHeaders, 1, nil).
		frame(h2FrameData, h2FlagPadded, 1, []byte{2, 'x', 0, 0}).frame(h2FrameRSTStream, 0, 1, make([]byte, 4)).b)
	f.Add(true, (&h2Frames{}).settings().headers(1, ":status", "200").frame(h2FrameData, 0, 1, []byte("data")).
		frame(h2FrameWindowUpdate, 0, 1, []byte{0, 0, 1, 0}).frame(h2FramePing, 0, 0, make([]byte, 8)).
		frame(h2FrameGoAway, 0, 0, make([]byte, 8)).b)
	f.Add(true, (&h2Frames{}).frame(h2FrameSettings, 0, 0, []byte{0, 4, 0, 1, 0, 0, 0, 5, 0, 0, 64, 0}).b)
	f.Fuzz(func(t *testing.T, client bool, b []byte) {
		err := muxOn(client, b)
		if err == nil {
			t.Fatal("reader ended without an error")
		}
	})
}

// FuzzParseEdges: the edge list an edge advertises is parsed without
// panicking; what parses is a list of addresses that each pass
// CheckEdgeAddr, and encodes back to the same bytes.
func FuzzParseEdges(f *testing.F) {
	for _, l := range [][]string{{"198.18.0.1:7844"}, {"edge1.example.test:7844", "[fd00::1]:7844"}} {
		b, err := AppendEdges(nil, l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0})
	f.Add([]byte{1, 200, 'a'})
	f.Fuzz(func(t *testing.T, p []byte) {
		addrs, err := ParseEdges(p)
		if err != nil {
			return
		}
		for _, a := range addrs {
			if err := CheckEdgeAddr(a); err != nil {
				t.Fatalf("parsed %q, which CheckEdgeAddr refuses: %v", a, err)
			}
		}
		b, err := AppendEdges(nil, addrs)
		if err != nil || string(b) != string(p) {
			t.Fatalf("re-encoded %x (%v), parsed from %x", b, err, p)
		}
	})
}
