package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

var (
	errH2BodyClosed  = fmt.Errorf("%w: request body closed by the HTTP/2 transport", ErrStreamReset)
	errH2NoFIN       = fmt.Errorf("%w: stream ended without FIN", ErrStreamReset)
	errLocalReset    = errors.New("stream reset locally")
	errWriteAfterFIN = errors.New("write after CloseWrite")
	errReadClosed    = fmt.Errorf("read after Close: %w", net.ErrClosed)
)

// mapH2Err makes an HTTP/2 stream aborted by the peer recognisable as ErrStreamReset.
func mapH2Err(err error) error {
	if err == nil || err == io.EOF || errors.Is(err, ErrStreamReset) || errors.Is(err, errLocalReset) {
		return err
	}
	var se http2.StreamError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: %w", ErrStreamReset, err)
	}
	return err
}

// ---- edge side stream ----

// h2ReqBody is the request body of an edge stream: the encoded Request, then
// what the edge writes into the pipe.
type h2ReqBody struct {
	hdr     []byte
	pr      *io.PipeReader
	eof     chan struct{} // closed when the transport read the end of the body
	eofOnce sync.Once
}

func (b *h2ReqBody) Read(p []byte) (int, error) {
	if len(b.hdr) > 0 {
		n := copy(p, b.hdr)
		b.hdr = b.hdr[n:]
		return n, nil
	}
	n, err := b.pr.Read(p)
	if err == io.EOF {
		b.eofOnce.Do(func() { close(b.eof) })
	}
	return n, err
}

// Close is called by the transport when the stream ends or is aborted; a pending
// Write on the edge stream then fails.
func (b *h2ReqBody) Close() error {
	b.pr.CloseWithError(errH2BodyClosed)
	return nil
}

// h2EdgeStream is the edge's end of a "/stream" request.
type h2EdgeStream struct {
	conn   *h2Conn
	body   *h2ReqBody
	pw     *io.PipeWriter
	cancel context.CancelFunc

	rtDone chan struct{} // closed when RoundTrip returned; then resp/rtErr are set
	resp   *http.Response
	rtErr  error

	closed atomic.Bool // Close was called; the response body belongs to finishClose

	// Read state; Reads are not concurrent.
	respRead  bool
	readErr   error
	remaining int
	hdr       [4]byte
}

// OpenStream on HTTP/2 returns once the request's HEADERS frame is written (it
// waits for a stream slot if the connector's concurrency limit is reached).
func (c *h2Conn) OpenStream(ctx context.Context, req *Request) (Stream, error) {
	if !c.edge {
		return nil, fmt.Errorf("open stream: %w", ErrWrongSide)
	}
	if c.draining.Load() {
		return nil, fmt.Errorf("open stream: %w", ErrDraining)
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	if err := c.ctx.Err(); err != nil {
		return nil, fmt.Errorf("open stream: %w", connGoneErr(c.ctx))
	}
	pr, pw := io.Pipe()
	// Not derived from the connection's context: a stream that is never reset must
	// not stay registered there. The transport fails the stream when the connection dies.
	sctx, cancel := context.WithCancel(context.Background())
	s := &h2EdgeStream{
		conn:   c,
		body:   &h2ReqBody{hdr: AppendRequest(make([]byte, 0, 64), req), pr: pr, eof: make(chan struct{})},
		pw:     pw,
		cancel: cancel,
		rtDone: make(chan struct{}),
	}
	wrote := make(chan struct{})
	trace := &httptrace.ClientTrace{WroteHeaders: func() { close(wrote) }}
	hreq, err := http.NewRequestWithContext(httptrace.WithClientTrace(sctx, trace), http.MethodPost, h2URLBase+h2PathStream, s.body)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open stream: %w", err)
	}
	hreq.ContentLength = -1
	go s.roundTrip(hreq)
	select {
	case <-wrote:
		return s, nil
	case <-s.rtDone:
		if s.rtErr != nil {
			return nil, fmt.Errorf("open stream: %w", s.rtErr)
		}
		return s, nil
	case <-ctx.Done():
		s.Reset()
		return nil, fmt.Errorf("open stream: %w", ctx.Err())
	}
}

func (s *h2EdgeStream) roundTrip(req *http.Request) {
	resp, err := s.conn.cc.RoundTrip(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = fmt.Errorf("%w: HTTP status %d", ErrStreamReset, resp.StatusCode)
	}
	s.resp, s.rtErr = resp, err
	close(s.rtDone)
	if err != nil {
		s.cancel()
		s.pw.CloseWithError(mapH2Err(err))
	}
}

func (s *h2EdgeStream) Respond(Status, string) error { return fmt.Errorf("respond: %w", ErrWrongSide) }

func (s *h2EdgeStream) readResponse() error {
	<-s.rtDone
	s.respRead = true
	if s.rtErr != nil {
		s.readErr = mapH2Err(s.rtErr)
		return s.readErr
	}
	resp, err := ReadResponse(s.resp.Body)
	switch {
	case err != nil:
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: stream ended before the response", ErrStreamReset)
		}
		s.readErr = mapH2Err(err)
	case resp.Status != StatusOK:
		s.readErr = &StreamError{Status: resp.Status, Message: resp.Message}
		s.pw.CloseWithError(fmt.Errorf("%w: %w", ErrStreamReset, s.readErr))
		s.cancel()
	}
	return s.readErr
}

func (s *h2EdgeStream) Read(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, errReadClosed
	}
	if !s.respRead {
		if err := s.readResponse(); err != nil {
			return 0, err
		}
	}
	if s.readErr != nil {
		return 0, s.readErr
	}
	if len(p) == 0 {
		return 0, nil
	}
	body := s.resp.Body
	if s.remaining == 0 {
		if _, err := io.ReadFull(body, s.hdr[:]); err != nil {
			if err == io.EOF {
				err = errH2NoFIN
			}
			s.readErr = mapH2Err(err)
			return 0, s.readErr
		}
		l := binary.BigEndian.Uint32(s.hdr[:])
		if l == 0 {
			s.readErr = io.EOF
			return 0, io.EOF
		}
		if l > h2MaxChunk {
			s.readErr = fmt.Errorf("read: data frame of %d bytes: %w", l, ErrMalformed)
			s.Reset()
			return 0, s.readErr
		}
		s.remaining = int(l)
	}
	if len(p) > s.remaining {
		p = p[:s.remaining]
	}
	n, err := body.Read(p)
	s.remaining -= n
	if err == io.EOF {
		err = nil // the next Read reports the missing FIN
		if s.remaining > 0 {
			err = errH2NoFIN
		}
	}
	if err != nil {
		s.readErr = mapH2Err(err)
	}
	return n, s.readErr
}

func (s *h2EdgeStream) Write(p []byte) (int, error) {
	n, err := s.pw.Write(p)
	if err != nil {
		if err == io.ErrClosedPipe {
			err = errWriteAfterFIN
		}
		return n, mapH2Err(err)
	}
	return n, nil
}

// CloseWrite ends the request body: the transport sends END_STREAM after the data.
func (s *h2EdgeStream) CloseWrite() error { return s.pw.Close() }

// Reset cancels the request: the transport sends RST_STREAM(CANCEL).
func (s *h2EdgeStream) Reset() {
	s.pw.CloseWithError(errLocalReset)
	s.cancel()
}

// Close half-closes and stops reading. x/net/http2 gives no signal that END_STREAM
// was written, and resetting the stream right after the request body ended can
// overtake it, so Close waits until the transport consumed the end of the body,
// then discards the response for at most h2CloseGrace: if the connector finishes
// in that time the stream ends cleanly, otherwise it is reset (RST_STREAM CANCEL),
// after which the connector's writes fail. A stream whose body end the transport
// has not consumed within h2CloseGrace is reset.
func (s *h2EdgeStream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	err := s.pw.Close()
	go s.finishClose()
	return err
}

const h2CloseGrace = time.Second

func (s *h2EdgeStream) finishClose() {
	t := time.NewTimer(h2CloseGrace)
	select {
	case <-s.body.eof:
		t.Stop()
	case <-t.C:
		s.cancel()
		return
	}
	t = time.AfterFunc(h2CloseGrace, s.cancel)
	defer t.Stop()
	<-s.rtDone
	if s.resp != nil {
		io.Copy(io.Discard, s.resp.Body)
		s.resp.Body.Close()
	}
}

// ---- connector side stream ----

// h2ConnectorStream is the connector's end of a "/stream" request. The handler
// goroutine waits in serve until both directions are finished or the stream is
// reset; only then may net/http reuse the ResponseWriter.
type h2ConnectorStream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	body io.ReadCloser
	ctx  context.Context

	responded atomic.Bool
	localRst  atomic.Bool

	writeMu  sync.Mutex // serializes writes to w and the handler's exit
	wroteFIN bool       // guarded by writeMu
	stateMu  sync.Mutex
	finished bool // guarded by writeMu and stateMu: w must not be touched
	hdr      [4]byte

	readDone, writeDone, resetCh   chan struct{}
	readOnce, writeOnce, resetOnce sync.Once
}

func newH2ConnectorStream(w http.ResponseWriter, rc *http.ResponseController, r *http.Request) *h2ConnectorStream {
	return &h2ConnectorStream{
		w: w, rc: rc, body: r.Body, ctx: r.Context(),
		readDone: make(chan struct{}), writeDone: make(chan struct{}), resetCh: make(chan struct{}),
	}
}

func (s *h2ConnectorStream) doneReading() { s.readOnce.Do(func() { close(s.readDone) }) }
func (s *h2ConnectorStream) doneWriting() { s.writeOnce.Do(func() { close(s.writeDone) }) }

// serve runs on the handler goroutine. When the stream is closed by the peer
// (its context ends) it still waits for the reader: returning would make
// net/http break the request body and discard data received before the peer's
// END_STREAM or RST_STREAM, which the reader has yet to see. The body pipe
// already holds its final error then, so the reader cannot block forever.
func (s *h2ConnectorStream) serve() {
	readDone, writeDone, ctxDone := s.readDone, s.writeDone, s.ctx.Done()
loop:
	for readDone != nil || writeDone != nil {
		select {
		case <-readDone:
			readDone = nil
		case <-writeDone:
			writeDone = nil
		case <-s.resetCh:
			break loop
		case <-ctxDone:
			ctxDone, writeDone = nil, nil // writes fail from now on
		}
	}
	s.writeMu.Lock()
	s.stateMu.Lock()
	s.finished = true
	s.stateMu.Unlock()
	s.writeMu.Unlock()
}

func (s *h2ConnectorStream) writeErr(err error) error {
	if s.localRst.Load() {
		return errLocalReset
	}
	if s.ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrStreamReset, err)
	}
	return mapH2Err(err)
}

func (s *h2ConnectorStream) Respond(status Status, msg string) error {
	if !s.responded.CompareAndSwap(false, true) {
		return fmt.Errorf("respond: %w", ErrAlreadyResponded)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.finished {
		return fmt.Errorf("respond: %w", s.writeErr(ErrClosed))
	}
	s.w.WriteHeader(http.StatusOK)
	var b [MaxResponseLen]byte
	_, err := s.w.Write(AppendResponse(b[:0], &Response{Status: status, Message: msg}))
	if err == nil {
		err = s.rc.Flush()
	}
	if status != StatusOK {
		// Returning from the handler ends the response (END_STREAM) and, as the
		// request body is still open, resets it with NO_ERROR.
		s.wroteFIN = true
		s.doneWriting()
		s.doneReading()
	}
	if err != nil {
		return fmt.Errorf("respond: %w", s.writeErr(err))
	}
	return nil
}

func (s *h2ConnectorStream) Write(p []byte) (int, error) {
	if !s.responded.Load() {
		return 0, ErrNotResponded
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.finished {
		return 0, s.writeErr(ErrClosed)
	}
	if s.wroteFIN {
		return 0, errWriteAfterFIN
	}
	n := 0
	for n < len(p) {
		chunk := p[n:]
		if len(chunk) > h2MaxChunk {
			chunk = chunk[:h2MaxChunk]
		}
		binary.BigEndian.PutUint32(s.hdr[:], uint32(len(chunk)))
		if _, err := s.w.Write(s.hdr[:]); err != nil {
			return n, s.writeErr(err)
		}
		if _, err := s.w.Write(chunk); err != nil {
			return n, s.writeErr(err)
		}
		n += len(chunk)
	}
	if err := s.rc.Flush(); err != nil {
		return n, s.writeErr(err)
	}
	return n, nil
}

// CloseWrite sends the in-band FIN (a zero-length data frame) and flushes. HTTP/2
// itself cannot end the response while the request body is still being read: net/http
// handlers end the response only by returning, which also stops the request body.
func (s *h2ConnectorStream) CloseWrite() error {
	if !s.responded.Load() {
		return fmt.Errorf("close write: %w", ErrNotResponded)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.wroteFIN {
		return nil
	}
	if s.finished {
		return fmt.Errorf("close write: %w", s.writeErr(ErrClosed))
	}
	s.wroteFIN = true
	defer s.doneWriting()
	binary.BigEndian.PutUint32(s.hdr[:], 0)
	if _, err := s.w.Write(s.hdr[:]); err != nil {
		return fmt.Errorf("close write: %w", s.writeErr(err))
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("close write: %w", s.writeErr(err))
	}
	return nil
}

func (s *h2ConnectorStream) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if err != nil {
		s.doneReading()
		if err != io.EOF {
			err = s.writeErr(err)
		}
	}
	return n, err
}

// Reset sends RST_STREAM(INTERNAL_ERROR) by setting a write deadline in the past,
// which x/net/http2 turns into an immediate stream reset that also unblocks a
// Write waiting for flow control.
func (s *h2ConnectorStream) Reset() {
	s.resetOnce.Do(func() {
		s.localRst.Store(true)
		s.stateMu.Lock()
		if !s.finished {
			s.rc.SetWriteDeadline(time.Now().Add(-time.Second))
		}
		s.stateMu.Unlock()
		close(s.resetCh)
	})
}

func (s *h2ConnectorStream) Close() error {
	if !s.responded.Load() {
		s.Reset()
		return nil
	}
	err := s.CloseWrite()
	s.doneReading()
	return err
}
