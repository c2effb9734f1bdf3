package tunnel

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// h2chunks holds the pooled chunks of h2ChunkSize bytes that receive
// buffers are made of.
var h2chunks = sync.Pool{New: func() any { b := make([]byte, h2ChunkSize); return &b }}

// h2stream is one stream of an h2mux: a byte stream each way with HTTP/2
// flow control, END_STREAM as the half-close and RST_STREAM as the reset.
// Read and Write may run concurrently; concurrent Reads, or Writes, may not.
//
// Closing: the stream leaves the connection (and frees its slot under the
// concurrency limit) once END_STREAM was both sent and received, or a
// RST_STREAM went either way. A RST_STREAM with NO_ERROR after the peer's
// END_STREAM means the peer stopped reading: writes fail, the data that
// arrived stays readable.
type h2stream struct {
	m  *h2mux
	id uint32

	mu       sync.Mutex
	chunks   []*[]byte     // receive buffer: (*chunks[0])[r:] ... (*chunks[last])[:w]
	r, w     int           // read offset in the first chunk, write offset in the last
	buffered int           // bytes in chunks
	filling  bool          // the reader fills the last chunk outside mu
	readable chan struct{} // cap 1: data, EOF or an error arrived
	onRead   func()        // ParkRead's wake, run once when readable
	// deliver, set with onRead by ParkReadTo, writes bytes that arrive
	// for the parked reader straight to where it would copy them.
	deliver  func([]byte) int
	recvEnd  bool          // END_STREAM received
	readErr  error         // reads fail with it at once (reset, connection gone)
	readStop bool          // Close: reads fail, arriving data is dropped
	sentEnd  bool          // END_STREAM sent
	writeErr error         // writes fail with it (reset, peer stopped reading)
	finished bool          // left the connection
	done     chan struct{} // closed with writeErr: wakes a Write waiting for window

	// Receive flow control (our window for this stream), under mu.
	window     int64 // current window size, auto-tuned
	recvAvail  int64 // bytes the peer may still send
	unacked    int64 // bytes read and not yet given back
	totalRead  int64
	epochStart time.Time
	epochRead  int64

	// Response headers (client side).
	status    string
	headersCh chan struct{} // closed when response headers arrived or the stream failed
	hdrOnce   sync.Once

	sendWindow int64         // the peer's window for this stream, under m.fcMu
	fcWake     chan struct{} // cap 1: the send window may have grown
	wmu        sync.Mutex    // serializes Write and CloseWrite
}

func newH2Stream(m *h2mux, id uint32) *h2stream {
	return &h2stream{
		m: m, id: id,
		readable:   make(chan struct{}, 1),
		fcWake:     make(chan struct{}, 1),
		done:       make(chan struct{}),
		headersCh:  make(chan struct{}),
		window:     m.streamInitial,
		recvAvail:  m.streamInitial,
		epochStart: time.Now(),
	}
}

// signal wakes a waiting Read, or starts the wake of a parked reader
// (ParkRead). mu is held.
func (s *h2stream) signal() {
	if f := s.onRead; f != nil {
		s.onRead, s.deliver = nil, nil
		go f()
	}
	select {
	case s.readable <- struct{}{}:
	default:
	}
}

// ParkRead arranges for wake to run once, in a new goroutine, when a Read
// would not block (data, EOF or an error arrived), and returns true; if a
// Read would not block now it registers nothing and returns false. A
// reader that parks holds no goroutine while the stream is quiet (see
// l4proxy/internal/pipe). Reset and Close wake it too.
func (s *h2stream) ParkRead(wake func()) bool { return s.ParkReadTo(wake, nil) }

// ParkReadTo parks a reader as ParkRead does, and while it is parked the
// connection's reader hands the data that arrives to deliver instead of
// waking it: deliver is a write that never blocks (a socket's one
// write(2)) and returns how many bytes it took; the rest stays buffered
// and wake runs. A proxy of small messages then has no goroutine to wake
// per message in this direction: the bytes go from the TLS connection's
// reader to the user's socket. deliver runs on the connection's reader,
// never at the same time as a Read or wake.
func (s *h2stream) ParkReadTo(wake func(), deliver func([]byte) int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buffered > 0 || s.recvEnd || s.readErr != nil || s.readStop {
		return false
	}
	s.onRead, s.deliver = wake, deliver
	return true
}

// acceptsData reports whether arriving DATA is kept.
func (s *h2stream) acceptsData() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.recvEnd && !s.readStop && s.readErr == nil
}

// receive (reader goroutine) reads a DATA payload of n bytes from r into
// the receive buffer, chunk by chunk, without holding mu while reading.
func (s *h2stream) receive(r io.Reader, n int, end bool) error {
	s.mu.Lock()
	if int64(n) > s.recvAvail {
		s.mu.Unlock()
		return &h2Error{h2ErrFlowControl, fmt.Sprintf("DATA of %d bytes beyond the window of %d of stream %d", n, s.recvAvail, s.id)}
	}
	s.recvAvail -= int64(n)
	for n > 0 {
		if len(s.chunks) == 0 || s.w == h2ChunkSize {
			s.chunks = append(s.chunks, h2chunks.Get().(*[]byte))
			s.w = 0
			if len(s.chunks) == 1 {
				s.r = 0
			}
		}
		tail := (*s.chunks[len(s.chunks)-1])[s.w:]
		k := min(n, len(tail))
		s.filling = true
		s.mu.Unlock()
		_, err := io.ReadFull(r, tail[:k])
		s.mu.Lock()
		s.filling = false
		if err != nil {
			s.mu.Unlock()
			return err
		}
		n -= k
		if s.readStop || s.readErr != nil {
			// Closed or reset meanwhile: drop the bytes, give the window
			// back to the connection.
			s.releaseLocked()
			s.mu.Unlock()
			s.m.consumed(k)
			if n > 0 {
				if err := s.m.discard(n); err != nil {
					return err
				}
				s.m.consumed(n)
			}
			return nil
		}
		s.w += k
		s.buffered += k
		if s.deliver != nil && s.buffered == k && len(s.chunks) == 1 {
			if !s.deliverLocked(k) {
				// Closed or reset while delivering: the rest is dropped.
				s.mu.Unlock()
				if n > 0 {
					if err := s.m.discard(n); err != nil {
						return err
					}
					s.m.consumed(n)
				}
				return nil
			}
			continue
		}
		s.signal()
	}
	s.mu.Unlock()
	if end {
		s.onEndStream()
	}
	return nil
}

// deliverLocked hands the k bytes just received, the only ones buffered,
// to the parked reader's deliver, and keeps the reader parked if deliver
// took them all; else the rest stays buffered and the reader is woken.
// It returns false if the stream was closed or reset meanwhile. mu is
// held, and released while deliver runs: the reader is parked, and its
// wake is held here meanwhile, so nothing else reads the buffer or writes
// where deliver does (an abort's signal finds no wake to run; it runs
// below).
func (s *h2stream) deliverLocked(k int) bool {
	wake, deliver := s.onRead, s.deliver
	s.onRead, s.deliver = nil, nil
	seg := (*s.chunks[0])[s.w-k : s.w]
	s.filling = true // the chunk stays while mu is released
	s.mu.Unlock()
	nw := deliver(seg)
	s.mu.Lock()
	s.filling = false
	if s.readStop || s.readErr != nil {
		// The abort gave the buffered bytes' window back already.
		s.releaseLocked()
		s.mu.Unlock()
		go wake() // the reader sees the end
		s.mu.Lock()
		return false
	}
	var incr int64
	if nw > 0 {
		s.r += nw
		s.buffered -= nw
		incr = s.consumedLocked(nw)
	}
	if s.buffered == 0 {
		// An idle stream holds no buffer.
		s.dropFirstChunk()
		s.r, s.w = 0, 0
		s.onRead, s.deliver = wake, deliver
	}
	rest := s.buffered
	s.mu.Unlock()
	s.giveBack(incr, nw)
	if rest > 0 {
		go wake()
	}
	s.mu.Lock()
	return true
}

// releaseLocked puts the receive buffer back (all but a chunk the reader
// is filling). mu is held.
func (s *h2stream) releaseLocked() {
	keep := 0
	if s.filling {
		keep = 1
	}
	for len(s.chunks) > keep {
		s.dropFirstChunk()
	}
	s.r, s.buffered = 0, 0
	if keep == 0 {
		s.w = 0
	} else {
		s.r = s.w // nothing of the kept chunk is readable
	}
}

// dropFirstChunk puts the first chunk back into the pool, keeping the
// capacity of the list. mu is held.
func (s *h2stream) dropFirstChunk() {
	h2chunks.Put(s.chunks[0])
	n := copy(s.chunks, s.chunks[1:])
	s.chunks[n] = nil
	s.chunks = s.chunks[:n]
}

// Read reads buffered data, waiting for some if there is none.
func (s *h2stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	for {
		if s.readStop {
			s.mu.Unlock()
			return 0, errReadClosed
		}
		if s.readErr != nil {
			err := s.readErr
			s.mu.Unlock()
			return 0, err
		}
		if s.buffered > 0 {
			break
		}
		if len(p) == 0 {
			s.mu.Unlock()
			return 0, nil
		}
		if s.recvEnd {
			s.mu.Unlock()
			return 0, io.EOF
		}
		s.mu.Unlock()
		<-s.readable
		s.mu.Lock()
	}
	n := 0
	for n < len(p) && s.buffered > 0 {
		c := *s.chunks[0]
		end := h2ChunkSize
		if len(s.chunks) == 1 {
			end = s.w
		}
		k := copy(p[n:], c[s.r:end])
		n += k
		s.r += k
		s.buffered -= k
		if s.r == end && len(s.chunks) > 1 {
			s.dropFirstChunk()
			s.r = 0
		}
	}
	if s.buffered == 0 && !s.filling && len(s.chunks) > 0 {
		// An idle stream holds no buffer.
		s.dropFirstChunk()
		s.r, s.w = 0, 0
	}
	incr := s.consumedLocked(n)
	s.mu.Unlock()
	s.giveBack(incr, n)
	return n, nil
}

// giveBack sends the peer the stream's window update incr (if any) and
// gives the n bytes read back to the connection's window. mu is not held.
func (s *h2stream) giveBack(incr int64, n int) {
	if incr > 0 {
		var b [h2FrameHeaderLen + 4]byte
		s.m.queueCtrl(appendWindowUpdate(b[:0], s.id, uint32(incr)))
	}
	s.m.consumed(n)
}

// consumedLocked accounts for n bytes read and returns the window to give
// back to the peer, if it is time: once half the window was read. The
// window doubles (up to Config.MaxStreamWindow) when that half was read
// within two round trips, which means the window, not the reader, limits
// the transfer. mu is held.
func (s *h2stream) consumedLocked(n int) int64 {
	s.totalRead += int64(n)
	if s.recvEnd {
		return 0
	}
	s.unacked += int64(n)
	if s.unacked < s.window/2 {
		return 0
	}
	incr := s.unacked
	s.unacked = 0
	now := time.Now()
	if rtt := s.m.rtt.Load(); rtt > 0 && s.window < s.m.streamMax {
		fraction := float64(s.totalRead-s.epochRead) / float64(s.window)
		if now.Sub(s.epochStart) < time.Duration(4*fraction*float64(rtt)) {
			grown := min(2*s.window, s.m.streamMax)
			incr += grown - s.window
			s.window = grown
		}
	}
	s.epochStart, s.epochRead = now, s.totalRead
	s.recvAvail += incr
	return incr
}

// sendErr is the error writes fail with, if any.
func (s *h2stream) sendErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeErr
}

// Write sends p in DATA frames as the flow-control windows allow.
func (s *h2stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	sentEnd := s.sentEnd
	s.mu.Unlock()
	if sentEnd {
		return 0, errWriteAfterFIN
	}
	n := 0
	for n < len(p) {
		k, err := s.m.reserve(s, len(p)-n)
		if err != nil {
			return n, err
		}
		if err := s.sendErr(); err != nil {
			s.m.unreserve(s, k)
			return n, err
		}
		if err := s.m.writeData(s.id, p[n:n+k], false); err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}

// CloseWrite sends END_STREAM.
func (s *h2stream) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.sentEnd {
		s.mu.Unlock()
		return nil
	}
	if s.writeErr != nil {
		err := s.writeErr
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	if err := s.m.writeData(s.id, nil, true); err != nil {
		return err
	}
	s.sentEndStream()
	return nil
}

// sentEndStream records that END_STREAM went out.
func (s *h2stream) sentEndStream() {
	s.mu.Lock()
	s.sentEnd = true
	fin := s.recvEnd
	s.mu.Unlock()
	if fin {
		s.finish()
	}
}

// onEndStream: the peer half-closed.
func (s *h2stream) onEndStream() {
	s.mu.Lock()
	if s.recvEnd {
		s.mu.Unlock()
		return
	}
	s.recvEnd = true
	fin := s.sentEnd || s.writeErr != nil
	s.signal()
	s.mu.Unlock()
	s.hdrOnce.Do(func() { close(s.headersCh) })
	if fin {
		s.finish()
	}
}

// onReset: RST_STREAM from the peer.
func (s *h2stream) onReset(code uint32) {
	s.mu.Lock()
	stopped := code == h2ErrNoError && s.recvEnd
	s.mu.Unlock()
	if stopped {
		s.abort(nil, fmt.Errorf("%w: the peer stopped reading", ErrStreamReset))
		return
	}
	err := fmt.Errorf("%w: RST_STREAM from the peer (error code %d)", ErrStreamReset, code)
	s.abort(err, err)
}

// abort fails reads with readErr (unless nil: the data that arrived stays
// readable) and writes with writeErr, and takes the stream off the
// connection.
func (s *h2stream) abort(readErr, writeErr error) {
	s.mu.Lock()
	dropped := 0
	if readErr != nil && s.readErr == nil && !s.readStop {
		s.readErr = readErr
		dropped = s.buffered
		s.releaseLocked()
		s.signal()
	}
	if s.writeErr == nil {
		s.writeErr = writeErr
		close(s.done)
	}
	s.mu.Unlock()
	// The dropped bytes' window goes back to the connection.
	s.m.consumed(dropped)
	s.hdrOnce.Do(func() { close(s.headersCh) })
	s.finish()
}

// finish takes the stream off the connection, once.
func (s *h2stream) finish() {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.finished = true
	s.mu.Unlock()
	s.m.closed(s)
}

// Reset aborts both directions and sends RST_STREAM(CANCEL).
func (s *h2stream) Reset() {
	s.mu.Lock()
	live := !s.finished
	s.mu.Unlock()
	if live {
		s.m.queueCtrl(appendRSTStream(nil, s.id, h2ErrCancel))
	}
	s.abort(errLocalReset, errLocalReset)
}

// Close half-closes and stops reading: data still arriving is dropped,
// and if the peer has not finished sending, RST_STREAM(NO_ERROR) tells it
// to stop (its writes then fail).
func (s *h2stream) Close() error {
	err := s.CloseWrite()
	s.stopReading()
	return err
}

// stopReading drops the receive side: buffered data is discarded (its
// window given back to the connection) and a peer still sending is told
// to stop.
func (s *h2stream) stopReading() {
	s.mu.Lock()
	if s.readStop {
		s.mu.Unlock()
		return
	}
	s.readStop = true
	dropped := s.buffered
	s.releaseLocked()
	live := !s.recvEnd && !s.finished && s.readErr == nil
	s.signal()
	s.mu.Unlock()
	s.m.consumed(dropped)
	if live {
		s.m.queueCtrl(appendRSTStream(nil, s.id, h2ErrNoError))
		s.abort(nil, fmt.Errorf("%w: stream closed", errLocalReset))
	}
}

// onResponseHeaders (client) records the response's :status.
func (s *h2stream) onResponseHeaders(status string, end bool) {
	s.mu.Lock()
	if s.status == "" {
		s.status = status
	}
	s.mu.Unlock()
	s.hdrOnce.Do(func() { close(s.headersCh) })
	if end {
		s.onEndStream()
	}
}

// responseStatus (client) waits for the response headers and returns the
// :status, or the error that ended the stream first.
func (s *h2stream) responseStatus() (string, error) {
	<-s.headersCh
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status == "" {
		if s.readErr != nil {
			return "", s.readErr
		}
		return "", fmt.Errorf("%w: stream ended without a response", ErrStreamReset)
	}
	return s.status, nil
}

// WaitReadable returns when a Read would not block: data, EOF or an error
// is there. The copy loop waits with it instead of holding a buffer in a
// blocked Read.
func (s *h2stream) WaitReadable() error {
	s.mu.Lock()
	for s.buffered == 0 && !s.recvEnd && s.readErr == nil && !s.readStop {
		s.mu.Unlock()
		<-s.readable
		s.mu.Lock()
	}
	s.mu.Unlock()
	// Read waits on readable too: leave the signal for it.
	select {
	case s.readable <- struct{}{}:
	default:
	}
	return nil
}
