package steer

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/onramp-net/onramp/dataplane/packet"
	"github.com/onramp-net/onramp/fuzz/corpus"
)

// skipOrFail skips the test for want of eBPF, or fails it under CI=true.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and eBPF is unavailable: "+format, args...)
	}
	t.Skipf(format, args...)
}

var (
	harnessOnce sync.Once
	loadedH     *harness
	harnessErr  error
)

// testHarness loads quic.c's XDP harness once for the package's tests.
func testHarness(t testing.TB) *harness {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("eBPF is Linux's")
	}
	harnessOnce.Do(func() { loadedH, harnessErr = loadHarness() })
	if harnessErr != nil {
		skipOrFail(t, "the steering harness does not load here: %v", harnessErr)
	}
	return loadedH
}

// listen opens a steered group of n sockets, or skips for want of eBPF.
func listen(t testing.TB, network, addr string, n int) *QUIC {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("eBPF is Linux's")
	}
	q, err := ListenQUIC(network, addr, n)
	if err != nil {
		if strings.Contains(err.Error(), "steer: listen") {
			t.Fatal(err)
		}
		skipOrFail(t, "steering does not load here: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// maxPayload keeps a frame within what an XDP test run takes.
const maxPayload = 3000

func checkSame(t testing.TB, h *harness, p []byte, hash uint32, n int) {
	t.Helper()
	if len(p) > maxPayload {
		p = p[:maxPayload]
	}
	wi, wh := QUICSocket(p, hash, n)
	gi, gh, err := h.run(udp(p), hash, n)
	if err != nil {
		t.Fatal(err)
	}
	if gi != wi || gh != wh {
		t.Fatalf("payload %x, hash %#x, %d sockets: the program picks %d by %v, QUICSocket %d by %v", p, hash, n, gi, gh, wi, wh)
	}
}

// TestQUICDifferential holds the program's decision (through the XDP
// harness built from the same C) to QUICSocket.
func TestQUICDifferential(t *testing.T) {
	h := testHarness(t)
	rng := rand.New(rand.NewPCG(1, 2))
	payloads := append(corpus.Bytes(t), generated(t)...)
	ns := []int{1, 2, 3, 4, 7, 8, 64, 255, 256}
	byConnID := 0
	for _, p := range payloads {
		for _, n := range ns {
			hash := rng.Uint32()
			checkSame(t, h, p, hash, n)
			if _, how := QUICSocket(p, hash, n); how == ByConnID {
				byConnID++
			}
		}
	}
	// Out of range: the harness and the model agree on 0.
	for _, n := range []int{0, 257} {
		checkSame(t, h, short(issued(t, 1), 30), 7, n)
	}
	if byConnID == 0 {
		t.Fatal("no packet was steered by connection ID: the test proves nothing")
	}
	t.Logf("%d payloads × %d socket counts, %d steered by connection ID", len(payloads), len(ns), byConnID)
}

func FuzzQUICSteer(f *testing.F) {
	for _, p := range generated(f) {
		f.Add(p, uint32(len(p)*2654435761), uint16(len(p)%9+1))
	}
	f.Fuzz(func(t *testing.T, p []byte, hash uint32, n uint16) {
		i, how := QUICSocket(p, hash, int(n))
		if n >= 1 && n <= MaxSockets && (i < 0 || i >= int(n)) {
			t.Fatalf("socket %d of %d", i, n)
		}
		if how == ByHash && n >= 1 && n <= MaxSockets && i != int(hash%uint32(n)) {
			t.Fatalf("by hash, socket %d, want %d", i, hash%uint32(n))
		}
		if runtime.GOOS == "linux" && harnessUsable() {
			checkSame(t, loadedH, p, hash, int(n))
		}
	})
}

// harnessUsable loads the harness and says whether it did (the fuzz
// target also runs the model alone).
func harnessUsable() bool {
	harnessOnce.Do(func() { loadedH, harnessErr = loadHarness() })
	return harnessErr == nil
}

// received is a datagram one of the group's sockets read.
type received struct {
	socket int
	tag    string
}

// readAll reads every socket of q until quiet for a while, after send.
func readAll(t *testing.T, q *QUIC, send func()) []received {
	t.Helper()
	var mu sync.Mutex
	var got []received
	var wg sync.WaitGroup
	for i, c := range q.Conns() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				n, _, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				tag := ""
				if j := bytes.LastIndexByte(buf[:n], '|'); j >= 0 {
					tag = string(buf[j+1 : n])
				}
				mu.Lock()
				got = append(got, received{i, tag})
				mu.Unlock()
			}
		}()
	}
	send()
	wg.Wait()
	return got
}

// tagged is p with a tag at its end.
func tagged(p []byte, tag string) []byte {
	return append(append(bytes.Clone(p), '|'), tag...)
}

// TestQUICSockets steers real datagrams: short headers with IDs issued
// for socket k reach socket k, also from a new source port; Initials
// from many source ports spread evenly over the sockets.
func TestQUICSockets(t *testing.T) {
	for _, fam := range []struct{ network, addr, client string }{
		{"udp4", "127.0.0.1:0", "127.0.0.1:0"},
		{"udp6", "[::1]:0", "[::1]:0"},
		{"udp", "[::]:0", "127.0.0.1:0"}, // dual stack, as the edge listens: IPv4 to an IPv6 group
	} {
		t.Run(fam.network+"_"+fam.addr, func(t *testing.T) {
			const n = 4
			q := listen(t, fam.network, fam.addr, n)
			port := q.Conns()[0].LocalAddr().(*net.UDPAddr).Port
			for _, c := range q.Conns() {
				if p := c.LocalAddr().(*net.UDPAddr).Port; p != port {
					t.Fatalf("socket on port %d, the group on %d", p, port)
				}
			}
			host := "127.0.0.1"
			if strings.HasPrefix(fam.client, "[") {
				host = "::1"
			}
			to := &net.UDPAddr{IP: net.ParseIP(host), Port: port}
			dial := func() *net.UDPConn {
				c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}

			// Each socket's IDs, from three clients each, then each ID
			// again from a new source port (a rebinding).
			ids := make([][]byte, n)
			for k := range ids {
				ids[k] = issued(t, k)
			}
			got := readAll(t, q, func() {
				// Round 1 sends the same IDs as round 0 from new source
				// ports: a connector that rebinds.
				for round := range 2 {
					for k := range n {
						for c := range 3 {
							conn := dial()
							for j := range 5 {
								tag := strconv.Itoa(k) + "/" + strconv.Itoa(round) + "/" + strconv.Itoa(c) + "/" + strconv.Itoa(j)
								if _, err := conn.WriteToUDP(tagged(short(ids[k], 60), tag), to); err != nil {
									t.Error(err)
								}
							}
						}
					}
				}
			})
			if len(got) != 2*n*3*5 {
				t.Fatalf("%d datagrams read, %d sent", len(got), 2*n*3*5)
			}
			for _, r := range got {
				k, _ := strconv.Atoi(strings.SplitN(r.tag, "/", 2)[0])
				if r.socket != k {
					t.Fatalf("datagram %s with an ID of socket %d reached socket %d", r.tag, k, r.socket)
				}
			}
			counts, refused, err := q.Counts()
			if err != nil {
				t.Fatal(err)
			}
			for k, c := range counts {
				if c.ConnID != 2*3*5 || c.Hash != 0 {
					t.Fatalf("socket %d counted %+v, want %d by connection ID", k, c, 2*3*5)
				}
			}
			if refused != 0 {
				t.Fatalf("%d refused", refused)
			}

			// Initials (random client-chosen IDs) from many source ports.
			const flows = 400
			initial := long(0xc0, packet.QUICVersion1, bytes.Repeat([]byte{0x80, 0x01}, 4), nil, 1200)
			got = readAll(t, q, func() {
				for f := range flows {
					conn := dial()
					if _, err := conn.WriteToUDP(tagged(initial, strconv.Itoa(f)), to); err != nil {
						t.Error(err)
					}
					conn.Close()
					if f%20 == 19 {
						// Paced: 400 Initials at once overflow the sockets'
						// default buffers when the readers lag (a busy CI).
						time.Sleep(2 * time.Millisecond)
					}
				}
			})
			per := make([]int, n)
			for _, r := range got {
				per[r.socket]++
			}
			if len(got) != flows {
				t.Fatalf("%d Initials read, %d sent", len(got), flows)
			}
			counts, _, _ = q.Counts()
			for k := range n {
				if int(counts[k].Hash) != per[k] {
					t.Fatalf("socket %d read %d Initials, counted %d by hash", k, per[k], counts[k].Hash)
				}
				// Binomial(400, 1/4): mean 100, deviation 8.7; 60 and 140
				// are more than four deviations away.
				if per[k] < 60 || per[k] > 140 {
					t.Fatalf("Initials per socket %v: socket %d is far from %d", per, k, flows/n)
				}
			}
			t.Logf("Initials from %d source ports over %d sockets: %v", flows, n, per)
		})
	}
}

// TestQUICSocketsGSO: datagrams sent with UDP GSO (as quic-go sends) are
// steered by their connection ID too, though over loopback the program
// sees them as one packet whose payload is not in its linear data.
func TestQUICSocketsGSO(t *testing.T) {
	const n, segs, seg = 4, 4, 200
	q := listen(t, "udp4", "127.0.0.1:0", n)
	to := q.Conns()[0].LocalAddr().(*net.UDPAddr)
	got := readAll(t, q, func() {
		for k := range n {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var b []byte
			for j := range segs {
				p := tagged(short(issued(t, k), seg-4), strconv.Itoa(k)+"/"+strconv.Itoa(j))
				b = append(b, p[:seg]...)
			}
			if _, _, err := c.WriteMsgUDP(b, gsoControl(seg), to); err != nil {
				t.Skipf("UDP GSO unavailable: %v", err)
			}
		}
	})
	if len(got) != n*segs {
		t.Fatalf("%d datagrams read, %d sent", len(got), n*segs)
	}
	for _, r := range got {
		k, _ := strconv.Atoi(strings.SplitN(r.tag, "/", 2)[0])
		if r.socket != k {
			t.Fatalf("segment %s with an ID of socket %d reached socket %d", r.tag, k, r.socket)
		}
	}
	counts, _, _ := q.Counts()
	t.Logf("%d GSO sends of %d segments: counts %+v", n, segs, counts)
}

// gsoControl is the UDP_SEGMENT control message for segments of size.
func gsoControl(size int) []byte {
	b := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}
