package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
)

var (
	errLocalReset    = errors.New("stream reset locally")
	errWriteAfterFIN = errors.New("write after CloseWrite")
	errReadClosed    = fmt.Errorf("read after Close: %w", net.ErrClosed)
)

// ---- edge side stream ----

// h2EdgeStream is the edge's end of a "/stream/2" request.
type h2EdgeStream struct {
	s *h2stream

	// Read state; Reads are not concurrent.
	respRead bool
	readErr  error // sticky: the refusal or failure found reading the response
}

// OpenStream on HTTP/2 writes the request's HEADERS and the encoded Request
// and returns (it waits for a stream slot if the connector's concurrency
// limit is reached).
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
	bp := getHeaderBuf()
	*bp = AppendRequest(*bp, req)
	s, err := c.mux.openStream(ctx, h2PathStream, *bp)
	putHeaderBuf(bp)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return &h2EdgeStream{s: s}, nil
}

func (s *h2EdgeStream) Respond(Status, string) error { return fmt.Errorf("respond: %w", ErrWrongSide) }

// readResponse reads the response headers and the encoded Response.
func (s *h2EdgeStream) readResponse() error {
	status, err := s.s.responseStatus()
	if err != nil {
		return err
	}
	if status != "200" {
		s.s.Reset()
		return fmt.Errorf("%w: HTTP status %s", ErrStreamReset, status)
	}
	resp, err := ReadResponse(s.s)
	switch {
	case err != nil:
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: stream ended before the response", ErrStreamReset)
		}
		return err
	case resp.Status != StatusOK:
		// Nothing useful follows a refusal: release the stream both ways.
		s.s.Reset()
		return &StreamError{Status: resp.Status, Message: resp.Message}
	}
	return nil
}

func (s *h2EdgeStream) Read(p []byte) (int, error) {
	if !s.respRead {
		s.respRead = true
		s.readErr = s.readResponse()
	}
	if s.readErr != nil {
		return 0, s.readErr
	}
	return s.s.Read(p)
}

func (s *h2EdgeStream) Write(p []byte) (int, error) { return s.s.Write(p) }

// WaitReadable returns when a Read would not block (see
// l4proxy/internal/pipe). Before the response was read, it waits for the
// response's bytes (the first Read reads them): the connector's OK comes
// with the origin's first bytes (see h2ConnectorStream.Respond), so a
// stream whose origin has not spoken holds no buffer.
func (s *h2EdgeStream) WaitReadable() error { return s.s.WaitReadable() }

// ParkRead parks a reader of the stream (see h2stream.ParkRead); before
// the response was read, until the response's bytes come (as
// WaitReadable).
func (s *h2EdgeStream) ParkRead(wake func()) bool { return s.s.ParkRead(wake) }

// ParkReadTo parks a reader with a direct delivery (see
// h2stream.ParkReadTo); before the response was read, without one: the
// first bytes are the response's, which the Read takes.
func (s *h2EdgeStream) ParkReadTo(wake func(), deliver func([]byte) int) bool {
	if !s.respRead {
		return s.s.ParkRead(wake)
	}
	return s.s.ParkReadTo(wake, deliver)
}

// CloseWrite ends the request body (END_STREAM).
func (s *h2EdgeStream) CloseWrite() error { return s.s.CloseWrite() }

// Reset cancels the request: RST_STREAM(CANCEL).
func (s *h2EdgeStream) Reset() { s.s.Reset() }

// Close ends the request body and stops reading the response: if the
// connector has not finished it, RST_STREAM(NO_ERROR) tells it to stop
// (after the END_STREAM, so the connector reads everything up to it).
func (s *h2EdgeStream) Close() error { return s.s.Close() }

// ---- connector side stream ----

// h2ConnectorStream is the connector's end of a "/stream/2" request.
type h2ConnectorStream struct {
	s         *h2stream
	responded atomic.Bool
	pending   pendingOK
}

// Respond answers the stream's request. A refusal is written at once,
// and the stream's reading stopped. An OK is not written yet: its
// headers and body leave with the first bytes of the origin (Write) or
// the stream's end, in one write and one DATA frame, so that a new
// connection costs the connector one TLS record and TCP write to the
// edge, not two. The edge waits for it only to pass the origin's bytes
// on (its first Read reads it), and these come with it.
func (s *h2ConnectorStream) Respond(status Status, msg string) error {
	if !s.responded.CompareAndSwap(false, true) {
		return fmt.Errorf("respond: %w", ErrAlreadyResponded)
	}
	if status == StatusOK && msg == "" {
		s.pending.mark()
		return nil
	}
	var b [MaxResponseLen]byte
	refused := status != StatusOK
	err := s.s.m.respond(s.s, "200", AppendResponse(b[:0], &Response{Status: status, Message: msg}), nil, refused)
	if refused {
		s.s.stopReading()
	}
	if err != nil {
		return fmt.Errorf("respond: %w", err)
	}
	return nil
}

// flush writes a pending OK with p, and END_STREAM after them if end;
// false if none was pending.
func (s *h2ConnectorStream) flush(p []byte, end bool) (bool, error) {
	if !s.pending.take() {
		return false, nil
	}
	var b [MaxResponseLen]byte
	return true, s.s.m.respond(s.s, "200", AppendResponse(b[:0], &Response{Status: StatusOK}), p, end)
}

func (s *h2ConnectorStream) Write(p []byte) (int, error) {
	if !s.responded.Load() {
		return 0, ErrNotResponded
	}
	if ok, err := s.flush(p, false); ok {
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return s.s.Write(p)
}

// CloseWrite ends the response body (END_STREAM).
func (s *h2ConnectorStream) CloseWrite() error {
	if !s.responded.Load() {
		return fmt.Errorf("close write: %w", ErrNotResponded)
	}
	if ok, err := s.flush(nil, true); ok {
		return err
	}
	return s.s.CloseWrite()
}

func (s *h2ConnectorStream) Read(p []byte) (int, error) { return s.s.Read(p) }

// WaitReadable returns when a Read would not block (see
// l4proxy/internal/pipe).
func (s *h2ConnectorStream) WaitReadable() error { return s.s.WaitReadable() }

// ParkRead parks a reader of the stream (see h2stream.ParkRead).
func (s *h2ConnectorStream) ParkRead(wake func()) bool { return s.s.ParkRead(wake) }

// ParkReadTo parks a reader with a direct delivery (see
// h2stream.ParkReadTo).
func (s *h2ConnectorStream) ParkReadTo(wake func(), deliver func([]byte) int) bool {
	return s.s.ParkReadTo(wake, deliver)
}

// Reset sends RST_STREAM(CANCEL).
func (s *h2ConnectorStream) Reset() { s.s.Reset() }

func (s *h2ConnectorStream) Close() error {
	if !s.responded.Load() {
		s.Reset()
		return nil
	}
	_, _ = s.flush(nil, false) // the Close below reports a failed stream
	return s.s.Close()
}
