package edge

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestSetRoutes(t *testing.T) {
	s := NewServer(Options{})
	a, b, c := "a", "b", "c"
	if err := s.SetRoutes([]Route{
		{Hostname: "App.Example.Test.", Tunnel: a},
		{Hostname: "*.example.test", Tunnel: b},
		{Hostname: "*.deep.example.test", Tunnel: c},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		want string
		ok   bool
	}{
		{"app.example.test", a, true},
		{"APP.EXAMPLE.TEST.", a, true},
		{"x.example.test", b, true},
		{"x.y.example.test", b, true},
		{"x.deep.example.test", c, true},
		{"deep.example.test", b, true},
		{"example.test", "", false},
		{"other.test", "", false},
		{"", "", false},
		{".example.test", "", false},
	} {
		tg, ok := s.routes.Load().lookup(tc.host)
		if got := tg.tunnel; got != tc.want || ok != tc.ok {
			t.Errorf("lookup(%q) = %q %v, want %q %v", tc.host, got, ok, tc.want, tc.ok)
		}
	}
	for _, bad := range []string{"", "*", "*.", "a.*.test", "a b.test", "a..test", "-a.test", "a.test:80", "**.test", strings.Repeat("a", 64) + ".test"} {
		err := s.SetRoutes([]Route{{Hostname: "ok.test", Tunnel: a}, {Hostname: bad, Tunnel: a}})
		if err == nil || !strings.Contains(err.Error(), "route 1") {
			t.Errorf("SetRoutes(%q) = %v, want an error naming route 1", bad, err)
		}
	}
	if err := s.SetRoutes([]Route{{Hostname: "x.test", Tunnel: a}, {Hostname: "X.test", Tunnel: b}}); err == nil {
		t.Error("conflicting routes accepted")
	}
	if err := s.SetRoutes([]Route{{Hostname: "x.test", Tunnel: a}, {Hostname: "X.test", Origin: "198.18.30.2:80"}}); err == nil {
		t.Error("a hostname routed to a tunnel and an origin accepted")
	}
	for _, bad := range []Route{{Hostname: "x.test"}, {Hostname: "x.test", Tunnel: a, Origin: "198.18.30.2:80"}, {Hostname: "x.test", Tunnel: a, ProxyProtocol: true}} {
		if err := s.SetRoutes([]Route{bad}); err == nil {
			t.Errorf("route %+v accepted", bad)
		}
	}
	// A failed SetRoutes keeps the old table.
	if _, ok := s.routes.Load().lookup("app.example.test"); !ok {
		t.Error("routes lost after a failed SetRoutes")
	}
}

func TestParseHTTPHead(t *testing.T) {
	for _, tc := range []struct {
		head, host, path string
		code             int
	}{
		{"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test", "/", 0},
		{"GET /x?y=1 HTTP/1.1\r\nhOsT:  a.test:8080 \r\nX: y\r\n\r\n", "a.test", "/x?y=1", 0},
		{"GET http://b.test:81/p HTTP/1.1\r\nHost: a.test\r\n\r\n", "b.test", "/p", 0},
		{"GET http://b.test HTTP/1.1\r\n\r\n", "b.test", "/", 0},
		{"CONNECT c.test:443 HTTP/1.1\r\n\r\n", "c.test", "", 0},
		{"GET / HTTP/1.1\r\nHost: [fd00::1]:80\r\n\r\n", "fd00::1", "/", 0},
		{"GET / HTTP/1.0\r\n\r\n", "", "", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "", "", 400},
		{"GARBAGE\r\n\r\n", "", "", 400},
		{"GET / SMTP\r\nHost: a\r\n\r\n", "", "", 400},
		{"GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: a\r\n\r\n", "", "", 414},
	} {
		buf := make([]byte, 16<<10)
		h, err := readHTTPHead(strings.NewReader(tc.head+"BODY"), buf)
		if tc.code != 0 {
			he, ok := err.(*httpError)
			if !ok || he.code != tc.code {
				t.Errorf("%q: err %v, want %d", tc.head, err, tc.code)
			}
			continue
		}
		if err != nil || h.host != tc.host || h.path != tc.path {
			t.Errorf("%q: got %q %q %v, want %q %q", tc.head, h.host, h.path, err, tc.host, tc.path)
		}
		if !strings.HasPrefix(string(h.raw), tc.head) {
			t.Errorf("%q: raw %q", tc.head, h.raw)
		}
	}
	// Too large.
	_, err := readHTTPHead(strings.NewReader("GET / HTTP/1.1\r\nX: "+strings.Repeat("a", 20000)), make([]byte, 16<<10))
	if he, ok := err.(*httpError); !ok || he.code != 431 {
		t.Errorf("large head: %v", err)
	}
	// Byte by byte.
	h, err := readHTTPHead(&oneByte{r: strings.NewReader("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")}, make([]byte, 1024))
	if err != nil || h.host != "a.test" {
		t.Errorf("one byte at a time: %q %v", h.host, err)
	}
}

type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }

func TestPeekClientHello(t *testing.T) {
	for _, sni := range []string{"app.example.test", ""} {
		client, server := net.Pipe()
		go func() {
			tc := tls.Client(client, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
			tc.Handshake()
			client.Close()
		}()
		server.SetDeadline(time.Now().Add(5 * time.Second))
		got, read, err := peekClientHello(server)
		server.Close()
		if sni == "" {
			if err == nil {
				t.Errorf("no SNI: got %q", got)
			}
			continue
		}
		if err != nil || got != sni {
			t.Fatalf("got %q %v", got, err)
		}
		if len(read) < 5 || read[0] != 22 {
			t.Fatalf("read bytes do not start with a handshake record: % x", read[:min(len(read), 8)])
		}
	}
	// Not TLS at all.
	client, server := net.Pipe()
	go func() { client.Write([]byte("GET / HTTP/1.1\r\n\r\n")); client.Close() }()
	if _, _, err := peekClientHello(server); err == nil {
		t.Error("plain HTTP accepted as a ClientHello")
	}
}
