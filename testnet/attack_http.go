package testnet

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// OriginNormalising is the port of [Node.ServeNormalisingOrigin].
const OriginNormalising = 8081

// NormalisingOrigin is an HTTP origin that resolves request paths as
// forgivingly as Tomcat, Spring, IIS and nginx together would (see
// [ResolvePath]) and counts the requests that resolve into its protected
// area: an origin behind a deny rule, which any bypass of the rule reaches.
type NormalisingOrigin struct {
	// Protected is the path prefix the origin counts hits under, "/admin".
	Protected string
	hits      atomic.Int64
}

// Hits returns how many requests resolved into the protected area.
func (o *NormalisingOrigin) Hits() int64 { return o.hits.Load() }

// ResetHits sets the count back to zero.
func (o *NormalisingOrigin) ResetHits() { o.hits.Store(0) }

// ServeNormalisingOrigin serves a NormalisingOrigin protecting protected
// on port [OriginNormalising] of every address of node. It answers each
// request "resolved PATH" ("protected: resolved PATH" inside protected),
// or 400 when the path cannot be resolved. It reads request lines itself,
// as raw as they come (Go's server refuses IIS's %u escapes), and keeps
// connections alive. It stops when the Net closes.
func (node *Node) ServeNormalisingOrigin(protected string) (*NormalisingOrigin, error) {
	o := &NormalisingOrigin{Protected: protected}
	var ln net.Listener
	err := node.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", OriginNormalising))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testnet: normalising origin in %s: %w", node.Name, err)
	}
	go serveConns(ln, o.serve)
	if node.net != nil {
		node.net.OnClose(ln.Close)
	}
	return o, nil
}

// serve answers the requests of one connection, a Content-Length body
// skipped.
func (o *NormalisingOrigin) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return
		}
		length := 0
		for {
			h, err := br.ReadString('\n')
			if err != nil {
				return
			}
			h = strings.TrimRight(h, "\r\n")
			if h == "" {
				break
			}
			if name, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(name, "Content-Length") {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
			return
		}
		code, body := 200, ""
		if paths, ok := ResolvePath(f[1]); !ok {
			code, body = 400, "cannot resolve "+strconv.Quote(f[1])+"\n"
		} else if o.protects(paths) {
			o.hits.Add(1)
			body = "protected: resolved " + paths[0] + "\n"
		} else {
			body = "resolved " + paths[0] + "\n"
		}
		if _, err := fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
			code, http.StatusText(code), len(body), body); err != nil {
			return
		}
	}
}

func (o *NormalisingOrigin) protects(paths []string) bool {
	for _, p := range paths {
		if p == o.Protected || strings.HasPrefix(p, o.Protected+"/") {
			return true
		}
	}
	return false
}

// ResolvePath resolves a request-target the way the most forgiving of
// common origins do, every normalisation at once: ;parameters dropped from
// each segment (Tomcat, Spring), percent-escapes decoded twice (double
// decoding) with IIS's %uXXXX, backslashes read as slashes (IIS),
// fullwidth characters folded to ASCII (Unicode NFKC), NTFS stream
// suffixes and trailing dots and spaces dropped from segments (Windows),
// slashes merged and dot segments removed, and ASCII case folded (IIS).
// It returns the resolved path, then the path with a ".ext" suffix of the
// last segment dropped if there is one (Spring's suffix pattern match);
// false if the path climbs above the root.
func ResolvePath(target string) ([]string, bool) {
	p, _, _ := strings.Cut(target, "?")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	p = strings.Join(segs, "/")
	p = percentDecode(percentDecode(p))
	p = strings.ReplaceAll(p, "\\", "/")
	p = strings.Map(func(r rune) rune {
		if 0xff01 <= r && r <= 0xff5e {
			return r - 0xfee0
		}
		return r
	}, p)
	var stack []string
	segs = strings.Split(p, "/")
	for i, s := range segs {
		if c := strings.IndexByte(s, ':'); c > 0 && strings.Contains(s[c:], "$") {
			s = s[:c]
		}
		if s != "." && s != ".." {
			s = strings.TrimRight(s, ". ")
		}
		switch s {
		case "", ".":
		case "..":
			if len(stack) == 0 {
				return nil, false
			}
			stack = stack[:len(stack)-1]
		default:
			if i > 0 {
				stack = append(stack, strings.ToLower(s))
			}
		}
	}
	resolved := "/" + strings.Join(stack, "/")
	out := []string{resolved}
	if n := len(stack); n > 0 {
		if dot := strings.IndexByte(stack[n-1], '.'); dot > 0 {
			out = append(out, "/"+strings.Join(append(stack[:n-1:n-1], stack[n-1][:dot]), "/"))
		}
	}
	return out, true
}

// percentDecode decodes %XX and %uXXXX escapes, leaving malformed ones.
func percentDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+6 <= len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
				if v, err := strconv.ParseUint(s[i+2:i+6], 16, 32); err == nil {
					b.WriteRune(rune(v))
					i += 5
					continue
				}
			}
			if i+2 < len(s) {
				if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
					b.WriteByte(byte(v))
					i += 2
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RawHTTPConn is a user's keep-alive HTTP/1.1 connection that writes
// request lines exactly as given: Go's client would clean some of the
// paths an attacker sends.
type RawHTTPConn struct {
	c      net.Conn
	r      *bufio.Reader
	closed bool // the last response said Connection: close
}

// RawHTTP connects from inside node to the HTTP listener at addr.
func (node *Node) RawHTTP(addr string) (*RawHTTPConn, error) {
	c, err := node.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &RawHTTPConn{c: c, r: bufio.NewReader(c)}, nil
}

// Get sends "GET target HTTP/1.1" with Host host and returns the status
// and body of the answer. The connection stays open unless the answer
// closes it.
func (rc *RawHTTPConn) Get(host, target string) (int, string, error) {
	_ = rc.c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(rc.c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, host); err != nil {
		return 0, "", err
	}
	return rc.Read()
}

// Write sends raw bytes on the connection.
func (rc *RawHTTPConn) Write(b []byte) error {
	_, err := rc.c.Write(b)
	return err
}

// Read reads one response and its body.
func (rc *RawHTTPConn) Read() (int, string, error) {
	_ = rc.c.SetDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(rc.r, &http.Request{Method: http.MethodGet})
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	rc.closed = resp.Close
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// Closed reports whether the last response closed the connection.
func (rc *RawHTTPConn) Closed() bool { return rc.closed }

// Close closes the connection.
func (rc *RawHTTPConn) Close() error { return rc.c.Close() }
