package connector_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// seen is what the test origin recorded of one request.
type seen struct {
	method, path, host, xff, conn string // conn: the origin connection's remote address
	header                        http.Header
}

// recordingOrigin is an HTTP origin that records every request it serves.
type recordingOrigin struct {
	addr    string
	release chan struct{} // closed to let /hold requests answer
	mu      sync.Mutex
	reqs    []seen
}

func (o *recordingOrigin) requests() []seen {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]seen(nil), o.reqs...)
}

// startOrigin serves:
//
//	/upload  the SHA-256 and length of the request body, as a chunked
//	         response written in several flushed pieces
//	/ws      with "Upgrade: echo": 101, then echoes raw bytes until the
//	         client half-closes, then writes "bye" and closes
//	/hold    "held" once release is closed
//
// startWiki starts an edge on proto, a recording origin and a connector
// with wikiRules (the blocked service on a closed port), with wiki routed.
func startWiki(t *testing.T, proto string) (*edgetest.Env, *recordingOrigin, *edgetest.Running) {
	t.Helper()
	e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
	origin := startOrigin(t)
	r := e.StartConnector(wikiRules(origin.addr, edgetest.ClosedPort(t, "127.0.0.1")), nil)
	e.Route(wiki)
	return e, origin, r
}

// anything else  "origin: METHOD PATH host=HOST"
func startOrigin(t *testing.T) *recordingOrigin {
	o := &recordingOrigin{release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.reqs = append(o.reqs, seen{r.Method, r.RequestURI, r.Host, r.Header.Get("X-Forwarded-For"), r.RemoteAddr, r.Header.Clone()})
		o.mu.Unlock()
		switch r.URL.Path {
		case "/hold":
			select {
			case <-o.release:
				io.WriteString(w, "held")
			case <-r.Context().Done():
			}
		case "/upload":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			for _, part := range []string{"sha256=", hex.EncodeToString(h.Sum(nil)), fmt.Sprintf(" len=%d", n)} {
				io.WriteString(w, part)
				w.(http.Flusher).Flush()
			}
		case "/ws":
			if r.Header.Get("Upgrade") != "echo" {
				http.Error(w, "want Upgrade: echo", 400)
				return
			}
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			io.Copy(c, brw.Reader) // until the user half-closes
			io.WriteString(c, "bye")
		default:
			fmt.Fprintf(w, "origin: %s %s host=%s", r.Method, r.RequestURI, r.Host)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-o.release:
		default:
			close(o.release)
		}
	})
	o.addr = srv.Listener.Addr().String()
	return o
}

// do writes req on the connection and reads the response and its body.
func (u *client) do(req *http.Request) (*http.Response, string) {
	u.t.Helper()
	if err := req.Write(u.c); err != nil {
		u.t.Fatalf("%s %s: write: %v", req.Method, req.URL, err)
	}
	return u.read(req)
}

func (u *client) read(req *http.Request) (*http.Response, string) {
	u.t.Helper()
	resp, err := http.ReadResponse(u.r, req)
	if err != nil {
		u.t.Fatalf("%s %s: read response: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		u.t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

func (u *client) get(host, target string) (int, string) {
	u.t.Helper()
	resp, body := u.do(newRequest(u.t, "GET", host, target, nil))
	if resp.Close {
		u.t.Errorf("GET %s: the response closes the connection", target)
	}
	return resp.StatusCode, body
}

// raw writes a GET request line with target exactly as given (Go's client
// would clean some paths) and reads the response.
func (u *client) raw(host, target string) (int, string) {
	u.t.Helper()
	if _, err := fmt.Fprintf(u.c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, host); err != nil {
		u.t.Fatalf("GET %s: write: %v", target, err)
	}
	resp, body := u.read(&http.Request{Method: "GET"})
	return resp.StatusCode, body
}

func newRequest(t *testing.T, method, host, target string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+host+target, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

const wiki = "wiki.example.test"

// wikiRules are the README's example: /admin answered 403 by the
// connector, the rest of the host served by the origin; plus a path to an
// origin that is down; a host without path rules; a tcp host (for port
// bindings) and one with a path rule before its tcp service.
func wikiRules(origin, down string) string {
	return fmt.Sprintf(`ingress:
  - {hostname: %[1]s, path: /admin, service: "http_status:403"}
  - {hostname: %[1]s, path: /down, service: "http://%[3]s"}
  - {hostname: %[1]s, service: "http://%[2]s"}
  - {hostname: plain.example.test, service: "http://%[2]s"}
  - {hostname: raw.example.test, service: "tcp://%[2]s"}
  - {hostname: mixed.example.test, path: /status, service: "http_status:204"}
  - {hostname: mixed.example.test, service: "tcp://%[2]s"}
  - service: "http_status:404"
`, wiki, origin, down)
}

// TestHTTPPathRulesPerRequest is the path rule bypass of a keep-alive
// connection: GET /, then GET /admin, then GET / on one TCP connection.
// /admin must get the rule's 403 and never reach the origin, whatever came
// before it on the connection; encoded and dot-segment spellings of /admin
// are refused; pipelined requests are matched each on its own.
func TestHTTPPathRulesPerRequest(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e, origin, r := startWiki(t, proto)
		u := connect(t, e.ServeHTTP())

		for i, step := range []struct {
			target string
			code   int
			body   string
		}{
			{"/", 200, "origin: GET / host=" + wiki},
			{"/admin", 403, "403 Forbidden\n"},
			{"/", 200, "origin: GET / host=" + wiki},
			{"/admin/users?x=1", 403, "403 Forbidden\n"},
			{"/administrator", 200, "origin: GET /administrator host=" + wiki}, // not under /admin
		} {
			code, body := u.get(wiki, step.target)
			if code != step.code || body != step.body {
				t.Fatalf("request %d, GET %s: %d %q, want %d %q", i+1, step.target, code, body, step.code, step.body)
			}
		}
		// Spellings of /admin an origin decodes or cleans: the same path,
		// the same rule.
		for _, target := range []string{"/%61dmin", "/x/../admin", "//admin", "/./admin/"} {
			if code, body := u.get(wiki, target); code != 403 || body != "403 Forbidden\n" {
				t.Errorf("GET %s: %d %q, want the /admin rule's 403", target, code, body)
			}
		}
		// Spellings origins read differently: refused, naming the reason.
		for target, reason := range map[string]string{
			"/admin;x":      "a ;parameter inside",
			"/.;/admin":     "dot segment",
			"/admin\\x":     "backslash",
			"/%2e/admin":    "encoded '.'",
			"/x%2f../admin": "encoded '/'",
			"/%2561dmin":    "double encoding",
			"/ADMIN":        "ignores case",
			"/admin.":       "trailing dots",
			"/admin.json":   "suffix",
		} {
			if code, body := u.raw(wiki, target); code != 400 || !strings.Contains(body, reason) {
				t.Errorf("GET %s: %d %q, want 400 for %q", target, code, body, reason)
			}
		}
		// Pipelined: both requests written at once, answered in order.
		var both bytes.Buffer
		req1, req2 := newRequest(t, "GET", wiki, "/p1", nil), newRequest(t, "GET", wiki, "/admin/p2", nil)
		req1.Write(&both)
		req2.Write(&both)
		if _, err := u.c.Write(both.Bytes()); err != nil {
			t.Fatal(err)
		}
		if resp, body := u.read(req1); resp.StatusCode != 200 || body != "origin: GET /p1 host="+wiki {
			t.Errorf("pipelined GET /p1: %d %q", resp.StatusCode, body)
		}
		if resp, body := u.read(req2); resp.StatusCode != 403 {
			t.Errorf("pipelined GET /admin/p2: %d %q, want 403", resp.StatusCode, body)
		}
		// A request for another host on this connection is not served.
		code, body := u.get("other.example.test", "/")
		if code != 421 || !strings.Contains(body, wiki) {
			t.Errorf("GET / for another Host: %d %q, want 421", code, body)
		}
		// An origin that is down: 502 with the reason, and the connection
		// goes on.
		code, body = u.get(wiki, "/down")
		if code != 502 || !strings.Contains(body, "connection refused") {
			t.Errorf("GET /down: %d %q, want 502 naming the refused connection", code, body)
		}
		if code, _ := u.get(wiki, "/last"); code != 200 {
			t.Errorf("GET /last after the 502: %d", code)
		}

		got := origin.requests()
		var paths []string
		for _, s := range got {
			paths = append(paths, s.path)
			if s.host != wiki || s.xff != "127.0.0.1" {
				t.Errorf("origin saw %s with Host %q, X-Forwarded-For %q; want %q, the user's 127.0.0.1", s.path, s.host, s.xff, wiki)
			}
			if s.conn != got[0].conn {
				t.Errorf("origin saw %s on connection %s, the first request on %s: no keep-alive to the origin", s.path, s.conn, got[0].conn)
			}
		}
		if want := "/ / /administrator /p1 /last"; strings.Join(paths, " ") != want {
			t.Errorf("origin saw %q, want %q", strings.Join(paths, " "), want)
		}
		// One user connection, one stream.
		if v := edgetest.Metric(t, r.Registry, "onramp_connector_streams_total", "http"); v != 1 {
			t.Errorf("connector streams_total{http} = %v, want 1", v)
		}
		if v := edgetest.Metric(t, r.Registry, "onramp_connector_errors_total", "origin_dial"); v != 1 {
			t.Errorf("connector errors_total{origin_dial} = %v, want 1", v)
		}
		if v := edgetest.Metric(t, r.Registry, "onramp_connector_errors_total", "bad_path"); v != 9 {
			t.Errorf("connector errors_total{bad_path} = %v, want 9", v)
		}
	})
}

// TestHTTPPathRoutedUpgrade: after a plain request, an Upgrade on the same
// connection gets the origin's 101, then raw bytes flow both ways, and a
// half-close reaches the origin, whose last bytes still reach the user.
func TestHTTPPathRoutedUpgrade(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e, _, _ := startWiki(t, proto)
		u := connect(t, e.ServeHTTP())
		if code, _ := u.get(wiki, "/"); code != 200 {
			t.Fatalf("GET /: %d", code)
		}
		req := newRequest(t, "GET", wiki, "/ws", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "echo")
		if err := req.Write(u.c); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(u.r, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" {
			t.Fatalf("upgrade: %s, Upgrade %q", resp.Status, resp.Header.Get("Upgrade"))
		}
		msg := make([]byte, 100<<10)
		rand.Read(msg)
		errc := make(chan error, 1)
		go func() {
			_, err := u.c.Write(msg)
			if err == nil {
				err = u.c.CloseWrite()
			}
			errc <- err
		}()
		back, err := io.ReadAll(u.r)
		if err != nil {
			t.Fatalf("read after upgrade: %v (%d bytes)", err, len(back))
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, append(msg, "bye"...)) {
			t.Fatalf("got %d bytes back, want the %d sent and \"bye\" (match %v)", len(back), len(msg), bytes.HasPrefix(back, msg))
		}
	})
}

// TestHTTPPathRoutedBodies: a POST with a Content-Length body and one with
// a chunked body, each answered with a chunked response, then a path rule
// on the same connection: the request framing holds across bodies.
func TestHTTPPathRoutedBodies(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e, _, _ := startWiki(t, proto)
		u := connect(t, e.ServeHTTP())
		for _, chunked := range []bool{false, true} {
			data := make([]byte, 3<<20+17)
			rand.Read(data)
			sum := sha256.Sum256(data)
			var body io.Reader = bytes.NewReader(data)
			if chunked {
				body = io.MultiReader(body) // unknown length: Transfer-Encoding: chunked
			}
			req := newRequest(t, "POST", wiki, "/upload", body)
			resp, got := u.do(req)
			want := fmt.Sprintf("sha256=%x len=%d", sum, len(data))
			if resp.StatusCode != 200 || got != want {
				t.Fatalf("POST (chunked %v): %d %q, want 200 %q", chunked, resp.StatusCode, got, want)
			}
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || resp.ContentLength != -1 {
				t.Errorf("POST (chunked %v): response Transfer-Encoding %v, Content-Length %d; want chunked", chunked, resp.TransferEncoding, resp.ContentLength)
			}
			if code, body := u.get(wiki, "/admin"); code != 403 {
				t.Fatalf("GET /admin after POST (chunked %v): %d %q", chunked, code, body)
			}
		}
	})
}

// TestHTTPEveryRequestRouted: a host without path rules is served request
// by request too: on a keep-alive connection, each request is matched with
// its own Host and path, bytes that are not HTTP get a 400 (they never
// reach the origin raw), and a request for a host of another rule gets
// 421. A host whose rule is a tcp service is refused by the edge with 403
// naming the rule and the listener.
func TestHTTPEveryRequestRouted(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e, origin, r := startWiki(t, proto)
		e.Route("plain.example.test", "raw.example.test", "mixed.example.test")
		addr := e.ServeHTTP()

		u := connect(t, addr)
		for _, step := range []struct {
			host, target string
			code         int
		}{
			{"plain.example.test", "/admin", 200},
			{"plain.example.test", "/%61dmin/../x//y", 200},
			{"Plain.Example.Test:80", "/z", 200},
			{"plain.example.test", "/a/./b;jsessionid=7?q=1&r=%7e", 200},
			{wiki, "/admin", 421}, // the edge routed this connection by plain.example.test
			{"plain.example.test", "/last", 200},
		} {
			if code, body := u.raw(step.host, step.target); code != step.code {
				t.Fatalf("GET %s %s: %d %q, want %d", step.host, step.target, code, body, step.code)
			}
		}
		var paths []string
		for _, s := range origin.requests() {
			paths = append(paths, s.path)
		}
		// The origin receives canonical paths, with parameters, and the
		// query as sent (net/http/httputil drops parameters it cannot
		// parse).
		if want := "/admin /x/y /z /a/b;jsessionid=7?q=1&r=%7e /last"; strings.Join(paths, " ") != want {
			t.Errorf("origin saw %q, want %q", strings.Join(paths, " "), want)
		}
		garbage := []byte("\x00\x01 not HTTP at all\r\n\r\nGET /admin HTTP/9\r\n\xff")
		if _, err := u.c.Write(garbage); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(u.r, nil)
		if err != nil || resp.StatusCode != 400 {
			t.Fatalf("garbage after the requests: %v %v, want a 400", resp, err)
		}

		// The tcp host: the stream is refused, the edge answers 403.
		w := connect(t, addr)
		code, body := w.raw("raw.example.test", "/")
		if code != 403 || !strings.Contains(body, `ingress rule 4 (hostname "raw.example.test") is a tcp service`) || !strings.Contains(body, "http listener") {
			t.Errorf("GET / on a tcp host: %d %q, want 403 naming the rule and the listener", code, body)
		}
		// A later request matching a tcp rule: the connector answers 403,
		// and the connection goes on.
		m := connect(t, addr)
		for _, step := range []struct {
			target string
			code   int
			body   string
		}{
			{"/status", 204, ""},
			{"/", 403, `ingress rule 6 (hostname "mixed.example.test") is a tcp service, for port bindings: the http listener may not reach it`},
			{"/status/x", 204, ""},
		} {
			if code, body := m.raw("mixed.example.test", step.target); code != step.code || !strings.Contains(body, step.body) {
				t.Errorf("GET %s on mixed.example.test: %d %q, want %d %q", step.target, code, body, step.code, step.body)
			}
		}
		if v := edgetest.Metric(t, r.Registry, "onramp_connector_errors_total", "listener"); v != 2 {
			t.Errorf("connector errors_total{listener} = %v, want 2", v)
		}
	})
}

// TestHTTPForwardedHeaders: the origin sees X-Forwarded-For with the user's
// address as the edge saw it, X-Forwarded-Proto "http" and
// X-Forwarded-Host, and none of the forwarding headers the user sent, in
// any spelling.
func TestHTTPForwardedHeaders(t *testing.T) {
	e, origin, _ := startWiki(t, "quic")
	e.Route("plain.example.test")
	u := connect(t, e.ServeHTTP())
	forged := "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n" +
		"X-Forwarded-Port: 443\r\nX-Forwarded-Server: evil\r\nForwarded: for=203.0.113.9;proto=https\r\n" +
		"X-Real-IP: 203.0.113.9\r\nx-forwarded-for: 203.0.113.10\r\nX_Forwarded_For: 203.0.113.11\r\nx-real_ip: 203.0.113.12\r\n"
	for _, host := range []string{"plain.example.test", "plain.example.test"} {
		fmt.Fprintf(u.c, "GET /xff HTTP/1.1\r\nHost: %s\r\n%sX-Other: kept\r\n\r\n", host, forged)
		if resp, body := u.read(&http.Request{Method: "GET"}); resp.StatusCode != 200 {
			t.Fatalf("GET /xff: %d %q", resp.StatusCode, body)
		}
	}
	reqs := origin.requests()
	if len(reqs) != 2 {
		t.Fatalf("origin saw %d requests, want 2", len(reqs))
	}
	for _, s := range reqs {
		h := s.header
		want := http.Header{
			"X-Forwarded-For":   {"127.0.0.1"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"plain.example.test"},
			"X-Other":           {"kept"},
		}
		for name, v := range want {
			if got := h.Values(name); len(got) != 1 || got[0] != v[0] {
				t.Errorf("origin saw %s: %q, want %q", name, got, v)
			}
		}
		for name := range h {
			if _, ok := want[name]; !ok && name != "Accept-Encoding" && name != "User-Agent" {
				t.Errorf("origin saw %s: %q, which the user sent", name, h[name])
			}
		}
	}
}

// waitFor polls the origin until it saw a request for target.
func (o *recordingOrigin) waitFor(t *testing.T, target string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, s := range o.requests() {
			if s.path == target {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the origin never saw %s", target)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHTTPPathRoutedShutdown: on Shutdown an idle keep-alive connection is
// closed at once, one with a request in flight gets its response (marked
// Connection: close) and then is closed, and Shutdown returns without
// having to reset anything.
func TestHTTPPathRoutedShutdown(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e, origin, r := startWiki(t, proto)
		addr := e.ServeHTTP()
		idle, busy := connect(t, addr), connect(t, addr)
		for _, u := range []*client{idle, busy} {
			if code, _ := u.get(wiki, "/"); code != 200 {
				t.Fatalf("GET /: %d", code)
			}
		}
		hold := newRequest(t, "GET", wiki, "/hold", nil)
		if err := hold.Write(busy.c); err != nil {
			t.Fatal(err)
		}
		origin.waitFor(t, "/hold")

		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			shut <- r.Shutdown(ctx)
		}()
		idle.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(idle.r); err != nil || len(b) != 0 {
			t.Fatalf("idle connection on Shutdown: read %q, %v; want EOF", b, err)
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned with a request in flight: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		close(origin.release)
		resp, body := busy.read(hold)
		if resp.StatusCode != 200 || body != "held" || !resp.Close {
			t.Fatalf("request in flight on Shutdown: %d %q, Connection: close %v", resp.StatusCode, body, resp.Close)
		}
		if b, err := io.ReadAll(busy.r); err != nil || len(b) != 0 {
			t.Fatalf("after the last response: read %q, %v; want EOF", b, err)
		}
		select {
		case err := <-shut:
			if err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Shutdown did not return after the connections closed")
		}
	})
}

// TestHTTPPathRoutedShutdownDeadline: a request still in flight when the
// Shutdown deadline passes is cut: the user's connection ends (no hang).
func TestHTTPPathRoutedShutdownDeadline(t *testing.T) {
	e, origin, r := startWiki(t, "quic")
	u := connect(t, e.ServeHTTP())
	if err := newRequest(t, "GET", wiki, "/hold", nil).Write(u.c); err != nil {
		t.Fatal(err)
	}
	origin.waitFor(t, "/hold")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := r.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	u.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(u.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the user connection was not closed (read %q)", b)
	}
	if len(b) != 0 {
		t.Fatalf("read %q from a request cut by the deadline", b)
	}
}
