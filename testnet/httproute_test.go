package testnet_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// TestTunnelPathRuleKeepAlive: curl fetches /, /admin and / again over one
// keep-alive HTTP/1.1 connection to the edge; the path rule for /admin
// holds for the second request (403 from the connector, not the origin's
// page), and the connection is reused throughout (one stream at the
// connector).
func TestTunnelPathRuleKeepAlive(t *testing.T) {
	for _, proto := range []string{"quic", "http2"} {
		t.Run(proto, func(t *testing.T) {
			w := newTunnelWorld(t)
			c := w.connector("conn", proto, fmt.Sprintf(`ingress:
  - {hostname: web.demo.test, path: /admin, service: "http_status:403"}
  - {hostname: web.demo.test, service: "http://198.18.30.2:%d"}
  - service: "http_status:404"
`, testnet.OriginHTTP))
			base := fmt.Sprintf("http://web.demo.test:%d", testnet.EdgeHTTPPort)
			out, err := w.user.Run(context.Background(), "curl", "--http1.1", "-sS", "-v", "--max-time", "15",
				"--resolve", fmt.Sprintf("web.demo.test:%d:%s", testnet.EdgeHTTPPort, w.edge4),
				"-w", `\nRESULT %{http_code} %{num_connects} %{local_port}\n`,
				base+"/", base+"/admin", base+"/again")
			if err != nil {
				t.Fatal(err)
			}
			text := string(out)
			var results []string
			for line := range strings.SplitSeq(text, "\n") {
				if r, ok := strings.CutPrefix(line, "RESULT "); ok {
					results = append(results, r)
				}
			}
			if len(results) != 3 {
				t.Fatalf("curl printed %d results, want 3:\n%s", len(results), text)
			}
			var port string
			for i, want := range []struct{ code, connects string }{{"200", "1"}, {"403", "0"}, {"200", "0"}} {
				f := strings.Fields(results[i])
				if len(f) != 3 || f[0] != want.code || f[1] != want.connects {
					t.Errorf("request %d: status, new connections, local port = %q; want %s %s", i+1, results[i], want.code, want.connects)
					continue
				}
				if port == "" {
					port = f[2]
				} else if f[2] != port {
					t.Errorf("request %d from local port %s, the first from %s: not the same connection", i+1, f[2], port)
				}
			}
			if n := strings.Count(text, "Re-using existing connection"); n != 2 {
				t.Errorf("curl re-used its connection %d times, want 2:\n%s", n, text)
			}
			for _, want := range []string{"hello from origin: GET / host=web.demo.test", "403 Forbidden", "hello from origin: GET /again"} {
				if !strings.Contains(text, want) {
					t.Errorf("curl output lacks %q:\n%s", want, text)
				}
			}
			if strings.Contains(text, "GET /admin host=") {
				t.Errorf("the origin served /admin:\n%s", text)
			}

			// The connector took one HTTP stream for the three requests.
			resp, err := c.Node.HTTPClient(5 * time.Second).Get("http://" + c.Metrics + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if want := `onramp_connector_streams_total{kind="http"} 1`; !strings.Contains(string(b), want+"\n") {
				t.Errorf("connector metrics lack %q", want)
			}
		})
	}
}
