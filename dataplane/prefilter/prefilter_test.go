package prefilter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
	"github.com/onramp-net/onramp/fuzz/corpus"
)

const (
	wgPort    = 51820
	quicPort  = 7844
	connIDLen = 8
	// maxPayload keeps a frame within what BPF_PROG_TEST_RUN takes for
	// XDP without fragments (a page less the headroom and tail room).
	maxPayload = 3000
)

var (
	src4, dst4 = netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")
	src6, dst6 = netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::1")
)

var (
	loadOnce sync.Once
	loaded   *Filter
	loadErr  error
)

// filter loads the pre-filter once for the package's tests; without the
// right to load eBPF it skips, or fails under CI=true.
func filter(t testing.TB) *Filter {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("XDP is Linux's")
	}
	loadOnce.Do(func() {
		loaded, loadErr = Load(Config{WireGuardPort: wgPort, QUICPort: quicPort, QUICConnIDLen: connIDLen})
	})
	if loadErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the pre-filter does not load: %v", loadErr)
		}
		t.Skipf("the pre-filter does not load here: %v", loadErr)
	}
	return loaded
}

// frame builds an Ethernet frame carrying payload in UDP to port, over
// IPv4 or IPv6.
func frame(t testing.TB, payload []byte, port uint16, v6 bool) []byte {
	t.Helper()
	if v6 {
		return frameFrom(t, src6, payload, port)
	}
	return frameFrom(t, src4, payload, port)
}

// frameFrom builds an Ethernet frame carrying payload from src in UDP to
// port.
func frameFrom(t testing.TB, src netip.Addr, payload []byte, port uint16) []byte {
	t.Helper()
	b := make([]byte, 12, 14+40+8+len(payload))
	var err error
	if src.Is6() {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		b, err = packet.AppendIPv6(b, &packet.IPv6Header{NextHeader: packet.ProtoUDP, HopLimit: 64, Src: src, Dst: dst6}, 8+len(payload))
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		b, err = packet.AppendIPv4(b, &packet.IPv4Header{TTL: 64, Protocol: packet.ProtoUDP, Src: src, Dst: dst4}, 8+len(payload))
	}
	if err != nil {
		t.Fatal(err)
	}
	if b, err = packet.AppendUDP(b, &packet.UDPHeader{SrcPort: 40000, DstPort: port}, len(payload)); err != nil {
		t.Fatal(err)
	}
	return append(b, payload...)
}

// check runs payload to each port over both families through the
// program and compares its verdict and count with Classify's.
func check(t testing.TB, f *Filter, payload []byte) {
	t.Helper()
	if len(payload) > maxPayload {
		payload = payload[:maxPayload]
	}
	for _, port := range []Port{WireGuard, QUIC} {
		want := Classify(payload, port, connIDLen)
		num := uint16(wgPort)
		if port == QUIC {
			num = quicPort
		}
		for _, v6 := range []bool{false, true} {
			before, err := f.Counts()
			if err != nil {
				t.Fatal(err)
			}
			pass, err := f.Run(frame(t, payload, num, v6))
			if err != nil {
				t.Fatal(err)
			}
			after, err := f.Counts()
			if err != nil {
				t.Fatal(err)
			}
			if pass == want.Drop() {
				t.Fatalf("port %d (IPv6 %v), payload %q: the program passes %v, Classify says %v", num, v6, payload, pass, want)
			}
			if after[want]-before[want] != 1 {
				var got []string
				for r := range NumReasons {
					if after[r] != before[r] {
						got = append(got, r.String())
					}
				}
				t.Fatalf("port %d (IPv6 %v), payload %q: the program counted %v, Classify says %v", num, v6, payload, got, want)
			}
		}
	}
}

// valid returns well-formed messages: each WireGuard type at its size,
// transport messages of several sizes, QUIC long headers of versions 1
// and 2 (Initials at and under 1200 bytes, other types), short headers,
// version negotiation, and each of them cut short or with a bit flipped.
func valid() [][]byte {
	var out [][]byte
	wg := func(typ byte, n int) []byte {
		b := make([]byte, n)
		b[0] = typ
		for i := 4; i < n; i++ {
			b[i] = byte(i * 7)
		}
		return b
	}
	out = append(out, wg(1, 148), wg(2, 92), wg(3, 64), wg(4, 32), wg(4, 48), wg(4, 1436), wg(4, 33), wg(4, 16+1420+16), wg(4, 31))
	long := func(first byte, version uint32, dcid, scid, n int) []byte {
		b := []byte{first}
		b = binary.BigEndian.AppendUint32(b, version)
		b = append(b, byte(dcid))
		b = append(b, bytes.Repeat([]byte{0xd1}, dcid)...)
		b = append(b, byte(scid))
		b = append(b, bytes.Repeat([]byte{0x5c}, scid)...)
		for len(b) < n {
			b = append(b, byte(len(b)))
		}
		return b
	}
	for _, v := range []uint32{packet.QUICVersion1, packet.QUICVersion2, 0, 0x1a2a3a4a} {
		for typ := range byte(4) {
			first := 0xc0 | typ<<4
			for _, n := range []int{1199, 1200, 1350, 60} {
				out = append(out, long(first, v, 8, 8, n))
			}
			out = append(out, long(first, v, 20, 0, 1200), long(first, v, 21, 4, 1200), long(first, v, 4, 21, 1200), long(first&^0x40, v, 8, 8, 1200))
		}
	}
	out = append(out, append([]byte{0x40}, bytes.Repeat([]byte{7}, 40)...), []byte{0x41, 1, 2, 3}, []byte{0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	n := len(out)
	for _, m := range out[:n] {
		for _, cut := range []int{0, 1, 4, 5, 6, 7, len(m) / 2, len(m) - 1} {
			if cut <= len(m) {
				out = append(out, m[:cut])
			}
		}
		for _, bit := range []int{0, 1, 4, 6, 8, 40} {
			if bit/8 < len(m) {
				c := bytes.Clone(m)
				c[bit/8] ^= 1 << (bit % 8)
				out = append(out, c)
			}
		}
	}
	return out
}

// TestDifferential: every payload of the module's fuzz corpora, every
// well-formed message and its truncations and bit flips, and random
// bytes, to each port over IPv4 and IPv6, get from the eBPF program the
// verdict and the counter that Classify (the Go classifiers) gives.
func TestDifferential(t *testing.T) {
	f := filter(t)
	inputs := append(corpus.Bytes(t), valid()...)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		b := make([]byte, rng.IntN(1400))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if len(b) > 0 && rng.IntN(2) == 0 {
			b[0] = byte(rng.IntN(6)) // a WireGuard type, or near one
		}
		out := b
		inputs = append(inputs, out)
	}
	if len(inputs) < 1000 {
		t.Fatalf("%d inputs: the corpora were not found", len(inputs))
	}
	seen := map[Reason]int{}
	for _, p := range inputs {
		check(t, f, p)
		seen[Classify(p[:min(len(p), maxPayload)], WireGuard, connIDLen)]++
		seen[Classify(p[:min(len(p), maxPayload)], QUIC, connIDLen)]++
	}
	// Every verdict was reached, so none of them is untested.
	for r := PassWireGuard; r <= QUICSmallInitial; r++ { // the stateless verdicts
		if seen[r] == 0 {
			t.Errorf("no input gave %v", r)
		}
	}
	t.Logf("%d payloads, each to both ports over IPv4 and IPv6: %v", len(inputs), seen)
}

// TestOtherTraffic: what is not UDP to the two ports passes untouched
// and is counted as such: other UDP ports (garbage included), TCP to the
// ports, IPv4 fragments, IPv6 with an extension header, ARP, runt frames.
func TestOtherTraffic(t *testing.T) {
	f := filter(t)
	garbage := []byte{0xff, 0xff, 0xff}
	tcp := frame(t, garbage, wgPort, false)
	tcp[14+9] = packet.ProtoTCP
	frag := frame(t, garbage, wgPort, false)
	frag[14+6] |= 0x20 // more fragments
	ext := frame(t, garbage, quicPort, true)
	ext[14+6] = packet.ProtoDestOpts
	arp := append(make([]byte, 12), 0x08, 0x06, 0, 1)
	for name, fr := range map[string][]byte{
		"UDP to another port": frame(t, garbage, 53, false), "UDP to another port (IPv6)": frame(t, garbage, 53, true),
		"TCP to the WireGuard port": tcp, "an IPv4 fragment": frag, "IPv6 with an extension header": ext,
		"ARP": arp, "a runt frame": make([]byte, 14),
	} {
		before, _ := f.Counts()
		pass, err := f.Run(fr)
		if err != nil {
			t.Fatal(err)
		}
		after, _ := f.Counts()
		if !pass || after[PassOther]-before[PassOther] != 1 {
			t.Errorf("%s: passed %v, counted %d as pass_other; want passed and counted", name, pass, after[PassOther]-before[PassOther])
		}
	}
}

// FuzzPrefilter holds the eBPF program to Classify on fuzzed payloads.
func FuzzPrefilter(f *testing.F) {
	for _, p := range valid() {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		check(t, filter(t), p)
	})
}

// TestConfig: a connection ID length out of range, or both on one port,
// is refused with what is wrong.
func TestConfig(t *testing.T) {
	for _, c := range []Config{{QUICConnIDLen: 21}, {QUICConnIDLen: -1}, {WireGuardPort: 1, QUICPort: 1},
		{Limits: Limits{PerSource: -1}}, {Limits: Limits{UnprovenBurst: -5}}, {Limits: Limits{Unproven: 2e9}}} {
		if _, err := Load(c); err == nil || !strings.HasPrefix(err.Error(), "prefilter: ") {
			t.Errorf("Load(%+v): %v, want a prefilter error", c, err)
		}
	}
}

// TestLimits: handshake openers are limited per source (an IPv4 address,
// an IPv6 /64: other addresses of the /64 share its limit) and, for
// sources the edge has not proven, by a global ceiling; a proven source
// passes the ceiling; other messages are not limited. The rates are one
// a second, so that the test's own pace cannot refill a bucket.
func TestLimits(t *testing.T) {
	filter(t) // skips where eBPF cannot load
	f, err := Load(Config{WireGuardPort: wgPort, QUICPort: quicPort, QUICConnIDLen: connIDLen,
		Limits: Limits{PerSource: 1, PerSourceBurst: 5, Unproven: 1, UnprovenBurst: 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	initiation := make([]byte, 148)
	initiation[0] = 1
	transport := make([]byte, 48)
	transport[0] = 4
	quicInitial := append([]byte{0xc0, 0, 0, 0, 1, 4, 1, 2, 3, 4, 0}, make([]byte, 1200)...)
	send := func(src netip.Addr, payload []byte, port uint16) Reason {
		t.Helper()
		before, err := f.Counts()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Run(frameFrom(t, src, payload, port)); err != nil {
			t.Fatal(err)
		}
		after, _ := f.Counts()
		for r := range NumReasons {
			if after[r] != before[r] {
				return r
			}
		}
		t.Fatal("nothing counted")
		return 0
	}
	tally := func(reasons ...Reason) map[Reason]int {
		m := map[Reason]int{}
		for _, r := range reasons {
			m[r]++
		}
		return m
	}
	want := func(what string, got, want map[Reason]int) {
		t.Helper()
		if !maps.Equal(got, want) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}

	// One /64, three addresses: 8 initiations, the burst of 5 passes.
	var rs []Reason
	for i := range 8 {
		rs = append(rs, send(netip.MustParseAddr(fmt.Sprintf("fd00:1::%d", i%3+1)), initiation, wgPort))
	}
	want("8 initiations from one /64", tally(rs...), map[Reason]int{PassWireGuard: 5, WireGuardSourceRate: 3})
	want("a transport message from it", tally(send(netip.MustParseAddr("fd00:1::1"), transport, wgPort)), map[Reason]int{PassWireGuard: 1})

	// 5 of the ceiling's 20 are spent: 20 new sources, 15 pass.
	rs = nil
	for i := range 20 {
		rs = append(rs, send(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), initiation, wgPort))
	}
	want("20 new sources", tally(rs...), map[Reason]int{PassWireGuard: 15, WireGuardGlobalRate: 5})
	want("a QUIC Initial from a new source", tally(send(netip.MustParseAddr("198.18.2.1"), quicInitial, quicPort)), map[Reason]int{QUICGlobalRate: 1})

	// Over the ceiling, a proven source passes, up to its own limit.
	proven := netip.MustParseAddr("198.18.3.1")
	if err := f.Prove(proven); err != nil {
		t.Fatal(err)
	}
	rs = nil
	for range 3 {
		rs = append(rs, send(proven, initiation, wgPort))
	}
	for range 3 {
		rs = append(rs, send(proven, quicInitial, quicPort))
	}
	want("6 openers from a proven source", tally(rs...), map[Reason]int{PassWireGuard: 3, PassQUIC: 2, QUICSourceRate: 1})
	if err := f.Prove(netip.MustParseAddr("fd00:1::9")); err != nil {
		t.Fatal(err)
	}
	want("an initiation from a proven /64 over its limit", tally(send(netip.MustParseAddr("fd00:1::1"), initiation, wgPort)), map[Reason]int{WireGuardSourceRate: 1})
}
