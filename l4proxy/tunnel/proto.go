package tunnel

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
)

// ProtocolVersion is the version byte at the head of every stream request and response.
const ProtocolVersion = 1

// Limits of the stream header codec. A header longer than these is rejected
// before any allocation proportional to its claimed length.
const (
	MaxHostnameLen = 255
	MaxPathLen     = 4096
	MaxMessageLen  = 255
	// MaxRequestLen bounds the encoded request including its 2-byte length prefix.
	MaxRequestLen = 2 + 1 + 1 + 1 + MaxHostnameLen + 2 + MaxPathLen + 1 + 16 + 2
	// MaxResponseLen bounds the encoded response including its 2-byte length prefix.
	MaxResponseLen = 2 + 1 + 1 + 1 + MaxMessageLen
)

// Kind says how the edge received the user's connection, and so how the
// connector picks the origin.
type Kind uint8

// Stream kinds.
const (
	KindTCP  Kind = 1 // a plain port binding; Hostname is the service name
	KindTLS  Kind = 2 // TLS passthrough routed by SNI; Hostname is the SNI
	KindHTTP Kind = 3 // HTTP routed by Host; Hostname is the Host, Path the request-target of the first request line
)

func (k Kind) String() string {
	switch k {
	case KindTCP:
		return "tcp"
	case KindTLS:
		return "tls"
	case KindHTTP:
		return "http"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Request is what the edge writes at the head of each stream.
type Request struct {
	Kind Kind
	// Hostname is the SNI or Host for [KindTLS]/[KindHTTP], the service name of
	// the port binding for [KindTCP]. At most [MaxHostnameLen] bytes.
	Hostname string
	// Path is the request-target of the first HTTP request line ([KindHTTP] only;
	// may be empty). At most [MaxPathLen] bytes.
	Path string
	// Remote is the user's address as seen by the edge; the zero value means unknown.
	// An IPv6 zone is not carried.
	Remote netip.AddrPort
}

// Validate reports whether r can be encoded: a known Kind and fields within their limits.
func (r *Request) Validate() error {
	if r.Kind < KindTCP || r.Kind > KindHTTP {
		return fmt.Errorf("request: kind %d: %w", r.Kind, ErrMalformed)
	}
	if len(r.Hostname) > MaxHostnameLen {
		return fmt.Errorf("request: hostname of %d bytes: %w", len(r.Hostname), ErrTooLong)
	}
	if len(r.Path) > MaxPathLen {
		return fmt.Errorf("request: path of %d bytes: %w", len(r.Path), ErrTooLong)
	}
	return nil
}

// AppendRequest appends the wire encoding of r, with its 2-byte length prefix, to b.
// r must pass [Request.Validate]; AppendRequest panics otherwise, so callers
// handling user input validate first ([Conn.OpenStream] does).
//
// Layout (big endian): len u16 | version u8 | kind u8 | hostLen u8 | host |
// pathLen u16 | path | addr (see appendAddrPort).
func AppendRequest(b []byte, r *Request) []byte {
	if err := r.Validate(); err != nil {
		panic("tunnel.AppendRequest: " + err.Error())
	}
	start := len(b)
	b = append(b, 0, 0, ProtocolVersion, byte(r.Kind), byte(len(r.Hostname)))
	b = append(b, r.Hostname...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Path)))
	b = append(b, r.Path...)
	b = appendAddrPort(b, r.Remote)
	binary.BigEndian.PutUint16(b[start:], uint16(len(b)-start-2))
	return b
}

// ParseRequest parses one request from the head of b and returns it with the
// number of bytes consumed. It returns io.ErrUnexpectedEOF if b holds only a prefix
// of a request, and an error wrapping [ErrMalformed], [ErrTooLong] or
// [ErrUnsupportedVersion] for bad input. The strings in the result are copies.
func ParseRequest(b []byte) (Request, int, error) {
	body, n, err := splitFrame(b, MaxRequestLen)
	if err != nil {
		return Request{}, 0, fmt.Errorf("parse request: %w", err)
	}
	r, err := parseRequestBody(body)
	if err != nil {
		return Request{}, 0, fmt.Errorf("parse request: %w", err)
	}
	return r, n, nil
}

func parseRequestBody(p []byte) (Request, error) {
	var r Request
	if len(p) < 3 {
		return r, ErrMalformed
	}
	if p[0] != ProtocolVersion {
		return r, ErrUnsupportedVersion
	}
	r.Kind = Kind(p[1])
	if r.Kind < KindTCP || r.Kind > KindHTTP {
		return r, fmt.Errorf("kind %d: %w", p[1], ErrMalformed)
	}
	hl := int(p[2])
	p = p[3:]
	if len(p) < hl+2 {
		return r, fmt.Errorf("hostname: %w", ErrMalformed)
	}
	r.Hostname = string(p[:hl])
	p = p[hl:]
	pl := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	if pl > MaxPathLen {
		return r, fmt.Errorf("path of %d bytes: %w", pl, ErrTooLong)
	}
	if len(p) < pl {
		return r, fmt.Errorf("path: %w", ErrMalformed)
	}
	r.Path = string(p[:pl])
	p = p[pl:]
	ap, n, err := parseAddrPort(p)
	if err != nil {
		return r, err
	}
	if n != len(p) {
		return r, fmt.Errorf("%d trailing bytes: %w", len(p)-n, ErrMalformed)
	}
	r.Remote = ap
	return r, nil
}

// pendingOK is a connector stream's OK response not yet written: both
// transports send it with the stream's first bytes or its end (see their
// Respond), whichever comes first, and exactly once.
type pendingOK struct{ b atomic.Bool }

func (p *pendingOK) mark() { p.b.Store(true) }

// take takes the pending response: true for the one caller that writes it.
func (p *pendingOK) take() bool { return p.b.Load() && p.b.CompareAndSwap(true, false) }

// Status is the connector's answer to a stream request.
type Status uint8

// Stream statuses.
const (
	StatusOK                Status = 0
	StatusOriginUnreachable Status = 1 // the origin refused, timed out or has no route
	StatusNoRule            Status = 2 // no ingress rule matches the request
	StatusTooManyStreams    Status = 3 // the connector is at its stream limit
	StatusDraining          Status = 4 // the connector is shutting down
	StatusInternal          Status = 5 // any other connector failure
	StatusForbidden         Status = 6 // the matched rule is not for the listener the user came in by
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusOriginUnreachable:
		return "origin unreachable"
	case StatusNoRule:
		return "no ingress rule"
	case StatusTooManyStreams:
		return "too many streams"
	case StatusDraining:
		return "connector draining"
	case StatusInternal:
		return "connector internal error"
	case StatusForbidden:
		return "not for this listener"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Response is the connector's answer at the head of the stream's return direction.
type Response struct {
	Status  Status
	Message string // at most [MaxMessageLen] bytes; longer messages are truncated by AppendResponse
}

// AppendResponse appends the encoding of r, with its 2-byte length prefix, to b.
// A Message over [MaxMessageLen] bytes is truncated.
//
// Layout (big endian): len u16 | version u8 | status u8 | msgLen u8 | msg.
func AppendResponse(b []byte, r *Response) []byte {
	msg := r.Message
	if len(msg) > MaxMessageLen {
		msg = msg[:MaxMessageLen]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(3+len(msg)))
	b = append(b, ProtocolVersion, byte(r.Status), byte(len(msg)))
	return append(b, msg...)
}

// ParseResponse parses one response from the head of b and returns it with the
// number of bytes consumed. Errors are as for [ParseRequest]. Unknown status
// values are returned as they are (the caller treats any non-OK as a refusal).
func ParseResponse(b []byte) (Response, int, error) {
	body, n, err := splitFrame(b, MaxResponseLen)
	if err != nil {
		return Response{}, 0, fmt.Errorf("parse response: %w", err)
	}
	r, err := parseResponseBody(body)
	if err != nil {
		return Response{}, 0, fmt.Errorf("parse response: %w", err)
	}
	return r, n, nil
}

func parseResponseBody(p []byte) (Response, error) {
	if len(p) < 3 {
		return Response{}, ErrMalformed
	}
	if p[0] != ProtocolVersion {
		return Response{}, ErrUnsupportedVersion
	}
	if int(p[2]) != len(p)-3 {
		return Response{}, fmt.Errorf("message length: %w", ErrMalformed)
	}
	return Response{Status: Status(p[1]), Message: string(p[3:])}, nil
}

// splitFrame returns the body of the length-prefixed frame at the head of b.
func splitFrame(b []byte, max int) (body []byte, n int, err error) {
	if len(b) < 2 {
		return nil, 0, io.ErrUnexpectedEOF
	}
	l := int(binary.BigEndian.Uint16(b))
	if l+2 > max {
		return nil, 0, fmt.Errorf("header of %d bytes: %w", l+2, ErrTooLong)
	}
	if len(b) < l+2 {
		return nil, 0, io.ErrUnexpectedEOF
	}
	return b[2 : 2+l], 2 + l, nil
}

// headerPool holds buffers of MaxRequestLen bytes for header reads and writes.
var headerPool = sync.Pool{New: func() any { b := make([]byte, 0, MaxRequestLen); return &b }}

func getHeaderBuf() *[]byte { return headerPool.Get().(*[]byte) }

func putHeaderBuf(b *[]byte) {
	*b = (*b)[:0]
	headerPool.Put(b)
}

// readFrame reads one length-prefixed header from r into a pooled buffer without
// reading past it. The caller must putHeaderBuf the result.
func readFrame(r io.Reader, max int) (*[]byte, []byte, error) {
	bp := getHeaderBuf()
	b := (*bp)[:2]
	if _, err := io.ReadFull(r, b); err != nil {
		putHeaderBuf(bp)
		return nil, nil, err
	}
	l := int(binary.BigEndian.Uint16(b))
	if l+2 > max {
		putHeaderBuf(bp)
		return nil, nil, fmt.Errorf("header of %d bytes: %w", l+2, ErrTooLong)
	}
	b = (*bp)[:2+l]
	if _, err := io.ReadFull(r, b[2:]); err != nil {
		putHeaderBuf(bp)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, err
	}
	return bp, b[2:], nil
}

// ReadRequest reads exactly one length-prefixed request from r: it never reads
// past the header, so the stream's payload stays in r. It reads at most
// [MaxRequestLen] bytes; a longer claimed length is an error wrapping [ErrTooLong].
// io.EOF is returned as is when r ends before the first byte.
func ReadRequest(r io.Reader) (Request, error) {
	bp, body, err := readFrame(r, MaxRequestLen)
	if err != nil {
		return Request{}, fmt.Errorf("read request: %w", err)
	}
	defer putHeaderBuf(bp)
	req, err := parseRequestBody(body)
	if err != nil {
		return Request{}, fmt.Errorf("read request: %w", err)
	}
	return req, nil
}

// ReadResponse reads exactly one length-prefixed response from r, as [ReadRequest] does.
func ReadResponse(r io.Reader) (Response, error) {
	bp, body, err := readFrame(r, MaxResponseLen)
	if err != nil {
		return Response{}, fmt.Errorf("read response: %w", err)
	}
	defer putHeaderBuf(bp)
	resp, err := parseResponseBody(body)
	if err != nil {
		return Response{}, fmt.Errorf("read response: %w", err)
	}
	return resp, nil
}

// Address encoding: family u8 (0 = none, 4, 6) | addr (0, 4 or 16 bytes) | port u16 (absent for family 0).
func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return append(b, 0)
	case a.Is4():
		b = append(b, 4)
		a4 := a.As4()
		b = append(b, a4[:]...)
	default:
		b = append(b, 6)
		a16 := a.As16()
		b = append(b, a16[:]...)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func parseAddrPort(p []byte) (netip.AddrPort, int, error) {
	if len(p) < 1 {
		return netip.AddrPort{}, 0, fmt.Errorf("address: %w", ErrMalformed)
	}
	switch p[0] {
	case 0:
		return netip.AddrPort{}, 1, nil
	case 4:
		if len(p) < 1+4+2 {
			return netip.AddrPort{}, 0, fmt.Errorf("address: %w", ErrMalformed)
		}
		a := netip.AddrFrom4([4]byte(p[1:5]))
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(p[5:])), 7, nil
	case 6:
		if len(p) < 1+16+2 {
			return netip.AddrPort{}, 0, fmt.Errorf("address: %w", ErrMalformed)
		}
		a := netip.AddrFrom16([16]byte(p[1:17]))
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(p[17:])), 19, nil
	}
	return netip.AddrPort{}, 0, fmt.Errorf("address family %d: %w", p[0], ErrMalformed)
}
