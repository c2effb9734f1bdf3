package testnet_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// The direct origins of TestDirectProxy: nginx and the testbed's origins
// in the "conn" node, which the edge reaches itself (no tunnel).
const (
	nginxHTTP  = 9080 // by Host; answers with the Host and the address it saw
	nginxHTTPS = 9443 // by SNI; its own certificate for secure.direct.test
	nginxPP    = 9081 // reads a PROXY protocol header and answers with it
	directDown = 9099 // nothing listens

	directHTTPBind = 7100 // binding to nginxHTTP over IPv6
	directPPBind   = 7101 // binding to nginxPP with a PROXY header
	directSumBind  = 7109 // binding to the sum origin
	directSrcBind  = 7119 // binding to the source origin over IPv6
)

const directNginx = `
    server {
        listen 198.18.20.2:9080;
        listen [fd00:20::2]:9080;
        location / { return 200 "nginx host=$host remote=$remote_addr\n"; }
    }
    server {
        listen 198.18.20.2:9443 ssl;
        listen [fd00:20::2]:9443 ssl;
        ssl_certificate {{cert}};
        ssl_certificate_key {{key}};
        location / { return 200 "nginx tls sni=$ssl_server_name remote=$remote_addr\n"; }
    }
    server {
        listen 198.18.20.2:9081 proxy_protocol;
        listen [fd00:20::2]:9081 proxy_protocol;
        location / { return 200 "nginx proxy=$proxy_protocol_addr port=$proxy_protocol_port to=$proxy_protocol_server_addr:$proxy_protocol_server_port remote=$remote_addr\n"; }
    }
`

func directEdgeYAML(strategy string) string {
	return fmt.Sprintf(`routes:
  - {hostname: web.direct.test, service: "tcp://198.18.20.2:%[1]d"}
  - {hostname: secure.direct.test, service: "tcp://[fd00:20::2]:%[2]d"}
  - {hostname: pp.direct.test, service: "tcp://198.18.20.2:%[3]d", proxy_protocol: v2}
  - {hostname: down.direct.test, service: "tcp://198.18.20.2:%[4]d"}
bindings:
  - {listen: "tcp://[::]:%[5]d", service: "tcp://[fd00:20::2]:%[1]d"}
  - {listen: "tcp://[::]:%[6]d", service: "tcp://198.18.20.2:%[3]d", proxy_protocol: v2}
  - {listen: "tcp://[::]:%[7]d", service: "tcp://198.18.20.2:%[9]d"}
  - {listen: "tcp://[::]:%[8]d", service: "tcp://[fd00:20::2]:%[10]d"}
relay: {strategy: %[11]s}
`, nginxHTTP, nginxHTTPS, nginxPP, directDown, directHTTPBind, directPPBind, directSumBind, directSrcBind,
		testnet.OriginSum, testnet.OriginSource, strategy)
}

// TestDirectProxy runs the edge as a direct L4 proxy in front of a real
// nginx and the testbed's origins, with each relay strategy: curl by Host
// and by SNI (verifying nginx's own certificate, so the TLS session is the
// origin's), nginx reading the PROXY v2 header with the user's address
// over IPv4 and IPv6, 1 GiB up with its SHA-256 checked by the origin and
// 256 MiB down, a 502 for an origin that refuses, and the edge's streams
// and bytes counted. The edge logs the strategy it relays with.
func TestDirectProxy(t *testing.T) {
	for _, strategy := range []string{"auto", "copy", "sockmap"} {
		t.Run(strategy, func(t *testing.T) {
			ctx := context.Background()
			n := testnet.New(t, testnet.Tunnel())
			conn, user := n.Node("conn"), n.Node("user")
			if _, err := conn.ServeOrigins(); err != nil {
				t.Fatal(err)
			}
			ng, err := conn.StartNginx(t.TempDir(), directNginx, []string{"secure.direct.test"},
				fmt.Sprintf("198.18.20.2:%d", nginxHTTP), fmt.Sprintf("[fd00:20::2]:%d", nginxHTTPS), fmt.Sprintf("198.18.20.2:%d", nginxPP))
			if err != nil {
				t.Fatal(err)
			}
			rig, err := testnet.StartTunnelRig(ctx, n, testnet.RigOptions{Dir: t.TempDir(), EdgeYAML: directEdgeYAML(strategy)})
			if err != nil {
				t.Fatal(err)
			}
			want := strategy
			if want == "auto" {
				want = "splice"
			}
			if line := "strategy=" + want; !strings.Contains(rig.Edge.Output(), line) {
				t.Errorf("the edge's log does not say %q:\n%s", line, rig.Edge.Output())
			}
			edge4, edge6 := n.Addr("edge", "user", false).String(), n.Addr("edge", "user", true).String()
			user4, user6 := n.Addr("user", "edge", false).String(), n.Addr("user", "edge", true).String()
			curl := func(args ...string) string {
				t.Helper()
				out, err := user.Run(ctx, "curl", append([]string{"-sS", "--max-time", "15"}, args...)...)
				if err != nil {
					t.Errorf("curl %s: %v", strings.Join(args, " "), err)
				}
				return string(out)
			}
			resolve := func(host string, port int, addr string) string {
				if strings.Contains(addr, ":") {
					addr = "[" + addr + "]"
				}
				return fmt.Sprintf("%s:%d:%s", host, port, addr)
			}

			// HTTP by Host: nginx sees the Host and the edge's address.
			if out := curl("--resolve", resolve("web.direct.test", testnet.EdgeHTTPPort, edge4), "http://web.direct.test/"); out != "nginx host=web.direct.test remote=198.18.20.1\n" {
				t.Errorf("curl by Host to nginx: %q", out)
			}
			// TLS by SNI over IPv6, verified against nginx's certificate.
			if out := curl("--cacert", ng.CertFile, "--resolve", resolve("secure.direct.test", testnet.EdgeTLSPort, edge6),
				"https://secure.direct.test/"); out != "nginx tls sni=secure.direct.test remote=fd00:20::1\n" {
				t.Errorf("curl by SNI to nginx over TLS: %q", out)
			}
			// The PROXY header: nginx sees the user, by Host over IPv4 and
			// through a binding over IPv6.
			out := curl("--resolve", resolve("pp.direct.test", testnet.EdgeHTTPPort, edge4), "http://pp.direct.test/")
			if !strings.HasPrefix(out, "nginx proxy="+user4+" port=") || !strings.Contains(out, fmt.Sprintf("to=%s:%d remote=198.18.20.1", edge4, testnet.EdgeHTTPPort)) {
				t.Errorf("nginx behind a PROXY v2 route (IPv4): %q, want the user %s and the edge's %s:%d", out, user4, edge4, testnet.EdgeHTTPPort)
			}
			out = curl(fmt.Sprintf("http://[%s]:%d/", edge6, directPPBind))
			if !strings.HasPrefix(out, "nginx proxy="+user6+" port=") || !strings.Contains(out, fmt.Sprintf("to=%s:%d remote=198.18.20.1", edge6, directPPBind)) {
				t.Errorf("nginx behind a PROXY v2 binding (IPv6): %q, want the user %s", out, user6)
			}
			// A plain binding to nginx over IPv6.
			if out := curl(fmt.Sprintf("http://%s:%d/", edge4, directHTTPBind)); !strings.HasPrefix(out, "nginx host="+edge4+" remote=fd00:20::1") {
				t.Errorf("curl through a direct binding: %q", out)
			}
			// An origin that refuses connections: 502 from the edge.
			if out, _ := user.Run(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "15",
				"--resolve", resolve("down.direct.test", testnet.EdgeHTTPPort, edge4), "http://down.direct.test/"); string(out) != "502" {
				t.Errorf("HTTP to an origin that refuses: %s, want 502", out)
			}

			// Bulk both ways, checked by the origins.
			size := int64(1 << 30)
			if strategy != "auto" {
				size = 256 << 20
			}
			d, err := user.Upload(net.JoinHostPort(edge4, fmt.Sprint(directSumBind)), size)
			if err != nil {
				t.Fatalf("%d MiB upload through a direct binding: %v", size>>20, err)
			}
			t.Logf("%s: %d MiB up in %v (%s)", strategy, size>>20, d.Round(time.Millisecond), testnet.MBps(size, d))
			d, err = user.Download(net.JoinHostPort(edge6, fmt.Sprint(directSrcBind)), 256<<20)
			if err != nil {
				t.Fatalf("256 MiB download over IPv6: %v", err)
			}
			t.Logf("%s: 256 MiB down in %v (%s)", strategy, d.Round(time.Millisecond), testnet.MBps(256<<20, d))

			metrics, err := rig.EdgeMetrics()
			if err != nil {
				t.Fatal(err)
			}
			// http: web and pp; tls: secure; tcp: the four bindings.
			for kind, want := range map[string]float64{"http": 2, "tls": 1, "tcp": 4} {
				if v := testnet.MetricValue(metrics, "onramp_edge_streams_total", `kind="`+kind+`"`); v != want {
					t.Errorf("onramp_edge_streams_total{kind=%s} = %v, want %v", kind, v, want)
				}
			}
			if v := testnet.MetricValue(metrics, "onramp_edge_bytes_total", `direction="to_origin"`); v < float64(size) {
				t.Errorf("onramp_edge_bytes_total{direction=to_origin} = %v, want at least the %d uploaded", v, size)
			}
			if v := testnet.MetricValue(metrics, "onramp_edge_errors_total", `kind="origin"`); v != 1 {
				t.Errorf("onramp_edge_errors_total{kind=origin} = %v, want 1", v)
			}
		})
	}
}
