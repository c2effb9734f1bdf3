package ingressfuzz

import (
	"strconv"
	"strings"
	"testing"

	"github.com/onramp-net/onramp/l4proxy/ingress"
)

// FuzzParseIngress feeds arbitrary bytes to ingress.Parse. Parse must not
// panic; a configuration it accepts must end in its only catch-all, match
// every host and path to the same rule as the reference matcher, and
// survive a round trip through YAML written from its rules.
func FuzzParseIngress(f *testing.F) {
	f.Add([]byte("ingress:\n  - service: http_status:404\n"), "a.test", "/")
	f.Fuzz(func(t *testing.T, data []byte, host, path string) {
		c, err := ingress.Parse(data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config and error %v", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		checkConfig(t, c)
		checkMatch(t, c, host, path)
		checkRoundTrip(t, c)
	})
}

// matchConfig is the fixed configuration of FuzzMatch.
const matchConfig = `
ingress:
  - hostname: app.example.test
    path: /api
    service: http://198.18.2.10:1
  - hostname: app.example.test
    path: /static/
    service: http://198.18.2.10:2
  - hostname: app.example.test
    service: http://198.18.2.10:3
  - hostname: "*.example.test"
    path: /api
    service: http://198.18.2.10:4
  - hostname: "*.example.test"
    service: http://198.18.2.10:5
  - hostname: "*.b.example.test"
    service: http://198.18.2.10:6
  - path: /health
    service: http_status:204
  - hostname: other.test
    service: tcp://198.18.2.10:8
  - hostname: 198.18.0.1
    service: tcp://198.18.2.10:9
  - hostname: "*.a.example.test"
    path: /
    service: http://198.18.2.10:10
  - service: http_status:404
`

// FuzzMatch checks Config.Match against the reference matcher on a fixed
// configuration with exact, wildcard, path and hostless rules.
func FuzzMatch(f *testing.F) {
	c, err := ingress.Parse([]byte(matchConfig))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("app.example.test", "/api")
	f.Fuzz(func(t *testing.T, host, path string) {
		checkMatch(t, c, host, path)
	})
}

func checkConfig(t *testing.T, c *ingress.Config) {
	rules := c.Rules()
	if len(rules) == 0 || len(rules) != c.Len() {
		t.Fatalf("%d rules, Len %d", len(rules), c.Len())
	}
	for i, r := range rules {
		if r.Index() != i {
			t.Fatalf("rule %d has Index %d", i, r.Index())
		}
		if r.IsCatchAll() != (i == len(rules)-1) {
			t.Fatalf("rule %d of %d: IsCatchAll %v", i, len(rules), r.IsCatchAll())
		}
		if h := r.Hostname(); h != strings.ToLower(h) || strings.HasSuffix(h, ".") || strings.Contains(h[min(len(h), 1):], "*") {
			t.Fatalf("rule %d: hostname %q not normalised", i, h)
		}
		if p := r.Path(); p != "" {
			if canon, err := ingress.CanonicalPath(p); err != nil || canon != p {
				t.Fatalf("rule %d: path %q is not canonical (%q, %v)", i, p, canon, err)
			}
		}
		s := r.Service()
		if s.Scheme < ingress.SchemeTCP || s.Scheme > ingress.SchemeHTTPStatus {
			t.Fatalf("rule %d: scheme %v", i, s.Scheme)
		}
		if (s.Scheme == ingress.SchemeHTTPStatus) != (s.Status != 0) || s.Status != 0 && (s.Status < 100 || s.Status > 599) {
			t.Fatalf("rule %d: service %+v", i, s)
		}
		if (s.Scheme == ingress.SchemeHTTPS) != (r.TLSConfig() != nil) {
			t.Fatalf("rule %d: %v service with TLS config %v", i, s.Scheme, r.TLSConfig())
		}
		if r.ConnectTimeout() < 0 || r.TCPKeepAlive() < 0 || r.IdleTimeout() < 0 {
			t.Fatalf("rule %d: negative timeouts", i)
		}
	}
}

func checkMatch(t *testing.T, c *ingress.Config, host, path string) {
	r := c.Match(host, path)
	if r == nil {
		t.Fatalf("Match(%q, %q) = nil", host, path)
	}
	if want := refMatch(c, host, path); r.Index() != want {
		t.Fatalf("Match(%q, %q) = rule %d, reference says %d", host, path, r.Index(), want)
	}
}

// checkRoundTrip writes the rules back as YAML and parses them again.
func checkRoundTrip(t *testing.T, c *ingress.Config) {
	var b strings.Builder
	b.WriteString("ingress:\n")
	for _, r := range c.Rules() {
		b.WriteString("  - service: " + strconv.Quote(r.Service().String()) + "\n")
		if r.Hostname() != "" {
			b.WriteString("    hostname: " + strconv.Quote(r.Hostname()) + "\n")
		}
		if r.Path() != "" {
			b.WriteString("    path: " + strconv.Quote(r.Path()) + "\n")
		}
		if r.TLSPassthrough() {
			b.WriteString("    tlsPassthrough: true\n")
		}
	}
	c2, err := ingress.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("rules written back do not parse: %v\n%s", err, b.String())
	}
	r1, r2 := c.Rules(), c2.Rules()
	for i := range r1 {
		if r1[i].Hostname() != r2[i].Hostname() || r1[i].Path() != r2[i].Path() || r1[i].Service() != r2[i].Service() ||
			r1[i].TLSPassthrough() != r2[i].TLSPassthrough() {
			t.Fatalf("rule %d changed in a round trip: %q %q %v -> %q %q %v", i,
				r1[i].Hostname(), r1[i].Path(), r1[i].Service(), r2[i].Hostname(), r2[i].Path(), r2[i].Service())
		}
	}
}

// refMatch is a slow, obviously correct matcher: the first rule in order
// whose hostname and path match, by the rules documented on Config.Match.
func refMatch(c *ingress.Config, host, path string) int {
	h := host
	if strings.HasPrefix(h, "[") && strings.Contains(h, "]") {
		h = h[1:strings.Index(h, "]")]
	} else if strings.Count(h, ":") == 1 {
		h, _, _ = strings.Cut(h, ":")
	}
	h = strings.TrimSuffix(h, ".")
	h = asciiLower(h)
	for _, r := range c.Rules() {
		rh := r.Hostname()
		switch {
		case rh == "":
		case len(h) > 253:
			continue
		case strings.HasPrefix(rh, "*."):
			suffix := rh[1:] // ".example.test"
			if !strings.HasSuffix(h, suffix) || len(h) == len(suffix) {
				continue
			}
		case rh != h:
			continue
		}
		if p := r.Path(); p != "" {
			rest, ok := strings.CutPrefix(path, p)
			if !ok {
				continue
			}
			if rest != "" && !strings.HasSuffix(p, "/") && rest[0] != '/' && rest[0] != '?' && rest[0] != '#' {
				continue
			}
		}
		return r.Index()
	}
	return -1
}

// asciiLower lowercases ASCII letters only, as DNS does.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
