package ingress

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

const matchYAML = `
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
  - service: http_status:404
`

func TestMatch(t *testing.T) {
	c, err := Parse([]byte(matchYAML))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, path string
		want       int
	}{
		// Exact hostnames, case, ports, trailing dot.
		{"app.example.test", "", 2},
		{"APP.Example.TEST", "", 2},
		{"app.example.test:443", "", 2},
		{"app.example.test.", "", 2},
		{"App.Example.Test.:8443", "", 2},
		{"other.test", "", 7},
		{"other.test", "/x", 7},
		{"198.18.0.1:80", "", 8},
		{"198.18.0.1", "/health", 6},
		// Path prefixes at segment boundaries.
		{"app.example.test", "/api", 0},
		{"app.example.test", "/api/", 0},
		{"app.example.test", "/api/v1/x", 0},
		{"app.example.test", "/api?x=1", 0},
		{"app.example.test", "/api#f", 0},
		{"app.example.test", "/apix", 2},
		{"app.example.test", "/ap", 2},
		{"app.example.test", "/API", 2},
		{"app.example.test", "/static/", 1},
		{"app.example.test", "/static/a.css", 1},
		{"app.example.test", "/static", 2},
		// Wildcards: deeper subdomains, not the apex; first rule wins.
		{"x.example.test", "", 4},
		{"x.example.test", "/api/x", 3},
		{"a.b.example.test", "", 4}, // rule 4 comes before rule 5
		{"x.b.example.test", "/", 4},
		{"example.test", "", 9},
		{".example.test", "", 9},
		{"xexample.test", "", 9},
		{"X.EXAMPLE.TEST:1", "", 4},
		// Hostless path rule before later host rules.
		{"other.test", "/health", 6},
		{"app.example.test", "/health", 2}, // rule 2 comes first
		{"nothing.test", "/health/x", 6},
		// Catch-all.
		{"", "", 9},
		{"[fd00::1]:443", "", 9},
		{"fd00::1", "", 9},
		{"nothing.test", "/api", 9},
		{strings.Repeat("a", 300) + ".example.test", "", 9},
		{"[x.example.test:1", "", 4},
		{"[x.example.test]:1", "", 4},
		{"[x.example.test", "", 4}, // malformed, but "[x" is a label
	}
	for _, tt := range tests {
		r := c.Match(tt.host, tt.path)
		if r == nil {
			t.Errorf("Match(%q, %q) = nil, want rule %d", tt.host, tt.path, tt.want)
			continue
		}
		if r.Index() != tt.want {
			t.Errorf("Match(%q, %q) = rule %d, want %d", tt.host, tt.path, r.Index(), tt.want)
		}
		if ref := refMatch(c, tt.host, tt.path); ref != r.Index() {
			t.Errorf("Match(%q, %q) = rule %d, reference says %d", tt.host, tt.path, r.Index(), ref)
		}
	}
}

// refMatch is a slow, obviously correct Match for comparison.
func refMatch(c *Config, host, path string) int {
	h := host
	if strings.HasPrefix(h, "[") && strings.Contains(h, "]") {
		h = h[1:strings.Index(h, "]")]
	} else if strings.Count(h, ":") == 1 {
		h = h[:strings.Index(h, ":")]
	}
	h = strings.TrimSuffix(h, ".")
	h = strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, h)
	for _, r := range c.Rules() {
		switch {
		case r.Hostname() == "":
		case len(h) > 253:
			continue
		case strings.HasPrefix(r.Hostname(), "*."):
			suffix := r.Hostname()[1:]
			if !strings.HasSuffix(h, suffix) || len(h) == len(suffix) {
				continue
			}
		case r.Hostname() != h:
			continue
		}
		if p := r.Path(); p != "" {
			rest, ok := strings.CutPrefix(path, p)
			if !ok || !(rest == "" || strings.HasSuffix(p, "/") || strings.ContainsAny(rest[:1], "/?#")) {
				continue
			}
		}
		return r.Index()
	}
	return -1
}

func TestMatchNil(t *testing.T) {
	var c *Config
	if c.Match("a", "/") != nil {
		t.Error("nil Config matched")
	}
	if (&Config{}).Match("a", "/") != nil {
		t.Error("empty Config matched")
	}
}

func TestMatchAllocs(t *testing.T) {
	c, err := Parse([]byte(matchYAML))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][2]string{
		{"app.example.test", "/api/v1"},
		{"APP.EXAMPLE.TEST:443", "/"},
		{"x.b.example.test", "/static/x"},
		{"nothing.test.", ""},
	} {
		if n := testing.AllocsPerRun(100, func() { c.Match(in[0], in[1]) }); n != 0 {
			t.Errorf("Match(%q, %q) allocates %v times", in[0], in[1], n)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	c, err := Parse([]byte(matchYAML))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, host, path string }{
		{"exact", "app.example.test", "/static/app.js"},
		{"exact-upper-port", "App.Example.Test:443", "/"},
		{"wildcard", "a.b.example.test", "/index.html"},
		{"catch-all", "unknown.host.test", "/"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Match(bc.host, bc.path)
			}
		})
	}
}

// manyRules returns a configuration of n exact and n/4 wildcard rules, a
// hostless path rule and a catch-all.
func manyRules(tb testing.TB, n int) *Config {
	tb.Helper()
	var b strings.Builder
	b.WriteString("ingress:\n")
	for i := range n / 4 {
		fmt.Fprintf(&b, "  - hostname: \"*.w%d.example.test\"\n    service: tcp://198.18.2.10:%d\n", i, 1+i)
	}
	for i := range n {
		fmt.Fprintf(&b, "  - hostname: h%d.example.test\n    path: /api\n    service: http://198.18.2.11:%d\n", i, 1+i)
		fmt.Fprintf(&b, "  - hostname: h%d.example.test\n    service: http://198.18.2.12:%d\n", i, 1+i)
	}
	b.WriteString("  - path: /health\n    service: http_status:204\n  - service: http_status:404\n")
	c, err := Parse([]byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestMatchManyRules(t *testing.T) {
	c := manyRules(t, 200)
	for _, in := range [][2]string{
		{"h199.example.test", "/api/x"}, {"h0.example.test", "/"}, {"x.w49.example.test", "/api"},
		{"h5.example.test", "/health"}, {"nope.test", "/health"}, {"nope.test", ""},
	} {
		if got, want := c.Match(in[0], in[1]).Index(), refMatch(c, in[0], in[1]); got != want {
			t.Errorf("Match(%q, %q) = rule %d, reference says %d", in[0], in[1], got, want)
		}
	}
}

// TestConcurrentSwap matches from several goroutines while the Config is
// replaced, as a SIGHUP reload does; run it with -race.
func TestConcurrentSwap(t *testing.T) {
	var cur atomic.Pointer[Config]
	first, err := Parse([]byte(matchYAML))
	if err != nil {
		t.Fatal(err)
	}
	cur.Store(first)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r := cur.Load().Match("app.example.test:443", "/api/x"); r == nil || r.Service().Scheme != SchemeHTTP {
					t.Error("bad match during swap")
					return
				}
			}
		})
	}
	for range 20 {
		next, err := Parse([]byte(matchYAML))
		if err != nil {
			t.Fatal(err)
		}
		cur.Store(next)
	}
	close(stop)
	wg.Wait()
}

func BenchmarkMatchManyRules(b *testing.B) {
	c := manyRules(b, 200)
	for _, bc := range []struct{ name, host, path string }{
		{"exact-last", "h199.example.test", "/"},
		{"wildcard", "x.w49.example.test", "/"},
		{"catch-all", "unknown.example.test", "/"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Match(bc.host, bc.path)
			}
		})
	}
}
