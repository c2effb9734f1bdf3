package edge

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/onramp-net/onramp/l4proxy/internal/pipe"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// maxHelloLen bounds the bytes read while looking for the ClientHello: a
// ClientHello, post-quantum key shares included, fits in one 16 KiB record.
const maxHelloLen = 16<<10 + 5

// maxHeadLen bounds an HTTP request head read by ServeHTTP.
const maxHeadLen = 16 << 10

// errHelloDone stops the handshake once the ClientHello is parsed.
var errHelloDone = errors.New("client hello read")

// peekClientHello reads the TLS ClientHello from c and returns its SNI and
// every byte read (to be forwarded before anything else; an exact-size
// slice). The parsing is crypto/tls's own: the handshake runs on a
// read-only view of c and is aborted as soon as the ClientHello is parsed.
// Nothing is written to c. Nothing is allocated before c is readable.
func peekClientHello(c net.Conn) (sni string, read []byte, err error) {
	if err := pipe.WaitReadable(c); err != nil {
		return "", nil, fmt.Errorf("read client hello: %w", err)
	}
	var buf bytes.Buffer
	rc := &recordingConn{Conn: c, r: io.TeeReader(io.LimitReader(c, maxHelloLen), &buf)}
	got := false
	cfg := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni, got = h.ServerName, true
		return nil, errHelloDone
	}}
	herr := tls.Server(rc, cfg).Handshake()
	if !got {
		return "", nil, fmt.Errorf("read client hello: %w", herr)
	}
	if sni == "" {
		return "", nil, errors.New("read client hello: no server name (SNI)")
	}
	return sni, bytes.Clone(buf.Bytes()), nil
}

// recordingConn is a read-only net.Conn over r; writes (TLS alerts) are dropped.
type recordingConn struct {
	net.Conn
	r io.Reader
}

func (c *recordingConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *recordingConn) Write(p []byte) (int, error)      { return 0, net.ErrClosed }
func (c *recordingConn) Close() error                     { return nil }
func (c *recordingConn) SetDeadline(time.Time) error      { return nil }
func (c *recordingConn) SetWriteDeadline(time.Time) error { return nil }

// httpHead is the part of an HTTP request head ServeHTTP routes by.
type httpHead struct {
	raw  []byte // every byte read, the head and possibly more
	host string // Host without port
	path string // request-target in origin form ("" for authority or asterisk form)
}

// httpError is an HTTP error the edge answers itself.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return strconv.Itoa(e.code) + " " + e.msg }

// readHTTPHead reads from c into buf until the end of the first request's
// head and parses its request line and Host. An *httpError reports a request
// the edge should answer; other errors a connection that went away.
func readHTTPHead(c io.Reader, buf []byte) (httpHead, error) {
	n := 0
	end := -1
	for end < 0 {
		if n == len(buf) {
			return httpHead{}, &httpError{431, "request head larger than " + strconv.Itoa(len(buf)) + " bytes"}
		}
		m, err := c.Read(buf[n:])
		from := max(0, n-3)
		n += m
		if i := bytes.Index(buf[from:n], []byte("\r\n\r\n")); i >= 0 {
			end = from + i + 4
			break
		}
		if err != nil {
			if n > 0 && err == io.EOF {
				return httpHead{}, &httpError{400, "incomplete request head"}
			}
			return httpHead{}, err
		}
	}
	h, err := parseHTTPHead(buf[:end])
	h.raw = buf[:n]
	return h, err
}

// parseHTTPHead parses an HTTP/1 request head ending in CRLF CRLF.
func parseHTTPHead(b []byte) (httpHead, error) {
	var h httpHead
	line, rest, _ := bytes.Cut(b, []byte("\r\n"))
	method, rl, ok1 := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(rl, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || !bytes.HasPrefix(version, []byte("HTTP/1.")) {
		return h, &httpError{400, "malformed request line"}
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return h, &httpError{400, "malformed request target"}
		}
	}
	host := ""
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(l) == 0 {
			break
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			return h, &httpError{400, "malformed header line"}
		}
		if string(bytes.ToLower(name)) == "host" {
			if host != "" {
				return h, &httpError{400, "several Host headers"}
			}
			host = string(bytes.TrimSpace(value))
			if host == "" {
				return h, &httpError{400, "empty Host header"}
			}
		}
	}
	t := string(target)
	switch {
	case t[0] == '/':
		h.path = t
	case string(method) == "CONNECT" || t == "*":
		if t != "*" && host == "" {
			host = t
		}
	default:
		// Absolute form: its authority overrides Host (RFC 9112 section 3.2.2).
		_, after, ok := strings.Cut(t, "://")
		if !ok {
			return h, &httpError{400, "malformed request target"}
		}
		auth, path, _ := strings.Cut(after, "/")
		if i := strings.IndexByte(auth, '@'); i >= 0 {
			auth = auth[i+1:]
		}
		host, h.path = auth, "/"+path
	}
	if host == "" {
		return h, &httpError{400, "missing Host header"}
	}
	h.host = stripPort(host)
	if h.host == "" {
		return h, &httpError{400, "empty host in Host header"}
	}
	if !validHost(h.host) {
		return h, &httpError{400, "invalid characters in Host"}
	}
	if len(h.host) > tunnel.MaxHostnameLen {
		return h, &httpError{400, "Host too long"}
	}
	if len(h.path) > tunnel.MaxPathLen {
		return h, &httpError{414, "request target longer than " + strconv.Itoa(tunnel.MaxPathLen) + " bytes"}
	}
	return h, nil
}

// validHost reports whether h holds only what a DNS name or an IP literal
// (IPv6 with a zone) may hold.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == ':' || c == '%') {
			return false
		}
	}
	return true
}

// stripPort removes a port from a Host value ("a.test:8080", "[fd00::1]:80").
func stripPort(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := strings.IndexByte(host, ':'); i >= 0 && strings.LastIndexByte(host, ':') == i {
		return host[:i]
	}
	return host
}

// writeHTTPError writes a complete "Connection: close" response with a
// text/plain body of msg.
func writeHTTPError(w io.Writer, code int, msg string) error {
	text := httpStatusText(code)
	body := strconv.Itoa(code) + " " + text + ": " + msg + "\n"
	_, err := io.WriteString(w, "HTTP/1.1 "+strconv.Itoa(code)+" "+text+
		"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "+strconv.Itoa(len(body))+
		"\r\nConnection: close\r\n\r\n"+body)
	return err
}

func httpStatusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 414:
		return "URI Too Long"
	case 431:
		return "Request Header Fields Too Large"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}
