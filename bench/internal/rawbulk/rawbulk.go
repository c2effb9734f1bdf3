// Package rawbulk is the single-stream bulk sender and receiver shared by
// bench/cmd/rawquic and bench/cmd/rawtls: the sender writes 128 KiB
// chunks (iperf3's TCP block size) for a duration and half-closes; the
// receiver reads to EOF and answers with a JSON [Report] on the same
// stream, which the sender prints.
package rawbulk

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// ChunkSize is the size of each write, as iperf3's default for TCP.
const ChunkSize = 128 << 10

// Stream is one direction-aware byte stream: a TCP/TLS connection or a
// QUIC stream.
type Stream interface {
	io.Reader
	io.Writer
	CloseWrite() error
}

// Report is what the receiver counted, from its first byte to EOF.
type Report struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

// Receive reads s to EOF, counting, and writes the Report back.
func Receive(s Stream) (Report, error) {
	buf := make([]byte, ChunkSize)
	var rep Report
	var first time.Time
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if first.IsZero() {
				first = time.Now()
			}
			rep.Bytes += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, fmt.Errorf("receive after %d bytes: %w", rep.Bytes, err)
		}
	}
	end := time.Now()
	if !first.IsZero() {
		rep.Seconds = end.Sub(first).Seconds()
	}
	b, _ := json.Marshal(rep)
	if _, err := s.Write(append(b, '\n')); err != nil {
		return rep, err
	}
	return rep, s.CloseWrite()
}

// Send writes for d, half-closes and returns the receiver's Report.
func Send(s Stream, d time.Duration) (Report, error) {
	buf := make([]byte, ChunkSize)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	var rep Report
	stop := time.Now().Add(d)
	for time.Now().Before(stop) {
		if _, err := s.Write(buf); err != nil {
			return rep, fmt.Errorf("send: %w", err)
		}
	}
	if err := s.CloseWrite(); err != nil {
		return rep, err
	}
	line, err := bufio.NewReader(s).ReadBytes('\n')
	if err != nil {
		return rep, fmt.Errorf("no report from the receiver: %w", err)
	}
	return rep, json.Unmarshal(line, &rep)
}
