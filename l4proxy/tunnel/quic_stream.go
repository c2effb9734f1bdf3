package tunnel

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// quicStream implements Stream over a quic.Stream.
type quicStream struct {
	s    *quic.Stream
	edge bool

	// edge side: the response is read by the first Read.
	respMu   sync.Mutex
	respRead atomic.Bool
	respErr  error

	// connector side
	responded atomic.Bool
	pending   pendingOK

	peek [1]byte // WaitReadable's
}

func (s *quicStream) Read(p []byte) (int, error) {
	if s.edge {
		if err := s.readResponse(); err != nil {
			return 0, err
		}
	}
	n, err := s.s.Read(p)
	if err != nil && err != io.EOF {
		err = mapQUICErr(err)
	}
	return n, err
}

// WaitReadable returns when a Read would not block: data, EOF or an
// error (see l4proxy/internal/pipe), holding no buffer: quic-go's peek of
// one byte, which consumes nothing. On the edge, before the response was
// read, it waits for the response's first byte (the first Read reads
// the response): the connector's OK comes with the origin's first bytes
// (see Respond), so a stream whose origin has not spoken holds no
// buffer. An error it returns (a deadline, a reset) comes again from the
// Read.
func (s *quicStream) WaitReadable() error {
	if _, err := s.s.Peek(s.peek[:]); err != nil && err != io.EOF {
		return err
	}
	return nil
}

// SetReadDeadline sets the deadline of Read and WaitReadable (a past one
// wakes a waiting WaitReadable, see l4proxy/internal/pipe; a zero time:
// none).
func (s *quicStream) SetReadDeadline(t time.Time) error { return s.s.SetReadDeadline(t) }

// readResponse reads the connector's response once and returns the sticky result.
func (s *quicStream) readResponse() error {
	if s.respRead.Load() {
		return s.respErr
	}
	s.respMu.Lock()
	defer s.respMu.Unlock()
	if s.respRead.Load() {
		return s.respErr
	}
	resp, err := ReadResponse(s.s)
	switch {
	case err != nil:
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: stream ended before the response", ErrStreamReset)
		}
		s.respErr = mapQUICErr(err)
	case resp.Status != StatusOK:
		s.respErr = &StreamError{Status: resp.Status, Message: resp.Message}
	}
	if s.respErr != nil {
		// Nothing useful follows a refusal: release the stream both ways.
		s.s.CancelRead(quicStreamRefused)
		s.s.CancelWrite(quicStreamRefused)
	}
	s.respRead.Store(true)
	return s.respErr
}

func (s *quicStream) Write(p []byte) (int, error) {
	if !s.edge && !s.responded.Load() {
		return 0, ErrNotResponded
	}
	if s.pending.take() {
		return s.writeResponded(p)
	}
	n, err := s.s.Write(p)
	if err != nil {
		err = mapQUICErr(err)
	}
	return n, err
}

// writeResponded writes the pending OK response and p: in one write, and
// so one STREAM frame, where they fit a header buffer (the first read of
// a proxy is at most 4 KiB); n counts p's bytes only.
func (s *quicStream) writeResponded(p []byte) (int, error) {
	bp := getHeaderBuf()
	defer putHeaderBuf(bp)
	*bp = AppendResponse(*bp, &Response{Status: StatusOK})
	h := len(*bp)
	if len(p) <= cap(*bp)-h {
		*bp = append(*bp, p...)
		n, err := s.s.Write(*bp)
		if err != nil {
			return max(n-h, 0), mapQUICErr(err)
		}
		return len(p), nil
	}
	if _, err := s.s.Write(*bp); err != nil {
		return 0, mapQUICErr(err)
	}
	n, err := s.s.Write(p)
	if err != nil {
		err = mapQUICErr(err)
	}
	return n, err
}

// flushResponse writes a pending OK response before the stream's FIN.
func (s *quicStream) flushResponse() error {
	if s.pending.take() {
		_, err := s.writeResponded(nil)
		return err
	}
	return nil
}

// Respond answers the stream's request. A refusal is written at once,
// and the stream closed. An OK is not written yet: it leaves with the
// first bytes of the origin (Write) or the stream's close, in the same
// STREAM frame, so that a new connection costs the connector one packet
// to the edge, not two. The edge waits for it only to pass the origin's
// bytes on (its first Read reads it), and these come with it.
func (s *quicStream) Respond(status Status, msg string) error {
	if s.edge {
		return fmt.Errorf("respond: %w", ErrWrongSide)
	}
	if !s.responded.CompareAndSwap(false, true) {
		return fmt.Errorf("respond: %w", ErrAlreadyResponded)
	}
	if status == StatusOK && msg == "" {
		s.pending.mark()
		return nil
	}
	bp := getHeaderBuf()
	*bp = AppendResponse(*bp, &Response{Status: status, Message: msg})
	_, err := s.s.Write(*bp)
	putHeaderBuf(bp)
	if status != StatusOK {
		s.s.CancelRead(quicStreamRefused)
		s.s.Close()
	}
	if err != nil {
		return fmt.Errorf("respond: %w", mapQUICErr(err))
	}
	return nil
}

func (s *quicStream) CloseWrite() error {
	if !s.edge && !s.responded.Load() {
		return fmt.Errorf("close write: %w", ErrNotResponded)
	}
	if err := s.flushResponse(); err != nil {
		return err
	}
	return s.s.Close()
}

func (s *quicStream) Reset() {
	s.s.CancelRead(quicStreamReset)
	s.s.CancelWrite(quicStreamReset)
}

func (s *quicStream) Close() error {
	if !s.edge && !s.responded.Load() {
		s.Reset()
		return nil
	}
	_ = s.flushResponse() // the Close below reports a failed stream
	err := s.s.Close()
	s.s.CancelRead(quicStreamClosed)
	return err
}

// mapQUICErr makes a stream aborted by the peer recognisable as ErrStreamReset.
func mapQUICErr(err error) error {
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		return fmt.Errorf("%w: %w", ErrStreamReset, err)
	}
	return err
}
