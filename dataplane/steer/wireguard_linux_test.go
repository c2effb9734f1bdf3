package steer

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/onramp-net/onramp/fuzz/corpus"
)

// loadWireGuard loads the WireGuard program for loops loops over the
// groups; without the right to load eBPF it skips, or fails under CI=true.
func loadWireGuard(t testing.TB, loops int, v4, v6 []syscall.RawConn) *WireGuard {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("SO_REUSEPORT programs are Linux's")
	}
	w, err := NewWireGuard(loops, v4, v6)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the WireGuard steering program does not load: %v", err)
		}
		t.Skipf("the WireGuard steering program does not load here: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// runSlot runs wg_slot over payload in the test harness.
func (w *WireGuard) runSlot(t testing.TB, payload []byte) int {
	t.Helper()
	frame := append(make([]byte, 14, 14+len(payload)), payload...)
	if _, err := w.objs.WgSlotHarness.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
	var slot uint32
	if err := w.objs.Result.Lookup(uint32(0), &slot); err != nil {
		t.Fatal(err)
	}
	return int(int32(slot))
}

func wgMessage(typ byte, n int, index uint32) []byte {
	b := make([]byte, n)
	b[0] = typ
	if n >= 8 {
		binary.LittleEndian.PutUint32(b[4:], index)
	}
	for i := 8; i < n; i++ {
		b[i] = byte(i * 13)
	}
	return b
}

// TestWireGuardDifferential holds the program's decision (the harness
// compiled from the same C) to WireGuardSlot over every fuzz corpus and
// messages of each type, to indexes the map steers (to a loop, or to a
// slot out of range) and to unknown ones.
func TestWireGuardDifferential(t *testing.T) {
	const loops = 3
	w := loadWireGuard(t, loops, nil, nil)
	steered := map[uint32]int{1: 1, 0x01020304: 2, 0xdeadbeef: 3, 0xfffffffe: 9}
	for i, s := range steered {
		if err := w.objs.Sessions.Put(i, uint32(s)); err != nil {
			t.Fatal(err)
		}
	}
	session := func(i uint32) (int, bool) { s, ok := steered[i]; return s, ok }
	inputs := corpus.Bytes(t)
	for _, i := range []uint32{0, 1, 2, 0x01020304, 0xdeadbeef, 0xfffffffe} {
		for _, typ := range []byte{1, 2, 3, 4, 5, 0} {
			for _, n := range []int{4, 8, 31, 32, 33, 48, 64, 92, 148, 1436, 1452} {
				inputs = append(inputs, wgMessage(typ, n, i))
			}
		}
	}
	by := map[int]int{}
	for _, p := range inputs {
		if len(p) > 3000 {
			p = p[:3000]
		}
		want := WireGuardSlot(p, loops, session)
		if got := w.runSlot(t, p); got != want {
			t.Fatalf("payload %q: the program steers to slot %d, WireGuardSlot to %d", p, got, want)
		}
		by[want]++
	}
	t.Logf("%d payloads, by slot (-1: hash): %v", len(inputs), by)
	for _, s := range []int{HashSlot, 0, 1, 2, 3} {
		if by[s] == 0 {
			t.Errorf("no payload went to slot %d: the test does not cover it", s)
		}
	}
}

// FuzzWireGuardSteer holds the program to WireGuardSlot on fuzzed
// payloads.
func FuzzWireGuardSteer(f *testing.F) {
	for _, typ := range []byte{1, 2, 3, 4} {
		f.Add(wgMessage(typ, 32, 7))
		f.Add(wgMessage(typ, 148, 7))
	}
	w := loadWireGuard(f, 2, nil, nil)
	if err := w.Assign(7, 2); err != nil {
		f.Fatal(err)
	}
	session := func(i uint32) (int, bool) { return w.Slot(i) }
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > 3000 {
			return
		}
		if got, want := w.runSlot(t, p), WireGuardSlot(p, 2, session); got != want {
			t.Fatalf("the program steers to slot %d, WireGuardSlot to %d", got, want)
		}
	})
}

// group opens n UDP sockets on one port of addr with SO_REUSEPORT.
func group(t *testing.T, network, addr string, n int) []*net.UDPConn {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	var out []*net.UDPConn
	for range n {
		pc, err := lc.ListenPacket(context.Background(), network, addr)
		if err != nil {
			t.Skipf("no %s socket on %s here: %v", network, addr, err)
		}
		c := pc.(*net.UDPConn)
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
		addr = c.LocalAddr().String()
	}
	return out
}

func rawConns(t *testing.T, cs []*net.UDPConn) []syscall.RawConn {
	t.Helper()
	var out []syscall.RawConn
	for _, c := range cs {
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rc)
	}
	return out
}

// arrival is a datagram read by socket slot of a group.
type arrival struct {
	slot    int
	payload string
}

// readGroup reads every socket of g until the test ends, reporting each
// datagram on the channel it returns.
func readGroup(t *testing.T, g []*net.UDPConn) <-chan arrival {
	ch := make(chan arrival, 1024)
	for slot, c := range g {
		go func() {
			b := make([]byte, 2048)
			for {
				n, _, err := c.ReadFromUDP(b)
				if err != nil {
					return
				}
				ch <- arrival{slot, string(b[:n])}
			}
		}()
	}
	return ch
}

// TestWireGuardSockets steers real datagrams over loopback: transport
// messages to the loop of their receiver index, also from a new source
// port (a NAT that rebinds); handshake messages and garbage to the
// handshake socket; unknown indexes over the loops by the hash, never to
// the handshake socket.
func TestWireGuardSockets(t *testing.T) {
	const loops = 3
	for _, fam := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(fam.network, func(t *testing.T) {
			g := group(t, fam.network, fam.addr, loops+1)
			var w *WireGuard
			if fam.network == "udp4" {
				w = loadWireGuard(t, loops, rawConns(t, g), nil)
			} else {
				w = loadWireGuard(t, loops, nil, rawConns(t, g))
			}
			ch := readGroup(t, g)
			dst := g[0].LocalAddr().(*net.UDPAddr)
			send := func(p []byte) {
				t.Helper()
				c, err := net.DialUDP(fam.network, nil, dst) // a new source port each time
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Write(p); err != nil {
					t.Fatal(err)
				}
			}
			recv := func(p []byte) int {
				t.Helper()
				select {
				case a := <-ch:
					if a.payload != string(p) {
						t.Fatalf("got %q, want %q", a.payload, p)
					}
					return a.slot
				case <-time.After(5 * time.Second):
					t.Fatalf("%q did not arrive", p)
				}
				return -1
			}
			for slot := 1; slot <= loops; slot++ {
				index := uint32(0x1000 + slot)
				if err := w.Assign(index, slot); err != nil {
					t.Fatal(err)
				}
				for port := range 8 {
					p := wgMessage(4, 32+16*port, index)
					send(p)
					if got := recv(p); got != slot {
						t.Fatalf("index %#x from source port %d: socket %d, want %d", index, port, got, slot)
					}
				}
			}
			for _, p := range [][]byte{wgMessage(1, 148, 0), wgMessage(2, 92, 9), wgMessage(3, 64, 9), []byte("garbage"), wgMessage(4, 31, 0x1001)} {
				send(p)
				if got := recv(p); got != 0 {
					t.Fatalf("%q: socket %d, want the handshake socket", p, got)
				}
			}
			seen := map[int]int{}
			for i := range 64 {
				p := wgMessage(4, 32, uint32(0x20000+i))
				send(p)
				seen[recv(p)]++
			}
			if seen[0] != 0 || len(seen) < 2 {
				t.Fatalf("unknown indexes from 64 source ports went to sockets %v: want only loops, more than one", seen)
			}
			bySlot, unsteered, err := w.Steered(fam.network == "udp6")
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(5); bySlot[0] != want || unsteered != 0 {
				t.Fatalf("the counters: %v and %d unsteered; want %d on the handshake socket and none unsteered", bySlot, unsteered, want)
			}
			t.Logf("steered by slot: %v; unknown indexes by socket: %v", bySlot, seen)
		})
	}
}

// TestWireGuardClosedWhileRead: the device's metrics read the counters
// and its handshakes steer indexes while the edge shuts down. Close
// waits for them, and afterwards they get an error wrapping os.ErrClosed
// (not a descriptor that was closed, or reused). The race detector saw
// the unguarded read in CI.
func TestWireGuardClosedWhileRead(t *testing.T) {
	w := loadWireGuard(t, 2, nil, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint32(0); ; i++ {
			_, _, err := w.Steered(false)
			aerr := w.Assign(i, 1)
			w.Forget(i)
			_, _ = w.Slot(i)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) || !errors.Is(aerr, os.ErrClosed) {
					t.Errorf("after Close: %v, %v; want os.ErrClosed", err, aerr)
				}
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
