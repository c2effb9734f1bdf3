package testnet_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/onramp-net/onramp/testnet"
)

// fakeProc writes a /proc tree with the UDP buffer limits diag reads: the
// host's own are global and must not be changed by a test.
func fakeProc(t *testing.T, rmem, wmem string) string {
	t.Helper()
	dir := t.TempDir()
	core := filepath.Join(dir, "sys", "net", "core")
	if err := os.MkdirAll(core, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"rmem_max": rmem, "wmem_max": wmem} {
		if err := os.WriteFile(filepath.Join(core, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runDiag runs connector diag in the conn node and returns what it
// printed and its exit status.
func runDiag(t *testing.T, w *tunnelWorld, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := w.n.Node("conn").Command(ctx, w.rig.ConnectorBin, append([]string{"diag"}, args...)...).CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("connector diag: %v\n%s", err, out)
	}
	return string(out), code
}

// diagLine returns the report line of the check whose name starts with
// check, with its status word; it fails the test if there is none.
func diagLine(t *testing.T, out, check string) (status, line string) {
	t.Helper()
	for l := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(l, f[0])), check) {
			return f[0], l
		}
	}
	t.Fatalf("no %q line in the report:\n%s", check, out)
	return "", ""
}

// TestConnectorDiag runs connector diag against a real edge and
// connector: all OK when healthy, then each trouble it is meant to
// find — a small rmem_max, a skewed clock, an origin down, UDP blocked —
// reported on its own line with the fix, and a bundle that holds the
// expected files and no secret.
func TestConnectorDiag(t *testing.T) {
	w := newTunnelWorld(t)
	c := w.connector("conn", "auto", "")
	good := fakeProc(t, "8388608", "8388608")
	base := []string{"--token-file", w.rig.TokenFile, "--config", c.Ingress, "--metrics", c.Metrics}

	t.Run("healthy", func(t *testing.T) {
		out, code := runDiag(t, w, append(base, "--proc-root", good)...)
		if code != 0 || strings.Contains(out, "WARN ") || strings.Contains(out, "FAIL ") {
			t.Fatalf("healthy: exit %d, want 0 and every check OK:\n%s", code, out)
		}
		for _, check := range []string{"connector at", "dns edge", "mtu edge", "quic ", "http2 ", "clock vs edge",
			"udp buffer net.core.rmem_max", "origin ingress rule 0 (hostname \"echo.internal\")"} {
			if st, l := diagLine(t, out, check); st != "OK" {
				t.Errorf("healthy: %s", l)
			}
		}
		if _, l := diagLine(t, out, "quic "); !strings.Contains(l, "the connector uses QUIC") {
			t.Errorf("healthy QUIC line: %s", l)
		}
		if _, l := diagLine(t, out, "origin ingress rule 6 (hostname \"web.demo.test\")"); !strings.Contains(l, "HTTP 200") {
			t.Errorf("HTTP origin: %s; want its HEAD status", l)
		}
		t.Logf("healthy report:\n%s", out)
	})

	t.Run("small rmem_max", func(t *testing.T) {
		out, code := runDiag(t, w, append(base, "--proc-root", fakeProc(t, "212992", "8388608"))...)
		st, l := diagLine(t, out, "udp buffer net.core.rmem_max")
		if st != "WARN" || !strings.Contains(l, "212992 bytes") || !strings.Contains(l, "sysctl -w net.core.rmem_max=7500000") {
			t.Errorf("rmem_max 212992: %s\nwant WARN with the value and the sysctl line", l)
		}
		if st, l := diagLine(t, out, "udp buffer net.core.wmem_max"); st != "OK" {
			t.Errorf("wmem_max 8 MiB: %s", l)
		}
		if code != 0 {
			t.Errorf("a warning only: exit %d, want 0", code)
		}
	})

	t.Run("skewed clock", func(t *testing.T) {
		out, _ := runDiag(t, w, append(base, "--proc-root", good, "--clock-offset", "90s")...)
		st, l := diagLine(t, out, "clock vs edge")
		if st != "WARN" || !strings.Contains(l, "1m30") || !strings.Contains(l, "ahead of the edge's") || !strings.Contains(l, "NTP") {
			t.Errorf("clock 90 s ahead: %s\nwant WARN saying 1m30s ahead, and NTP", l)
		}
		out, code := runDiag(t, w, append(base, "--proc-root", good, "--clock-offset", "-48h")...)
		st, l = diagLine(t, out, "clock vs edge")
		if st != "FAIL" || !strings.Contains(l, "48h0m0") || !strings.Contains(l, "behind the edge's") || code != 1 {
			t.Errorf("clock 48 h behind: exit %d, %s\nwant FAIL saying 48h behind, exit 1", code, l)
		}
	})

	t.Run("origin down", func(t *testing.T) {
		ingress := filepath.Join(w.rig.Dir, "down-ingress.yml")
		if err := os.WriteFile(ingress, []byte(`ingress:
  - {hostname: up.internal, service: "tcp://198.18.30.2:7"}
  - {hostname: down.internal, service: "tcp://198.18.30.2:1"}
  - service: "http_status:404"
`), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := runDiag(t, w, "--token-file", w.rig.TokenFile, "--config", ingress, "--proc-root", good)
		if st, l := diagLine(t, out, "origin ingress rule 1 (hostname \"down.internal\")"); st != "FAIL" ||
			!strings.Contains(l, "connection refused") || !strings.Contains(l, "nothing listens there") {
			t.Errorf("origin down: %s\nwant FAIL, refused, and the fix", l)
		}
		if st, l := diagLine(t, out, "origin ingress rule 0 (hostname \"up.internal\")"); st != "OK" {
			t.Errorf("origin up: %s", l)
		}
		if code != 1 {
			t.Errorf("a FAIL: exit %d, want 1", code)
		}
	})

	t.Run("bundle", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "diag.tar.gz")
		out, _ := runDiag(t, w, append(base, "--proc-root", good, "--bundle", path, "--name", "demo")...)
		files := readTarGz(t, path)
		for _, name := range []string{"version.txt", "diag.txt", "host.txt", "metrics.txt", "status.json", "logs.txt",
			"config/token.txt", "config/" + filepath.Base(c.Ingress)} {
			if _, ok := files["onramp-connector-diag/"+name]; !ok {
				t.Errorf("bundle has no %s; it has %v\n%s", name, keys(files), out)
			}
		}
		tok, err := tunnel.ParseToken(w.rig.Token)
		if err != nil {
			t.Fatal(err)
		}
		secrets := []string{w.rig.Token, hex.EncodeToString(tok.Secret[:]), base64.StdEncoding.EncodeToString(tok.Secret[:]),
			base64.RawURLEncoding.EncodeToString(tok.Secret[:]), string(tok.Secret[:])}
		for name, data := range files {
			for _, s := range secrets {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("bundle file %s holds the token's secret", name)
				}
			}
		}
		if m := string(files["onramp-connector-diag/metrics.txt"]); !strings.Contains(m, "onramp_connector_") {
			t.Errorf("metrics.txt is not the connector's metrics:\n%.500s", m)
		}
		if s := string(files["onramp-connector-diag/config/token.txt"]); !strings.Contains(s, tok.TunnelIDString()) {
			t.Errorf("token.txt does not name the tunnel:\n%s", s)
		}
		if d := string(files["onramp-connector-diag/diag.txt"]); !strings.Contains(d, "clock vs edge") {
			t.Errorf("diag.txt is not the report:\n%s", d)
		}
		if l := string(files["onramp-connector-diag/logs.txt"]); !strings.Contains(l, "onramp-connector@demo") && !strings.Contains(l, "journalctl is not installed") {
			t.Errorf("logs.txt neither the journal of onramp-connector@demo nor why not:\n%s", l)
		}
	})

	t.Run("edge diag", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		path := filepath.Join(t.TempDir(), "edge.tar.gz")
		out, err := w.rig.EdgeCLI(ctx, "diag", "--proc-root", good, "--bundle", path)
		if err != nil {
			t.Fatalf("edge diag: %v\n%s", err, out)
		}
		for _, check := range []string{"listener listen.tunnels (QUIC) udp://[::]:7844", "listener listen.tunnels (HTTP/2) tcp://[::]:7844",
			"listener listen.http", "listener listen.tls", "listener listen.metrics", "listener bindings[0] tcp://[::]:7000",
			"listener bindings[1] udp://[::]:7000"} {
			if st, l := diagLine(t, out, check); st != "OK" || !strings.Contains(l, "bound by the running edge (pid ") {
				t.Errorf("%s\nwant OK, bound by the running edge", l)
			}
		}
		if st, l := diagLine(t, out, "edge at "); st != "OK" || !strings.Contains(l, "1 tunnels") {
			t.Errorf("%s\nwant the running edge with its tunnel", l)
		}
		if st, l := diagLine(t, out, "registry bbolt"); st != "OK" {
			t.Errorf("%s", l)
		}
		if st, l := diagLine(t, out, "certificate "); st != "OK" {
			t.Errorf("%s", l)
		}
		files := readTarGz(t, path)
		for _, name := range []string{"version.txt", "diag.txt", "host.txt", "status.json", "logs.txt", "config/edge.yml"} {
			if _, ok := files["onramp-edge-diag/"+name]; !ok {
				t.Errorf("edge bundle has no %s; it has %v", name, keys(files))
			}
		}
		for name, data := range files {
			if bytes.Contains(data, []byte(w.rig.Token)) || bytes.Contains(data, []byte("PRIVATE KEY-----\nM")) {
				t.Errorf("edge bundle file %s holds a secret", name)
			}
		}
		t.Logf("edge diag:\n%s", out)
	})

	// Last: it changes the network for good.
	t.Run("udp blocked", func(t *testing.T) {
		if err := w.n.Link("edge", "conn").DropUDP(); err != nil {
			testnet.SkipOrFail(t, "cannot block UDP here: %v", err)
		}
		out, code := runDiag(t, w, append(base, "--proc-root", good)...)
		for _, check := range []string{"quic 198.18.", "quic [fd00:"} {
			st, l := diagLine(t, out, check)
			if st != "WARN" || !strings.Contains(l, "HTTP/2 fallback would be used") {
				t.Errorf("UDP blocked: %s\nwant WARN, HTTP/2 fallback would be used", l)
			}
		}
		if st, l := diagLine(t, out, "http2 "); st != "OK" {
			t.Errorf("UDP blocked, TCP not: %s", l)
		}
		if code != 0 {
			t.Errorf("the fallback works: exit %d, want 0:\n%s", code, out)
		}
	})
}

func readTarGz(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = data
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestL3ConnectorDiag runs connector diag on a running L3 connector: the
// TUN, forwarding, its interface and the edge endpoint all OK; forwarding
// turned off under it is a FAIL with the sysctl that fixes it. edge diag
// finds the WireGuard port bound by the edge and its XDP pre-filter.
func TestL3ConnectorDiag(t *testing.T) {
	n := testnet.New(t, testnet.L3())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	w, err := testnet.StartL3WorldYAML(ctx, n, dir, func(data string) string {
		return testnet.L3EdgeYAML(data, "") + "xdp:\n  interfaces: [eth0]\n"
	})
	if err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(dir, "site-a.yml")
	if _, err := w.AddConnector(ctx, n.Node("conn"), "site-a", site, "198.18.130.0/24"); err != nil {
		t.Fatal(err)
	}
	conn := n.Node("conn")
	diagIn := func(args ...string) (string, int) {
		out, err := conn.Command(ctx, w.ConnectorBin, append([]string{"diag", "--l3-config", site}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("connector diag: %v\n%s", err, out)
		}
		return string(out), 0
	}
	out, _ := diagIn()
	if st, l := diagLine(t, out, "interface "); st != "OK" || !strings.Contains(l, "connector l3 run creates it") {
		t.Errorf("before the connector runs: %s", l)
	}
	p, err := w.StartConnector(conn, site)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	out, code := diagIn("--metrics", testnet.L3ConnectorReady)
	if code != 0 || strings.Contains(out, "WARN ") || strings.Contains(out, "FAIL ") {
		t.Errorf("running L3 connector: exit %d, want 0 and all OK:\n%s", code, out)
	}
	for _, check := range []string{"connector at", "tun /dev/net/tun", "forwarding net.ipv4.ip_forward", "interface ", "dns edge endpoint", "mtu edge endpoint"} {
		if st, l := diagLine(t, out, check); st != "OK" {
			t.Errorf("running L3 connector: %s", l)
		}
	}
	if _, l := diagLine(t, out, "interface "); !strings.Contains(l, "present: the running connector's") {
		t.Errorf("running L3 connector: %s", l)
	}

	if err := conn.Sysctl("net/ipv4/ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	out, code = diagIn("--metrics", testnet.L3ConnectorReady)
	if st, l := diagLine(t, out, "forwarding net.ipv4.ip_forward"); st != "FAIL" || !strings.Contains(l, "sysctl -w net.ipv4.ip_forward=1") || code != 1 {
		t.Errorf("forwarding off under the connector: exit %d, %s\nwant FAIL with the sysctl, exit 1", code, l)
	}

	eout, err := w.EdgeCLI(ctx, "diag")
	if err != nil && !strings.Contains(eout, "listener") {
		t.Fatalf("edge diag: %v\n%s", err, eout)
	}
	t.Logf("edge diag:\n%s", eout)
	if st, l := diagLine(t, eout, "listener l3.listen (WireGuard)"); st != "OK" || !strings.Contains(l, "bound by the running edge") {
		t.Errorf("edge diag: %s", l)
	}
	if st, l := diagLine(t, eout, "bpf xdp pre-filter on eth0"); st != "OK" || !strings.Contains(l, "the edge's pre-filter is attached (program id ") {
		t.Errorf("edge diag: %s", l)
	}
}
