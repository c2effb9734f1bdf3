package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/connector"
	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

func wantLines(t *testing.T, what, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			t.Errorf("%s lacks %s", what, p)
		}
	}
}

// TestStatusReport: the tunnel report lists the connections and each
// edge's state and last error on one line; the L3 report the edge, the
// handshake and the bytes.
func TestStatusReport(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	st := &connectorStatus{Mode: "tunnel", Version: "v1.2.3", Started: now.Add(-time.Hour), Now: now, Ready: true,
		Tunnel: &tunnelStatus{TunnelID: "00112233445566778899aabbccddeeff", Protocol: "auto", Want: 4,
			Connections: []connStatus{
				{Edge: "edge1.example.com:7844", Protocol: "quic", Since: now.Add(-time.Hour), Streams: 2, RTTMs: 1.234, Sent: 20000, Lost: 3},
				{Edge: "edge1.example.com:7844", Protocol: "http2", Since: now.Add(-5 * time.Second), RTTMs: 42, Sent: 10, Lost: 1},
				{Edge: "edge2.example.com:7844", Protocol: "http2", Since: now.Add(-time.Second)},
			},
			Edges: []edgeStatus{
				{Edge: "edge1.example.com:7844", Connections: 2, Lost: 1, LastError: "Application error 0x0 (remote): edge shutting down",
					LastErrorAt: now.Add(-6 * time.Second)},
				{Edge: "edge2.example.com:7844", DialErrors: 7, Failing: 3, LastError: "dial quic: timeout\ndial http2: connection refused",
					LastErrorAt: now.Add(-2 * time.Second)},
				{Edge: "edge3.example.com:7844"},
			}}}
	var b bytes.Buffer
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", b.String())
	wantLines(t, "tunnel report", b.String(),
		`(?m)^connector\s+tunnel 00112233445566778899aabbccddeeff$`,
		`(?m)^version\s+v1\.2\.3$`,
		`(?m)^up\s+1h0m0s \(since `,
		`(?m)^ready\s+yes$`,
		`(?m)^protocol\s+auto$`,
		`(?m)^connections\s+3 live of 4$`,
		`(?m)^EDGE\s+TRANSPORT\s+SINCE\s+FOR\s+STREAMS\s+RTT\s+LOST$`,
		`(?m)^edge1\.example\.com:7844\s+quic\s+\S+ \S+\s+1h0m0s\s+2\s+1\.23 ms\s+0\.01% of 20000 packets$`,
		`(?m)^edge1\.example\.com:7844\s+http2\s+\S+ \S+\s+5s\s+0\s+42 ms\s+10\.00% of 10 segments$`,
		`(?m)^edge2\.example\.com:7844\s+http2\s+\S+ \S+\s+1s\s+0\s+-\s+-$`,
		`(?m)^EDGE\s+STATE\s+CONNECTIONS\s+DIAL ERRORS\s+LOST\s+LAST ERROR$`,
		`(?m)^edge1\.example\.com:7844\s+connected\s+2\s+0\s+1\s+6s ago: Application error 0x0 \(remote\): edge shutting down$`,
		`(?m)^edge2\.example\.com:7844\s+failing \(3 dials\)\s+0\s+7\s+0\s+2s ago: dial quic: timeout; dial http2: connection refused$`,
		`(?m)^edge3\.example\.com:7844\s+connecting\s+0\s+0\s+0\s+-$`,
	)

	st = &connectorStatus{Mode: "l3", Version: "v1.2.3", Started: now.Add(-time.Minute), Now: now,
		L3: &l3Status{Name: "site-a", Interface: "onramp0", Addresses: []netip.Prefix{netip.MustParsePrefix("100.96.0.2/32")},
			Subnets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, Endpoint: "edge.example.com:51820", EdgeAddr: "203.0.113.1:51820",
			LastHandshake: now.Add(-30 * time.Second), LinkUp: true, TxBytes: 1000, RxBytes: 2000,
			ToEdgePackets: 3, ToEdgeBytes: 300, FromEdgePackets: 4, FromEdgeBytes: 400}}
	b.Reset()
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", b.String())
	wantLines(t, "l3 report", b.String(),
		`(?m)^connector\s+l3 site-a$`,
		`(?m)^ready\s+no$`,
		`(?m)^interface\s+onramp0, addresses 100\.96\.0\.2/32$`,
		`(?m)^subnets\s+10\.1\.0\.0/16$`,
		`(?m)^edge\s+edge\.example\.com:51820 \(now 203\.0\.113\.1:51820\)$`,
		`(?m)^handshake\s+30s ago \(`,
		`(?m)^link up\s+yes$`,
		`(?m)^wireguard\s+1000 bytes sent to the edge, 2000 received$`,
		`(?m)^to edge\s+3 packets, 300 bytes$`,
		`(?m)^from edge\s+4 packets, 400 bytes$`,
	)
}

// TestStatusEndpoint: GET /status answers a tunnel connector's status,
// which fetchStatus reads; fetchStatus says what is wrong with an address
// where no connector answers, or something else does.
func TestStatusEndpoint(t *testing.T) {
	tok := tunnel.Token{Edges: []string{"192.0.2.1:7844", "192.0.2.2:7844"}}
	tok.TunnelID[0] = 0xab
	rules, err := ingress.Parse([]byte("ingress:\n  - service: http_status:404\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := connector.New(connector.Options{Token: tok, Protocol: "http2", Connections: 2, Ingress: rules})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now().Add(-time.Minute)
	mux := http.NewServeMux()
	for p, h := range statusHandler(func() *connectorStatus { return tunnelStatusOf(c, started) }) {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	st, err := fetchStatus(addr)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != "tunnel" || st.Ready || st.L3 != nil || st.Tunnel == nil || !st.Started.Equal(started) || st.Now.Before(started) {
		t.Fatalf("status %+v", st)
	}
	tu := st.Tunnel
	if tu.TunnelID != tok.TunnelIDString() || tu.Protocol != "http2" || tu.Want != 2 || len(tu.Connections) != 0 ||
		len(tu.Edges) != 2 || tu.Edges[0].Edge != "192.0.2.1:7844" || tu.Edges[1].Edge != "192.0.2.2:7844" {
		t.Errorf("tunnel %+v", tu)
	}

	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	if _, err := fetchStatus(strings.TrimPrefix(notFound.URL, "http://")); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a server without /status: %v", err)
	}
	closed := freeTCP(t)
	if _, err := fetchStatus(closed); err == nil || !strings.Contains(err.Error(), "no connector answers on "+closed) {
		t.Errorf("no server: %v", err)
	}
}

func freeTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestStatusBinary runs the built connector against an edge address where
// nothing listens: connector status reports the edge failing with the
// dial's error, as a report and as JSON; without --metrics it asks for it.
func TestStatusBinary(t *testing.T) {
	bin := buildConnector(t)
	dir := t.TempDir()
	edge := freeTCP(t) // nothing listens: dials are refused
	tok := tunnel.Token{Edges: []string{edge}}
	tok.TunnelID[0], tok.Secret[0], tok.EdgePin[0] = 1, 1, 1
	tokenFile, rulesFile := filepath.Join(dir, "token"), filepath.Join(dir, "ingress.yml")
	if err := os.WriteFile(tokenFile, []byte(tunnel.EncodeToken(tok)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rulesFile, []byte("ingress:\n  - service: http_status:404\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if _, stderr, err := runBin(t, nil, bin, "status"); err == nil || !strings.Contains(stderr, "--metrics: the connector's metrics address is required") {
		t.Errorf("status without --metrics: %v %q", err, stderr)
	}

	metrics := freeTCP(t)
	var log bytes.Buffer
	cmd := exec.Command(bin, "tunnel", "run", "--token-file", tokenFile, "--config", rulesFile, "--protocol", "http2",
		"--connections", "2", "--metrics", metrics)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()

	var st connectorStatus
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _, err := runBin(t, nil, bin, "status", "--json", "--metrics", metrics)
		if err == nil {
			st = connectorStatus{}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("status --json: %v\n%s", err, out)
			}
			if st.Tunnel != nil && len(st.Tunnel.Edges) == 1 && st.Tunnel.Edges[0].DialErrors >= 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dial errors reported after 15s: %+v %v\n%s", st.Tunnel, err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	e := st.Tunnel.Edges[0]
	if e.Edge != edge || e.Connections != 0 || e.Failing < 2 || !strings.Contains(e.LastError, "connection refused") || e.LastErrorAt.IsZero() {
		t.Errorf("edge %+v, want failing with connection refused", e)
	}
	if st.Ready || st.Tunnel.Protocol != "http2" || st.Tunnel.Want != 2 || len(st.Tunnel.Connections) != 0 {
		t.Errorf("status %+v %+v", st, st.Tunnel)
	}
	out, stderr, err := runBin(t, nil, bin, "status", "--metrics", metrics)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, stderr)
	}
	t.Logf("connector status:\n%s", out)
	wantLines(t, "connector status", out,
		`(?m)^connections\s+0 live of 2$`,
		`(?m)^`+regexp.QuoteMeta(edge)+`\s+failing \(\d+ dials\)\s+0\s+\d+\s+0\s+\S+ ago: dial http2 .*connection refused$`)
}
