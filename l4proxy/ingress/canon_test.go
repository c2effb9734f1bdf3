package ingress

import (
	"errors"
	"strings"
	"testing"
)

func TestCanonicalPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" with refused
		refused  string // a substring of the reason
	}{
		// Already canonical: returned as is.
		{in: "/", want: "/"},
		{in: "/admin", want: "/admin"},
		{in: "/a/b/", want: "/a/b/"},
		{in: "/a.b/c-d_e~f!$&'()*+,=:@", want: "/a.b/c-d_e~f!$&'()*+,=:@"},
		{in: "/a%20b%3F%23%25zz", want: "/a%20b%3F%23%25zz"},
		{in: "/api?x=1&y=%zz", want: "/api"},
		{in: "/.well-known/x", want: "/.well-known/x"},
		// Escapes of unreserved characters and sub-delimiters decoded,
		// other escapes in upper case, other characters escaped.
		{in: "/%61dmin", want: "/admin"},
		{in: "/%41%7e%21%3a", want: "/A~!:"},
		{in: "/a%7cb|c", want: "/a%7Cb%7Cc"},
		{in: "/caf%c3%a9", want: "/caf%C3%A9"},
		{in: "/café", want: "/caf%C3%A9"},
		{in: "/a%25", want: "/a%25"},
		// Slashes merged, dot segments removed, trailing slash kept.
		{in: "//admin", want: "/admin"},
		{in: "/a//b///c", want: "/a/b/c"},
		{in: "/x/../admin", want: "/admin"},
		{in: "/./admin/", want: "/admin/"},
		{in: "/a/b/..", want: "/a/"},
		{in: "/a/.", want: "/a/"},
		{in: "/a/b/../../c/./d", want: "/c/d"},
		// Parameters dropped.
		{in: "/admin;x", want: "/admin"},
		{in: "/static/a.js;jsessionid=1", want: "/static/a.js"},
		{in: "/a;p=1/b;q", want: "/a/b"},
		{in: "/a/;x/b", want: "/a/b"},
		{in: "/a;x/../b", want: "/b"},
		// Refused.
		{in: "", refused: "not an absolute path"},
		{in: "admin", refused: "not an absolute path"},
		{in: "http://h/admin", refused: "not an absolute path"},
		{in: "/admin\\x", refused: "backslash"},
		{in: "/admin%5cx", refused: "encoded backslash"},
		{in: "/a%2fadmin", refused: "encoded '/'"},
		{in: "/%2e%2e/admin", refused: "encoded '.'"},
		{in: "/%2E/admin", refused: "encoded '.'"},
		{in: "/admin%3bx", refused: "encoded ';'"},
		{in: "/%2561dmin", refused: "double encoding"},
		{in: "/%25%36%31dmin", refused: "double encoding"},
		{in: "/a%00", refused: "control byte"},
		{in: "/a\x01", refused: "control byte"},
		{in: "/a%7f", refused: "control byte"},
		{in: "/a b", refused: "raw ' '"},
		{in: "/admin#x", refused: "raw '#'"},
		{in: "/a%zz", refused: "invalid percent-escape"},
		{in: "/a%4", refused: "invalid percent-escape"},
		{in: "/%u0061dmin", refused: "invalid percent-escape"},
		{in: "/..", refused: "above the root"},
		{in: "/a/../../admin", refused: "above the root"},
		{in: "/a//../admin", refused: "after an empty segment"},
		{in: "/;x/../admin", refused: "after an empty segment"},
		{in: "/.;/admin", refused: "dot segment"},
		{in: "/static/..;/admin", refused: "dot segment"},
		{in: "/...", refused: "dots and spaces"},
		{in: "/a/..%20/admin", refused: "dots and spaces"},
		{in: "/%20/admin", refused: "dots and spaces"},
		{in: "/%c0%af", refused: "invalid UTF-8"},
		{in: "/%c0%ae%c0%ae/admin", refused: "invalid UTF-8"},
		{in: "/a%c3", refused: "invalid UTF-8"},
		{in: "/a%ed%a0%80", refused: "invalid UTF-8"},   // a surrogate
		{in: "/%ef%bc%8fadmin", refused: "path syntax"}, // fullwidth solidus
		{in: "/static/%e2%80%a5/admin", refused: "path syntax"},
		{in: "/\uff41dmin", refused: "path syntax"}, // fullwidth a
		{in: "/a%c2%a5b", refused: "path syntax"},   // yen
	} {
		got, err := CanonicalPath(tc.in)
		switch {
		case tc.refused != "":
			var pe *PathError
			if !errors.As(err, &pe) || !errors.Is(err, ErrBadPath) || !strings.Contains(pe.Reason, tc.refused) {
				t.Errorf("CanonicalPath(%q) = %q, %v; want refused for %q", tc.in, got, err, tc.refused)
			}
		case err != nil || got != tc.want:
			t.Errorf("CanonicalPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		default:
			if again, err := CanonicalPath(got); err != nil || again != got {
				t.Errorf("CanonicalPath(%q) = %q, but that canonicalises to %q, %v", tc.in, got, again, err)
			}
		}
	}
}

func TestCanonicalPathAllocs(t *testing.T) {
	for _, p := range []string{"/", "/api/v1/users?id=7", "/static/app.min.js", "/a%20b/%3F"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = CanonicalPath(p) }); n != 0 {
			t.Errorf("CanonicalPath(%q) allocates %v times", p, n)
		}
	}
}

// wikiYAML denies /admin of wiki.test and routes /api elsewhere; the
// rest of the host goes to one origin.
const wikiYAML = `
ingress:
  - {hostname: wiki.test, path: /admin, service: "http_status:403"}
  - {hostname: wiki.test, path: /api/v1, service: "http://198.18.2.10:2"}
  - {hostname: wiki.test, path: /static/, service: "http://198.18.2.10:3"}
  - {hostname: wiki.test, service: "http://198.18.2.10:1"}
  - {hostname: plain.test, service: "http://198.18.2.10:4"}
  - service: http_status:404
`

func TestMatchHTTP(t *testing.T) {
	c, err := Parse([]byte(wikiYAML))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host, target string
		rule         int    // -1: refused
		origin       string // the path the origin receives
		refused      string
	}{
		{"wiki.test", "/", 3, "/", ""},
		{"wiki.test", "/admin", 0, "/admin", ""},
		{"wiki.test", "/admin/users?x=1", 0, "/admin/users", ""},
		{"wiki.test", "/administrator", 3, "/administrator", ""},
		{"wiki.test", "/%61dmin", 0, "/admin", ""},
		{"wiki.test", "/x/../admin", 0, "/admin", ""},
		{"wiki.test", "//admin", 0, "/admin", ""},
		{"wiki.test", "/api/v1/x", 1, "/api/v1/x", ""},
		{"wiki.test", "/api//v1/x", 1, "/api/v1/x", ""},
		{"wiki.test", "/api/v2/../v1/x", 1, "/api/v1/x", ""},
		{"wiki.test", "/page;jsessionid=1", 3, "/page;jsessionid=1", ""},
		{"wiki.test", "/static/a.js;jsessionid=1", 2, "/static/a.js;jsessionid=1", ""},
		{"wiki.test", "/static/;v=2", 2, "/static/", ""},
		{"wiki.test", "/admin/x;y", 0, "/admin/x;y", ""},
		{"wiki.test", "/wiki/Caf%C3%A9", 3, "/wiki/Caf%C3%A9", ""},
		{"wiki.test", "/static/%C3%A9", 2, "/static/%C3%A9", ""}, // "/static/" reaches one segment
		{"wiki.test", "/Administrator", 3, "/Administrator", ""},
		{"wiki.test", "/Wiki/Talk:Page", 3, "/Wiki/Talk:Page", ""},
		{"plain.test", "/ADMIN", 4, "/ADMIN", ""},
		{"plain.test", "/Caf%C3%A9", 4, "/Caf%C3%A9", ""}, // no path rules for the host
		{"plain.test", "/admin;x", 4, "/admin;x", ""},

		// The bypass forms of the issue, and the ways Tomcat, Spring, IIS
		// and nginx reach /admin.
		{"wiki.test", "/admin;x", -1, "", `a ;parameter inside "/admin"`},
		{"wiki.test", "/admin;x/y", -1, "", `a ;parameter inside "/admin"`},
		{"wiki.test", "/;x/admin", -1, "", `a ;parameter inside "/admin"`},
		{"wiki.test", "/api;x/v1", -1, "", `a ;parameter inside "/api/v1"`},
		{"wiki.test", "/.;/admin", -1, "", "dot segment"},
		{"wiki.test", "/static/..;/admin", -1, "", "dot segment"},
		{"wiki.test", "/admin\\x", -1, "", "backslash"},
		{"wiki.test", "/static\\..\\admin", -1, "", "backslash"},
		{"wiki.test", "/%2e/admin", -1, "", "encoded '.'"},
		{"wiki.test", "/static/%2e%2e/admin", -1, "", "encoded '.'"},
		{"wiki.test", "/static%2f..%2fadmin", -1, "", "encoded '/'"},
		{"wiki.test", "/admin%5c", -1, "", "encoded backslash"},
		{"wiki.test", "/%2561dmin", -1, "", "double encoding"},
		{"wiki.test", "/ADMIN", -1, "", "ignores case"},
		{"wiki.test", "/Admin/users", -1, "", "ignores case"},
		{"wiki.test", "/admin.", -1, "", "trailing dots"},
		{"wiki.test", "/admin%20", -1, "", "trailing dots"},
		{"wiki.test", "/admin::$DATA", -1, "", "trailing dots"},
		{"wiki.test", "/admin:$i30:$INDEX_ALLOCATION/x", -1, "", "trailing dots"},
		{"wiki.test", "/admin.json", -1, "", "suffix"},
		{"wiki.test", "/Admin:;$", -1, "", "stream suffixes"}, // IIS does not drop ;x: "Admin" and a stream
		{"wiki.test", "/API/v1", -1, "", "ignores case"},
		{"wiki.test", "/adm%C4%B1n", -1, "", "non-ASCII character in segment 1"}, // dotless i: "I" to .NET
		{"wiki.test", "/api/v%C2%B9", -1, "", "non-ASCII character in segment 2"},
		{"wiki.test", "/%EF%BC%A1dmin", -1, "", "path syntax"},
		{"wiki.test", "/..", -1, "", "above the root"},
	} {
		rule, origin, err := c.MatchHTTP(tc.host, tc.target)
		if tc.rule < 0 {
			var pe *PathError
			if !errors.As(err, &pe) || !strings.Contains(pe.Reason, tc.refused) {
				t.Errorf("MatchHTTP(%q, %q) = %v, %q, %v; want refused for %q", tc.host, tc.target, rule, origin, err, tc.refused)
			}
			continue
		}
		if err != nil || rule == nil || rule.Index() != tc.rule || origin != tc.origin {
			t.Errorf("MatchHTTP(%q, %q) = %v, %q, %v; want rule %d, %q", tc.host, tc.target, rule, origin, err, tc.rule, tc.origin)
		}
	}
}

func TestMatchHTTPAllocs(t *testing.T) {
	c, err := Parse([]byte(wikiYAML))
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/", "/api/v1/users?id=7", "/static/app.min.js", "/wiki/Caf%C3%A9"} {
		if n := testing.AllocsPerRun(100, func() { _, _, _ = c.MatchHTTP("Wiki.Test:80", target) }); n != 0 {
			t.Errorf("MatchHTTP(%q) allocates %v times", target, n)
		}
	}
}

func TestFoldReach(t *testing.T) {
	c, err := Parse([]byte(`
ingress:
  - {hostname: a.test, path: /x/y/z, service: "http_status:403"}
  - {hostname: a.test, service: "http://198.18.2.10:1"}
  - {hostname: a.test, path: /never/reached/at/all, service: "http_status:403"}
  - {hostname: "*.w.test", path: /p/, service: "http_status:403"}
  - {path: /health, service: "http_status:204"}
  - {hostname: b.test, service: "http://198.18.2.10:1"}
  - service: http_status:404
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host, canon string
		seg         int
		want        bool
	}{
		{"a.test", "/%C3%A9", 1, true},
		{"a.test", "/X/%C3%A9", 2, true},
		{"A.TEST:80", "/x./y/%C3%A9", 3, true},
		{"a.test", "/x/y/z/%C3%A9", 4, false},
		{"a.test", "/q/%C3%A9", 2, false},
		{"a.test", "/never/%C3%A9", 2, false}, // after a.test's plain rule
		{"x.w.test", "/%C3%A9", 1, true},
		{"x.w.test", "/p/%C3%A9", 2, false},
		{"b.test", "/%C3%A9", 1, true}, // /health
		{"b.test", "/a/%C3%A9", 2, false},
	} {
		if got := c.foldReach(tc.host, tc.canon, tc.seg); got != tc.want {
			t.Errorf("foldReach(%q, %q, %d) = %v, want %v", tc.host, tc.canon, tc.seg, got, tc.want)
		}
	}
}

func BenchmarkMatchHTTP(b *testing.B) {
	c, err := Parse([]byte(wikiYAML))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, target string }{
		{"canonical", "/wiki/Main_Page?action=view"},
		{"rule", "/api/v1/users/7"},
		{"decode", "/wiki/%4dain_Page"},
		{"utf8", "/wiki/Caf%C3%A9"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _, _ = c.MatchHTTP("wiki.test", bc.target)
			}
		})
	}
}
