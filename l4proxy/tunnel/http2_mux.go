package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
)

// h2mux is the HTTP/2 connection under the HTTP/2 transport: a purpose-built
// multiplexer that speaks RFC 9113 on the wire (preface, SETTINGS, HEADERS
// with HPACK, DATA, WINDOW_UPDATE, RST_STREAM, PING, GOAWAY) but does only
// what the tunnel needs, without net/http's request and response plumbing:
//
//   - Writes go from the caller's goroutine straight to the TLS connection
//     under one mutex, a DATA frame per Write (up to the peer's frame size
//     and flow-control window), with the TLS records of a frame gathered
//     into one system call by the batchConn under TLS. No copy into a pipe,
//     no hand-off to a writer goroutine.
//   - One reader goroutine reads frames and DATA payloads straight into the
//     stream's receive buffer: pooled chunks taken as data arrives and put
//     back as it is read, so an idle stream holds no buffer.
//   - Frames the reader must send (SETTINGS and PING acknowledgements,
//     WINDOW_UPDATE, RST_STREAM) are queued and written by a control
//     writer goroutine, so that the reader never blocks on a write: a
//     reader blocked behind a full TCP send buffer while the peer's reader
//     is blocked the same way would deadlock the connection.
//   - Flow control: the connection window is Config.MaxConnWindow; a
//     stream's window starts at h2InitialStreamWindow and doubles (up to
//     Config.MaxStreamWindow) when the reader consumes it within a few
//     round trips (RTT from PING), as quic-go tunes its windows. Buffered
//     data per connection is bounded by the connection window.
//
// The edge is the HTTP/2 client (it opens streams: odd IDs), the connector
// the server.
//
// Locks, in the order they may be taken: wmu, mu, fcMu, a stream's mu;
// ctrlMu is taken alone.
type h2mux struct {
	client bool
	tc     net.Conn   // the TLS connection
	bc     *batchConn // under tc
	cfg    *Config
	ctx    context.Context // done, with its cause, when the connection ends
	cancel context.CancelCauseFunc

	// onStream (server) is called by the reader for each new stream the
	// peer opens, with its :path. It must not block.
	onStream func(s *h2stream, path string)

	wmu     sync.Mutex             // serializes frames on tc; taken before mu and fcMu
	hdr     [h2FrameHeaderLen]byte // a DATA frame's header, under wmu
	henc    *hpack.Encoder
	hbuf    bytes.Buffer // HPACK output, under wmu
	ctrlMu  sync.Mutex
	ctrlBuf []byte        // control frames queued for the control writer
	ctrlOut []byte        // the other buffer, under wmu
	ctrlSig chan struct{} // cap 1: ctrlBuf is not empty

	// Send flow control: the peer's windows, under fcMu.
	fcMu         sync.Mutex
	sendWindow   int64       // connection level
	peerInitial  int64       // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame int         // the peer's SETTINGS_MAX_FRAME_SIZE
	fcWaiting    []*h2stream // streams waiting for send window, woken when one grows

	// Streams, under mu.
	mu          sync.Mutex
	streams     map[uint32]*h2stream
	nextID      uint32        // client: the next stream ID to open
	lastPeerID  uint32        // server: the highest stream ID the peer opened
	active      int           // streams counted against the concurrency limit
	peerMaxOpen int           // client: the server's SETTINGS_MAX_CONCURRENT_STREAMS
	slotFreed   chan struct{} // closed and replaced when active drops
	maxOpen     int           // server: our SETTINGS_MAX_CONCURRENT_STREAMS

	// Receive flow control (our windows): sizes from Config, kept within
	// what HTTP/2 allows.
	connWindow    int64 // the connection window
	streamInitial int64 // a stream's window at first
	streamMax     int64 // a stream's window at most
	// Under mu:
	recvWindow  int64 // bytes the peer may still send on the connection
	recvUnacked int64 // consumed bytes not yet given back

	dec *hpack.Decoder // reader goroutine only

	lastFrame atomic.Int64 // unix nanoseconds of the last frame read
	rtt       atomic.Int64 // smoothed round-trip time in nanoseconds; 0 until measured
	pingSent  atomic.Int64 // unix nanoseconds of the PING in flight, 0 if none
	keepalive *time.Timer
}

// Wire constants (RFC 9113).
const (
	h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

	h2FrameData         = 0x0
	h2FrameHeaders      = 0x1
	h2FramePriority     = 0x2
	h2FrameRSTStream    = 0x3
	h2FrameSettings     = 0x4
	h2FramePushPromise  = 0x5
	h2FramePing         = 0x6
	h2FrameGoAway       = 0x7
	h2FrameWindowUpdate = 0x8
	h2FrameContinuation = 0x9

	h2FlagEndStream  = 0x1
	h2FlagAck        = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20

	h2SettingHeaderTableSize   = 0x1
	h2SettingEnablePush        = 0x2
	h2SettingMaxConcurrent     = 0x3
	h2SettingInitialWindowSize = 0x4
	h2SettingMaxFrameSize      = 0x5

	h2ErrNoError         = 0x0
	h2ErrProtocol        = 0x1
	h2ErrInternal        = 0x2
	h2ErrFlowControl     = 0x3
	h2ErrStreamClosed    = 0x5
	h2ErrFrameSize       = 0x6
	h2ErrRefusedStream   = 0x7
	h2ErrCancel          = 0x8
	h2ErrEnhanceYourCalm = 0xb

	h2DefaultWindow   = 65535
	h2DefaultMaxFrame = 16384
	h2MaxWindow       = 1<<31 - 1
	h2FrameHeaderLen  = 9
)

// Sizes of this implementation.
const (
	// h2ReadFrameSize is the SETTINGS_MAX_FRAME_SIZE both sides announce:
	// a DATA frame is read straight into the stream's buffer, so its size
	// costs no memory, and large frames cut per-frame work.
	h2ReadFrameSize = 1 << 20
	// h2MaxHeaderBlock bounds a HEADERS frame and its CONTINUATIONs.
	h2MaxHeaderBlock = 16 << 10
	// h2InitialStreamWindow is a stream's receive window at first.
	h2InitialStreamWindow = 512 << 10
	// h2ChunkSize is the size of the pooled chunks of receive buffers.
	h2ChunkSize = 32 << 10
)

// h2Error is an HTTP/2 error code with what caused it.
type h2Error struct {
	code   uint32
	reason string
}

func (e *h2Error) Error() string {
	return fmt.Sprintf("http2: %s (error code %d)", e.reason, e.code)
}

func newH2Mux(client bool, tc net.Conn, bc *batchConn, cfg *Config) *h2mux {
	ctx, cancel := context.WithCancelCause(context.Background())
	m := &h2mux{
		client: client, tc: tc, bc: bc, cfg: cfg, ctx: ctx, cancel: cancel,
		ctrlSig:      make(chan struct{}, 1),
		sendWindow:   h2DefaultWindow,
		peerInitial:  h2DefaultWindow,
		peerMaxFrame: h2DefaultMaxFrame,
		streams:      make(map[uint32]*h2stream),
		nextID:       1,
		peerMaxOpen:  1 << 30,
		slotFreed:    make(chan struct{}),
		maxOpen:      cfg.MaxIncomingStreams + 2, // + the control and datagram streams
	}
	m.streamMax = min(max(int64(cfg.MaxStreamWindow), h2DefaultWindow), h2MaxWindow)
	m.streamInitial = min(h2InitialStreamWindow, m.streamMax)
	m.connWindow = min(max(int64(cfg.MaxConnWindow), m.streamMax), h2MaxWindow)
	m.recvWindow = m.connWindow
	m.henc = hpack.NewEncoder(&m.hbuf)
	m.lastFrame.Store(time.Now().UnixNano())
	return m
}

// start sends the preface (client) and SETTINGS, opens the connection
// window, and starts the reader, the control writer and the keep-alive.
func (m *h2mux) start() error {
	var b []byte
	if m.client {
		b = append(b, h2Preface...)
	}
	var settings []byte
	put := func(id uint16, v uint32) {
		settings = binary.BigEndian.AppendUint16(settings, id)
		settings = binary.BigEndian.AppendUint32(settings, v)
	}
	put(h2SettingInitialWindowSize, uint32(m.streamInitial))
	put(h2SettingMaxFrameSize, h2ReadFrameSize)
	if m.client {
		put(h2SettingEnablePush, 0)
		put(h2SettingMaxConcurrent, 0) // the server opens no streams
	} else {
		put(h2SettingMaxConcurrent, uint32(m.maxOpen))
	}
	b = appendFrame(b, h2FrameSettings, 0, 0, settings)
	if m.connWindow > h2DefaultWindow {
		b = appendWindowUpdate(b, 0, uint32(m.connWindow-h2DefaultWindow))
	}
	now := time.Now() // the first RTT sample
	b = appendFrame(b, h2FramePing, 0, 0, pingPayload(now))
	m.pingSent.Store(now.UnixNano())
	m.wmu.Lock()
	_, err := m.tc.Write(b)
	m.wmu.Unlock()
	if err != nil {
		m.fail(fmt.Errorf("http2: write settings: %w", err))
		return err
	}
	m.keepalive = time.AfterFunc(m.cfg.KeepAlivePeriod, m.keepaliveTick)
	context.AfterFunc(m.ctx, func() { m.keepalive.Stop() })
	go m.readLoop()
	go m.ctrlLoop()
	return nil
}

// pingPayload is a PING's payload: the sender's wall clock in Unix
// nanoseconds. The edge's first PING is how connector diag reads the
// edge's clock (ProbeHTTP2): keep it the time.
func pingPayload(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
}

// appendFrame appends a frame header and payload to b.
func appendFrame(b []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	b = appendFrameHeader(b, len(payload), typ, flags, stream)
	return append(b, payload...)
}

func appendFrameHeader(b []byte, length int, typ, flags byte, stream uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags,
		byte(stream>>24)&0x7f, byte(stream>>16), byte(stream>>8), byte(stream))
}

func appendWindowUpdate(b []byte, stream, incr uint32) []byte {
	b = appendFrameHeader(b, 4, h2FrameWindowUpdate, 0, stream)
	return binary.BigEndian.AppendUint32(b, incr)
}

func appendRSTStream(b []byte, stream, code uint32) []byte {
	b = appendFrameHeader(b, 4, h2FrameRSTStream, 0, stream)
	return binary.BigEndian.AppendUint32(b, code)
}

// fail ends the connection with cause: every stream fails, the TLS
// connection is closed.
func (m *h2mux) fail(cause error) {
	m.cancel(cause)
	m.tc.Close()
	m.mu.Lock()
	streams := make([]*h2stream, 0, len(m.streams))
	for _, s := range m.streams {
		streams = append(streams, s)
	}
	m.mu.Unlock()
	err := connGoneErr(m.ctx)
	for _, s := range streams {
		s.abort(err, err)
	}
	m.fcMu.Lock()
	m.growLocked()
	m.fcMu.Unlock()
}

// goAway tells the peer the connection ends (best effort, without waiting
// behind a blocked write) and fails it. cause is set first: the reader must
// not report the peer's reaction to the GOAWAY as the cause.
func (m *h2mux) goAway(cause error) {
	m.cancel(cause)
	if m.wmu.TryLock() {
		m.mu.Lock()
		last := m.lastPeerID
		m.mu.Unlock()
		var p [8]byte
		binary.BigEndian.PutUint32(p[:], last)
		_ = m.tc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = m.tc.Write(appendFrame(nil, h2FrameGoAway, 0, 0, p[:]))
		m.wmu.Unlock()
	}
	m.fail(cause)
}

// h2MaxCtrlQueue bounds the control frames waiting to be written: a peer
// that sends PINGs or SETTINGS without reading the answers is cut off.
const h2MaxCtrlQueue = 1 << 20

// queueCtrl queues control frames for the control writer. It never blocks.
func (m *h2mux) queueCtrl(frames []byte) {
	m.ctrlMu.Lock()
	if len(m.ctrlBuf)+len(frames) > h2MaxCtrlQueue {
		m.ctrlMu.Unlock()
		go m.fail(&h2Error{h2ErrEnhanceYourCalm, "control frames not read by the peer"})
		return
	}
	m.ctrlBuf = append(m.ctrlBuf, frames...)
	m.ctrlMu.Unlock()
	select {
	case m.ctrlSig <- struct{}{}:
	default:
	}
}

// ctrlLoop writes queued control frames until the connection ends.
func (m *h2mux) ctrlLoop() {
	for {
		select {
		case <-m.ctrlSig:
		case <-m.ctx.Done():
			return
		}
		m.wmu.Lock()
		err := m.flushCtrlLocked()
		m.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// flushCtrlLocked writes the queued control frames. wmu is held: frames
// queued before a write under wmu reach the wire before it (openStream
// relies on it: the RST_STREAM that freed a slot goes before the HEADERS
// that take it).
func (m *h2mux) flushCtrlLocked() error {
	m.ctrlMu.Lock()
	out := m.ctrlBuf
	m.ctrlBuf = m.ctrlOut[:0]
	m.ctrlMu.Unlock()
	if len(out) == 0 {
		m.ctrlOut = out
		return nil
	}
	_, err := m.tc.Write(out)
	if cap(out) > 64<<10 {
		out = nil
	}
	m.ctrlOut = out
	if err != nil {
		m.fail(fmt.Errorf("http2: write: %w", err))
		return err
	}
	return nil
}

// keepaliveTick pings a quiet peer and ends the connection when the peer
// stays silent for MaxIdleTimeout.
func (m *h2mux) keepaliveTick() {
	if m.ctx.Err() != nil {
		return
	}
	quiet := time.Since(time.Unix(0, m.lastFrame.Load()))
	if quiet >= m.cfg.MaxIdleTimeout {
		m.goAway(fmt.Errorf("http2: no frame from the peer for %v: %w", quiet.Round(time.Millisecond), ErrClosed))
		return
	}
	now := time.Now()
	if sent := m.pingSent.Load(); quiet >= m.cfg.KeepAlivePeriod && (sent == 0 || now.Sub(time.Unix(0, sent)) >= m.cfg.KeepAlivePeriod) {
		m.pingSent.Store(now.UnixNano())
		m.queueCtrl(appendFrame(nil, h2FramePing, 0, 0, pingPayload(now)))
	}
	next := m.cfg.KeepAlivePeriod - quiet
	if next <= 0 || next > m.cfg.KeepAlivePeriod {
		next = m.cfg.KeepAlivePeriod
	}
	if left := m.cfg.MaxIdleTimeout - quiet; left < next {
		next = left
	}
	m.keepalive.Reset(next)
}

// growLocked wakes the writers waiting for send window. fcMu is held.
func (m *h2mux) growLocked() {
	for i, s := range m.fcWaiting {
		select {
		case s.fcWake <- struct{}{}:
		default:
		}
		m.fcWaiting[i] = nil
	}
	m.fcWaiting = m.fcWaiting[:0]
}

// reserve waits until s and the connection have send window and takes up
// to n bytes of it (at most the peer's frame size).
func (m *h2mux) reserve(s *h2stream, n int) (int, error) {
	for {
		m.fcMu.Lock()
		if err := s.sendErr(); err != nil {
			m.fcMu.Unlock()
			return 0, err
		}
		if err := m.ctx.Err(); err != nil {
			m.fcMu.Unlock()
			return 0, connGoneErr(m.ctx)
		}
		avail := min(int64(n), s.sendWindow, m.sendWindow, int64(m.peerMaxFrame))
		if avail > 0 {
			s.sendWindow -= avail
			m.sendWindow -= avail
			m.fcMu.Unlock()
			return int(avail), nil
		}
		m.fcWaiting = append(m.fcWaiting, s)
		m.fcMu.Unlock()
		select {
		case <-s.fcWake:
		case <-s.done:
		}
	}
}

// writeData writes one DATA frame from p (within reserved window).
func (m *h2mux) writeData(id uint32, p []byte, end bool) error {
	var flags byte
	if end {
		flags = h2FlagEndStream
	}
	m.wmu.Lock()
	defer m.wmu.Unlock()
	appendFrameHeader(m.hdr[:0], len(p), h2FrameData, flags, id)
	m.bc.cork()
	_, err := m.tc.Write(m.hdr[:])
	if err == nil && len(p) > 0 {
		_, err = m.tc.Write(p)
	}
	if ferr := m.bc.uncork(); err == nil {
		err = ferr
	}
	if err != nil {
		m.fail(fmt.Errorf("http2: write: %w", err))
		return connGoneErr(m.ctx)
	}
	return nil
}

// writeHeadersLocked writes a HEADERS frame of fields, then a DATA frame of
// data and more if not empty (its window already taken), with END_STREAM
// on the last frame if end. data (a stream's request or response) is
// copied into the frames' buffer; more (a stream's first bytes, up to a
// frame) follows it in a write of its own, corked into the same TCP
// segment as writeData's. wmu is held.
func (m *h2mux) writeHeadersLocked(id uint32, fields []hpack.HeaderField, data, more []byte, end bool) error {
	m.hbuf.Reset()
	for _, f := range fields {
		if err := m.henc.WriteField(f); err != nil {
			return err
		}
	}
	var flags byte = h2FlagEndHeaders
	n := len(data) + len(more)
	if end && n == 0 {
		flags |= h2FlagEndStream
	}
	b := appendFrame(make([]byte, 0, h2FrameHeaderLen*2+m.hbuf.Len()+len(data)), h2FrameHeaders, flags, id, m.hbuf.Bytes())
	if n > 0 {
		flags = 0
		if end {
			flags = h2FlagEndStream
		}
		b = append(appendFrameHeader(b, n, h2FrameData, flags, id), data...)
	}
	var err error
	if len(more) == 0 {
		_, err = m.tc.Write(b)
	} else {
		m.bc.cork()
		if _, err = m.tc.Write(b); err == nil {
			_, err = m.tc.Write(more)
		}
		if ferr := m.bc.uncork(); err == nil {
			err = ferr
		}
	}
	if err != nil {
		m.fail(fmt.Errorf("http2: write: %w", err))
		return connGoneErr(m.ctx)
	}
	return nil
}

// tryReserve takes n bytes of send window of s and the connection if both
// have them, without waiting.
func (m *h2mux) tryReserve(s *h2stream, n int) bool {
	m.fcMu.Lock()
	defer m.fcMu.Unlock()
	if int64(n) > s.sendWindow || int64(n) > m.sendWindow || n > m.peerMaxFrame {
		return false
	}
	s.sendWindow -= int64(n)
	m.sendWindow -= int64(n)
	return true
}

// unreserve gives back window taken for bytes that were not sent.
func (m *h2mux) unreserve(s *h2stream, n int) {
	m.fcMu.Lock()
	s.sendWindow += int64(n)
	m.sendWindow += int64(n)
	m.growLocked()
	m.fcMu.Unlock()
}

// h2Authority is the :authority of every request: the tunnel is the
// whole connection, there is no host to name.
const h2Authority = "onramp.tunnel"

// openStream (client) opens a stream with a POST to path and writes data
// after the HEADERS: in the same write when the windows allow (a request
// header always fits the initial window; only a connection window used up
// by other streams makes it wait). It waits for a slot under the server's
// concurrency limit until ctx is done.
func (m *h2mux) openStream(ctx context.Context, path string, data []byte) (*h2stream, error) {
	m.mu.Lock()
	for m.active >= m.peerMaxOpen {
		freed := m.slotFreed
		m.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.ctx.Done():
			return nil, connGoneErr(m.ctx)
		}
		m.mu.Lock()
	}
	m.active++ // the slot is ours; newStream below takes it over
	m.mu.Unlock()
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: h2Authority}, {Name: ":path", Value: path},
	}
	// The ID is chosen and the HEADERS written under wmu, so that IDs reach
	// the wire in increasing order.
	m.wmu.Lock()
	m.mu.Lock()
	if err := m.ctx.Err(); err != nil || m.nextID > h2MaxWindow {
		m.active--
		m.mu.Unlock()
		m.wmu.Unlock()
		if err == nil {
			return nil, fmt.Errorf("http2: stream IDs exhausted: %w", ErrClosed)
		}
		return nil, connGoneErr(m.ctx)
	}
	id := m.nextID
	m.nextID += 2
	s := m.newStreamLocked(id)
	m.mu.Unlock()
	inline := len(data) > 0 && m.tryReserve(s, len(data))
	err := m.flushCtrlLocked()
	if err == nil {
		if inline {
			err = m.writeHeadersLocked(id, fields, data, nil, false)
		} else {
			err = m.writeHeadersLocked(id, fields, nil, nil, false)
		}
	}
	m.wmu.Unlock()
	if err == nil && !inline && len(data) > 0 {
		_, err = s.Write(data)
	}
	if err != nil {
		s.Reset()
		return nil, err
	}
	return s, nil
}

// respond (server) sends the response headers of s with :status status,
// then data and more as the start of the body (in the same write, one
// DATA frame, when the windows allow), and END_STREAM after them if end.
func (m *h2mux) respond(s *h2stream, status string, data, more []byte, end bool) error {
	s.wmu.Lock()
	fields := []hpack.HeaderField{{Name: ":status", Value: status}}
	n := len(data) + len(more)
	m.wmu.Lock()
	inline := n == 0 || m.tryReserve(s, n)
	var err error
	if inline {
		err = m.writeHeadersLocked(s.id, fields, data, more, end)
	} else {
		err = m.writeHeadersLocked(s.id, fields, nil, nil, false)
	}
	m.wmu.Unlock()
	s.wmu.Unlock()
	switch {
	case err != nil:
		return err
	case !inline:
		for _, b := range [][]byte{data, more} {
			if _, err := s.Write(b); err != nil {
				return err
			}
		}
		if end {
			return s.CloseWrite()
		}
	case end:
		s.sentEndStream()
	}
	return nil
}

// newStreamLocked registers a stream. mu is held.
func (m *h2mux) newStreamLocked(id uint32) *h2stream {
	s := newH2Stream(m, id)
	m.fcMu.Lock()
	s.sendWindow = m.peerInitial
	m.fcMu.Unlock()
	m.streams[id] = s
	return s
}

// closed is called once both directions of s are finished (or it was
// reset): it leaves the map and frees its slot.
func (m *h2mux) closed(s *h2stream) {
	m.mu.Lock()
	if m.streams[s.id] == s {
		delete(m.streams, s.id)
		m.active--
		close(m.slotFreed)
		m.slotFreed = make(chan struct{})
	}
	m.mu.Unlock()
}

// consumed gives back n bytes of connection window once enough were read.
func (m *h2mux) consumed(n int) {
	if n <= 0 {
		return
	}
	m.mu.Lock()
	m.recvUnacked += int64(n)
	var incr int64
	if m.recvUnacked >= m.connWindow/4 {
		incr, m.recvUnacked = m.recvUnacked, 0
		m.recvWindow += incr
	}
	m.mu.Unlock()
	if incr > 0 {
		var b [h2FrameHeaderLen + 4]byte
		m.queueCtrl(appendWindowUpdate(b[:0], 0, uint32(incr)))
	}
}

// ---- reading ----

// readLoop reads frames until the connection fails.
func (m *h2mux) readLoop() {
	err := m.read()
	var he *h2Error
	if errors.As(err, &he) {
		m.goAway(err)
		return
	}
	if m.ctx.Err() == nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("http2: connection closed by the peer: %w", ErrClosed)
		} else {
			err = fmt.Errorf("http2: read: %w", err)
		}
	}
	m.fail(err)
}

func (m *h2mux) read() error {
	if !m.client {
		var p [len(h2Preface)]byte
		if _, err := io.ReadFull(m.tc, p[:]); err != nil {
			return err
		}
		if string(p[:]) != h2Preface {
			return &h2Error{h2ErrProtocol, "bad client preface"}
		}
	}
	var hdr [h2FrameHeaderLen]byte
	var small []byte // payloads of frames other than DATA
	first := true
	for {
		if _, err := io.ReadFull(m.tc, hdr[:]); err != nil {
			return err
		}
		m.lastFrame.Store(time.Now().UnixNano())
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags := hdr[3], hdr[4]
		id := binary.BigEndian.Uint32(hdr[5:]) & 0x7fffffff
		if length > h2ReadFrameSize {
			return &h2Error{h2ErrFrameSize, fmt.Sprintf("frame of %d bytes, max %d", length, h2ReadFrameSize)}
		}
		if first && typ != h2FrameSettings {
			return &h2Error{h2ErrProtocol, "first frame is not SETTINGS"}
		}
		first = false
		if typ == h2FrameData {
			if err := m.readData(id, flags, length); err != nil {
				return err
			}
			continue
		}
		if length > h2MaxHeaderBlock {
			return &h2Error{h2ErrFrameSize, fmt.Sprintf("frame type %d of %d bytes", typ, length)}
		}
		if cap(small) < length {
			small = make([]byte, length)
		}
		p := small[:length]
		if _, err := io.ReadFull(m.tc, p); err != nil {
			return err
		}
		var err error
		switch typ {
		case h2FrameHeaders:
			err = m.readHeaders(id, flags, p)
		case h2FrameRSTStream:
			err = m.onRST(id, p)
		case h2FrameSettings:
			err = m.onSettings(id, flags, p)
		case h2FramePing:
			err = m.onPing(id, flags, p)
		case h2FrameGoAway:
			if id != 0 || len(p) < 8 {
				return &h2Error{h2ErrProtocol, "malformed GOAWAY"}
			}
			return fmt.Errorf("http2: GOAWAY from the peer (error code %d): %w", binary.BigEndian.Uint32(p[4:]), ErrClosed)
		case h2FrameWindowUpdate:
			err = m.onWindowUpdate(id, p)
		case h2FramePushPromise:
			return &h2Error{h2ErrProtocol, "PUSH_PROMISE (push is disabled)"}
		case h2FrameContinuation:
			return &h2Error{h2ErrProtocol, "CONTINUATION without HEADERS"}
		case h2FramePriority:
			// Ignored: every stream is equal here.
		default:
			// Unknown frame types are ignored (RFC 9113, 4.1).
		}
		if err != nil {
			return err
		}
	}
}

// readData reads a DATA frame's payload into its stream, or discards it.
func (m *h2mux) readData(id uint32, flags byte, length int) error {
	if id == 0 {
		return &h2Error{h2ErrProtocol, "DATA on stream 0"}
	}
	m.mu.Lock()
	if int64(length) > m.recvWindow {
		m.mu.Unlock()
		return &h2Error{h2ErrFlowControl, fmt.Sprintf("DATA of %d bytes beyond the connection window of %d", length, m.recvWindow)}
	}
	m.recvWindow -= int64(length)
	s := m.streams[id]
	m.mu.Unlock()
	pad := 0
	if flags&h2FlagPadded != 0 {
		if length < 1 {
			return &h2Error{h2ErrProtocol, "padded DATA without pad length"}
		}
		var b [1]byte
		if _, err := io.ReadFull(m.tc, b[:]); err != nil {
			return err
		}
		pad = int(b[0])
		length--
		if pad > length {
			return &h2Error{h2ErrProtocol, "padding longer than the DATA frame"}
		}
		length -= pad
		m.consumed(pad + 1)
	}
	if s == nil || !s.acceptsData() {
		// A stream reset or closed here: its data is read and dropped,
		// its window given back to the connection at once.
		if err := m.discard(length + pad); err != nil {
			return err
		}
		m.consumed(length)
		if s == nil && !m.known(id) {
			return &h2Error{h2ErrProtocol, fmt.Sprintf("DATA on idle stream %d", id)}
		}
		return nil
	}
	if err := s.receive(m.tc, length, flags&h2FlagEndStream != 0); err != nil {
		return err
	}
	return m.discard(pad)
}

// known reports whether stream id was opened at some point.
func (m *h2mux) known(id uint32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client {
		return id < m.nextID
	}
	return id <= m.lastPeerID
}

func (m *h2mux) discard(n int) error {
	if n == 0 {
		return nil
	}
	_, err := io.CopyN(io.Discard, m.tc, int64(n))
	return err
}

// readHeaders reads a header block (HEADERS and any CONTINUATIONs) and acts on it.
func (m *h2mux) readHeaders(id uint32, flags byte, p []byte) error {
	if id == 0 {
		return &h2Error{h2ErrProtocol, "HEADERS on stream 0"}
	}
	if flags&h2FlagPadded != 0 {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return &h2Error{h2ErrProtocol, "bad HEADERS padding"}
		}
		p = p[1 : len(p)-int(p[0])]
	}
	if flags&h2FlagPriority != 0 {
		if len(p) < 5 {
			return &h2Error{h2ErrProtocol, "short HEADERS priority"}
		}
		p = p[5:]
	}
	block := append([]byte(nil), p...)
	for end := flags&h2FlagEndHeaders != 0; !end; {
		var hdr [h2FrameHeaderLen]byte
		if _, err := io.ReadFull(m.tc, hdr[:]); err != nil {
			return err
		}
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		if hdr[3] != h2FrameContinuation || binary.BigEndian.Uint32(hdr[5:])&0x7fffffff != id {
			return &h2Error{h2ErrProtocol, "header block not continued"}
		}
		if len(block)+length > h2MaxHeaderBlock {
			return &h2Error{h2ErrProtocol, fmt.Sprintf("header block over %d bytes", h2MaxHeaderBlock)}
		}
		n := len(block)
		block = append(block, make([]byte, length)...)
		if _, err := io.ReadFull(m.tc, block[n:]); err != nil {
			return err
		}
		end = hdr[4]&h2FlagEndHeaders != 0
	}
	var path, status string
	dec := m.decoder()
	dec.SetEmitFunc(func(f hpack.HeaderField) {
		switch f.Name {
		case ":path":
			path = f.Value
		case ":status":
			status = f.Value
		}
	})
	if _, err := dec.Write(block); err != nil {
		return &h2Error{h2ErrProtocol, "HPACK: " + err.Error()}
	}
	endStream := flags&h2FlagEndStream != 0
	if m.client {
		m.mu.Lock()
		s := m.streams[id]
		m.mu.Unlock()
		if s == nil {
			return nil // reset here meanwhile
		}
		s.onResponseHeaders(status, endStream)
		return nil
	}
	return m.onRequest(id, path, endStream)
}

// onRequest (server) registers a stream the peer opened.
func (m *h2mux) onRequest(id uint32, path string, endStream bool) error {
	m.mu.Lock()
	if id%2 == 0 || id <= m.lastPeerID {
		if m.streams[id] != nil {
			m.mu.Unlock()
			return &h2Error{h2ErrProtocol, fmt.Sprintf("trailers on stream %d", id)}
		}
		m.mu.Unlock()
		return &h2Error{h2ErrProtocol, fmt.Sprintf("HEADERS opening stream %d after %d", id, m.lastPeerID)}
	}
	m.lastPeerID = id
	if m.active >= m.maxOpen {
		m.mu.Unlock()
		m.queueCtrl(appendRSTStream(nil, id, h2ErrRefusedStream))
		return nil
	}
	s := m.newStreamLocked(id)
	m.active++
	m.mu.Unlock()
	if endStream {
		s.onEndStream()
	}
	m.onStream(s, path)
	return nil
}

// decoder is the connection's HPACK decoder (reader goroutine only).
func (m *h2mux) decoder() *hpack.Decoder {
	if m.dec == nil {
		m.dec = hpack.NewDecoder(4096, nil)
		m.dec.SetMaxStringLength(h2MaxHeaderBlock)
	}
	return m.dec
}

func (m *h2mux) onRST(id uint32, p []byte) error {
	if id == 0 || len(p) != 4 {
		return &h2Error{h2ErrProtocol, "malformed RST_STREAM"}
	}
	m.mu.Lock()
	s := m.streams[id]
	m.mu.Unlock()
	if s != nil {
		s.onReset(binary.BigEndian.Uint32(p))
	}
	return nil
}

func (m *h2mux) onSettings(id uint32, flags byte, p []byte) error {
	if id != 0 || len(p)%6 != 0 {
		return &h2Error{h2ErrProtocol, "malformed SETTINGS"}
	}
	if flags&h2FlagAck != 0 {
		return nil
	}
	for ; len(p) > 0; p = p[6:] {
		v := binary.BigEndian.Uint32(p[2:])
		switch binary.BigEndian.Uint16(p) {
		case h2SettingInitialWindowSize:
			if v > h2MaxWindow {
				return &h2Error{h2ErrFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1"}
			}
			m.mu.Lock()
			m.fcMu.Lock()
			delta := int64(v) - m.peerInitial
			m.peerInitial = int64(v)
			for _, s := range m.streams {
				s.sendWindow += delta
			}
			m.growLocked()
			m.fcMu.Unlock()
			m.mu.Unlock()
		case h2SettingMaxFrameSize:
			if v < h2DefaultMaxFrame || v > 1<<24-1 {
				return &h2Error{h2ErrProtocol, fmt.Sprintf("SETTINGS_MAX_FRAME_SIZE %d", v)}
			}
			m.fcMu.Lock()
			m.peerMaxFrame = int(v)
			m.fcMu.Unlock()
		case h2SettingMaxConcurrent:
			m.mu.Lock()
			m.peerMaxOpen = int(min(v, 1<<30))
			close(m.slotFreed)
			m.slotFreed = make(chan struct{})
			m.mu.Unlock()
		case h2SettingEnablePush:
			if v > 1 {
				return &h2Error{h2ErrProtocol, "SETTINGS_ENABLE_PUSH above 1"}
			}
		}
	}
	m.queueCtrl(appendFrame(nil, h2FrameSettings, h2FlagAck, 0, nil))
	return nil
}

func (m *h2mux) onPing(id uint32, flags byte, p []byte) error {
	if id != 0 || len(p) != 8 {
		return &h2Error{h2ErrProtocol, "malformed PING"}
	}
	if flags&h2FlagAck == 0 {
		m.queueCtrl(appendFrame(nil, h2FramePing, h2FlagAck, 0, p))
		return nil
	}
	sent := int64(binary.BigEndian.Uint64(p))
	if sent != m.pingSent.Load() {
		return nil
	}
	m.pingSent.Store(0)
	sample := time.Now().UnixNano() - sent
	if sample <= 0 {
		return nil
	}
	if old := m.rtt.Load(); old != 0 {
		sample = (7*old + sample) / 8
	}
	m.rtt.Store(sample)
	return nil
}

func (m *h2mux) onWindowUpdate(id uint32, p []byte) error {
	if len(p) != 4 {
		return &h2Error{h2ErrFrameSize, "malformed WINDOW_UPDATE"}
	}
	incr := int64(binary.BigEndian.Uint32(p) & 0x7fffffff)
	if incr == 0 {
		if id == 0 {
			return &h2Error{h2ErrProtocol, "WINDOW_UPDATE of 0 on the connection"}
		}
		m.queueCtrl(appendRSTStream(nil, id, h2ErrProtocol))
		return nil
	}
	var s *h2stream
	if id != 0 {
		m.mu.Lock()
		s = m.streams[id]
		m.mu.Unlock()
		if s == nil {
			return nil
		}
	}
	m.fcMu.Lock()
	defer m.fcMu.Unlock()
	w := &m.sendWindow
	if s != nil {
		w = &s.sendWindow
	}
	if *w+incr > h2MaxWindow {
		if s == nil {
			return &h2Error{h2ErrFlowControl, "connection window above 2^31-1"}
		}
		m.queueCtrl(appendRSTStream(nil, id, h2ErrFlowControl))
		return nil
	}
	*w += incr
	m.growLocked()
	return nil
}
