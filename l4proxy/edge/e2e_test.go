package edge_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
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

var protos = []string{"quic", "http2"}

// forEach runs f for both transports.
func forEach(t *testing.T, f func(t *testing.T, proto string)) {
	for _, p := range protos {
		t.Run(p, func(t *testing.T) { f(t, p) })
	}
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// TestTCPEchoLarge sends 16 MiB through a TCP port binding to an echo origin
// and checks the SHA-256 of what comes back, on IPv4 and IPv6 loopback.
func TestTCPEchoLarge(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		for _, host := range []string{"127.0.0.1", "::1"} {
			t.Run(host, func(t *testing.T) {
				size := 16 << 20
				if host == "::1" {
					size = 1 << 20
				}
				e := edgetest.Start(t, proto, host, edge.Options{})
				echo := edgetest.EchoTCP(t, host)
				e.StartConnector(fmt.Sprintf("ingress:\n  - hostname: echo.internal\n    service: tcp://%s\n  - service: http_status:404\n", echo), nil)
				c := dial(t, e.ServeTCP("echo.internal"))
				c.SetDeadline(time.Now().Add(60 * time.Second))
				want := sha256.New()
				errc := make(chan error, 1)
				go func() {
					_, err := io.Copy(c, io.TeeReader(io.LimitReader(rand.Reader, int64(size)), want))
					if err == nil {
						err = c.CloseWrite()
					}
					errc <- err
				}()
				got := sha256.New()
				n, err := io.Copy(got, c)
				if err != nil {
					t.Fatalf("read after %d bytes: %v", n, err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				if n != int64(size) || string(got.Sum(nil)) != string(want.Sum(nil)) {
					t.Fatalf("echoed %d bytes, sha256 match %v; want %d", n, string(got.Sum(nil)) == string(want.Sum(nil)), size)
				}
				if v := edgetest.Metric(t, e.Registry, "onramp_edge_bytes_total", "to_origin"); v != float64(size) {
					t.Errorf("bytes to_origin = %v, want %d", v, size)
				}
			})
		}
	})
}

// TestHalfClose: the client half-closes, the origin answers after reading
// EOF, and the client reads the answer and then EOF.
func TestHalfClose(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		origin := edgetest.ServeTCPOrigin(t, "127.0.0.1", func(c net.Conn) {
			b, err := io.ReadAll(c)
			if err != nil {
				return
			}
			fmt.Fprintf(c, "got %d bytes: %s", len(b), b)
		})
		e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", origin), nil)
		c := dial(t, e.ServeTCP("half"))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, b)
		}
		if string(b) != "got 5 bytes: hello" {
			t.Fatalf("got %q", b)
		}
	})
}

// httpClient sends every request to the edge's HTTP listener at addr.
func httpClient(addr string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			},
			DisableKeepAlives: true,
		},
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func httpOrigin(t *testing.T, name string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s host=%s path=%s", name, r.Host, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestHTTP routes by Host and path through ServeHTTP to net/http origins,
// and checks the edge's own 404 for an unknown Host and the connector's
// http_status rule.
func TestHTTP(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		web, api := httpOrigin(t, "web"), httpOrigin(t, "api")
		e.StartConnector(fmt.Sprintf(`ingress:
  - hostname: app.example.test
    path: /api
    service: http://%s
  - hostname: app.example.test
    service: http://%s
  - hostname: "*.example.test"
    service: http://%s
  - service: http_status:418
`, api, web, web), nil)
		e.Route("app.example.test", "*.example.test", "teapot.other.test")
		c := httpClient(e.ServeHTTP())
		for _, tc := range []struct {
			url  string
			code int
			body string
		}{
			{"http://app.example.test/", 200, "web host=app.example.test path=/"},
			{"http://APP.example.test:8080/x", 200, "web host=APP.example.test:8080 path=/x"},
			{"http://app.example.test/api/v1?q=1", 200, "api host=app.example.test path=/api/v1"},
			{"http://app.example.test/apix", 200, "web host=app.example.test path=/apix"},
			{"http://deep.sub.example.test/", 200, "web host=deep.sub.example.test path=/"},
			{"http://teapot.other.test/", 418, "418 I'm a teapot\n"},
			{"http://example.test/", 404, `404 Not Found: no route for host "example.test"` + "\n"},
			{"http://unknown.test/", 404, `404 Not Found: no route for host "unknown.test"` + "\n"},
		} {
			code, body := get(t, c, tc.url)
			if code != tc.code || body != tc.body {
				t.Errorf("GET %s = %d %q, want %d %q", tc.url, code, body, tc.code, tc.body)
			}
		}
		if v := edgetest.Metric(t, e.Registry, "onramp_edge_errors_total", "no_route"); v != 2 {
			t.Errorf("errors{no_route} = %v, want 2", v)
		}
	})
}

// TestHTTPRefused: a stream the connector refuses (its rule is udp) is
// answered 502 by the edge with the connector's message; a tunnel without
// connection is answered 502 "tunnel offline".
func TestHTTPRefused(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		e.Route("app.example.test")
		c := httpClient(e.ServeHTTP())
		code, body := get(t, c, "http://app.example.test/")
		if code != 502 || !strings.Contains(body, "tunnel offline") {
			t.Errorf("offline: got %d %q", code, body)
		}
		e.StartConnector("ingress:\n  - service: udp://127.0.0.1:9\n", nil)
		code, body = get(t, c, "http://app.example.test/")
		if code != 502 || !strings.Contains(body, "udp service") {
			t.Errorf("refused: got %d %q", code, body)
		}
		// Counted when the proxy ends, just after the answer was sent.
		waitMetric(t, func() float64 { return edgetest.Metric(t, e.Registry, "onramp_edge_errors_total", "refused") }, 1)
		if v := edgetest.Metric(t, e.Registry, "onramp_edge_errors_total", "tunnel_offline"); v != 1 {
			t.Errorf("errors{tunnel_offline} = %v, want 1", v)
		}
	})
}

// TestTLSPassthrough routes by SNI to an httptest TLS origin; the client
// verifies the origin's own certificate, so the edge did not terminate TLS.
func TestTLSPassthrough(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "secret origin sni=%s", r.TLS.ServerName)
		}))
		t.Cleanup(srv.Close)
		e.StartConnector(fmt.Sprintf("ingress:\n  - hostname: example.com\n    service: https://%s\n    tlsPassthrough: true\n  - service: http_status:404\n", srv.Listener.Addr()), nil)
		e.Route("example.com")
		addr := e.ServeTLS()
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool},
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			},
		}}
		code, body := get(t, c, "https://example.com/")
		if code != 200 || body != "secret origin sni=example.com" {
			t.Fatalf("got %d %q", code, body)
		}
		// No route for the SNI: the connection is closed.
		conn := dial(t, addr)
		tc := tls.Client(conn, &tls.Config{ServerName: "nothere.test", RootCAs: pool})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err == nil {
			t.Fatal("handshake without route succeeded")
		}
	})
}

// TestUDP sends datagrams from two users through a UDP port binding to an
// echo origin.
func TestUDP(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{UDPFlowIdle: 500 * time.Millisecond})
		origin := edgetest.EchoUDP(t, "127.0.0.1", "echo:")
		r := e.StartConnector(fmt.Sprintf("ingress:\n  - hostname: dns.internal\n    service: udp://%s\n  - service: http_status:404\n", origin), nil)
		addr := e.ServeUDP("dns.internal")
		for u := range 2 {
			c, err := net.Dial("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 2048)
			for i := range 20 {
				msg := fmt.Sprintf("user %d datagram %d", u, i)
				var got string
				// UDP: retry a lost datagram (the first may race the flow open).
				for try := 0; try < 20 && got == ""; try++ {
					c.Write([]byte(msg))
					c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
					n, err := c.Read(buf)
					if err == nil {
						got = string(buf[:n])
					}
				}
				if got != "echo:"+msg {
					t.Fatalf("got %q, want %q", got, "echo:"+msg)
				}
			}
		}
		if v := edgetest.Metric(t, e.Registry, "onramp_edge_udp_flows_total", ""); v != 2 {
			t.Errorf("flows total = %v, want 2", v)
		}
		// Idle flows expire on both sides.
		deadline := time.Now().Add(5 * time.Second)
		for edgetest.Metric(t, e.Registry, "onramp_edge_udp_flows_open", "") != 0 {
			if time.Now().After(deadline) {
				t.Fatal("edge flows did not expire")
			}
			time.Sleep(50 * time.Millisecond)
		}
		for edgetest.Metric(t, r.Registry, "onramp_connector_udp_flows_open", "") != 0 {
			if time.Now().After(deadline) {
				t.Fatal("connector flows did not close")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestOriginRefused: the origin port is closed; the user's connection is
// closed and the error counted on both sides.
func TestOriginRefused(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		r := e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", edgetest.ClosedPort(t, "127.0.0.1")), nil)
		c := dial(t, e.ServeTCP("closed"))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("hello"))
		b, err := io.ReadAll(c)
		if len(b) != 0 {
			t.Fatalf("read %q, err %v", b, err)
		}
		if err != nil && !isReset(err) {
			t.Fatalf("read: %v", err)
		}
		waitMetric(t, func() float64 { return edgetest.Metric(t, e.Registry, "onramp_edge_errors_total", "origin") }, 1)
		waitMetric(t, func() float64 { return edgetest.Metric(t, r.Registry, "onramp_connector_errors_total", "origin_dial") }, 1)
	})
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe")
}

func waitMetric(t *testing.T, f func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v := f()
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric = %v, want %v", v, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStreamLimit: with MaxStreamsPerTunnel 1, a second HTTP user gets 503
// naming the limit while the first holds its stream; once it is gone, a new
// user gets through.
func TestStreamLimit(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{MaxStreamsPerTunnel: 1})
		e.StartConnector(fmt.Sprintf("ingress:\n  - service: http://%s\n", httpOrigin(t, "web")), nil)
		e.Route("app.example.test")
		addr := e.ServeHTTP()
		first := dial(t, addr)
		first.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(first, "GET / HTTP/1.1\r\nHost: app.example.test\r\n\r\n")
		br := bufio.NewReader(first)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// The first connection is kept alive: its stream stays open.
		code, body := get(t, httpClient(addr), "http://app.example.test/")
		if code != 503 || !strings.Contains(body, "limit") || !strings.Contains(body, "1 concurrent") {
			t.Fatalf("second user: %d %q", code, body)
		}
		if v := edgetest.Metric(t, e.Registry, "onramp_edge_errors_total", "limit"); v != 1 {
			t.Errorf("errors{limit} = %v", v)
		}
		first.Close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			code, _ := get(t, httpClient(addr), "http://app.example.test/")
			if code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the first user left: %d", code)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestUserResetBeforeSending: users of a TCP binding that reset their
// connection before sending anything (the edge's first read, which would
// carry their bytes with the stream's request, finds the reset) are
// counted as resets and give their stream back: with MaxStreamsPerTunnel
// 1, a user after twenty of them still gets through.
func TestUserResetBeforeSending(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{MaxStreamsPerTunnel: 1})
		echo := edgetest.EchoTCP(t, "127.0.0.1")
		e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", echo), nil)
		addr := e.ServeTCP("echo")
		for range 20 {
			c := dial(t, addr)
			c.SetLinger(0)
			c.Close()
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			c := dial(t, addr)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, 5)
			_, err := c.Write([]byte("hello"))
			if err == nil {
				_, err = io.ReadFull(c, got)
			}
			c.Close()
			if err == nil && string(got) == "hello" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 20 users reset: %v, echo %q", err, got)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if v := edgetest.Metric(t, e.Registry, "onramp_edge_errors_total", "reset"); v < 1 {
			t.Errorf("errors{reset} = %v after 20 users reset", v)
		}
	})
}

// TestConcurrent200 runs 200 connections at once through one tunnel.
func TestConcurrent200(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		echo := edgetest.EchoTCP(t, "127.0.0.1")
		e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", echo), nil)
		addr := e.ServeTCP("echo")
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for i := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				msg := []byte(strings.Repeat(fmt.Sprintf("conn %03d;", i), 1000))
				go func() {
					c.Write(msg)
					c.(*net.TCPConn).CloseWrite()
				}()
				b, err := io.ReadAll(c)
				if err != nil {
					errs <- fmt.Errorf("conn %d: %v", i, err)
					return
				}
				if string(b) != string(msg) {
					errs <- fmt.Errorf("conn %d: got %d bytes, want %d", i, len(b), len(msg))
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// Streams were spread over both connections.
		waitMetric(t, func() float64 { return edgetest.Metric(t, e.Registry, "onramp_edge_streams_open", "tcp") }, 0)
	})
}

// TestIdleTimeout: a proxied connection without traffic is closed.
func TestIdleTimeout(t *testing.T) {
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{IdleTimeout: 300 * time.Millisecond})
	echo := edgetest.EchoTCP(t, "127.0.0.1")
	e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", echo), nil)
	c := dial(t, e.ServeTCP("echo"))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("x"))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Read(b); err == nil {
		t.Fatal("read succeeded on an idle connection")
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v, want about 300ms", d)
	}
}

// TestResetPropagation: an origin that resets makes the user see a reset
// (not EOF), and a user that resets makes the origin see one.
func TestResetPropagation(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		originErr := make(chan error, 1)
		origin := edgetest.ServeTCPOrigin(t, "127.0.0.1", func(c net.Conn) {
			b := make([]byte, 5)
			if _, err := io.ReadFull(c, b); err != nil {
				originErr <- err
				return
			}
			if string(b) == "reset" {
				c.(*net.TCPConn).SetLinger(0)
				return // closed by ServeTCPOrigin: RST
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.ReadAll(c)
			originErr <- err
		})
		e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", origin), nil)
		addr := e.ServeTCP("r")

		// Origin resets.
		c := dial(t, addr)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("reset"))
		_, err := io.ReadAll(c)
		if err == nil || !isReset(err) {
			t.Fatalf("user read after origin reset: %v, want connection reset", err)
		}
		waitMetric(t, func() float64 { return edgetest.Metric(t, e.Registry, "onramp_edge_errors_total", "reset") }, 1)

		// User resets.
		c = dial(t, addr)
		c.Write([]byte("hello"))
		time.Sleep(100 * time.Millisecond) // let the stream reach the origin
		c.SetLinger(0)
		c.Close()
		select {
		case err := <-originErr:
			if err == nil || !isReset(err) {
				t.Fatalf("origin read after user reset: %v, want connection reset", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("origin saw nothing after the user reset")
		}
	})
}

// BenchmarkTunnelTCP measures one-way throughput through a TCP port binding
// to a discarding origin; one op is 32 KiB. allocs/op counts the whole
// process (transports included), not only the copy loops.
func BenchmarkTunnelTCP(b *testing.B) {
	for _, proto := range protos {
		b.Run(proto, func(b *testing.B) {
			e := edgetest.Start(b, proto, "127.0.0.1", edge.Options{})
			done := make(chan int64, 1)
			origin := edgetest.ServeTCPOrigin(b, "127.0.0.1", func(c net.Conn) {
				n, _ := io.Copy(io.Discard, c)
				done <- n
			})
			e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", origin), nil)
			c, err := net.Dial("tcp", e.ServeTCP("sink"))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			if n := <-done; n != int64(b.N)*int64(len(buf)) {
				b.Fatalf("origin got %d bytes", n)
			}
		})
	}
}

// BenchmarkTunnelEcho measures an echo of 1 byte (a keystroke) and of 64
// through a TCP port binding to an echoing origin, edge and connector in
// this process; one op is a round trip (user to origin and back), so ns/op
// is its latency under no other load and allocs/op what the round trip
// allocates in the whole process.
func BenchmarkTunnelEcho(b *testing.B) {
	for _, proto := range protos {
		for _, size := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/%dB", proto, size), func(b *testing.B) { benchEcho(b, proto, size) })
		}
	}
}

func benchEcho(b *testing.B, proto string, size int) {
	e := edgetest.Start(b, proto, "127.0.0.1", edge.Options{})
	origin := edgetest.ServeTCPOrigin(b, "127.0.0.1", func(c net.Conn) { _, _ = io.Copy(c, c) })
	e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", origin), nil)
	c, err := net.Dial("tcp", e.ServeTCP("echo"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, got := make([]byte, size), make([]byte, size)
	roundTrip := func() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
	for range 100 { // warm: connections, buffers, windows
		roundTrip()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		roundTrip()
	}
}

// BenchmarkTunnelConnect measures a new connection through a TCP port
// binding to an echoing origin over a warm tunnel, edge and connector in
// this process; one op is what the connection-rate load does per
// connection: connect, a 1-byte echo, close. ns/op is its latency under no
// other load and allocs/op what it allocates in the whole process (user
// and origin sockets included).
// echoTunnel starts an edge and a connector over proto with an echo
// origin behind a TCP binding, and returns the binding's address.
func echoTunnel(b *testing.B, proto string) string {
	e := edgetest.Start(b, proto, "127.0.0.1", edge.Options{})
	origin := edgetest.ServeTCPOrigin(b, "127.0.0.1", func(c net.Conn) { _, _ = io.Copy(c, c) })
	e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", origin), nil)
	return e.ServeTCP("echo")
}

func BenchmarkTunnelConnect(b *testing.B) {
	for _, proto := range protos {
		b.Run(proto, func(b *testing.B) {
			addr := echoTunnel(b, proto)
			one := make([]byte, 1)
			connect := func() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			for range 100 { // warm: the tunnel's connections, pools
				connect()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				connect()
			}
		})
	}
}

// BenchmarkTunnelConnRate is BenchmarkTunnelConnect with 8 users at once:
// the connections a second the tunnel serves on this machine's cores,
// and the process's CPU per connection (users, edge, connector and
// origin all in this process: compare two trees, not with bench's
// connrate).
func BenchmarkTunnelConnRate(b *testing.B) {
	for _, proto := range protos {
		b.Run(proto, func(b *testing.B) {
			addr := echoTunnel(b, proto)
			connect := func() error {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return err
				}
				defer c.Close()
				one := []byte{1}
				if _, err := c.Write(one); err != nil {
					return err
				}
				_, err = io.ReadFull(c, one)
				return err
			}
			for range 100 { // warm: the tunnel's connections, pools
				if err := connect(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetParallelism(4) // 8 users on 2 cores
			cpu0 := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := connect(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/conn")
		})
	}
}
