package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// sockmapEngine returns an engine with the sockmap strategy, or skips the
// test where eBPF is not available (except with CI=true).
func sockmapEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(Config{Strategy: Sockmap})
	if err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("sockmap strategy not tested: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

type byteCounter struct{ n atomic.Int64 }

func (c *byteCounter) Add(f float64) { c.n.Add(int64(f)) }

// TestSockmapKernelCounts relays request/response rounds after the pair
// is registered and expects the kernel's counts (the result, the options'
// counters and the engine's stats) to equal the bytes each end saw, and
// the kernel to have redirected nearly all of them.
func TestSockmapKernelCounts(t *testing.T) {
	e := sockmapEngine(t)
	st0 := e.Stats()
	var up, down byteCounter
	r := startRelay(t, e, Options{AToB: &up, BToA: &down})
	deadline := time.Now().Add(10 * time.Second)
	r.client.SetDeadline(deadline)
	r.server.SetDeadline(deadline)
	var sentUp, sentDown, gotUp, gotDown int64
	exchange := func(req, resp []byte) {
		t.Helper()
		if _, err := r.client.Write(req); err != nil {
			t.Fatal(err)
		}
		sentUp += int64(len(req))
		got := make([]byte, len(req))
		if _, err := io.ReadFull(r.server, got); err != nil || !bytes.Equal(got, req) {
			t.Fatalf("the server read %d bytes that differ, %v", len(got), err)
		}
		gotUp += int64(len(got))
		if _, err := r.server.Write(resp); err != nil {
			t.Fatal(err)
		}
		sentDown += int64(len(resp))
		got = make([]byte, len(resp))
		if _, err := io.ReadFull(r.client, got); err != nil || !bytes.Equal(got, resp) {
			t.Fatalf("the client read %d bytes that differ, %v", len(got), err)
		}
		gotDown += int64(len(got))
	}
	// The first exchange may go through user space (the pair is being
	// registered); the pair is registered once it is done.
	exchange([]byte("?"), []byte("!"))
	for i := range 64 {
		off := i * 4099 % (len(noise) - 96<<10)
		exchange(noise[off:off+64<<10], noise[off+1:off+1+32<<10])
	}
	r.client.CloseWrite()
	if n, _ := r.server.Read(make([]byte, 1)); n != 0 {
		t.Fatal("the server read more than was sent")
	}
	r.server.CloseWrite()
	if n, _ := r.client.Read(make([]byte, 1)); n != 0 {
		t.Fatal("the client read more than was sent")
	}
	res := r.result(t, 5*time.Second)
	if res.Err != nil || res.AEnd != nil || res.BEnd != nil {
		t.Errorf("result %+v, want an orderly end", res)
	}
	if res.AToB != sentUp || res.AToB != gotUp || res.BToA != sentDown || res.BToA != gotDown {
		t.Errorf("counted %d and %d bytes; the client sent %d and the server got %d, the server sent %d and the client got %d",
			res.AToB, res.BToA, sentUp, gotUp, sentDown, gotDown)
	}
	if up.n.Load() != res.AToB || down.n.Load() != res.BToA {
		t.Errorf("the counters have %d and %d, the result %d and %d", up.n.Load(), down.n.Load(), res.AToB, res.BToA)
	}
	st := e.Stats()
	kernel := st.SockmapRedirected - st0.SockmapRedirected
	user := st.SockmapForwarded - st0.SockmapForwarded
	t.Logf("%d bytes redirected by the kernel, %d forwarded by user space", kernel, user)
	if kernel+user != sentUp+sentDown {
		t.Errorf("the engine counted %d+%d bytes, the ends sent %d", kernel, user, sentUp+sentDown)
	}
	if kernel < (sentUp+sentDown)*9/10 {
		t.Errorf("the kernel redirected %d of %d bytes, want nearly all", kernel, sentUp+sentDown)
	}
	if st.SockmapPairs != 0 {
		t.Errorf("%d pairs registered after the relay", st.SockmapPairs)
	}
}

// TestSockmapEarlyBytes hands the relay sockets that received bytes before
// it started, one of them partly read by its user: the rest goes through,
// once, without waiting for more.
func TestSockmapEarlyBytes(t *testing.T) {
	e := sockmapEngine(t)
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range []*net.TCPConn{client, a, b, server} {
		c.SetDeadline(deadline)
		defer c.Close()
	}
	if _, err := client.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write([]byte("banner\n")); err != nil {
		t.Fatal(err)
	}
	// The user of a reads the method (part of one segment), as a proxy
	// that sniffs the protocol would.
	method := make([]byte, 4)
	if _, err := io.ReadFull(a, method); err != nil || string(method) != "GET " {
		t.Fatalf("read %q, %v", method, err)
	}
	// b's bytes are in its receive queue before the relay starts.
	time.Sleep(20 * time.Millisecond)
	a.SetDeadline(time.Time{})
	b.SetDeadline(time.Time{})
	done := make(chan Result, 1)
	go func() { done <- e.Relay(context.Background(), a, b, Options{}) }()
	want := "/ HTTP/1.0\r\n\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(server, got); err != nil || string(got) != want {
		t.Fatalf("the server read %q, %v; want %q", got, err, want)
	}
	got = make([]byte, len("banner\n"))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "banner\n" {
		t.Fatalf("the client read %q, %v", got, err)
	}
	client.CloseWrite()
	server.CloseWrite()
	if rest, err := io.ReadAll(server); err != nil || len(rest) != 0 {
		t.Errorf("then the server read %q, %v; want EOF", rest, err)
	}
	if rest, err := io.ReadAll(client); err != nil || len(rest) != 0 {
		t.Errorf("then the client read %q, %v; want EOF", rest, err)
	}
	select {
	case res := <-done:
		if res.Err != nil || res.AToB != int64(len(want)) || res.BToA != int64(len("banner\n")) {
			t.Errorf("result %+v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not end")
	}
}

// TestSockmapEngineClose closes the engine under a running relay: the
// relay ends, both ends are reset, the maps are empty.
func TestSockmapEngineClose(t *testing.T) {
	e, err := New(Config{Strategy: Sockmap})
	if err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("sockmap strategy not tested: %v", err)
		}
		t.Fatal(err)
	}
	r := startRelay(t, e, Options{})
	r.client.Write([]byte("x"))
	r.server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(r.server, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	res := r.result(t, 5*time.Second)
	if !errors.Is(res.Err, errEngineClosed) {
		t.Errorf("result %+v, want the engine's close", res)
	}
	if _, err := r.server.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the server read %v, want a reset", err)
	}
	if st := e.Stats(); st.SockmapPairs != 0 {
		t.Errorf("%d pairs after the close", st.SockmapPairs)
	}
}

// TestSockmapNotTCP: a connection the sockmap cannot take is relayed all
// the same (copied), and counted as spliced.
func TestSockmapNotTCP(t *testing.T) {
	e := sockmapEngine(t)
	st0 := e.Stats()
	client, a := net.Pipe()
	b, server := tcpPair(t)
	done := make(chan Result, 1)
	go func() { done <- e.Relay(context.Background(), a, b, Options{}) }()
	go func() {
		client.Write([]byte("ping"))
		client.Close()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "ping" {
		t.Fatalf("the server read %q, %v", got, err)
	}
	server.Close()
	<-done
	if st := e.Stats(); st.SockmapSpliced != st0.SockmapSpliced+1 || st.SockmapPairs != 0 {
		t.Errorf("stats %+v, want one relay spliced", st)
	}
}

// TestSockmapRegistrationRaces has an end send, half-close or reset its
// connection at each step of the pair's registration (before either
// socket is in the sockhash, with only a in it, with both): the relay
// still delivers every byte, passes the half-close on or resets the other
// end, and leaves nothing registered.
func TestSockmapRegistrationRaces(t *testing.T) {
	e := sockmapEngine(t)
	t.Cleanup(func() { sockmapRegisterHook = nil })
	fds0 := openFDs(t)
	for _, step := range []string{"entries", "a", "b"} {
		for _, act := range []string{"client data", "client fin", "server fin", "client reset", "server reset"} {
			t.Run(step+"/"+act, func(t *testing.T) {
				client, a := tcpPair(t)
				b, server := tcpPair(t)
				defer client.Close()
				defer server.Close()
				deadline := time.Now().Add(10 * time.Second)
				client.SetDeadline(deadline)
				server.SetDeadline(deadline)
				payload := noise[:100000]
				sockmapRegisterHook = func(s string) {
					if s != step {
						return
					}
					switch act {
					case "client data":
						client.Write(payload)
					case "client fin":
						client.Write(payload)
						client.CloseWrite()
					case "server fin":
						server.Write(payload)
						server.CloseWrite()
					case "client reset":
						client.SetLinger(0)
						client.Close()
					case "server reset":
						server.SetLinger(0)
						server.Close()
					}
					time.Sleep(2 * time.Millisecond) // let it arrive
				}
				done := make(chan Result, 1)
				go func() { done <- e.Relay(context.Background(), a, b, Options{}) }()
				var res Result
				switch act {
				case "client data", "client fin", "server fin":
					from, to := client, server
					if act == "server fin" {
						from, to = server, client
					}
					got := make([]byte, len(payload))
					if _, err := io.ReadFull(to, got); err != nil || !bytes.Equal(got, payload) {
						t.Fatalf("read %v; want the %d bytes sent", err, len(payload))
					}
					// Then both ways close in order, the other way with an answer.
					from.CloseWrite()
					if rest, err := io.ReadAll(to); err != nil || len(rest) != 0 {
						t.Fatalf("then read %d bytes, %v; want EOF", len(rest), err)
					}
					to.Write([]byte("answer"))
					to.CloseWrite()
					if back, err := io.ReadAll(from); err != nil || string(back) != "answer" {
						t.Fatalf("the answer read %q, %v", back, err)
					}
					res = <-done
					if res.Err != nil {
						t.Errorf("result %+v, want an orderly end", res)
					}
					n := [2]int64{int64(len(payload)), 6}
					if act == "server fin" {
						n[0], n[1] = n[1], n[0]
					}
					if res.AToB != n[0] || res.BToA != n[1] {
						t.Errorf("counted %d and %d, want %d and %d", res.AToB, res.BToA, n[0], n[1])
					}
				default:
					other := server
					if act == "server reset" {
						other = client
					}
					if _, err := other.Read(make([]byte, 1)); err == nil {
						t.Error("the other end read data after the reset")
					}
					select {
					case res = <-done:
					case <-time.After(5 * time.Second):
						t.Fatal("the relay did not end")
					}
					if res.Err == nil {
						t.Errorf("result %+v, want the reset", res)
					}
				}
			})
		}
	}
	sockmapRegisterHook = nil
	waitQuiet(e)
	if st := e.Stats(); st.SockmapPairs != 0 {
		t.Errorf("%+v after the relays ended", st)
	}
	if fds := openFDs(t); fds-2*e.Stats().PipesIdle > fds0 {
		t.Errorf("%d descriptors after, %d before", fds, fds0)
	}
}
