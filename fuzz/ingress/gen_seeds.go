//go:build ignore

// gen_seeds writes the seed corpora of FuzzParseIngress and FuzzMatch in
// the go fuzz corpus format. Run it with go generate.
package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
)

type parseSeed struct {
	name, yaml, host, path string
}

var parseSeeds = []parseSeed{
	{"valid-example", `ingress:
  - hostname: app.example.test
    path: /api
    service: http://198.18.2.10:8080
    originRequest:
      connectTimeout: 5s
      tcpKeepAlive: 30s
      idleTimeout: 90s
  - hostname: secure.example.test
    service: https://198.18.2.10:8443
    originRequest: {noTLSVerify: true, originServerName: origin.example.test}
  - hostname: echo.example.test
    service: tcp://[fd00::2]:7
  - hostname: dns.example.test
    service: udp://198.18.2.10:53
  - hostname: sock.example.test
    service: unix:/run/app.sock
  - service: http_status:404
originRequest: { connectTimeout: 10s }
`, "App.Example.Test:443", "/api/v1"},
	{"valid-wildcard", `ingress:
  - hostname: "*.example.test"
    path: /static/
    service: http://198.18.2.10
  - hostname: "*.example.test"
    service: tcp://198.18.2.10:22
  - path: /health
    service: http_status:204
  - service: http_status:503
`, "a.b.example.test.", "/static/x.css"},
	{"valid-minimal", "ingress:\n  - service: http_status:404\n", "", ""},
	{"valid-aliases", `originRequest: &o {connectTimeout: 1s}
ingress:
  - hostname: a.test
    service: &s tcp://198.18.0.1:1
    originRequest: *o
  - hostname: b.test
    service: *s
  - service: unix:///run/x.sock
`, "B.TEST", ""},
	{"valid-flow", `{ingress: [{hostname: x.test, service: "https://[fd00::1]"}, {service: "http_status:418"}]}`, "[fd00::1]:443", "/"},
	{"invalid-scheme", "ingress:\n  - hostname: a.test\n    service: ftp://h:21\n  - service: http_status:404\n", "a.test", ""},
	{"invalid-no-catch-all", "ingress:\n  - hostname: a.test\n    service: tcp://h:1\n", "a.test", ""},
	{"invalid-unreachable", "ingress:\n  - service: http_status:404\n  - hostname: b.test\n    service: tcp://h:1\n", "b.test", ""},
	{"invalid-wildcard", "ingress:\n  - hostname: a.*.test\n    service: tcp://h:1\n  - service: http_status:404\n", "a.x.test", ""},
	{"invalid-port", "ingress:\n  - service: tcp://198.18.2.10:70000\n", "", ""},
	{"invalid-path", "ingress:\n  - hostname: a.test\n    path: api\n    service: http://h\n  - service: http_status:404\n", "a.test", "api"},
	{"invalid-path-on-tcp", "ingress:\n  - hostname: a.test\n    path: /x\n    service: tcp://h:1\n  - service: http_status:404\n", "a.test", "/x"},
	{"invalid-duration", "ingress:\n  - service: tcp://h:1\n    originRequest: {connectTimeout: 5}\n", "", ""},
	{"invalid-negative", "originRequest: {idleTimeout: -1s}\ningress:\n  - service: http_status:404\n", "", ""},
	{"invalid-status", "ingress:\n  - service: http_status:600\n", "", ""},
	{"invalid-tls-on-http", "ingress:\n  - service: http://h\n    originRequest: {caPool: /nonexistent/ca.pem}\n", "", ""},
	{"invalid-unknown-field", "ingress:\n  - service: http_status:404\n    hostnme: a.test\n", "", ""},
	{"invalid-duplicate", "ingress:\n  - service: http_status:404\n    service: http_status:404\n", "", ""},
	{"invalid-yaml", "ingress: [\n  - {", "", ""},
	{"invalid-two-docs", "ingress: []\n---\ningress: []\n", "", ""},
	{"invalid-merge", "ingress:\n  - &a {service: tcp://h:1, hostname: x.test}\n  - <<: *a\n", "", ""},
}

type matchSeed struct {
	name, host, path string
}

var matchSeeds = []matchSeed{
	{"exact", "app.example.test", "/api/v1"},
	{"exact-upper-port-dot", "APP.example.test.:8443", "/static/"},
	{"wildcard", "x.example.test", ""},
	{"wildcard-deep", "a.b.c.example.test", "/api?x"},
	{"apex", "example.test", "/"},
	{"ipv6", "[fd00::1]:443", "/health"},
	{"bare-ipv6", "fd00::1", ""},
	{"empty", "", ""},
	{"dots", "..example.test", "/apix"},
}

// canonSeeds are request-targets for FuzzCanonicalPath: every bypass form
// of a deny rule for /admin the package refuses or canonicalises, and
// plain paths. The host byte picks the exact host (0), the wildcard (1) or
// another host (2).
var canonSeeds = []struct {
	name, target string
	host         uint8
}{
	{"plain", "/wiki/Main_Page?action=edit", 0},
	{"admin", "/admin/users", 0},
	{"param", "/admin;x", 0},
	{"param-deep", "/admin;jsessionid=1/users", 0},
	{"param-empty-segment", "/;x/admin", 0},
	{"param-allowed", "/static/a.js;jsessionid=1", 0},
	{"dot-param", "/.;/admin", 0},
	{"dotdot-param", "/static/..;/admin", 0},
	{"backslash", "/admin\\x", 0},
	{"backslash-traversal", "/static\\..\\admin", 0},
	{"encoded-backslash", "/static/..%5cadmin", 0},
	{"encoded-dot", "/%2e/admin", 0},
	{"encoded-dots", "/static/%2e%2e/admin", 0},
	{"encoded-slash", "/static%2f..%2fadmin", 0},
	{"encoded-semicolon", "/admin%3bx", 0},
	{"encoded-unreserved", "/%61dmin", 0},
	{"double-encoding", "/%2561dmin", 0},
	{"double-encoding-split", "/%25%36%31dmin", 0},
	{"dot-segments", "/x/../admin", 0},
	{"slashes", "//admin", 0},
	{"slashes-dotdot", "/static//../admin", 0},
	{"above-root", "/../admin", 0},
	{"case", "/ADMIN", 0},
	{"case-deep", "/Docs/private/x", 0},
	{"trailing-dot", "/admin.", 0},
	{"trailing-space", "/admin%20", 0},
	{"ntfs-stream", "/admin::$DATA", 0},
	{"ntfs-index", "/admin:$i30:$INDEX_ALLOCATION/x", 0},
	{"suffix", "/admin.json", 0},
	{"dots-spaces", "/static/..%20/admin", 0},
	{"overlong", "/static/%c0%ae%c0%ae/admin", 0},
	{"fullwidth", "/%ef%bd%81dmin", 0},
	{"dotless-i", "/adm%c4%b1n", 0},
	{"iis-u", "/%u0061dmin", 0},
	{"control", "/admin%00.css", 0},
	{"utf8-deep", "/wiki/Caf%C3%A9", 0},
	{"wildcard-manager", "/manager;x/html", 1},
	{"wildcard-manager-case", "/Manager/HTML", 1},
	{"other-host", "/health;x", 2},
}

func main() {
	for _, s := range parseSeeds {
		write("FuzzParseIngress", s.name, fmt.Sprintf("[]byte(%s)\nstring(%s)\nstring(%s)\n", strconv.Quote(s.yaml), strconv.Quote(s.host), strconv.Quote(s.path)))
	}
	for _, s := range canonSeeds {
		write("FuzzCanonicalPath", s.name, fmt.Sprintf("string(%s)\nuint8(%d)\n", strconv.Quote(s.target), s.host))
	}
	for _, s := range matchSeeds {
		write("FuzzMatch", s.name, fmt.Sprintf("string(%s)\nstring(%s)\n", strconv.Quote(s.host), strconv.Quote(s.path)))
	}
}

func write(target, name, body string) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+body), 0o644); err != nil {
		log.Fatal(err)
	}
}
