package ingress

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const catchAll = "  - service: http_status:404\n"

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name  string
		yaml  string
		rule  int    // want ConfigError.Rule
		field string // want ConfigError.Field
		msg   string // want the whole Error(), or a substring if it ends in "..."
	}{
		{"unsupported scheme", "ingress:\n  - service: http_status:404\n    hostname: x.test\n  - hostname: a.test\n    service: ftp://h:21\n" + catchAll, 1, "service",
			`ingress rule 1 (hostname "a.test"): service: unsupported scheme "ftp" (want tcp, udp, http, https, unix, http_status)`},
		{"missing scheme", "ingress:\n  - hostname: a.test\n    service: localhost:8080\n" + catchAll, 0, "service",
			`ingress rule 0 (hostname "a.test"): service: unsupported scheme "localhost" (want tcp, udp, http, https, unix, http_status)`},
		{"no scheme at all", "ingress:\n  - service: localhost\n", 0, "service",
			`ingress rule 0: service: missing scheme in "localhost" (want tcp, udp, http, https, unix, http_status)`},
		{"missing service", "ingress:\n  - hostname: a.test\n" + catchAll, 0, "service",
			`ingress rule 0 (hostname "a.test"): service: missing service`},
		{"empty service", "ingress:\n  - hostname: a.test\n    service: \"\"\n" + catchAll, 0, "service",
			`ingress rule 0 (hostname "a.test"): service: missing service`},
		{"missing catch-all", "ingress:\n  - hostname: a.test\n    service: tcp://h:1\n", 0, "hostname",
			`ingress rule 0 (hostname "a.test"): hostname: the last rule must be a catch-all without hostname or path, but has a hostname...`},
		{"path in catch-all position", "ingress:\n  - path: /x\n    service: http://h\n", 0, "path",
			`ingress rule 0: path: the last rule must be a catch-all without hostname or path, but has a path...`},
		{"rule after catch-all", "ingress:\n  - service: http_status:404\n  - hostname: b.test\n    service: tcp://h:1\n" + catchAll, 1, "",
			`ingress rule 1 (hostname "b.test"): unreachable: rule 0 before it has no hostname and no path...`},
		{"no rules", "ingress: []\n", -1, "ingress", `ingress config: ingress: at least one rule is required...`},
		{"empty file", "", -1, "ingress", `ingress config: ingress: at least one rule is required...`},
		{"ingress not a list", "ingress: {service: tcp://h:1}\n", -1, "ingress", `ingress config: ingress: want a list of rules, got a mapping`},
		{"top level not a mapping", "- service: tcp://h:1\n", -1, "", `ingress config: want a mapping with an ingress list, got a list`},
		{"rule not a mapping", "ingress:\n  - tcp://h:1\n", 0, "", `ingress rule 0: want a mapping with a service, got scalar "tcp://h:1"`},
		{"unknown top field", "tunnel: x\ningress:\n" + catchAll, -1, "tunnel", `ingress config: tunnel: unknown field (want one of ingress, originRequest)`},
		{"unknown rule field", "ingress:\n  - hostname: a.test\n    servce: tcp://h:1\n" + catchAll, 0, "servce",
			`ingress rule 0 (hostname "a.test"): servce: unknown field (want one of hostname, path, service, tlsPassthrough, originRequest)`},
		{"unknown origin field", "ingress:\n  - hostname: a.test\n    service: tcp://h:1\n    originRequest: {connectTimout: 1s}\n" + catchAll, 0, "originRequest.connectTimout",
			`ingress rule 0 (hostname "a.test"): originRequest.connectTimout: unknown field...`},
		{"unknown top origin field", "originRequest: {bogus: 1}\ningress:\n" + catchAll, -1, "originRequest.bogus", `ingress config: originRequest.bogus: unknown field...`},
		{"duplicate field", "ingress:\n  - hostname: a.test\n    service: tcp://h:1\n    service: tcp://h:2\n" + catchAll, 0, "service",
			`ingress rule 0 (hostname "a.test"): service: duplicate field`},
		{"bad wildcard middle", "ingress:\n  - hostname: a.*.test\n    service: tcp://h:1\n" + catchAll, 0, "hostname",
			`ingress rule 0 (hostname "a.*.test"): hostname: bad wildcard "a.*.test" (only a leading "*." label is allowed...`},
		{"bad wildcard partial label", "ingress:\n  - hostname: \"*a.test\"\n    service: tcp://h:1\n" + catchAll, 0, "hostname", `...bad wildcard "*a.test"...`},
		{"bad wildcard star", "ingress:\n  - hostname: \"*\"\n    service: tcp://h:1\n" + catchAll, 0, "hostname", `...bad wildcard "*"...`},
		{"bad wildcard double", "ingress:\n  - hostname: \"*.*.test\"\n    service: tcp://h:1\n" + catchAll, 0, "hostname", `...bad wildcard "*.*.test"...`},
		{"hostname with port", "ingress:\n  - hostname: a.test:443\n    service: tcp://h:1\n" + catchAll, 0, "hostname", `...hostname: "a.test:443" must not contain a port`},
		{"hostname bad char", "ingress:\n  - hostname: a!.test\n    service: tcp://h:1\n" + catchAll, 0, "hostname", `...bad hostname "a!.test": label "a!" has invalid character '!'...`},
		{"hostname empty label", "ingress:\n  - hostname: a..test\n    service: tcp://h:1\n" + catchAll, 0, "hostname", `...bad hostname "a..test": empty label`},
		{"hostname not a string", "ingress:\n  - hostname: [a]\n    service: tcp://h:1\n" + catchAll, 0, "hostname", `ingress rule 0: hostname: want a string, got a list`},
		{"bad port", "ingress:\n  - hostname: a.test\n    service: tcp://198.18.2.10:70000\n" + catchAll, 0, "service",
			`ingress rule 0 (hostname "a.test"): service: bad port "70000" (want 1-65535) in "tcp://198.18.2.10:70000"`},
		{"port zero", "ingress:\n  - hostname: a.test\n    service: tcp://h:0\n" + catchAll, 0, "service", `...bad port "0"...`},
		{"port not a number", "ingress:\n  - hostname: a.test\n    service: http://h:http\n" + catchAll, 0, "service", `...bad port "http"...`},
		{"tcp without port", "ingress:\n  - hostname: a.test\n    service: tcp://h\n" + catchAll, 0, "service", `...service: missing port in "tcp://h"`},
		{"ipv6 without brackets", "ingress:\n  - hostname: a.test\n    service: tcp://fd00::2:7\n" + catchAll, 0, "service", `...IPv6 address must be in brackets...`},
		{"service with path", "ingress:\n  - hostname: a.test\n    service: http://h:80/x\n" + catchAll, 0, "service", `...unexpected "/x" after host:port...`},
		{"unix without path", "ingress:\n  - hostname: a.test\n    service: \"unix:\"\n" + catchAll, 0, "service", `...missing socket path...`},
		{"path without slash", "ingress:\n  - hostname: a.test\n    path: api\n    service: http://h\n" + catchAll, 0, "path",
			`ingress rule 0 (hostname "a.test"): path: "api" must start with "/"`},
		{"path with query", "ingress:\n  - hostname: a.test\n    path: /a?b\n    service: http://h\n" + catchAll, 0, "path", `...contains '?'...`},
		{"path on tcp", "ingress:\n  - hostname: a.test\n    path: /api\n    service: tcp://h:1\n" + catchAll, 0, "path",
			`ingress rule 0 (hostname "a.test"): path: not allowed on a tcp service (paths are matched only for HTTP)`},
		{"path on udp", "ingress:\n  - hostname: a.test\n    path: /api\n    service: udp://h:53\n" + catchAll, 0, "path", `...not allowed on a udp service...`},
		{"path not canonical", "ingress:\n  - hostname: a.test\n    path: /a//b/%7euser\n    service: http://h\n" + catchAll, 0, "path",
			`ingress rule 0 (hostname "a.test"): path: "/a//b/%7euser" is not in canonical form, which requests are matched in: write "/a/b/~user"`},
		{"path with parameter", "ingress:\n  - hostname: a.test\n    path: /admin;x\n    service: http://h\n" + catchAll, 0, "path", `...contains ';' (requests are matched without their ;parameters)`},
		{"path with backslash", "ingress:\n  - hostname: a.test\n    path: /a\\b\n    service: http://h\n" + catchAll, 0, "path", `...path: "/a\\b": backslash in the path`},
		{"path above root", "ingress:\n  - hostname: a.test\n    path: /../a\n    service: http://h\n" + catchAll, 0, "path", `...path: "/../a": ".." above the root`},
		{"passthrough on http", "ingress:\n  - hostname: a.test\n    service: http://h\n    tlsPassthrough: true\n" + catchAll, 0, "tlsPassthrough",
			`ingress rule 0 (hostname "a.test"): tlsPassthrough: not allowed on a http service (want tcp, https or unix: the user's TLS is carried to the origin as it is)`},
		{"passthrough on status", "ingress:\n  - service: http_status:404\n    tlsPassthrough: true\n", 0, "tlsPassthrough", `...not allowed on a http_status service...`},
		{"passthrough with path", "ingress:\n  - hostname: a.test\n    path: /x\n    service: https://h\n    tlsPassthrough: true\n" + catchAll, 0, "tlsPassthrough",
			`...tlsPassthrough: not allowed on a rule with a path (passthrough sees no paths)`},
		{"passthrough not a bool", "ingress:\n  - hostname: a.test\n    service: tcp://h:1\n    tlsPassthrough: yes please\n" + catchAll, 0, "tlsPassthrough", `...want true or false, got "yes please"`},
		{"bad duration", "ingress:\n  - hostname: a.test\n    service: tcp://h:1\n    originRequest:\n      connectTimeout: 5\n" + catchAll, 0, "originRequest.connectTimeout",
			`ingress rule 0 (hostname "a.test"): originRequest.connectTimeout: bad duration "5" (want e.g. "10s" or "1m30s")`},
		{"bad top duration", "originRequest:\n  idleTimeout: soon\ningress:\n" + catchAll, -1, "originRequest.idleTimeout",
			`ingress config: originRequest.idleTimeout: bad duration "soon" (want e.g. "10s" or "1m30s")`},
		{"negative timeout", "ingress:\n  - hostname: a.test\n    service: tcp://h:1\n    originRequest: {tcpKeepAlive: -1s}\n" + catchAll, 0, "originRequest.tcpKeepAlive",
			`ingress rule 0 (hostname "a.test"): originRequest.tcpKeepAlive: negative duration "-1s"`},
		{"negative idle", "ingress:\n  - service: tcp://h:1\n    hostname: a.test\n    originRequest: {idleTimeout: -5m}\n" + catchAll, 0, "originRequest.idleTimeout", `...negative duration "-5m"`},
		{"status too low", "ingress:\n  - service: http_status:99\n", 0, "service", `ingress rule 0: service: status code 99 outside 100-599`},
		{"status too high", "ingress:\n  - service: http_status:600\n", 0, "service", `ingress rule 0: service: status code 600 outside 100-599`},
		{"status not a number", "ingress:\n  - service: http_status:nope\n", 0, "service", `...status code "nope" is not a number...`},
		{"tls option on http", "ingress:\n  - hostname: a.test\n    service: http://h\n    originRequest: {noTLSVerify: true}\n" + catchAll, 0, "originRequest.noTLSVerify",
			`ingress rule 0 (hostname "a.test"): originRequest.noTLSVerify: only valid for https services, not http`},
		{"tls option on tcp", "ingress:\n  - hostname: a.test\n    service: tcp://h:1\n    originRequest: {originServerName: x.test}\n" + catchAll, 0, "originRequest.originServerName", `...only valid for https services, not tcp`},
		{"tls option on catch-all", "ingress:\n  - service: http_status:404\n    originRequest: {caPool: " + notPEM + "}\n", 0, "originRequest.caPool", `ingress rule 0: originRequest.caPool: only valid for https services, not http_status`},
		{"bad bool", "ingress:\n  - hostname: a.test\n    service: https://h\n    originRequest: {noTLSVerify: maybe}\n" + catchAll, 0, "originRequest.noTLSVerify",
			`ingress rule 0 (hostname "a.test"): originRequest.noTLSVerify: want true or false, got "maybe"`},
		{"caPool missing", "ingress:\n  - hostname: a.test\n    service: https://h\n    originRequest: {caPool: " + missing + "}\n" + catchAll, 0, "originRequest.caPool",
			`ingress rule 0 (hostname "a.test"): originRequest.caPool: stat ` + missing + `: no such file or directory`},
		{"caPool not PEM", "ingress:\n  - hostname: a.test\n    service: https://h\n    originRequest: {caPool: " + notPEM + "}\n" + catchAll, 0, "originRequest.caPool",
			`ingress rule 0 (hostname "a.test"): originRequest.caPool: no PEM certificates found in ` + notPEM},
		{"caPool directory", "originRequest: {caPool: " + dir + "}\ningress:\n" + catchAll, -1, "originRequest.caPool", `ingress config: originRequest.caPool: ` + dir + ` is not a regular file`},
		{"unknown top field with anchor", "base: &b {service: tcp://h:1}\ningress:\n" + catchAll, -1, "base", `ingress config: base: unknown field...`},
		{"merge key", "ingress:\n  - &a {hostname: a.test, service: tcp://h:1}\n  - <<: *a\n", 1, "<<", `ingress rule 1: <<: merge keys are not supported`},
		{"two documents", "ingress:\n" + catchAll + "---\ningress:\n" + catchAll, -1, "", `ingress config: more than one YAML document`},
		{"yaml syntax", "ingress: [\n", -1, "", `ingress config: yaml: ...`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded with %d rules, want error %q", c.Len(), tt.msg)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %q is %T, want *ConfigError", err, err)
			}
			if ce.Rule != tt.rule || ce.Field != tt.field {
				t.Errorf("error %q: Rule %d Field %q, want Rule %d Field %q", err, ce.Rule, ce.Field, tt.rule, tt.field)
			}
			checkMsg(t, err.Error(), tt.msg)
		})
	}
}

// checkMsg compares an error message with want, where a leading or
// trailing "..." stands for any text.
func checkMsg(t *testing.T, got, want string) {
	t.Helper()
	prefix, suffix := strings.HasPrefix(want, "..."), strings.HasSuffix(want, "...")
	core := strings.TrimSuffix(strings.TrimPrefix(want, "..."), "...")
	ok := false
	switch {
	case prefix && suffix:
		ok = strings.Contains(got, core)
	case prefix:
		ok = strings.HasSuffix(got, core)
	case suffix:
		ok = strings.HasPrefix(got, core)
	default:
		ok = got == core
	}
	if !ok {
		t.Errorf("error\n  %s\nwant\n  %s", got, want)
	}
}

func TestParseErrorUnwraps(t *testing.T) {
	_, err := Parse([]byte("ingress:\n  - hostname: a.test\n    service: https://h\n    originRequest: {caPool: /nonexistent/ca.pem}\n" + catchAll))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v does not unwrap to fs.ErrNotExist", err)
	}
}

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(`
ingress:
  - hostname: App.Example.Test.
    path: /api
    service: HTTP://198.18.2.10:8080/
    originRequest:
      connectTimeout: 5s
      idleTimeout: 90s
  - hostname: "*.example.test"
    service: https://origin.example.test
    originRequest: {originServerName: name.test, noTLSVerify: true}
  - hostname: echo.example.test
    service: tcp://[fd00::2]:7
    tlsPassthrough: true
  - hostname: dns.example.test
    service: udp://198.18.2.10:53
  - hostname: sock.example.test
    service: unix:/run/app.sock
  - hostname: sock2.example.test
    service: unix:///run/app2.sock
  - hostname: ~
    path: /health
    service: http_status:204
  - service: http_status:404
originRequest: { connectTimeout: 10s, tcpKeepAlive: 0s }
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		host, path, svc string
		connect, ka     time.Duration
	}{
		{"app.example.test", "/api", "http://198.18.2.10:8080", 5 * time.Second, 0},
		{"*.example.test", "", "https://origin.example.test:443", 10 * time.Second, 0},
		{"echo.example.test", "", "tcp://[fd00::2]:7", 10 * time.Second, 0},
		{"dns.example.test", "", "udp://198.18.2.10:53", 10 * time.Second, 0},
		{"sock.example.test", "", "unix:/run/app.sock", 10 * time.Second, 0},
		{"sock2.example.test", "", "unix:/run/app2.sock", 10 * time.Second, 0},
		{"", "/health", "http_status:204", 10 * time.Second, 0},
		{"", "", "http_status:404", 10 * time.Second, 0},
	}
	rules := c.Rules()
	if len(rules) != len(want) {
		t.Fatalf("%d rules, want %d", len(rules), len(want))
	}
	for i, w := range want {
		r := rules[i]
		if r.Index() != i || r.Hostname() != w.host || r.Path() != w.path || r.Service().String() != w.svc ||
			r.ConnectTimeout() != w.connect || r.TCPKeepAlive() != w.ka {
			t.Errorf("rule %d: %d %q %q %q %v %v, want %+v", i, r.Index(), r.Hostname(), r.Path(), r.Service(), r.ConnectTimeout(), r.TCPKeepAlive(), w)
		}
	}
	if got := rules[0].IdleTimeout(); got != 90*time.Second {
		t.Errorf("rule 0 idleTimeout %v, want 90s", got)
	}
	if got := rules[1].IdleTimeout(); got != 0 {
		t.Errorf("rule 1 idleTimeout %v, want 0", got)
	}
	tc := rules[1].TLSConfig()
	if tc == nil || tc.ServerName != "name.test" || !tc.InsecureSkipVerify || len(tc.NextProtos) != 1 || tc.NextProtos[0] != "http/1.1" {
		t.Errorf("rule 1 TLS config %+v", tc)
	}
	tc.ServerName = "changed"
	if rules[1].TLSConfig().ServerName != "name.test" {
		t.Error("TLSConfig returned the rule's own config, not a copy")
	}
	if rules[0].TLSConfig() != nil {
		t.Error("http rule has a TLS config")
	}
	svc := rules[2].Service()
	if svc.Scheme != SchemeTCP || svc.Addr != "[fd00::2]:7" || svc.Host() != "fd00::2" {
		t.Errorf("rule 2 service %+v host %q", svc, svc.Host())
	}
	if s := rules[7].Service(); s.Scheme != SchemeHTTPStatus || s.Status != 404 {
		t.Errorf("catch-all service %+v", s)
	}
	for i, r := range rules {
		if r.TLSPassthrough() != (i == 2) {
			t.Errorf("rule %d: TLSPassthrough %v", i, r.TLSPassthrough())
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte("ingress:\n  - service: https://198.18.2.10\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Match("x", "")
	if r.ConnectTimeout() != DefaultConnectTimeout || r.TCPKeepAlive() != DefaultTCPKeepAlive || r.IdleTimeout() != DefaultIdleTimeout {
		t.Errorf("defaults %v %v %v", r.ConnectTimeout(), r.TCPKeepAlive(), r.IdleTimeout())
	}
	if DefaultConnectTimeout != 30*time.Second || DefaultTCPKeepAlive != 30*time.Second || DefaultIdleTimeout != 0 {
		t.Error("documented defaults changed")
	}
	tc := r.TLSConfig()
	if tc.ServerName != "198.18.2.10" || tc.InsecureSkipVerify || tc.RootCAs != nil {
		t.Errorf("default TLS config: ServerName %q InsecureSkipVerify %v RootCAs %v", tc.ServerName, tc.InsecureSkipVerify, tc.RootCAs)
	}
}

func TestOverride(t *testing.T) {
	c, err := Parse([]byte(`
originRequest: {connectTimeout: 2s, tcpKeepAlive: 5s, idleTimeout: 1m, noTLSVerify: true, originServerName: top.test}
ingress:
  - hostname: a.test
    service: https://h
    originRequest: {tcpKeepAlive: 7s, originServerName: own.test}
  - hostname: b.test
    service: https://h
  - hostname: c.test
    service: tcp://h:1
    originRequest: {connectTimeout: 0s}
  - service: http_status:503
`))
	if err != nil {
		t.Fatal(err)
	}
	rs := c.Rules()
	check := func(i int, connect, ka, idle time.Duration, sni string) {
		t.Helper()
		r := rs[i]
		if r.ConnectTimeout() != connect || r.TCPKeepAlive() != ka || r.IdleTimeout() != idle {
			t.Errorf("rule %d: %v %v %v, want %v %v %v", i, r.ConnectTimeout(), r.TCPKeepAlive(), r.IdleTimeout(), connect, ka, idle)
		}
		if sni != "" && (r.TLSConfig().ServerName != sni || !r.TLSConfig().InsecureSkipVerify) {
			t.Errorf("rule %d: TLS %+v, want ServerName %q and noTLSVerify", i, r.TLSConfig(), sni)
		}
	}
	check(0, 2*time.Second, 7*time.Second, time.Minute, "own.test")
	check(1, 2*time.Second, 5*time.Second, time.Minute, "top.test")
	check(2, 0, 5*time.Second, time.Minute, "")
	check(3, 2*time.Second, 5*time.Second, time.Minute, "")
}

func TestParseAliases(t *testing.T) {
	c, err := Parse([]byte(`
originRequest: &o {connectTimeout: 3s}
ingress:
  - hostname: a.test
    service: &s tcp://h:1
    originRequest: *o
  - hostname: b.test
    service: *s
  - service: http_status:404
`))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Match("b.test", ""); r.Index() != 1 || r.Service().Addr != "h:1" || r.ConnectTimeout() != 3*time.Second {
		t.Errorf("alias rule: %v %v %v", r, r.Service(), r.ConnectTimeout())
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), selfSignedPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ingress.yaml")
	if err := os.WriteFile(path, []byte("ingress:\n  - service: https://h\n    originRequest: {caPool: ca.pem}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Match("", "").TLSConfig().RootCAs == nil {
		t.Error("caPool relative to the config file was not loaded")
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("ingress:\n  - service: ftp://h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), path) {
		t.Errorf("Load of a bad file: %v", err)
	}
}

func TestServiceString(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://198.18.2.10:7":   "tcp://198.18.2.10:7",
		"TCP://[FD00::2]:07":    "tcp://[FD00::2]:7",
		"http://h":              "http://h:80",
		"https://h/":            "https://h:443",
		"https://[fd00::1]":     "https://[fd00::1]:443",
		"udp://h:53":            "udp://h:53",
		"unix:/run/a.sock":      "unix:/run/a.sock",
		"unix:@abstract":        "unix:@abstract",
		"http_status:418":       "http_status:418",
		"tcp://[fe80::1%lo]:22": "tcp://[fe80::1%lo]:22",
	} {
		s, err := parseService(in)
		if err != nil {
			t.Errorf("parseService(%q): %v", in, err)
			continue
		}
		if s.String() != want {
			t.Errorf("parseService(%q) = %q, want %q", in, s, want)
		}
	}
}
