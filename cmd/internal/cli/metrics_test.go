package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// freeAddr is a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestMetricsConnLimit plays a stranger holding idle sockets on a public
// metrics address: one source gets MetricsMaxConnsPerSource of them and
// no more, the refusals are counted, and Prometheus (another source)
// still scrapes.
func TestMetricsConnLimit(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := ServeMetrics(ctx, slog.New(slog.DiscardHandler), addr, NewRegistry(), nil, nil); err != nil {
		t.Fatal(err)
	}
	dial := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	closed := func(c net.Conn, wait time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	var held []net.Conn
	for range MetricsMaxConnsPerSource {
		held = append(held, dial("127.0.0.2"))
	}
	if !closed(dial("127.0.0.2"), 5*time.Second) {
		t.Fatalf("connection %d from one source kept (limit %d)", MetricsMaxConnsPerSource+1, MetricsMaxConnsPerSource)
	}
	for _, c := range held {
		if closed(c, 20*time.Millisecond) {
			t.Fatal("a connection within the limit was closed")
		}
	}
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).DialContext}}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("a scrape beside the stranger: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if want := `onramp_metrics_connections_refused_total{limit="maxConnsPerSource"} 1`; !strings.Contains(string(b), want) {
		t.Errorf("the scrape lacks %s:\n%s", want, b)
	}
}

// TestMetricsRegistryTwice: a second metrics listener on one registry is
// an error at start, not a panic.
func TestMetricsRegistryTwice(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	if err := ServeMetrics(ctx, slog.New(slog.DiscardHandler), freeAddr(t), reg, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := ServeMetrics(ctx, slog.New(slog.DiscardHandler), freeAddr(t), reg, nil, nil); err == nil {
		t.Error("two metrics listeners on one registry")
	}
}
