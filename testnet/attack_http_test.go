package testnet_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// bypassTargets are spellings of /admin that reach /admin at an origin
// normalising paths as Tomcat, Spring, IIS or nginx do.
var bypassTargets = []string{
	"/admin;x", "/.;/admin", "/;x/admin", "/static/..;/admin", "/admin\\x", "/x%5c..%5cadmin",
	"/x/%2e%2e/admin", "/%2e/admin", "/x%2f..%2fadmin", "/%61dmin", "/%2561dmin", "//admin", "/x/../admin",
	"/ADMIN", "/Admin/", "/admin.", "/admin%20", "/admin::$DATA", "/admin.json", "/%ef%bd%81dmin", "/%u0061dmin",
}

// TestPathDenyBypass plays hole 5: a rule denies /admin of a host
// (http_status:403) in front of an origin that normalises paths as
// Tomcat, Spring, IIS and nginx together would, and counts the requests
// that reach its /admin. Each spelling of /admin, sent raw through the
// edge's HTTP listener (first on a connection, and later on a keep-alive
// one after a request for another path, and for another Host), gets 403
// or 400 and the origin's /admin count stays 0; sent to the origin
// directly, each spelling reaches /admin (the attacker's payoff). A user
// of another host keeps being served throughout.
func TestPathDenyBypass(t *testing.T) {
	w := newTunnelWorld(t)
	origin, err := w.n.Node("origin").ServeNormalisingOrigin("/admin")
	if err != nil {
		t.Fatal(err)
	}
	c := w.connector("conn", "quic", fmt.Sprintf(`ingress:
  - {hostname: wiki.demo.test, path: /admin, service: "http_status:403"}
  - {hostname: wiki.demo.test, service: "http://198.18.30.2:%d"}
  - {hostname: web.demo.test, service: "http://198.18.30.2:%d"}
  - service: "http_status:404"
`, testnet.OriginNormalising, testnet.OriginHTTP))
	httpAddr := w.addr(false, testnet.EdgeHTTPPort)

	// Without the tunnel, every spelling is a way into /admin.
	direct := net.JoinHostPort("198.18.30.2", fmt.Sprint(testnet.OriginNormalising))
	for _, target := range bypassTargets {
		code, body, err := rawGet(w.n.Node("conn"), direct, "wiki.demo.test", target)
		if err != nil || code != 200 || !strings.HasPrefix(body, "protected") {
			t.Fatalf("direct GET %s: %d %q %v; the origin should resolve it to /admin", target, code, body, err)
		}
	}
	if n := origin.Hits(); n != int64(len(bypassTargets)) {
		t.Fatalf("origin counted %d /admin hits from %d direct requests", n, len(bypassTargets))
	}
	origin.ResetHits()

	loop := testnet.StartLoop("web.demo.test user", 20*time.Millisecond, func() error {
		code, body, err := w.user.HTTPGet(httpAddr, "web.demo.test", "/")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d %q", code, body)
		}
		return err
	})
	defer loop.Stop()

	// The attack, in rounds for a few seconds while the loop runs.
	refused, badPath, rounds := map[int]int{}, 0, 0
	answer := func(what string, code int, body string, err error, want ...int) bool {
		if err != nil || !slices.Contains(want, code) {
			t.Errorf("%s: %d %q %v; want %v", what, code, body, err, want)
			return false
		}
		refused[code]++
		if code == 400 && strings.HasPrefix(body, "400 Bad Request: request path") {
			badPath++ // the connector's refusal, not net/http's
		}
		return true
	}
	for start := time.Now(); rounds == 0 || time.Since(start) < 3*time.Second; rounds++ {
		for k, target := range bypassTargets {
			// First request of a connection.
			code, body, err := rawGet(w.user, httpAddr, "wiki.demo.test", target)
			answer("GET "+target, code, body, err, 403, 400)
			// Later on a keep-alive connection: after another path, and
			// after a request for another Host.
			rc, err := w.user.RawHTTP(httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			for i, step := range []struct {
				host, target string
				want         []int
			}{
				{"wiki.demo.test", "/public", []int{200}},
				{"wiki.demo.test", target, []int{403, 400}},
				{"web.demo.test", target, []int{421, 400}}, // 400: net/http refuses %u before the Host check
				{"wiki.demo.test", "/public/" + fmt.Sprint(k), []int{200}},
				{"wiki.demo.test", target, []int{403, 400}},
			} {
				if rc.Closed() { // net/http answered 400 and closed: go on on a new one
					rc.Close()
					if rc, err = w.user.RawHTTP(httpAddr); err != nil {
						t.Fatal(err)
					}
				}
				code, body, err := rc.Get(step.host, step.target)
				if !answer(fmt.Sprintf("keep-alive request %d, %s %s", i+1, step.host, step.target), code, body, err, step.want...) {
					break
				}
			}
			rc.Close()
		}
		if t.Failed() {
			break
		}
	}
	loop.Stop()
	t.Logf("%d spellings of /admin through the edge, %d rounds: %d answered 403, %d answered 400 (%d by the path check), %d 421 for another Host",
		len(bypassTargets), rounds, refused[403], refused[400], badPath, refused[421])
	t.Log(loop.String())
	if n := origin.Hits(); n != 0 {
		t.Errorf("the origin's /admin was reached %d times through the tunnel", n)
	}
	if r := loop.Rate(); r < 0.99 {
		t.Errorf("the other host's user was served %.2f%% of the time, want at least 99%%", 100*r)
	}
	rss, peak, err := w.rig.Edge.MemStatus()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edge memory: rss %s, peak %s", testnet.MiB(rss), testnet.MiB(peak))
	metrics, err := w.n.Node("conn").Metrics(c.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	if v := testnet.MetricValue(metrics, "onramp_connector_errors_total", `kind="bad_path"`); v != float64(badPath) {
		t.Errorf("connector errors_total{bad_path} = %v, want %d", v, badPath)
	}
}

// rawGet sends one GET with the target exactly as given on a new
// connection from node.
func rawGet(node *testnet.Node, addr, host, target string) (int, string, error) {
	rc, err := node.RawHTTP(addr)
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()
	return rc.Get(host, target)
}

// TestListenerSchemes plays hole 6: services meant for port bindings (a
// tcp origin, a raw line service on a unix socket) are not reached
// through the edge's HTTP listener (403 naming the rule and the listener;
// the unix socket is only ever spoken HTTP, so raw bytes never reach it)
// or its TLS listener (the connection is closed), while the bindings reach
// them; the TLS listener reaches a rule with tlsPassthrough: true, and
// not an https rule meant for HTTP users.
func TestListenerSchemes(t *testing.T) {
	n := testnet.New(t, testnet.Tunnel())
	origins, err := n.Node("origin").ServeOrigins()
	if err != nil {
		t.Fatal(err)
	}
	const dbPort, sockPort = 7100, 7101
	rig, err := testnet.StartTunnelRig(context.Background(), n, testnet.RigOptions{Dir: t.TempDir(), EdgeYAML: fmt.Sprintf(`routes:
  - {hostname: "*.demo.test", tunnel: demo}
bindings:
  - {listen: "tcp://[::]:%d", tunnel: demo, service: db.demo.test}
  - {listen: "tcp://[::]:%d", tunnel: demo, service: sock.demo.test}
`, dbPort, sockPort)})
	if err != nil {
		t.Fatal(err)
	}
	// A raw line service on a unix socket, meant for the binding: it
	// answers each line and records what it was sent.
	sock := filepath.Join(t.TempDir(), "raw.sock")
	var mu sync.Mutex
	var received strings.Builder
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					mu.Lock()
					received.WriteString(s.Text() + "\n")
					mu.Unlock()
					fmt.Fprintf(c, "raw: %s\n", s.Text())
				}
			}()
		}
	}()
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}

	c, err := rig.StartConnector(n.Node("conn"), "conn", "quic", fmt.Sprintf(`ingress:
  - {hostname: db.demo.test, service: "tcp://198.18.30.2:%[1]d"}
  - {hostname: sock.demo.test, service: "unix:%[2]s"}
  - {hostname: secure.demo.test, service: "tcp://198.18.30.2:%[3]d", tlsPassthrough: true}
  - {hostname: web.demo.test, service: "https://198.18.30.2:%[3]d", originRequest: {noTLSVerify: true}}
  - service: "http_status:404"
`, testnet.OriginEcho, sock, testnet.OriginHTTPS))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(20 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, c.Output())
	}
	user := n.Node("user")
	edge := n.Addr("edge", "user", false).String()
	httpAddr := net.JoinHostPort(edge, fmt.Sprint(testnet.EdgeHTTPPort))
	tlsAddr := net.JoinHostPort(edge, fmt.Sprint(testnet.EdgeTLSPort))

	// HTTP by Host.
	code, body, err := rawGet(user, httpAddr, "db.demo.test", "/")
	if err != nil || code != 403 || !strings.Contains(body, `ingress rule 0 (hostname "db.demo.test") is a tcp service`) || !strings.Contains(body, "http listener") {
		t.Errorf("HTTP user to the tcp service: %d %q %v; want 403 naming the rule and the listener", code, body, err)
	}
	t.Logf("HTTP user to a tcp service: %d %s", code, strings.TrimSpace(body))
	rc, err := user.RawHTTP(httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	code, body, err = rc.Get("sock.demo.test", "/")
	if err != nil || code != 502 {
		t.Errorf("HTTP user to the raw unix service: %d %q %v; want 502 (it does not answer HTTP)", code, body, err)
	}
	t.Logf("HTTP user to a raw unix service: %d %s", code, strings.TrimSpace(body))
	if err := rc.Write([]byte("FLUSHALL\r\n\r\n")); err == nil {
		if code, _, err := rc.Read(); err == nil && code != 400 {
			t.Errorf("raw bytes after a request: %d, want 400", code)
		}
	}
	rc.Close()
	code, body, err = rawGet(user, httpAddr, "web.demo.test", "/via-https")
	if err != nil || code != 200 || !strings.Contains(body, "GET /via-https") {
		t.Errorf("HTTP user to the https rule: %d %q %v", code, body, err)
	}

	// TLS by SNI: only the passthrough rule.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(origins.CAPEM)
	for sni, ok := range map[string]bool{"secure.demo.test": true, "web.demo.test": false, "db.demo.test": false, "sock.demo.test": false, "nothing.demo.test": false} {
		conn, err := user.Dial("tcp", tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(conn, &tls.Config{ServerName: sni, RootCAs: pool, InsecureSkipVerify: !ok})
		err = tc.Handshake()
		switch {
		case ok && err != nil:
			t.Errorf("TLS by SNI %s: %v", sni, err)
		case ok:
			fmt.Fprintf(tc, "GET /sni HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni)
			b, _ := io.ReadAll(tc)
			if !strings.Contains(string(b), "hello from origin over TLS: GET /sni") {
				t.Errorf("TLS by SNI %s: %q", sni, b)
			}
		case err == nil:
			t.Errorf("TLS by SNI %s: handshake succeeded, want the connection closed", sni)
		case !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset"):
			t.Logf("TLS by SNI %s: %v", sni, err)
		}
		conn.Close()
	}

	// The bindings reach both services.
	for port, want := range map[int]string{dbPort: "ping", sockPort: "raw: ping"} {
		conn, err := user.Dial("tcp", net.JoinHostPort(edge, fmt.Sprint(port)))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "ping\n")
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != want {
			t.Errorf("binding on port %d: %q %v, want %q", port, line, err, want)
		}
		conn.Close()
	}

	mu.Lock()
	got := received.String()
	mu.Unlock()
	if strings.Contains(got, "FLUSHALL") {
		t.Errorf("the raw unix service received the user's raw bytes:\n%s", got)
	}
	metrics, err := n.Node("conn").Metrics(c.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	// 1 HTTP refusal, 4 TLS ones.
	if v := testnet.MetricValue(metrics, "onramp_connector_errors_total", `kind="listener"`); v != 5 {
		t.Errorf("connector errors_total{listener} = %v, want 5", v)
	}
	em, err := rig.EdgeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edge errors_total{refused} = %v", testnet.MetricValue(em, "onramp_edge_errors_total", `kind="refused"`))
}
