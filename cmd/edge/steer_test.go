package main

import (
	"bytes"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// TestLogSteering: the edge says once how its QUIC listener runs: off by
// quic_steering: false, or the steered sockets (or why not) by default.
func TestLogSteering(t *testing.T) {
	cert, _, _, err := tunnel.GenerateEdgeCertificate("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	off := false
	for _, c := range []struct {
		cfg  *edgeconfig.Config
		want string
	}{
		{&edgeconfig.Config{QUICSteering: &off}, "quic steering off (quic_steering: false): 1 socket"},
		{&edgeconfig.Config{}, "quic steering: "},
	} {
		qln, err := tunnel.ListenQUIC("127.0.0.1:0", cert, tunnel.StaticAuthenticator{}, &tunnel.Config{QUICSockets: quicSockets(c.cfg)})
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		reg := prometheus.NewRegistry()
		logSteering(c.cfg, qln, slog.New(slog.NewTextHandler(&logs, nil)), reg)
		t.Cleanup(func() { qln.Close() })
		out := logs.String()
		t.Log(strings.TrimSpace(out))
		if n, serr := qln.Steering(); c.cfg.Steering() && serr != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("CI=true and QUIC steering is off: %v", serr)
			}
			if !strings.Contains(out, "quic steering off: the QUIC listener runs 1 socket") {
				t.Fatalf("log %q: want the reason steering is off", out)
			}
			continue
		} else if c.cfg.Steering() && runtime.GOMAXPROCS(0) > 1 {
			if n != runtime.GOMAXPROCS(0) {
				t.Fatalf("%d sockets, GOMAXPROCS %d", n, runtime.GOMAXPROCS(0))
			}
			if mfs, err := reg.Gather(); err != nil || len(mfs) != 1 || mfs[0].GetName() != "onramp_edge_quic_steered_datagrams_total" {
				t.Fatalf("metrics %v, %v", mfs, err)
			}
		} else if c.cfg.Steering() {
			c.want = "quic steering off: 1 core"
		}
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, c.want) {
			t.Fatalf("log %q: want one line with %q", out, c.want)
		}
	}
}
