package edgeconfig

import (
	"strings"
	"testing"
	"time"
)

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(`
data: /tmp/edge
listen: {tunnels: "198.18.0.1:7844", tls: "[::]:443", http: ":80", metrics: "127.0.0.1:9100"}
advertise: ["edge.example.test:7844", "[fd00::1]:7844"]
routes:
  - {hostname: "*.office.example.test", tunnel: office}
  - {hostname: app.example.test, tunnel: office-2}
bindings:
  - {listen: "tcp://[::]:2222", tunnel: office, service: ssh.office}
  - {listen: "udp://198.18.0.1:5353", tunnel: office, service: dns.office}
limits: {maxStreamsPerTunnel: 50, idleTimeout: 5m, udpFlowIdle: 30s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Data != "/tmp/edge" || c.Listen.TLS != "[::]:443" || len(c.Advertise) != 2 || len(c.Routes) != 2 {
		t.Errorf("parsed %+v", c)
	}
	if net, addr := c.Bindings[1].Network(); net != "udp" || addr != "198.18.0.1:5353" {
		t.Errorf("binding network %q %q", net, addr)
	}
	if c.Limits.MaxStreamsPerTunnel != 50 || time.Duration(c.Limits.IdleTimeout) != 5*time.Minute || time.Duration(c.Limits.UDPFlowIdle) != 30*time.Second {
		t.Errorf("limits %+v", c.Limits)
	}
}

func TestDefaults(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n"} {
		c, err := Parse([]byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if c.Data != DefaultData || c.Listen.Tunnels != DefaultTunnels ||
			c.Limits.MaxStreamsPerTunnel != DefaultMaxStreamsPerTunnel || time.Duration(c.Limits.UDPFlowIdle) != DefaultUDPFlowIdle {
			t.Errorf("%q: defaults not filled: %+v", src, c)
		}
	}
	if d := Default(); d.Listen.Tunnels != DefaultTunnels || time.Duration(d.Limits.IdleTimeout) != DefaultIdleTimeout {
		t.Errorf("Default() = %+v", d)
	}
}

// TestLimitDefaults: the connection and handshake limits get defaults a
// public edge can live with, a value set in the file is kept, and
// idleTimeout: 0s turns the idle timeout off.
func TestLimitDefaults(t *testing.T) {
	c, err := Parse([]byte("limits: {maxStreamsPerTunnel: 50}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{
		MaxStreamsPerTunnel: 50, IdleTimeout: Duration(10 * time.Minute), UDPFlowIdle: Duration(60 * time.Second),
		MaxUDPFlowsPerTunnel: 10000, UDPNewFlowsPerSource: 100, UDPNewFlowsPerTunnel: 1000, UDPUnrepliedIdle: Duration(10 * time.Second),
		MaxConns: 20000, MaxConnsPerSource: 256, HeaderTimeout: Duration(10 * time.Second),
		MaxHandshakes: 1000, MaxHandshakesPerSource: 32, QUICRetryAbove: 100,
	}
	if c.Limits != want {
		t.Errorf("limits %+v\nwant   %+v", c.Limits, want)
	}
	c, err = Parse([]byte(`limits:
  idleTimeout: 0s
  maxConns: 500
  maxConnsPerSource: 10
  headerTimeout: 3s
  maxHandshakes: 50
  maxHandshakesPerSource: 5
  quicRetryAbove: 7
`))
	if err != nil {
		t.Fatal(err)
	}
	want = Limits{
		MaxStreamsPerTunnel: 10000, IdleTimeout: 0, UDPFlowIdle: Duration(60 * time.Second),
		MaxUDPFlowsPerTunnel: 10000, UDPNewFlowsPerSource: 100, UDPNewFlowsPerTunnel: 1000, UDPUnrepliedIdle: Duration(10 * time.Second),
		MaxConns: 500, MaxConnsPerSource: 10, HeaderTimeout: Duration(3 * time.Second),
		MaxHandshakes: 50, MaxHandshakesPerSource: 5, QUICRetryAbove: 7,
	}
	if c.Limits != want {
		t.Errorf("limits %+v\nwant   %+v", c.Limits, want)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"listen: {tunels: x}", "field tunels not found"},
		{"log_level: verbose", "log_level: \"verbose\": want debug, info, warn or error"},
		{"listen: {tunnels: nonsense}", "listen.tunnels"},
		{"listen: {http: \"[::]:99999\"}", "listen.http"},
		{"advertise: [\":7844\"]", "advertise[0]: \":7844\" needs a host"},
		{"routes: [{hostname: \"a.*.test\", tunnel: x}]", "routes[0].hostname"},
		{"routes: [{hostname: \"\", tunnel: x}]", "routes[0].hostname"},
		{"routes: [{hostname: a.test, tunnel: Office}]", "routes[0].tunnel"},
		{"bindings: [{listen: \"sctp://:1\", tunnel: x, service: s}]", "bindings[0].listen"},
		{"bindings: [{listen: \"tcp://nope\", tunnel: x, service: s}]", "bindings[0].listen"},
		{"bindings: [{listen: \"tcp://:1\", tunnel: x}]", "bindings[0].service"},
		{"routes: [{hostname: a.test}]", "routes[0]: want a tunnel, or a service"},
		{"routes: [{hostname: a.test, tunnel: x, service: \"tcp://198.18.30.2:80\"}]", "routes[0]: a tunnel or a direct service, not both"},
		{"routes: [{hostname: a.test, service: \"http://198.18.30.2:80\"}]", "routes[0].service"},
		{"routes: [{hostname: a.test, service: \"tcp://:80\"}]", "routes[0].service"},
		{"routes: [{hostname: a.test, tunnel: x, proxy_protocol: v2}]", "routes[0].proxy_protocol: v2 is for direct origins"},
		{"routes: [{hostname: a.test, service: \"tcp://198.18.30.2:80\", proxy_protocol: v1}]", "routes[0].proxy_protocol"},
		{"bindings: [{listen: \"udp://:1\", service: \"tcp://198.18.30.2:53\"}]", "bindings[0]: a direct origin (no tunnel) is for tcp:// listeners"},
		{"bindings: [{listen: \"tcp://:1\", service: echo.internal}]", "bindings[0].service"},
		{"relay: {strategy: zerocopy}", "relay.strategy"},
		{"relay: {max_pipes: -1}", "relay.max_pipes"},
		{"xdp: {interfaces: [\"\"]}", "xdp.interfaces[0]"},
		{"xdp: {interfaces: [eth0, averyveryverylongname]}", "xdp.interfaces[1]"},
		{"xdp: {interfaces: [eth0], per_source_burst: -1}", "xdp.per_source_burst"},
		{"limits: {idleTimeout: soon}", "not a duration"},
		{"limits: {udpFlowIdle: -1s}", "negative"},
		{"limits: {maxStreamsPerTunnel: -1}", "limits.maxStreamsPerTunnel"},
		{"limits: {maxConns: -1}", "limits.maxConns: -1 is negative"},
		{"limits: {maxConnsPerSource: -5}", "limits.maxConnsPerSource"},
		{"limits: {maxConns: 100}", "limits.maxConnsPerSource: 256 is above limits.maxConns (100)"},
		{"limits: {headerTimeout: -1s}", "negative"},
		{"limits: {maxHandshakes: -1}", "limits.maxHandshakes"},
		{"limits: {maxHandshakes: 10, maxHandshakesPerSource: 11}", "limits.maxHandshakesPerSource: 11 is above limits.maxHandshakes (10)"},
		{"limits: {quicRetryAbove: -1}", "limits.quicRetryAbove"},
	} {
		_, err := Parse([]byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.src, err, tc.want)
		}
	}
}

// TestDirect parses direct routes and bindings: no tunnel, a service the
// edge dials itself, an optional PROXY v2 header, and the relay strategy.
func TestDirect(t *testing.T) {
	c, err := Parse([]byte(`routes:
  - {hostname: shop.example.test, service: "tcp://198.18.30.2:443", proxy_protocol: v2}
  - {hostname: "*.office.example.test", tunnel: office}
bindings:
  - {listen: "tcp://[::]:5432", service: "tcp://[fd00:30::2]:5432"}
relay: {strategy: splice, max_pipes: 100}
`))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Routes[0]; !r.Direct() || Origin(r.Service) != "198.18.30.2:443" || r.ProxyProtocol != "v2" {
		t.Errorf("direct route %+v", r)
	}
	if c.Routes[1].Direct() {
		t.Errorf("tunnel route %+v taken as direct", c.Routes[1])
	}
	if b := c.Bindings[0]; !b.Direct() || Origin(b.Service) != "[fd00:30::2]:5432" {
		t.Errorf("direct binding %+v", b)
	}
	if c.Relay.Strategy != "splice" || c.Relay.MaxPipes != 100 {
		t.Errorf("relay %+v", c.Relay)
	}
}

func TestCheckPattern(t *testing.T) {
	for _, ok := range []string{"a.test", "*.a.test", "x-y.example.test", "A.TEST"} {
		if err := CheckPattern(ok); err != nil {
			t.Errorf("CheckPattern(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "*.", "*", "a..test", "*.*.test", "a b.test", "a.test.*", strings.Repeat("a", 64) + ".test"} {
		if err := CheckPattern(bad); err == nil {
			t.Errorf("CheckPattern(%q) accepted", bad)
		}
	}
}

func TestUDPLimits(t *testing.T) {
	c, err := Parse([]byte("limits: {maxUDPFlowsPerTunnel: 500, udpNewFlowsPerSource: 5, udpNewFlowsPerTunnel: 50, udpUnrepliedIdle: 3s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Limits; l.MaxUDPFlowsPerTunnel != 500 || l.UDPNewFlowsPerSource != 5 || l.UDPNewFlowsPerTunnel != 50 ||
		time.Duration(l.UDPUnrepliedIdle) != 3*time.Second || time.Duration(l.UDPFlowIdle) != DefaultUDPFlowIdle {
		t.Errorf("limits %+v", l)
	}
	d := Default().Limits
	if d.MaxUDPFlowsPerTunnel != DefaultMaxUDPFlowsPerTunnel || d.UDPNewFlowsPerSource != DefaultUDPNewFlowsPerSource ||
		d.UDPNewFlowsPerTunnel != DefaultUDPNewFlowsPerTunnel || time.Duration(d.UDPUnrepliedIdle) != DefaultUDPUnrepliedIdle {
		t.Errorf("default limits %+v", d)
	}
	// A short udpFlowIdle shortens the default udpUnrepliedIdle with it.
	c, err = Parse([]byte("limits: {udpFlowIdle: 4s}\n"))
	if err != nil || time.Duration(c.Limits.UDPUnrepliedIdle) != 4*time.Second {
		t.Errorf("udpFlowIdle 4s: udpUnrepliedIdle %v, %v", time.Duration(c.Limits.UDPUnrepliedIdle), err)
	}
	for _, tc := range []struct{ src, want string }{
		{"limits: {maxUDPFlowsPerTunnel: -1}", "limits.maxUDPFlowsPerTunnel"},
		{"limits: {udpNewFlowsPerSource: -5}", "limits.udpNewFlowsPerSource"},
		{"limits: {udpNewFlowsPerTunnel: 2000000}", "limits.udpNewFlowsPerTunnel"},
		{"limits: {udpUnrepliedIdle: 2m}", "limits.udpUnrepliedIdle"},
		{"limits: {udpUnrepliedIdle: -1s}", "negative"},
	} {
		_, err := Parse([]byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.src, err, tc.want)
		}
	}
}

// TestQUICSteering: quic_steering is on unless the file says false.
func TestQUICSteering(t *testing.T) {
	for src, want := range map[string]bool{"": true, "quic_steering: true\n": true, "quic_steering: false\n": false} {
		c, err := Parse([]byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if c.Steering() != want {
			t.Errorf("%q: steering %v, want %v", src, c.Steering(), want)
		}
	}
	if _, err := Parse([]byte("quic_steering: 3\n")); err == nil || !strings.Contains(err.Error(), "quic_steering") && !strings.Contains(err.Error(), "bool") {
		t.Errorf("quic_steering: 3: %v", err)
	}
}

// TestStreamSpread: stream_spread is 0 (one per core) unless set; -1 is
// all connections; below that is an error naming the field.
func TestStreamSpread(t *testing.T) {
	for src, want := range map[string]int{"": 0, "stream_spread: 2\n": 2, "stream_spread: -1\n": -1} {
		c, err := Parse([]byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if c.StreamSpread != want {
			t.Errorf("%q: stream_spread %d, want %d", src, c.StreamSpread, want)
		}
	}
	if _, err := Parse([]byte("stream_spread: -2\n")); err == nil || !strings.Contains(err.Error(), "stream_spread") {
		t.Errorf("stream_spread: -2: %v", err)
	}
}

// TestRegistry: the etcd registry's settings parse, and each mistake is
// refused naming its field.
func TestRegistry(t *testing.T) {
	c, err := Parse([]byte(`registry:
  etcd:
    endpoints: ["https://198.18.0.10:2379", "http://[fd00::10]:2379"]
    prefix: /onramp-a/
    tls: {ca: ca.pem, cert: c.pem, key: k.pem}
    username: onramp
    password_file: pw
    request_timeout: 2s
`))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Registry.Etcd
	if e == nil || len(e.Endpoints) != 2 || e.Prefix != "/onramp-a/" || e.TLS.Key != "k.pem" || time.Duration(e.RequestTimeout) != 2*time.Second {
		t.Fatalf("parsed %+v", e)
	}
	if d := Default(); d.Registry.Etcd != nil {
		t.Fatal("the default registry is not bbolt")
	}
	for _, tc := range []struct{ yaml, want string }{
		{"registry: {etcd: {}}", "registry.etcd.endpoints: want at least one"},
		{`registry: {etcd: {endpoints: ["198.18.0.10:2379"]}}`, `registry.etcd.endpoints[0]: "198.18.0.10:2379": want http://host:port`},
		{`registry: {etcd: {endpoints: ["unix:///x"]}}`, "registry.etcd.endpoints[0]"},
		{`registry: {etcd: {endpoints: ["http://a:2379"], prefix: onramp}}`, "registry.etcd.prefix"},
		{`registry: {etcd: {endpoints: ["http://a:2379"], tls: {cert: c.pem}}}`, "cert and key go together"},
		{`registry: {etcd: {endpoints: ["http://a:2379"], password_file: pw}}`, "set username too"},
		{`registry: {bbolt: {}}`, "field bbolt not found"},
	} {
		if _, err := Parse([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
