package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
	"github.com/onramp-net/onramp/l4proxy/store"
)

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// reloadEnv is an edge's serving part run in the test: the store, the
// Server, the user listeners from an edge.yml the test rewrites.
type reloadEnv struct {
	t    *testing.T
	a    *app
	path string
	data string
	log  *lockedBuffer
	reg  *prometheus.Registry
}

// startReloadEnv starts the user side of an edge on the configuration
// body (data and listen.tunnels are added).
func startReloadEnv(t *testing.T, body string) *reloadEnv {
	t.Helper()
	dir := t.TempDir()
	e := &reloadEnv{t: t, path: filepath.Join(dir, "edge.yml"), data: filepath.Join(dir, "data"), log: &lockedBuffer{}, reg: prometheus.NewRegistry()}
	e.write(body)
	g := &globals{config: e.path}
	cfg, err := g.load()
	if err != nil {
		t.Fatal(err)
	}
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(io.MultiWriter(e.log, testWriter{t}), &slog.HandlerOptions{Level: level}))
	if err := os.MkdirAll(e.data, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(e.data, "edge.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	e.a = &app{g: g, cfg: cfg, log: log, store: st, ctx: ctx}
	lim := limitsOf(cfg)
	e.a.srv = edge.NewServer(edge.Options{Logger: log, Registerer: e.reg, MaxConns: lim.MaxConns, MaxConnsPerSource: lim.MaxConnsPerSource, IdleTimeout: lim.IdleTimeout})
	e.a.reloader = newReloader(e.a, e.path, logLevel{v: level}, e.reg)
	if err := e.a.reloader.start(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		e.a.reloader.stop()
	})
	if cfg.L3.Enabled() {
		if e.a.l3, err = newL3ctl(cfg, st, log); err != nil {
			t.Fatal(err)
		}
		h, err := startHub(ctx, e.a.l3, log, e.reg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
	}
	return e
}

// testWriter sends the edge's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// write writes the configuration body, with the data directory and a
// tunnel listener on a free port unless it sets them.
func (e *reloadEnv) write(body string) {
	e.t.Helper()
	cfg := body
	if !strings.HasPrefix(body, "listen:") && !strings.Contains(body, "\nlisten:") {
		cfg = "listen:\n  tunnels: \"127.0.0.1:0\"\n" + cfg
	}
	if !strings.HasPrefix(body, "data:") && !strings.Contains(body, "\ndata:") {
		cfg = "data: " + e.data + "\n" + cfg
	}
	if err := os.WriteFile(e.path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// reload writes body and reloads; it returns the reload's error and the
// log line it wrote.
func (e *reloadEnv) reload(body string) (string, error) {
	e.t.Helper()
	e.write(body)
	before := len(e.log.String())
	err := e.a.reload(context.Background())
	return e.log.String()[before:], err
}

func (e *reloadEnv) metric(name, label string) float64 {
	return edgetest.Metric(e.t, e.reg, name, label)
}

// greet dials addr and returns the first line its origin says.
func greet(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// namedOrigin says its name on a line, then echoes.
func namedOrigin(t *testing.T, name string) string {
	return edgetest.ServeTCPOrigin(t, "127.0.0.1", func(c net.Conn) {
		fmt.Fprintf(c, "%s\n", name)
		io.Copy(c, c)
	})
}

// echoing keeps a connection echoing until stopped; end returns its error.
type echoing struct {
	c    net.Conn
	stop chan struct{}
	done chan error
}

func startEchoing(t *testing.T, addr, want string) *echoing {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || strings.TrimSpace(line) != want {
		t.Fatalf("stream to %s: greeting %q, %v; want %s", addr, line, err, want)
	}
	e := &echoing{c: c, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 32)
		for i := 0; ; i++ {
			select {
			case <-e.stop:
				e.done <- nil
				return
			default:
			}
			msg := fmt.Sprintf("ping %d\n", i)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, msg); err != nil {
				e.done <- fmt.Errorf("ping %d: %w", i, err)
				return
			}
			if _, err := io.ReadFull(br, buf[:len(msg)]); err != nil || string(buf[:len(msg)]) != msg {
				e.done <- fmt.Errorf("ping %d: got %q, %v", i, buf[:len(msg)], err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return e
}

func (e *echoing) end() error {
	close(e.stop)
	return <-e.done
}

func freeAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
}

// TestReloadApply runs the reload of a live edge through its steps, a
// stream on a binding echoing all along: a binding and a route added
// (both serve), one removed (it refuses new users while the stream on it
// goes on), bad files of each kind (nothing changes), the log level and
// a limit. Each reload writes one line saying what changed and is
// counted.
func TestReloadApply(t *testing.T) {
	a, b := namedOrigin(t, "A"), namedOrigin(t, "B")
	p1, p2, p3, p4 := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	bindA := fmt.Sprintf("  - {listen: \"tcp://%s\", service: \"tcp://%s\"}\n", p1, a)
	bindB := fmt.Sprintf("  - {listen: \"tcp://%s\", service: \"tcp://%s\"}\n", p2, b)
	e := startReloadEnv(t, "bindings:\n"+bindA)
	live := startEchoing(t, p1, "A")

	// A binding added.
	line, err := e.reload("bindings:\n" + bindA + bindB + "routes:\n  - {hostname: b.test, service: \"tcp://" + b + "\"}\n")
	if err != nil {
		t.Fatalf("reload adding a binding: %v", err)
	}
	if !strings.Contains(line, `msg="edge config reloaded"`) || !strings.Contains(line, `routes="+1 -0 ~0"`) || !strings.Contains(line, `bindings="+1 -0 ~0"`) ||
		!strings.Contains(line, "limits=unchanged") || !strings.Contains(line, "log_level=unchanged") {
		t.Errorf("reload line: %s", line)
	}
	if got, err := greet(p2); err != nil || got != "B" {
		t.Errorf("the added binding: %q, %v; want B", got, err)
	}

	// The first binding's target changed in place, then the binding removed.
	if line, err = e.reload("bindings:\n" + strings.Replace(bindA, a, b, 1) + bindB); err != nil || !strings.Contains(line, `bindings="+0 -0 ~1"`) || !strings.Contains(line, `routes="+0 -1 ~0"`) {
		t.Fatalf("reload changing a binding's origin: %v\n%s", err, line)
	}
	if got, err := greet(p1); err != nil || got != "B" {
		t.Errorf("a new user of the changed binding: %q, %v; want B", got, err)
	}
	if line, err = e.reload("bindings:\n" + bindB); err != nil || !strings.Contains(line, `bindings="+0 -1 ~0"`) {
		t.Fatalf("reload removing a binding: %v\n%s", err, line)
	}
	if got, err := greet(p1); err == nil {
		t.Errorf("the removed binding still serves new users (%q)", got)
	}
	time.Sleep(100 * time.Millisecond) // the live stream goes on echoing meanwhile

	// Bad files: nothing changes, the error is logged and counted.
	holder, err := net.Listen("tcp", p3) // another process's port
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	for _, bad := range []struct{ name, body, want string }{
		{"yaml", "bindings: [\n", "yaml"},
		{"field", "bindings:\n" + bindB + "  - {listen: \"sctp://" + p4 + "\", service: x}\n", "bindings[1].listen"},
		{"unknown field", "bindingz: []\n", "bindingz"},
		{"port in use", "bindings:\n  - {listen: \"tcp://" + p4 + "\", service: \"tcp://" + a + "\"}\n  - {listen: \"tcp://" + p3 + "\", service: \"tcp://" + a + "\"}\n",
			"bindings[1]: listen tcp " + p3},
		{"two bindings on one port", "bindings:\n" + bindB + bindB, "bindings[1]: tcp " + p2 + " is also the address of bindings[0]"},
		{"restart needed", "data: /elsewhere\nlisten: {metrics: \"127.0.0.1:1\"}\n", "data, listen.tunnels, listen.metrics changed"},
		{"l3", "l3: {listen: \"127.0.0.1:51820\", endpoint: \"198.18.0.1:51820\", pools: {ipv4: 198.18.96.0/20}}\n", "l3 changed"},
		{"handshake limit", "bindings:\n" + bindB + "limits: {maxHandshakes: 5, maxHandshakesPerSource: 5}\n", "limits.maxHandshakes, limits.maxHandshakesPerSource changed"},
	} {
		errors0 := e.metric("onramp_edge_config_reloads_total", "error")
		line, err := e.reload(bad.body)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: reload error %v; want one naming %q", bad.name, err, bad.want)
		}
		if !strings.Contains(line, "edge config reload refused; the running configuration stays") {
			t.Errorf("%s: logged %q", bad.name, line)
		}
		if got := e.metric("onramp_edge_config_reloads_total", "error"); got != errors0+1 {
			t.Errorf("%s: reloads_total{result=error} %v, want %v", bad.name, got, errors0+1)
		}
		if got, err := greet(p2); err != nil || got != "B" {
			t.Errorf("%s: after the refused file the binding answers %q, %v; want B", bad.name, got, err)
		}
		if got, err := greet(p4); err == nil {
			t.Errorf("%s: a binding of the refused file serves (%q)", bad.name, got)
		}
	}
	if e.metric("onramp_edge_config_last_reload_successful", "") != 0 {
		t.Error("onramp_edge_config_last_reload_successful is not 0 after a refused reload")
	}

	// The log level and a limit.
	if e.a.log.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("debug enabled before log_level: debug")
	}
	line, err = e.reload("log_level: debug\nbindings:\n" + bindB + "limits: {maxConnsPerSource: 1}\n")
	if err != nil || !strings.Contains(line, "log_level=info->debug") || !strings.Contains(line, `limits="maxConnsPerSource 256->1"`) {
		t.Fatalf("reload of the log level and a limit: %v\n%s", err, line)
	}
	if !e.a.log.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("debug not enabled after log_level: debug")
	}
	if got := e.a.srv.Limits().MaxConnsPerSource; got != 1 {
		t.Errorf("maxConnsPerSource is %d after the reload, want 1", got)
	}
	// The live stream holds this source's one slot: a new user is reset.
	if got, err := greet(p2); err == nil {
		t.Errorf("with maxConnsPerSource 1 and a stream open a second one was served (%q)", got)
	}
	if err := live.end(); err != nil {
		t.Errorf("the stream opened at the start broke: %v", err)
	}
	if ok := e.metric("onramp_edge_config_reloads_total", "ok"); ok != 4 {
		t.Errorf("reloads_total{result=ok} = %v, want 4", ok)
	}
	if e.metric("onramp_edge_config_last_reload_successful", "") != 1 || e.metric("onramp_edge_config_last_reload_success_timestamp_seconds", "") < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Error("the last successful reload is not recorded")
	}
}

// TestReloadListenHTTP moves the HTTP listener to another port: the new
// one serves, the old one refuses new users, and a keep-alive connection
// accepted by the old one goes on being answered.
func TestReloadListenHTTP(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin: %s", r.URL.Path)
	}))
	t.Cleanup(web.Close)
	h1, h2 := freeAddr(t), freeAddr(t)
	conf := func(addr string) string {
		return fmt.Sprintf("listen: {tunnels: \"127.0.0.1:0\", http: \"%s\"}\nroutes: [{hostname: web.test, service: \"tcp://%s\"}]\n", addr, web.Listener.Addr())
	}
	e := startReloadEnv(t, conf(h1))
	c, err := net.Dial("tcp", h1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	get := func(path string) (string, error) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: web.test\r\n\r\n", path); err != nil {
			return "", err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := get("/one"); err != nil || body != "origin: /one" {
		t.Fatalf("before: %q %v", body, err)
	}
	line, err := e.reload(conf(h2))
	if err != nil || !strings.Contains(line, `listeners="+1 -1 ~0"`) {
		t.Fatalf("reload moving listen.http: %v\n%s", err, line)
	}
	resp, err := http.Get("http://" + h2 + "/new")
	if err != nil {
		t.Fatalf("the new HTTP listener: %v", err)
	}
	resp.Body.Close()
	if _, err := net.DialTimeout("tcp", h1, 2*time.Second); err == nil {
		t.Error("the old HTTP listener still accepts")
	}
	if body, err := get("/two"); err != nil || body != "origin: /two" {
		t.Errorf("the keep-alive connection of the old listener: %q %v; want the origin's answer", body, err)
	}
}

// TestReloadL3ACL changes the L3 hub's policy of a running edge; a change
// of the rest of the l3 block is refused.
func TestReloadL3ACL(t *testing.T) {
	port := freePort(t, "udp")
	l3 := func(acl, port string) string {
		return fmt.Sprintf("l3:\n  listen: \"127.0.0.1:%s\"\n  endpoint: \"198.18.0.1:%s\"\n  pools: {ipv4: 198.18.96.0/20}\n%s", port, port, acl)
	}
	p := fmt.Sprint(port)
	e := startReloadEnv(t, l3("", p))
	line, err := e.reload(l3("  acl: {builtin_deny: reject, rules: [{action: allow, from: {groups: [ops]}, to: {kinds: [connector]}}]}\n", p))
	if err != nil || !strings.Contains(line, "l3_acl=changed") {
		t.Fatalf("reload of l3.acl: %v\n%s", err, line)
	}
	if line, err = e.reload(l3("  acl: {rules: [{action: maybe}]}\n", p)); err == nil || !strings.Contains(err.Error(), "l3.acl") {
		t.Errorf("a bad l3.acl: %v\n%s", err, line)
	}
	if _, err = e.reload(l3("", fmt.Sprint(freePort(t, "udp")))); err == nil || !strings.Contains(err.Error(), "l3 changed") {
		t.Errorf("a new l3.listen: %v; want it refused as l3 changed", err)
	}
	if line, err = e.reload(l3("", p)); err != nil || !strings.Contains(line, "l3_acl=changed") {
		t.Errorf("back to no acl: %v\n%s", err, line)
	}
}

// TestReloadUDPBinding opens and closes a UDP binding's socket by reload.
func TestReloadUDPBinding(t *testing.T) {
	port := freePort(t, "udp")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	e := startReloadEnv(t, "")
	taken := func() bool {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return true
		}
		pc.Close()
		return false
	}
	line, err := e.reload(fmt.Sprintf("bindings: [{listen: \"udp://%s\", tunnel: office, service: dns.office}]\n", addr))
	if err != nil || !strings.Contains(line, `bindings="+1 -0 ~0"`) || !taken() {
		t.Fatalf("adding a UDP binding: %v, socket open %v\n%s", err, taken(), line)
	}
	if !strings.Contains(e.log.String(), "binding names an unknown tunnel") {
		t.Error("no warning for a binding naming a tunnel that does not exist")
	}
	line, err = e.reload(fmt.Sprintf("bindings: [{listen: \"udp://%s\", tunnel: office, service: ntp.office}]\n", addr))
	if err != nil || !strings.Contains(line, `bindings="+0 -0 ~1"`) {
		t.Fatalf("changing its service: %v\n%s", err, line)
	}
	if line, err = e.reload(""); err != nil || !strings.Contains(line, `bindings="+0 -1 ~0"`) {
		t.Fatalf("removing it: %v\n%s", err, line)
	}
	deadline := time.Now().Add(5 * time.Second)
	for taken() {
		if time.Now().After(deadline) {
			t.Fatal("the removed UDP binding's socket is still open")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLogLevel: --log-level, when given, wins over the file's log_level;
// without it the file's applies, and info without either.
func TestLogLevel(t *testing.T) {
	cfg := func(level string) *edgeconfig.Config { return &edgeconfig.Config{LogLevel: level} }
	v := new(slog.LevelVar)
	v.Set(slog.LevelWarn)
	flag := logLevel{v: v, fromFlag: true}
	if got := flag.of(cfg("debug")); got != slog.LevelWarn {
		t.Errorf("--log-level warn, log_level debug: %v", got)
	}
	file := logLevel{v: new(slog.LevelVar)}
	for level, want := range map[string]slog.Level{"": slog.LevelInfo, "debug": slog.LevelDebug, "error": slog.LevelError} {
		if got := file.of(cfg(level)); got != want {
			t.Errorf("log_level %q: %v, want %v", level, got, want)
		}
	}
}

// TestCheckFixed names what a reload refuses, and lets the reloadable
// settings through.
func TestCheckFixed(t *testing.T) {
	parse := func(s string) *edgeconfig.Config {
		t.Helper()
		c, err := edgeconfig.Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cur := parse("data: /d\nlisten: {tunnels: \"[::]:7844\", http: \"[::]:80\"}\n")
	for _, ok := range []string{
		"data: /d\nlisten: {tunnels: \"[::]:7844\", http: \"[::]:8080\", tls: \"[::]:443\"}\nlog_level: debug\nlimits: {maxConns: 10, maxConnsPerSource: 2, idleTimeout: 0s, udpFlowIdle: 5s}\n" +
			"routes: [{hostname: a.test, tunnel: t}]\nbindings: [{listen: \"tcp://[::]:22\", tunnel: t, service: s}]\n",
		"data: /d\nlisten: {tunnels: \"[::]:7844\", http: \"[::]:80\"}\nquic_steering: true\n",
		"data: /d\nlisten: {tunnels: \"[::]:7844\", http: \"[::]:80\"}\nconsole: {password_hash: \"" + testConsoleHash + "\"}\n",
	} {
		if err := checkFixed(cur, parse(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []struct{ body, want string }{
		{"data: /e\n", "data changed"},
		{"data: /d\nlisten: {tunnels: \"[::]:7845\"}\n", "listen.tunnels changed"},
		{"data: /d\nadvertise: [\"e.test:7844\"]\n", "advertise changed"},
		{"data: /d\nrelay: {strategy: copy}\n", "relay changed"},
		{"data: /d\nquic_steering: false\n", "quic_steering changed"},
		{"data: /d\nxdp: {interfaces: [eth0]}\n", "xdp changed"},
		{"data: /d\nlimits: {quicRetryAbove: 7}\n", "limits.quicRetryAbove changed"},
		{"data: /d\nlisten: {tunnels: \"[::]:7844\", http: \"[::]:80\", console: \"127.0.0.1:8844\"}\n", "listen.console changed"},
		{"data: /d\nlisten: {tunnels: \"[::]:7844\", http: \"[::]:80\"}\nconsole: {tls_cert: c, tls_key: k}\n", "console.tls_cert, console.tls_key changed"},
		{"data: /d\nregistry: {etcd: {endpoints: [\"http://127.0.0.1:2379\"]}}\n", "registry changed"},
	} {
		err := checkFixed(cur, parse(bad.body))
		if err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), "only a restart of the edge applies that") {
			t.Errorf("%s: %v; want an error naming %q", bad.body, err, bad.want)
		}
	}
}

// TestKeepAliveListener: a TCP binding's listener gives its connections
// the TCP keep-alive of the binding's kind now (on for a tunnel, off for a
// direct origin), also after a reload switched the kind.
func TestKeepAliveListener(t *testing.T) {
	lc := net.ListenConfig{KeepAlive: -1} // opened as a direct binding
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	v, _ := edge.NewBindingVar(edge.Binding{Origin: "127.0.0.1:1"})
	kl := keepAliveListener{Listener: ln, b: v, on: false}
	keepAlive := func() int {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := kl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rc, err := s.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var on int
		var serr error
		if err := rc.Control(func(fd uintptr) { on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) }); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		return on
	}
	if got := keepAlive(); got != 0 {
		t.Errorf("direct binding: SO_KEEPALIVE %d, want 0", got)
	}
	_ = v.Store(edge.Binding{Tunnel: "office", Service: "ssh.office"})
	if got := keepAlive(); got != 1 {
		t.Errorf("the binding switched to a tunnel: SO_KEEPALIVE %d, want 1", got)
	}
}

// TestListenerKeepAlive: the connections the edge accepts for a tunnel
// (HTTP and TLS listeners, a tunnel's TCP binding) have TCP keep-alive as
// Go sets it by default (15 s idle, 15 s apart, 9 probes), taken from the
// listening socket rather than set per connection; a direct binding's
// have none.
func TestListenerKeepAlive(t *testing.T) {
	sockopt := func(c syscall.Conn, level, opt int) int {
		t.Helper()
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var serr error
		if err := rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		return v
	}
	for _, tc := range []struct {
		name      string
		spec      listenSpec
		keepAlive bool
	}{
		{"http", listenSpec{key: "http", network: "tcp", addr: "127.0.0.1:0"}, true},
		{"tunnel binding", listenSpec{key: "b", network: "tcp", addr: "127.0.0.1:0",
			binding: &edgeconfig.Binding{Listen: "tcp://127.0.0.1:0", Tunnel: "office", Service: "ssh.office"}}, true},
		{"direct binding", listenSpec{key: "d", network: "tcp", addr: "127.0.0.1:0",
			binding: &edgeconfig.Binding{Listen: "tcp://127.0.0.1:0", Service: "tcp://127.0.0.1:1"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := openListener(context.Background(), tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			defer l.ln.Close()
			c, err := net.Dial("tcp", l.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := l.ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := sockopt(s.(*net.TCPConn), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) == 1; got != tc.keepAlive {
				t.Fatalf("SO_KEEPALIVE on: %v, want %v", got, tc.keepAlive)
			}
			// Set once on the listening socket, which the kernel copies.
			ln := l.ln
			if kl, ok := ln.(keepAliveListener); ok {
				ln = kl.Listener
			}
			if got := sockopt(ln.(*net.TCPListener), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) == 1; got != tc.keepAlive {
				t.Errorf("SO_KEEPALIVE on the listening socket: %v, want %v", got, tc.keepAlive)
			}
			if !tc.keepAlive {
				return
			}
			for _, o := range []struct {
				name string
				opt  int
				want int
			}{{"TCP_KEEPIDLE", syscall.TCP_KEEPIDLE, 15}, {"TCP_KEEPINTVL", syscall.TCP_KEEPINTVL, 15}, {"TCP_KEEPCNT", syscall.TCP_KEEPCNT, 9}} {
				if got := sockopt(s.(*net.TCPConn), syscall.IPPROTO_TCP, o.opt); got != o.want {
					t.Errorf("%s %d, want %d", o.name, got, o.want)
				}
			}
		})
	}
}
