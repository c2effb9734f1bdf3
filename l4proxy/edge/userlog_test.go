package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// linesWith returns the lines of b that contain sub.
func linesWith(b *syncBuffer, sub string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// TestUserLogsRateLimited: a stranger sending TLS ClientHellos and HTTP
// requests for hostnames without a route, each naming a hostname of its
// choosing, is answered every time, while the edge's log gets at most a
// line a second about it, which says how many were not logged.
func TestUserLogsRateLimited(t *testing.T) {
	var log syncBuffer
	s := NewServer(Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listen := func(serve func(context.Context, net.Listener) error) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go serve(ctx, ln)
		return ln.Addr().String()
	}
	httpAddr, tlsAddr := listen(s.ServeHTTP), listen(s.ServeTLS)
	const n = 40
	start := time.Now()
	for i := range n {
		c, err := net.Dial("tcp", httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: attacker-%d.test\r\n\r\n", i)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || res.StatusCode != 404 {
			t.Fatalf("request %d: %v %v, want 404", i, res, err)
		}
		tc, err := net.Dial("tcp", tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		err = tls.Client(tc, &tls.Config{ServerName: fmt.Sprintf("attacker-%d.test", i), InsecureSkipVerify: true}).Handshake()
		tc.Close()
		if err == nil {
			t.Fatalf("TLS %d: handshake completed without a route", i)
		}
	}
	elapsed := time.Since(start)
	// The last TLS connection's line may still be on its way.
	time.Sleep(100 * time.Millisecond)
	lines := linesWith(&log, "no route")
	t.Logf("%d connections without a route in %v: %d log lines", 2*n, elapsed.Round(time.Millisecond), len(lines))
	if max := int(elapsed/time.Second) + 1; len(lines) > max {
		t.Fatalf("%d lines about connections without a route in %v, want at most %d (one a second):\n%s",
			len(lines), elapsed, max, strings.Join(lines, "\n"))
	}
	// A second later the next one is logged, with the count held back.
	time.Sleep(time.Second)
	c, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: last.test\r\n\r\n")
	_, _ = http.ReadResponse(bufio.NewReader(c), nil)
	c.Close()
	last := linesWith(&log, "last.test")
	if len(last) != 1 || !strings.Contains(last[0], notLogged+"=") || strings.Contains(last[0], notLogged+"=0") {
		t.Fatalf("the next line %q does not count the lines not logged", last)
	}
}
