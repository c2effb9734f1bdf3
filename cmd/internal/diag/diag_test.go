package diag

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// procWith writes a fake /proc with the given sysctls (dotted names).
func procWith(t *testing.T, sysctls map[string]string) Host {
	t.Helper()
	dir := t.TempDir()
	for name, v := range sysctls {
		p := filepath.Join(dir, "sys", strings.ReplaceAll(name, ".", "/"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Host{ProcRoot: dir}
}

func TestUDPBuffers(t *testing.T) {
	h := procWith(t, map[string]string{"net.core.rmem_max": "212992", "net.core.wmem_max": "7500000"})
	res := UDPBuffers(h)
	if len(res) != 2 {
		t.Fatalf("%d results, want 2 (rmem_max, wmem_max)", len(res))
	}
	r := res[0]
	if r.Status != Warn || !strings.Contains(r.Detail, "212992 bytes, below the 7340032 bytes (7 MiB)") ||
		!strings.Contains(r.Fix, "sysctl -w net.core.rmem_max=7500000") || !strings.Contains(r.Fix, "/etc/sysctl.d/") {
		t.Errorf("rmem_max 212992: %s", r.Line())
	}
	if w := res[1]; w.Status != OK || w.Fix != "" || !strings.Contains(w.Detail, "7500000 bytes, enough") {
		t.Errorf("wmem_max 7500000: %s", w.Line())
	}
	// Unreadable (no such sysctl in the fake tree): a warning saying why.
	res = UDPBuffers(Host{ProcRoot: t.TempDir()})
	if res[0].Status != Warn || !strings.Contains(res[0].Detail, "cannot read it") {
		t.Errorf("missing sysctl: %s", res[0].Line())
	}
}

func TestClock(t *testing.T) {
	now := time.Now()
	p := tunnel.Probe{RTT: 20 * time.Millisecond, EdgeTime: now.Add(-10 * time.Millisecond), Received: now}
	for _, tc := range []struct {
		offset time.Duration
		status Status
		want   string
	}{
		{0, OK, "agree to the millisecond"},
		{2 * time.Second, OK, "2s ahead of the edge's"},
		{-90 * time.Second, Warn, "1m30s behind the edge's"},
		{48 * time.Hour, Fail, "48h0m0s ahead of the edge's"},
		// A few milliseconds of measuring error do not show in seconds.
		{-48*time.Hour + 12*time.Millisecond, Fail, "48h0m0s behind the edge's"},
		{-300 * time.Millisecond, OK, "300ms behind the edge's"},
	} {
		r := Clock(Host{ClockOffset: tc.offset}, "e:1", p, nil)
		if r.Status != tc.status || !strings.Contains(r.Detail, tc.want) {
			t.Errorf("offset %v: %s\nwant %v and %q", tc.offset, r.Line(), tc.status, tc.want)
		}
		if (r.Status != OK) != strings.Contains(r.Fix, "NTP") {
			t.Errorf("offset %v: fix %q", tc.offset, r.Fix)
		}
	}
	if r := Clock(Host{}, "e:1", tunnel.Probe{}, errors.New("refused")); r.Status != Warn || !strings.Contains(r.Detail, "cannot compare clocks") {
		t.Errorf("no probe: %s", r.Line())
	}
}

func TestTransportVerdicts(t *testing.T) {
	ok := tunnel.Probe{Handshake: 3 * time.Millisecond}
	timeout := context.DeadlineExceeded
	pin := fmt.Errorf("probe: %w", tunnel.ErrPinMismatch)
	for _, tc := range []struct {
		name          string
		qerr, h2err   error
		q, h2         Status
		qWant, h2Want string
	}{
		{"both", nil, nil, OK, OK, "the connector uses QUIC", "the HTTP/2 fallback works"},
		{"udp blocked", timeout, nil, Warn, OK, "HTTP/2 fallback would be used", "the HTTP/2 fallback works"},
		{"tcp blocked", nil, timeout, OK, Warn, "the connector uses QUIC", "no fallback"},
		{"neither", timeout, timeout, Fail, Fail, "UDP to this port is blocked", "Neither transport reaches the edge"},
		{"pin", pin, pin, Fail, Fail, "does not match the token's pin", "does not match the token's pin"},
	} {
		q, h2, _, _ := transportVerdicts("e:7844", ok, tc.qerr, ok, tc.h2err)
		if q.Status != tc.q || !strings.Contains(q.Detail, tc.qWant) {
			t.Errorf("%s: QUIC %s\nwant %v, %q", tc.name, q.Line(), tc.q, tc.qWant)
		}
		if h2.Status != tc.h2 || !strings.Contains(h2.Detail, tc.h2Want) {
			t.Errorf("%s: HTTP/2 %s\nwant %v, %q", tc.name, h2.Line(), tc.h2, tc.h2Want)
		}
		if (q.Status != OK) == (q.Fix == "") || (h2.Status != OK) == (h2.Fix == "") {
			t.Errorf("%s: a fix only and always with a problem: %q / %q", tc.name, q.Fix, h2.Fix)
		}
	}
}

func TestMTUVerdict(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		ip     netip.Addr
		mtu    int
		status Status
		want   string
	}{
		{v4, 1500, OK, "path MTU 1500 via eth0"},
		{v4, 1280, OK, "below Ethernet's 1500"},
		{v4, 1228, OK, "below Ethernet's 1500"},
		{v4, 1227, Fail, "below the 1228 bytes QUIC's smallest packets need"},
		{v6, 1247, Fail, "below the 1248 bytes"},
	} {
		r := mtuVerdict(Result{Check: "mtu"}, tc.ip, Route{Interface: "eth0", MTU: tc.mtu, Source: v4})
		if r.Status != tc.status || !strings.Contains(r.Detail, tc.want) {
			t.Errorf("%v mtu %d: %s\nwant %v, %q", tc.ip, tc.mtu, r.Line(), tc.status, tc.want)
		}
	}
	// The real lookup: loopback's route.
	r := MTU("edge", netip.MustParseAddr("127.0.0.1"))
	if r.Status != OK || !strings.Contains(r.Detail, "via lo") {
		t.Errorf("loopback: %s", r.Line())
	}
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestDNS(t *testing.T) {
	r := fakeResolver{"edge.example.test": {"192.0.2.7", "2001:db8::7"}}
	res, ips := DNS(context.Background(), r, "edge", "edge.example.test:7844")
	if res.Status != OK || len(ips) != 2 || !strings.Contains(res.Detail, "192.0.2.7") {
		t.Errorf("resolves: %s %v", res.Line(), ips)
	}
	res, ips = DNS(context.Background(), r, "edge", "gone.example.test:7844")
	if res.Status != Fail || ips != nil || !strings.Contains(res.Detail, "gone.example.test does not resolve") || !strings.Contains(res.Fix, "getent hosts gone.example.test") {
		t.Errorf("does not resolve: %s", res.Line())
	}
	res, ips = DNS(context.Background(), r, "edge", "[2001:db8::1]:7844")
	if res.Status != OK || len(ips) != 1 || !strings.Contains(res.Detail, "nothing to look up") {
		t.Errorf("IP literal: %s", res.Line())
	}
}

func TestOrigins(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	downAddr := down.Addr().String()
	down.Close() // nothing listens there now
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead || r.Host != "web.test" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer web.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer broken.Close()
	sock := filepath.Join(t.TempDir(), "app.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	cfg, err := ingress.Parse(fmt.Appendf(nil, `ingress:
  - {hostname: up.test, service: "tcp://%s"}
  - {hostname: down.test, service: "tcp://%s"}
  - {hostname: web.test, service: "%s"}
  - {hostname: broken.test, service: "%s"}
  - {hostname: sock.test, service: "unix:%s"}
  - {hostname: nosock.test, service: "unix:%s.gone"}
  - {hostname: dns.test, service: "udp://127.0.0.1:53"}
  - service: "http_status:404"
`, up.Addr(), downAddr, web.URL, broken.URL, sock, sock))
	if err != nil {
		t.Fatal(err)
	}
	res := Origins(context.Background(), cfg)
	for i, tc := range []struct {
		status Status
		want   string
		fix    string
	}{
		{OK, "accepts connections", ""},
		{Fail, "connection refused", "nothing listens there"},
		{OK, "answers HEAD / with HTTP 200", ""},
		{Warn, "HTTP 502: the origin is up but failing", "origin's own logs"},
		{OK, "accepts connections", ""},
		{Fail, "no such file", "the socket file does not exist"},
		{OK, "whether the UDP service answers cannot be checked", ""},
		{OK, "answered by the connector itself (HTTP 404)", ""},
	} {
		r := res[i]
		if r.Status != tc.status || !strings.Contains(r.Detail, tc.want) || !strings.Contains(r.Fix, tc.fix) {
			t.Errorf("rule %d: %s\nwant %v, %q, fix %q", i, r.Line(), tc.status, tc.want, tc.fix)
		}
	}
}

func TestL3(t *testing.T) {
	if r := TUN(Host{TunPath: filepath.Join(t.TempDir(), "tun")}); r.Status != Fail || !strings.Contains(r.Fix, "modprobe tun") {
		t.Errorf("no TUN: %s", r.Line())
	}
	if r := TUN(Host{TunPath: os.DevNull}); r.Status != OK {
		t.Errorf("a device that opens: %s", r.Line())
	}
	key, _ := l3config.GeneratePrivateKey()
	cfg, err := l3config.ParseConnector(fmt.Appendf(nil, `name: site
privateKey: %s
addresses: [100.96.0.2/32]
interface: onrdiag9
edge: {publicKey: %s, endpoint: "127.0.0.1:51820"}
subnets: [10.9.0.0/24]
`, key, key.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	off := procWith(t, map[string]string{"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0"})
	res := L3(context.Background(), off, fakeResolver{}, cfg, false)
	byCheck := map[string]Result{}
	for _, r := range res {
		byCheck[r.Check] = r
	}
	if r := byCheck["forwarding net.ipv4.ip_forward"]; r.Status != OK || !strings.Contains(r.Detail, "connector l3 run turns it on") {
		t.Errorf("forwarding off, connector not running: %s", r.Line())
	}
	res = L3(context.Background(), off, fakeResolver{}, cfg, true)
	for _, r := range res {
		byCheck[r.Check] = r
	}
	if r := byCheck["forwarding net.ipv4.ip_forward"]; r.Status != Fail || !strings.Contains(r.Fix, "sysctl -w net.ipv4.ip_forward=1") {
		t.Errorf("forwarding off, connector running: %s", r.Line())
	}
	if r := byCheck["interface onrdiag9"]; r.Status != Fail || !strings.Contains(r.Detail, "missing although the connector runs") {
		t.Errorf("interface missing while running: %s", r.Line())
	}
	if r := byCheck["dns edge endpoint 127.0.0.1:51820"]; r.Status != OK {
		t.Errorf("edge endpoint: %s", r.Line())
	}
	if r := byCheck["mtu edge endpoint 127.0.0.1"]; r.Status != OK || !strings.Contains(r.Detail, "interface MTU 1420 + 60") {
		t.Errorf("edge endpoint route: %s", r.Line())
	}
}

func TestReport(t *testing.T) {
	var rep Report
	rep.Add(Result{Status: OK, Check: "a", Detail: "fine."}, Result{Status: Warn, Check: "b", Detail: "meh.", Fix: "do x."})
	if rep.Failed() {
		t.Error("no FAIL, but Failed")
	}
	rep.Add(Result{Status: Fail, Check: "c", Detail: "broken."})
	if !rep.Failed() {
		t.Error("a FAIL, but not Failed")
	}
	var b strings.Builder
	if err := rep.Write(&b); err != nil {
		t.Fatal(err)
	}
	want := "OK    a: fine.\nWARN  b: meh. Fix: do x.\nFAIL  c: broken.\n\n3 checks: 1 OK, 1 WARN, 1 FAIL\n"
	if b.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
}
