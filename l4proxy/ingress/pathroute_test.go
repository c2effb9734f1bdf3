package ingress

import (
	"strings"
	"testing"
)

const pathRouteYAML = `
ingress:
  - {hostname: raw.test, service: "tcp://198.18.2.10:1"}
  - {hostname: wiki.test, path: /admin, service: "http_status:403"}
  - {hostname: wiki.test, service: "http://198.18.2.10:2"}
  - {hostname: "*.wild.test", path: /x, service: "http://198.18.2.10:3"}
  - {hostname: a.wild.test, service: "http://198.18.2.10:4"}
  - {hostname: "*.plain.test", service: "http://198.18.2.10:5"}
  - {hostname: b.plain.test, path: /y, service: "http://198.18.2.10:6"}
  - {path: /health, service: "http_status:200"}
  - service: "http_status:404"
`

// TestPathRouted: a host is path-routed exactly when a rule with a path
// that could match it comes before the first rule without path that does.
func TestPathRouted(t *testing.T) {
	c, err := Parse([]byte(pathRouteYAML))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"raw.test", false},              // its own plain rule comes first
		{"RAW.test.:443", false},         // port, dot and case do not matter
		{"wiki.test", true},              // /admin before the plain rule
		{"WIKI.TEST:80", true},           //
		{"a.wild.test", true},            // wildcard path rule before the exact plain rule
		{"c.wild.test", true},            // then the hostless /health before the catch-all
		{"b.plain.test", false},          // *.plain.test catches it before its /y rule
		{"x.b.plain.test", false},        // deeper, same wildcard
		{"unknown.test", true},           // hostless /health before the catch-all
		{"", true},                       // no host: the hostless rules only
		{strings.Repeat("a", 254), true}, // too long: the hostless rules only
		{"[fd00::1]:80", true},           // an IP literal
		{"wiki.test.evil.test", true},    // not wiki.test: /health, catch-all
		{"plain.test", true},             // not under *.plain.test
		{"raw.test:8080:1", true},        // two colons: not stripped, no such host
		{"b.plain.test.", false},         // one trailing dot
	} {
		if got := c.PathRouted(tc.host); got != tc.want {
			t.Errorf("PathRouted(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}

	plain, err := Parse([]byte("ingress:\n  - {hostname: a.test, service: \"http://198.18.2.10:1\"}\n  - service: http_status:404\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a.test", "b.test", ""} {
		if plain.PathRouted(h) {
			t.Errorf("rules without paths: PathRouted(%q) = true", h)
		}
	}
	var nilConfig *Config
	if nilConfig.PathRouted("a.test") {
		t.Error("nil Config: PathRouted = true")
	}
}

// TestPathRoutedAgreesWithMatch checks PathRouted against its meaning: for
// every host, it is true exactly when Match gives some rule's path a
// different rule than the empty path.
func TestPathRoutedAgreesWithMatch(t *testing.T) {
	for _, yaml := range []string{pathRouteYAML, matchYAML} {
		c, err := Parse([]byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		hosts := []string{"", "nothing.test", "example.test", "x.example.test", "a.b.example.test", "x.y.b.example.test",
			"198.18.0.1", "[fd00::1]", strings.Repeat("a", 254)}
		var paths []string
		for _, r := range c.Rules() {
			if h := r.Hostname(); h != "" {
				hosts = append(hosts, h, strings.ToUpper(h)+".", "x."+strings.TrimPrefix(h, "*."), strings.TrimPrefix(h, "*."))
			}
			if r.Path() != "" {
				paths = append(paths, r.Path(), r.Path()+"/sub", r.Path()+"x")
			}
		}
		for _, h := range hosts {
			base := c.Match(h, "")
			varies := false
			for _, p := range paths {
				if c.Match(h, p) != base {
					varies = true
				}
			}
			if got := c.PathRouted(h); got != varies {
				t.Errorf("PathRouted(%q) = %v, but Match varies with the path: %v", h, got, varies)
			}
		}
	}
}

func TestPathRoutedAllocs(t *testing.T) {
	c, err := Parse([]byte(pathRouteYAML))
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { c.PathRouted("Deep.A.Wild.Test:80") }); n != 0 {
		t.Errorf("PathRouted allocates %v times", n)
	}
}

func TestSameHost(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"wiki.test", "wiki.test", true},
		{"WIKI.test:8080", "wiki.TEST", true},
		{"wiki.test.", "wiki.test", true},
		{"[fd00::1]:80", "fd00::1", true},
		{"wiki.test", "wiki.test.evil", false},
		{"wiki.test", "wikI.tesu", false},
		{"", "", false},
		{":80", "", false},
		{"\u212aey.test", "key.test", false}, // Kelvin sign: ASCII case only
	} {
		if got := SameHost(tc.a, tc.b); got != tc.want {
			t.Errorf("SameHost(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func BenchmarkPathRouted(b *testing.B) {
	c, err := Parse([]byte(pathRouteYAML))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.PathRouted("deep.a.wild.test")
	}
}
