package testnet_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// The edge configuration TestEdgeReload starts with: web.demo.test by Host
// and the echo service on a TCP port.
const reloadYAML0 = `routes:
  - {hostname: "web.demo.test", tunnel: demo}
bindings:
  - {listen: "tcp://[::]:7000", tunnel: demo, service: echo.internal}
`

// TestEdgeReload changes a running edge's edge.yml and sends it SIGHUP, as
// systemctl reload does, with a TCP echo through a binding and an HTTP
// download through a route running all along: a route and a binding added
// serve at once; removed, they refuse new users while the echo and the
// download on them go on to their end; bad files (a YAML error, a port
// another process holds, a setting that needs a restart) are refused with
// the error in the log and everything serves as before; log_level: debug
// brings debug lines; a lowered maxConnsPerSource refuses new connections.
// The edge's log says what each reload changed, and its metrics count them.
func TestEdgeReload(t *testing.T) {
	n := testnet.New(t, testnet.Tunnel())
	if _, err := n.Node("origin").ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	rig, err := testnet.StartTunnelRig(context.Background(), n, testnet.RigOptions{Dir: t.TempDir(), EdgeYAML: reloadYAML0})
	if err != nil {
		t.Fatal(err)
	}
	w := &tunnelWorld{t: t, n: n, rig: rig, user: n.Node("user"),
		edge4: n.Addr("edge", "user", false).String(), edge6: n.Addr("edge", "user", true).String()}
	w.connector("conn", "quic", "")
	full, err := os.ReadFile(rig.EdgeConfig)
	if err != nil {
		t.Fatal(err)
	}
	header, ok := strings.CutSuffix(string(full), reloadYAML0)
	if !ok {
		t.Fatalf("edge.yml does not end with the rig's routes and bindings:\n%s", full)
	}
	http := w.addr(false, testnet.EdgeHTTPPort)
	echo7000, echo7001 := w.addr(false, 7000), w.addr(false, 7001)

	// reloadFile writes the edge's configuration file, sends SIGHUP and
	// returns the edge's line about it; reload writes body after the rig's
	// header.
	reloads := 0
	reloadFile := func(content string) string {
		t.Helper()
		if err := os.WriteFile(rig.EdgeConfig, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := rig.Edge.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		reloads++
		deadline := time.Now().Add(10 * time.Second)
		for {
			if lines := reloadLines(rig.Edge.Output()); len(lines) >= reloads {
				return lines[reloads-1]
			}
			if time.Now().After(deadline) {
				t.Fatalf("no reload line from the edge 10s after SIGHUP %d:\n%s", reloads, rig.Edge.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	reload := func(body string) string { t.Helper(); return reloadFile(header + body) }
	echoOnce := func(addr string) error {
		c, err := w.user.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		return echoOn(c, "hello "+addr)
	}
	get := func(host string) int {
		code, _, err := w.user.HTTPGet(http, host, "/")
		if err != nil {
			t.Logf("GET %s: %v", host, err)
		}
		return code
	}

	// The live streams: an echo through the 7000 binding, and a download
	// of 16 MiB at 1 MiB/s through the web.demo.test route.
	live, err := w.user.Dial("tcp", echo7000)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := echoOn(live, "before any reload"); err != nil {
		t.Fatal(err)
	}
	const size = 16 << 20
	headers := t.TempDir() + "/download-headers"
	download, err := w.user.Start("curl", "-sS", "--max-time", "120", "--limit-rate", "1M", "-o", "/dev/null",
		"-D", headers, "-w", "%{http_code} %{size_download}\n",
		"--resolve", fmt.Sprintf("web.demo.test:%d:%s", testnet.EdgeHTTPPort, w.edge4),
		fmt.Sprintf("http://web.demo.test:%d/bytes?n=%d", testnet.EdgeHTTPPort, size))
	if err != nil {
		t.Fatal(err)
	}
	// The download is live once curl has its response's head (curl writes
	// and flushes -D as the head arrives): on a busy machine curl may take
	// longer to start than the first reloads below take.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if head, _ := os.ReadFile(headers); strings.HasPrefix(string(head), "HTTP/1.1 200") {
			break
		}
		select {
		case <-download.Done():
			t.Fatalf("the download ended before the reloads: %v\n%s", download.Wait(), download.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the download had no response head after 20s:\n%s", download.Output())
		}
	}

	// What is not there yet.
	if code := get("other.demo.test"); code != 404 {
		t.Fatalf("other.demo.test before its route: %d, want 404", code)
	}
	if err := echoOnce(echo7001); err == nil {
		t.Fatal("port 7001 answers before its binding")
	}

	// 1. A route and a binding added: both serve.
	yaml1 := reloadYAML0 + `  - {listen: "tcp://[::]:7001", tunnel: demo, service: echo.internal}
`
	yaml1 = strings.Replace(yaml1, "bindings:", "  - {hostname: \"other.demo.test\", tunnel: demo}\nbindings:", 1)
	line := reload(yaml1)
	if !strings.Contains(line, `msg="edge config reloaded"`) || !strings.Contains(line, `routes="+1 -0 ~0"`) || !strings.Contains(line, `bindings="+1 -0 ~0"`) {
		t.Errorf("reload adding a route and a binding logged:\n%s", line)
	}
	if code := get("other.demo.test"); code != 200 {
		t.Errorf("the added route: %d, want 200", code)
	}
	if err := echoOnce(echo7001); err != nil {
		t.Errorf("the added binding: %v", err)
	}
	if err := echoOn(live, "after adding"); err != nil {
		t.Fatalf("the live echo after a reload: %v", err)
	}

	// 2. The route and the binding the live streams use removed: new users
	// are refused, the live streams go on.
	yaml2 := `routes:
  - {hostname: "other.demo.test", tunnel: demo}
bindings:
  - {listen: "tcp://[::]:7001", tunnel: demo, service: echo.internal}
`
	line = reload(yaml2)
	if !strings.Contains(line, `routes="+0 -1 ~0"`) || !strings.Contains(line, `bindings="+0 -1 ~0"`) {
		t.Errorf("reload removing a route and a binding logged:\n%s", line)
	}
	select {
	case <-download.Done():
		t.Fatalf("the download ended before its route was removed (make it longer): %v\n%s", download.Wait(), download.Output())
	default:
	}
	if code := get("web.demo.test"); code != 404 {
		t.Errorf("the removed route: %d, want 404 for a new request", code)
	}
	if err := echoOnce(echo7000); err == nil {
		t.Error("the removed binding still takes new connections")
	}
	if err := echoOn(live, "after removing its binding"); err != nil {
		t.Errorf("the live echo on the removed binding broke: %v", err)
	}

	// 3. Bad files: refused with the error logged; everything serves as
	// before (the port-in-use file drops other.demo.test and port 7001:
	// had any of it been applied, they would be gone).
	other := n.Node("edge")
	var squatter net.Listener // another process's port
	if err := other.Do(func() (err error) { squatter, err = net.Listen("tcp", "[::]:7002"); return err }); err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	for _, bad := range []struct{ name, body, want string }{
		{"yaml error", "routes: [\n", "yaml"},
		{"invalid field", strings.Replace(yaml2, "tunnel: demo}\nbindings", "tunnel: Demo!}\nbindings", 1), "routes[0].tunnel"},
		{"port in use", `bindings:
  - {listen: "tcp://[::]:7002", tunnel: demo, service: echo.internal}
`, "address already in use"},
	} {
		line := reload(bad.body)
		if !strings.Contains(line, "edge config reload refused; the running configuration stays") || !strings.Contains(line, bad.want) {
			t.Errorf("%s: the edge logged\n%s\nwant the refusal naming %q", bad.name, line, bad.want)
		}
		if code := get("other.demo.test"); code != 200 {
			t.Errorf("%s: other.demo.test after the refused file: %d, want 200", bad.name, code)
		}
		if err := echoOnce(echo7001); err != nil {
			t.Errorf("%s: port 7001 after the refused file: %v", bad.name, err)
		}
	}
	// The header with another data directory and tunnel port: a restart's
	// business.
	moved := strings.Replace(strings.Replace(header, "edge-data", "edge-data2", 1), fmt.Sprint(testnet.EdgeTunnelPort), "7845", 1)
	line = reloadFile(moved + yaml2)
	if !strings.Contains(line, "reload refused") || !strings.Contains(line, "data, listen.tunnels changed") {
		t.Errorf("a new data directory and tunnel port: the edge logged\n%s\nwant them named as needing a restart", line)
	}
	if code := get("other.demo.test"); code != 200 {
		t.Errorf("after the refused restart-only change: other.demo.test %d, want 200", code)
	}

	// 4. log_level: debug brings debug lines.
	if strings.Contains(rig.Edge.Output(), "level=DEBUG") {
		t.Fatal("debug lines before log_level: debug")
	}
	line = reload("log_level: debug\n" + yaml2)
	if !strings.Contains(line, "log_level=info->debug") {
		t.Errorf("reload to debug logged: %s", line)
	}
	if err := echoOnce(echo7001); err != nil {
		t.Error(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(rig.Edge.Output(), "level=DEBUG") {
		if time.Now().After(deadline) {
			t.Error("no debug line from the edge after log_level: debug and a connection")
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	// 5. maxConnsPerSource: three connections of one user are served now,
	// and with a limit of 2 (the live echo holds one) one at most.
	hold := func() (served int) {
		for range 3 {
			c, err := w.user.Dial("tcp", echo7001)
			if err != nil {
				continue
			}
			defer c.Close()
			if echoOn(c, "held") == nil {
				served++
			}
		}
		return served
	}
	if got := hold(); got != 3 {
		t.Fatalf("before the limit: %d of 3 connections served", got)
	}
	before, err := rig.EdgeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	line = reload("log_level: debug\n" + yaml2 + "limits: {maxConnsPerSource: 2}\n")
	if !strings.Contains(line, `limits="maxConnsPerSource 256->2"`) {
		t.Errorf("reload of a limit logged: %s", line)
	}
	// The download may still hold a connection of the user's too.
	if got := hold(); got > 1 {
		t.Errorf("with maxConnsPerSource 2 and the live echo open, %d of 3 new connections were served; want at most 1", got)
	}
	after, err := rig.EdgeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	refused := func(m string) float64 {
		return testnet.MetricValue(m, "onramp_edge_user_connections_refused_total", `limit="maxConnsPerSource"`)
	}
	if refused(after) < refused(before)+2 {
		t.Errorf("refusals by maxConnsPerSource went from %v to %v; want 2 more at least", refused(before), refused(after))
	}
	if got := testnet.MetricValue(after, "onramp_edge_config_reloads_total", `result="ok"`); got != 4 {
		t.Errorf("onramp_edge_config_reloads_total{result=\"ok\"} = %v, want 4", got)
	}
	if got := testnet.MetricValue(after, "onramp_edge_config_reloads_total", `result="error"`); got != 4 {
		t.Errorf("onramp_edge_config_reloads_total{result=\"error\"} = %v, want 4", got)
	}
	if ts := testnet.MetricValue(after, "onramp_edge_config_last_reload_success_timestamp_seconds"); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("onramp_edge_config_last_reload_success_timestamp_seconds = %v, not the last reload's time", ts)
	}

	// The live streams reach their end.
	if err := echoOn(live, "at the end"); err != nil {
		t.Errorf("the live echo at the end: %v", err)
	}
	if err := download.Wait(); err != nil {
		t.Fatalf("the download through the removed route: %v\n%s", err, download.Output())
	}
	if out := download.Output(); !strings.Contains(out, fmt.Sprintf("200 %d", size)) {
		t.Errorf("the download through the removed route: curl says %q, want 200 and %d bytes", out, size)
	}
}

// reloadLines returns the edge's lines about reloads.
func reloadLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `msg="edge config reload`) {
			lines = append(lines, l)
		}
	}
	return lines
}

// echoOn sends msg on c and reads it back.
func echoOn(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		return fmt.Errorf("echo %q: got %q, %v", msg, got, err)
	}
	return nil
}
