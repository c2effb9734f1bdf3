package edgeconfig

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestL3(t *testing.T) {
	c, err := Parse([]byte(`
advertise: ["edge.example.test:7844"]
l3:
  listen: "[::]:51820"
  pools: {ipv4: 198.18.96.0/20, ipv6: "fd00:96::/48"}
  dns: [198.18.30.53, corp.example.test]
  acl:
    builtin_deny: reject
    rules:
      - {action: allow, from: {groups: [eng]}, to: {prefixes: [198.18.30.0/24]}, proto: tcp, ports: ["22", "8000-8100"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	l := c.L3
	if !l.Enabled() || l.ListenPort() != 51820 || l.Endpoint != "edge.example.test:51820" {
		t.Errorf("listen %q port %d endpoint %q", l.Listen, l.ListenPort(), l.Endpoint)
	}
	if l.Pools.IPv4 != netip.MustParsePrefix("198.18.96.0/20") || l.Pools.IPv6 != netip.MustParsePrefix("fd00:96::/48") || l.MTU != DefaultL3MTU {
		t.Errorf("pools %+v mtu %d", l.Pools, l.MTU)
	}
	if len(l.ACL.Rules) != 1 || l.ACL.Rules[0].Ports[1] != "8000-8100" || l.ACL.BuiltinDeny != "reject" {
		t.Errorf("acl %+v", l.ACL)
	}

	if l.MaxStagedBytes != DefaultL3MaxStagedBytes {
		t.Errorf("max_staged_bytes %d, want the default %d", l.MaxStagedBytes, DefaultL3MaxStagedBytes)
	}
	if c, err := Parse([]byte("l3: {max_staged_bytes: 1048576}")); err != nil || c.L3.MaxStagedBytes != 1<<20 {
		t.Errorf("max_staged_bytes: 1048576: %v, %v", c, err)
	}
	if l.Steering == nil || !*l.Steering {
		t.Errorf("steering %v, want on by default", l.Steering)
	}
	if c, err := Parse([]byte("l3: {steering: false}")); err != nil || c.L3.Steering == nil || *c.L3.Steering {
		t.Errorf("steering: false: %v, %v", c, err)
	}
	if c, err := Parse([]byte("l3: {listen: \":51820\", loops: 3}")); err != nil || c.L3.Loops != 3 {
		t.Errorf("loops: 3: %v, %v", c, err)
	}
	if _, err := Parse([]byte("l3: {listen: \":51820\", loops: 65}")); err == nil || !strings.Contains(err.Error(), "l3.loops") {
		t.Errorf("loops: 65: %v, want refused", err)
	}
	if got := l.ReuseDelay(); got != DefaultAddressReuseDelay || time.Duration(*l.AddressReuseDelay) != got {
		t.Errorf("address_reuse_delay %v, want the default %v", got, DefaultAddressReuseDelay)
	}
	for src, want := range map[string]time.Duration{
		"l3: {address_reuse_delay: 0s}":  0,
		"l3: {address_reuse_delay: 0}":   0,
		"l3: {address_reuse_delay: 72h}": 72 * time.Hour,
	} {
		c, err := Parse([]byte(src))
		if err != nil || c.L3.ReuseDelay() != want {
			t.Errorf("%s: %v, %v; want %v", src, c, err, want)
		}
	}

	d := Default()
	if d.L3.Enabled() || d.L3.Pools.IPv4 != DefaultPool4 || d.L3.Pools.IPv6 != DefaultPool6 || d.L3.Endpoint != "" {
		t.Errorf("default l3 %+v", d.L3)
	}
	// l3.listen may name one address (the device then listens on it
	// alone), or none or an unspecified one (every address).
	for _, listen := range []string{":51820", "[::]:51820", "0.0.0.0:51820", "198.18.0.7:51820", "[fd00::7]:51820", "[fe80::7%eth0]:51820"} {
		c, err := Parse([]byte("l3: {listen: \"" + listen + "\"}\n"))
		if err != nil {
			t.Errorf("l3.listen %q: %v", listen, err)
		} else if c.L3.ListenPort() != 51820 {
			t.Errorf("l3.listen %q: port %d", listen, c.L3.ListenPort())
		}
	}
	// An explicit endpoint wins over advertise.
	c, err = Parse([]byte("advertise: [\"a.example.test:1\"]\nl3: {listen: \":51820\", endpoint: \"[fd00::1]:4000\"}\n"))
	if err != nil || c.L3.Endpoint != "[fd00::1]:4000" {
		t.Errorf("endpoint %q, %v", c.L3.Endpoint, err)
	}
}

func TestL3Errors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`l3: {listen: "edge.example.test:51820"}`, "l3.listen: \"edge.example.test:51820\": the host must be an IP address"},
		{`l3: {listen: "51820"}`, "l3.listen"},
		{`l3: {endpoint: ":51820"}`, "l3.endpoint: \":51820\" needs a host"},
		{`l3: {endpoint: "edge.example.test:0"}`, "l3.endpoint"},
		{`l3: {client_endpoint: ":51820"}`, "l3.client_endpoint: \":51820\" needs a host that clients can reach"},
		{`l3: {client_endpoint: "vpn.example.test"}`, "l3.client_endpoint: \"vpn.example.test\": want host:port"},
		{`l3: {pools: {ipv4: "fd00::/48"}}`, "l3.pools.ipv4: fd00::/48 is not an IPv4 prefix"},
		{`l3: {pools: {ipv6: 198.18.0.0/16}}`, "l3.pools.ipv6: 198.18.0.0/16 is not an IPv6 prefix"},
		{`l3: {pools: {ipv4: 198.18.96.1/20}}`, "l3.pools.ipv4: 198.18.96.1/20 has host bits set (did you mean 198.18.96.0/20?)"},
		{`l3: {pools: {ipv4: 198.18.96.0/31}}`, "l3.pools.ipv4: 198.18.96.0/31 is too small"},
		{`l3: {pools: {ipv4: 198.18.96.0/33}}`, "198.18.96.0/33\"): prefix length out of range"},
		{`l3: {mtu: 1000}`, "l3.mtu: 1000 is outside 1280-65535"},
		{`l3: {dns: ["a b"]}`, "l3.dns[0]: \"a b\" is neither"},
		{`l3: {acl: {rules: [{action: permit}]}}`, "l3.acl: acl rule 1: action \"permit\""},
		{`l3: {acl: {rules: [{action: allow, proto: icmp, ports: ["1"]}]}}`, "l3.acl: acl rule 1: ports [1]: need proto tcp or udp"},
		{`l3: {acl: {default: maybe}}`, "l3.acl: acl default"},
		{`l3: {bogus: 1}`, "field bogus not found"},
		{`l3: {address_reuse_delay: -1h}`, "\"-1h\" is negative"},
		{`l3: {address_reuse_delay: 1 day}`, "is not a duration"},
		{`l3: {max_staged_bytes: -1}`, "l3.max_staged_bytes: -1 is negative"},
		{`l3: {failover: {stale_after: 1s}}`, "l3.failover.stale_after: 1s: want 2s to 1m0s"},
		{`l3: {failover: {stale_after: 2m}}`, "l3.failover.stale_after: 2m0s"},
		{`l3: {failover: {stale_after: 5s, failback_after: 4s}}`, "l3.failover.failback_after: 4s is shorter"},
	} {
		_, err := Parse([]byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.src, err, tc.want)
		}
	}
}

func TestL3Failover(t *testing.T) {
	for src, want := range map[string][2]time.Duration{
		"l3: {}": {DefaultL3StaleAfter, DefaultL3FailbackAfter},
		"l3: {failover: {stale_after: 2s, failback_after: 10s}}": {2 * time.Second, 10 * time.Second},
		"l3: {failover: {failback_after: 0s}}":                   {DefaultL3StaleAfter, -1},
	} {
		c, err := Parse([]byte(src))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if s, f := c.L3.Failover.Bounds(); s != want[0] || f != want[1] {
			t.Errorf("%s: bounds %v, %v; want %v, %v", src, s, f, want[0], want[1])
		}
	}
}
