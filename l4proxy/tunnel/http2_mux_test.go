package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// h2Pair returns both ends of an HTTP/2 stream on a fresh connection pair,
// the connector's response sent.
func h2Pair(t *testing.T, p *pair) (edge, connector *h2stream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	es, cs := openAccept(t, ctx, p)
	if err := cs.Respond(StatusOK, ""); err != nil {
		t.Fatal(err)
	}
	// The OK waits for the first bytes (Respond): send it alone, and
	// read it on the edge side.
	if ok, err := cs.(*h2ConnectorStream).flush(nil, false); !ok || err != nil {
		t.Fatalf("flush the OK: %v, %v", ok, err)
	}
	if _, err := es.Read(nil); err != nil {
		t.Fatal(err)
	}
	return es.(*h2EdgeStream).s, cs.(*h2ConnectorStream).s
}

// buffered is how many bytes wait in s's receive buffer.
func buffered(s *h2stream) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buffered
}

// TestH2Backpressure: a stream whose reader stops holds at most its window
// in the receiver's memory and blocks the writer; another stream on the
// same connection goes on meanwhile; all bytes arrive in order once read.
func TestH2Backpressure(t *testing.T) {
	p := newPair(t, transports[1], "127.0.0.1:0")
	es, cs := h2Pair(t, p)
	const total = 4 << 20
	sent := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for n := 0; n < total; n += len(buf) {
			for i := range buf {
				buf[i] = byte((n + i) % 251)
			}
			if _, err := es.Write(buf); err != nil {
				sent <- err
				return
			}
		}
		sent <- es.CloseWrite()
	}()
	// Wait until the window (less the request header read) is full and the
	// writer blocked.
	deadline := time.Now().Add(5 * time.Second)
	for buffered(cs) < int(cs.m.streamInitial)-MaxRequestLen {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes buffered after 5s, want the window of %d", buffered(cs), cs.m.streamInitial)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if b := buffered(cs); b > int(cs.m.streamInitial) {
		t.Fatalf("%d bytes buffered, more than the window of %d", b, cs.m.streamInitial)
	}
	select {
	case err := <-sent:
		t.Fatalf("the writer finished (%v) while the reader read nothing", err)
	default:
	}

	// Another stream is not held up by the stalled one.
	es2, cs2 := h2Pair(t, p)
	go func() {
		es2.Write(bytes.Repeat([]byte("y"), 2<<20))
		es2.CloseWrite()
	}()
	if n, err := io.Copy(io.Discard, cs2); err != nil || n != 2<<20 {
		t.Fatalf("second stream: %d bytes, %v", n, err)
	}

	got := make([]byte, 0, total)
	buf := make([]byte, 100_000)
	for {
		n, err := cs.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if len(got) != total {
		t.Fatalf("read %d bytes, want %d", len(got), total)
	}
	for i, b := range got {
		if b != byte(i%251) {
			t.Fatalf("byte %d is %d, want %d", i, b, i%251)
		}
	}
}

// TestH2WindowGrows: a stream read as fast as it arrives on a connection
// with a long round trip gets a larger window, up to MaxStreamWindow.
func TestH2WindowGrows(t *testing.T) {
	p := newPair(t, transports[1], "127.0.0.1:0")
	es, cs := h2Pair(t, p)
	cs.m.rtt.Store(int64(time.Second)) // a window consumed within 4 RTTs grows
	go func() {
		es.Write(make([]byte, 32<<20))
		es.CloseWrite()
	}()
	if _, err := io.Copy(io.Discard, cs); err != nil {
		t.Fatal(err)
	}
	cs.mu.Lock()
	w := cs.window
	cs.mu.Unlock()
	if w != cs.m.streamMax {
		t.Fatalf("window %d after 32 MiB, want the maximum %d", w, cs.m.streamMax)
	}
}

// muxOn runs a mux of the given role reading input, writing to nowhere,
// and returns what its reader ended with.
func muxOn(client bool, input []byte) error {
	a, b := net.Pipe()
	defer a.Close()
	go io.Copy(io.Discard, a)
	go func() {
		a.Write(input)
		a.Close()
	}()
	cfg := (&Config{}).withDefaults()
	m := newH2Mux(client, b, &batchConn{Conn: b}, &cfg)
	m.onStream = func(s *h2stream, path string) {}
	m.nextID = 3 // as if the client had opened stream 1
	if client {
		m.newStreamLocked(1)
		m.active++
	}
	err := m.read()
	m.fail(err)
	return err
}

// h2Frames builds input for muxOn.
type h2Frames struct{ b []byte }

func (f *h2Frames) frame(typ, flags byte, id uint32, payload []byte) *h2Frames {
	f.b = appendFrame(f.b, typ, flags, id, payload)
	return f
}

func (f *h2Frames) settings() *h2Frames { return f.frame(h2FrameSettings, 0, 0, nil) }

func (f *h2Frames) headers(id uint32, fields ...string) *h2Frames {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return f.frame(h2FrameHeaders, h2FlagEndHeaders, id, buf.Bytes())
}

// TestH2ProtocolErrors: a peer breaking the protocol ends the connection
// with the error code RFC 9113 asks for.
func TestH2ProtocolErrors(t *testing.T) {
	server := func() *h2Frames { return &h2Frames{b: []byte(h2Preface)} }
	bigData := make([]byte, h2InitialStreamWindow+1)
	cases := []struct {
		name   string
		client bool
		input  []byte
		code   uint32
	}{
		{"bad preface", false, []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"), h2ErrProtocol},
		{"first frame not settings", false, server().frame(h2FramePing, 0, 0, make([]byte, 8)).b, h2ErrProtocol},
		{"frame too large", false, append(server().settings().b, appendFrameHeader(nil, h2ReadFrameSize+1, h2FrameData, 0, 1)...), h2ErrFrameSize},
		{"data on stream 0", false, server().settings().frame(h2FrameData, 0, 0, []byte("x")).b, h2ErrProtocol},
		{"data beyond the stream window", false, server().settings().headers(1, ":method", "POST", ":path", h2PathStream).
			frame(h2FrameData, 0, 1, bigData).b, h2ErrFlowControl},
		{"data on an idle stream", false, server().settings().frame(h2FrameData, 0, 7, []byte("x")).b, h2ErrProtocol},
		{"stream IDs going down", false, server().settings().headers(5, ":path", h2PathStream).headers(3, ":path", h2PathStream).b, h2ErrProtocol},
		{"continuation alone", false, server().settings().frame(h2FrameContinuation, h2FlagEndHeaders, 1, nil).b, h2ErrProtocol},
		{"header block not continued", false, server().settings().frame(h2FrameHeaders, 0, 1, nil).frame(h2FramePing, 0, 0, make([]byte, 8)).b, h2ErrProtocol},
		{"push promise", true, (&h2Frames{}).settings().frame(h2FramePushPromise, h2FlagEndHeaders, 1, make([]byte, 4)).b, h2ErrProtocol},
		{"bad settings length", true, (&h2Frames{}).frame(h2FrameSettings, 0, 0, make([]byte, 5)).b, h2ErrProtocol},
		{"window overflow", true, (&h2Frames{}).settings().frame(h2FrameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, h2MaxWindow)).b, h2ErrFlowControl},
		{"zero window update", true, (&h2Frames{}).settings().frame(h2FrameWindowUpdate, 0, 0, make([]byte, 4)).b, h2ErrProtocol},
		{"bad max frame size", true, (&h2Frames{}).frame(h2FrameSettings, 0, 0, []byte{0, h2SettingMaxFrameSize, 0, 0, 0, 1}).b, h2ErrProtocol},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := muxOn(c.client, c.input)
			var he *h2Error
			if !errors.As(err, &he) || he.code != c.code {
				t.Fatalf("reader ended with %v, want error code %d", err, c.code)
			}
		})
	}
}

// TestH2ControlFlood: a peer that sends PINGs and never reads the answers
// is cut off once the answers waiting pass h2MaxCtrlQueue.
func TestH2ControlFlood(t *testing.T) {
	a, b := net.Pipe() // nobody reads a: writes to b block
	defer a.Close()
	cfg := (&Config{}).withDefaults()
	m := newH2Mux(true, b, &batchConn{Conn: b}, &cfg)
	go m.ctrlLoop()
	ping := appendFrame(nil, h2FramePing, 0, 0, make([]byte, 8))
	go func() {
		a.Write(appendFrame(nil, h2FrameSettings, 0, 0, nil))
		for range 2 * h2MaxCtrlQueue / len(ping) {
			if _, err := a.Write(ping); err != nil {
				return
			}
		}
	}()
	go m.readLoop()
	select {
	case <-m.ctx.Done():
		var he *h2Error
		if cause := context.Cause(m.ctx); !errors.As(cause, &he) || he.code != h2ErrEnhanceYourCalm {
			t.Fatalf("connection ended with %v, want ENHANCE_YOUR_CALM", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("connection still up after a flood of unanswered PINGs")
	}
}

// TestH2ResetReturnsWindow: data a stream had buffered when it was reset
// or closed unread gives its connection window back, so a connection
// whose streams end that way over and over keeps moving data.
func TestH2ResetReturnsWindow(t *testing.T) {
	cfg := testConfig()
	cfg.MaxStreamWindow, cfg.MaxConnWindow = 256<<10, 256<<10
	p := newPairConfig(t, transports[1], "127.0.0.1:0", cfg)
	for i := range 8 {
		es, cs := h2Pair(t, p)
		wrote := make(chan error, 1)
		go func() {
			_, err := es.Write(make([]byte, 200<<10))
			wrote <- err
		}()
		select {
		case err := <-wrote:
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d: write blocked for 10s: the connection window was not given back", i)
		}
		deadline := time.Now().Add(5 * time.Second)
		for buffered(cs) < 200<<10 {
			if time.Now().After(deadline) {
				t.Fatalf("stream %d: %d bytes arrived, want %d", i, buffered(cs), 200<<10)
			}
			time.Sleep(time.Millisecond)
		}
		if i%2 == 0 {
			cs.Reset()
		} else {
			cs.Close()
		}
		es.Reset()
	}
}

// TestH2ParkRead: a parked reader holds no goroutine: its wake runs once
// when data arrives, and again after END_STREAM and after a reset; a
// stream with data (or ended) does not park.
func TestH2ParkRead(t *testing.T) {
	p := newPair(t, transports[1], "127.0.0.1:0")
	es, cs := h2Pair(t, p)
	woke := make(chan struct{}, 4)
	wake := func() { woke <- struct{}{} }
	expect := func(when string) {
		t.Helper()
		select {
		case <-woke:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no wake", when)
		}
	}
	quiet := func(when string) {
		t.Helper()
		select {
		case <-woke:
			t.Fatalf("%s: a wake", when)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !cs.ParkRead(wake) {
		t.Fatal("ParkRead of a quiet stream: false")
	}
	quiet("quiet")
	if _, err := es.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	expect("data")
	if cs.ParkRead(wake) {
		t.Fatal("ParkRead with data buffered: true")
	}
	buf := make([]byte, 16)
	if n, err := cs.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if !cs.ParkRead(wake) {
		t.Fatal("ParkRead after the data was read: false")
	}
	quiet("read dry")
	if err := es.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expect("END_STREAM")
	if cs.ParkRead(wake) {
		t.Fatal("ParkRead after END_STREAM: true")
	}

	// The other way, a reset wakes a parked reader.
	if !es.ParkRead(wake) {
		t.Fatal("ParkRead of the edge's quiet end: false")
	}
	cs.Reset()
	expect("reset")
	if _, err := es.Read(buf); err == nil {
		t.Fatal("read after the reset: no error")
	}
}

// TestH2ParkReadTo: while a reader is parked with a delivery, arriving
// bytes go to deliver and the reader is not woken; bytes deliver does
// not take stay readable and wake the reader; a reset during a delivery
// wakes the reader, which sees the reset; END_STREAM wakes it.
func TestH2ParkReadTo(t *testing.T) {
	p := newPair(t, transports[1], "127.0.0.1:0")
	es, cs := h2Pair(t, p)
	woke := make(chan struct{}, 4)
	wake := func() { woke <- struct{}{} }
	// The test's state, under mu: deliver runs on the connection's
	// reader, and the race detector sees no order through the socket.
	var (
		mu        sync.Mutex
		got       []byte
		take      = -1 // how many bytes deliver takes of each call; -1: all
		inDeliver func()
	)
	set := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	gotLen := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	delivered := make(chan struct{}, 16)
	deliver := func(b []byte) int {
		mu.Lock()
		f := inDeliver
		inDeliver = nil
		n := len(b)
		if take >= 0 {
			n = min(n, take)
		}
		got = append(got, b[:n]...)
		mu.Unlock()
		if f != nil {
			f()
		}
		delivered <- struct{}{}
		return n
	}
	waitFor := func(c chan struct{}, when string) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: nothing", when)
		}
	}
	quiet := func(when string) {
		t.Helper()
		select {
		case <-woke:
			t.Fatalf("%s: a wake", when)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !cs.ParkReadTo(wake, deliver) {
		t.Fatal("ParkReadTo of a quiet stream: false")
	}
	for i := range 20 { // small messages: every one delivered, none wakes
		msg := fmt.Sprintf("message %02d;", i)
		if _, err := es.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		waitFor(delivered, msg)
	}
	quiet("delivered messages")
	mu.Lock()
	if want := 20 * len("message 00;"); len(got) != want {
		t.Fatalf("delivered %d bytes, want %d", len(got), want)
	}
	if !strings.HasPrefix(string(got), "message 00;message 01;") {
		t.Fatalf("delivered %q", got[:30])
	}

	mu.Unlock()

	// A delivery that takes part: the rest is read after the wake.
	set(func() { take = 3 })
	if _, err := es.Write([]byte("abcdefgh")); err != nil {
		t.Fatal(err)
	}
	waitFor(delivered, "partial")
	waitFor(woke, "the rest")
	buf := make([]byte, 16)
	if n, err := cs.Read(buf); err != nil || string(buf[:n]) != "defgh" {
		t.Fatalf("read %q, %v; want the undelivered defgh", buf[:n], err)
	}
	mu.Lock()
	if string(got[len(got)-3:]) != "abc" {
		t.Fatalf("delivered %q, want abc last", got[len(got)-3:])
	}
	take = -1
	mu.Unlock()

	// A window's worth of delivered bytes gives the window back: the
	// writer is not stalled by bytes that were never Read.
	if !cs.ParkReadTo(wake, deliver) {
		t.Fatal("ParkReadTo after the rest was read: false")
	}
	big := make([]byte, 4<<20)
	werr := make(chan error, 1)
	go func() { _, err := es.Write(big); werr <- err }()
	deadline := time.After(20 * time.Second)
	for gotLen() < 20*11+3+len(big) {
		select {
		case <-delivered:
		case <-deadline:
			t.Fatalf("delivered %d of %d bytes: the window was not given back", gotLen()-20*11-3, len(big))
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	quiet("bulk delivered")

	// A reset while a delivery runs (the stream's own end resets it: the
	// connection's reader is busy delivering): the reader is woken and
	// sees it.
	set(func() { inDeliver = func() { cs.Reset() } })
	if _, err := es.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(delivered, "the delivery that sees a reset")
	waitFor(woke, "the reset")
	if _, err := cs.Read(buf); err == nil {
		t.Fatal("read after the reset: no error")
	}
}
