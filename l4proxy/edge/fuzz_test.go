package edge

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// FuzzParseHTTPHead feeds arbitrary request heads to the parser the HTTP
// listener routes by: it never panics, what it accepts is bounded and free of
// control bytes, and where net/http also accepts the head, both agree on the
// host the request is for.
func FuzzParseHTTPHead(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: web.demo.test\r\n\r\n",
		"GET /api/x?y=1 HTTP/1.1\r\nhost: Web.Demo.Test:8080\r\nUser-Agent: x\r\n\r\n",
		"POST http://a.test/p HTTP/1.1\r\nHost: b.test\r\nContent-Length: 0\r\n\r\n",
		"CONNECT a.test:443 HTTP/1.1\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: [fd00::1]:80\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET  / HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		i := bytes.Index(b, []byte("\r\n\r\n"))
		if i < 0 {
			return
		}
		head := b[:i+4]
		h, err := parseHTTPHead(head)
		if err != nil {
			if _, ok := err.(*httpError); !ok {
				t.Fatalf("error %T is not an *httpError", err)
			}
			return
		}
		if h.host == "" || len(h.host) > 255 || len(h.path) > 4096 {
			t.Fatalf("accepted host %q path %q", h.host, h.path)
		}
		if strings.ContainsAny(h.host, "\r\n") || strings.ContainsAny(h.path, "\r\n \t") {
			t.Fatalf("control bytes accepted: host %q path %q", h.host, h.path)
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil || req.Host == "" {
			return
		}
		if want := stripPort(req.Host); !strings.EqualFold(want, h.host) {
			t.Fatalf("net/http routes %q to host %q, the edge to %q", head, want, h.host)
		}
	})
}
