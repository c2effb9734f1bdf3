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
// read, it returns at once (the first Read reads it). An error it returns
// (a deadline, a reset) comes again from the Read.
func (s *quicStream) WaitReadable() error {
	if s.edge && !s.respRead.Load() {
		return nil
	}
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
	n, err := s.s.Write(p)
	if err != nil {
		err = mapQUICErr(err)
	}
	return n, err
}

func (s *quicStream) Respond(status Status, msg string) error {
	if s.edge {
		return fmt.Errorf("respond: %w", ErrWrongSide)
	}
	if !s.responded.CompareAndSwap(false, true) {
		return fmt.Errorf("respond: %w", ErrAlreadyResponded)
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
