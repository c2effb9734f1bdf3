package ingressfuzz

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/onramp-net/onramp/l4proxy/ingress"
)

// canonConfig is the fixed configuration of FuzzCanonicalPath: deny rules
// and routes by path, for one host, a wildcard and every host.
const canonConfig = `
ingress:
  - {hostname: app.example.test, path: /admin, service: "http_status:403"}
  - {hostname: app.example.test, path: /api/v1, service: "http://198.18.2.10:1"}
  - {hostname: app.example.test, path: /static/, service: "http://198.18.2.10:2"}
  - {hostname: app.example.test, path: /Docs/Private, service: "http_status:403"}
  - {hostname: app.example.test, service: "http://198.18.2.10:3"}
  - {hostname: "*.example.test", path: /manager/html, service: "http_status:403"}
  - {hostname: "*.example.test", service: "unix:/run/app.sock"}
  - {path: /health, service: "http_status:204"}
  - service: "http://198.18.2.10:4"
`

var canonHosts = []string{"app.example.test", "x.example.test", "other.test"}

// FuzzCanonicalPath feeds request-targets to ingress.CanonicalPath and
// Config.MatchHTTP. An accepted canonical path is its own canonical form,
// holds no "//", dot segment, backslash, encoded slash, parameter, control
// byte or raw non-ASCII byte, and equals what the slow reference
// canonicaliser below makes of the target (which also refuses exactly the
// same targets). For a request MatchHTTP accepts, the path the origin
// receives, normalised as Tomcat, Spring, IIS and nginx would (models
// below), never falls under another rule than the one MatchHTTP chose.
func FuzzCanonicalPath(f *testing.F) {
	c, err := ingress.Parse([]byte(canonConfig))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("/admin;x", uint8(0))
	f.Fuzz(func(t *testing.T, target string, hostSel uint8) {
		canon, err := ingress.CanonicalPath(target)
		ref, refOK := refCanonical(target)
		if (err == nil) != refOK || err == nil && canon != ref {
			t.Fatalf("CanonicalPath(%q) = %q, %v; reference: %q, accepted %v", target, canon, err, ref, refOK)
		}
		if err != nil {
			if _, _, merr := c.MatchHTTP("app.example.test", target); merr == nil {
				t.Fatalf("MatchHTTP accepts %q, which CanonicalPath refuses (%v)", target, err)
			}
			return
		}
		checkCanonical(t, target, canon)

		host := canonHosts[int(hostSel)%len(canonHosts)]
		rule, originPath, err := c.MatchHTTP(host, target)
		if err != nil {
			return
		}
		if rule != c.Match(host, canon) {
			t.Fatalf("MatchHTTP(%q, %q) = %v, Match of its canonical path %q = %v", host, target, rule, canon, c.Match(host, canon))
		}
		if stripped := tomcatStrip(originPath); stripped != canon {
			t.Fatalf("MatchHTTP(%q, %q): origin path %q is %q without parameters, want the canonical %q", host, target, originPath, stripped, canon)
		}
		for _, m := range origins {
			for _, p := range m.normalise(originPath) {
				if got := modelMatch(c, host, p, m.fold); got != rule.Index() {
					t.Fatalf("MatchHTTP(%q, %q) = %v, origin path %q; %s resolves it to %q, under rule %d",
						host, target, rule, originPath, m.name, p, got)
				}
			}
		}
	})
}

func checkCanonical(t *testing.T, target, canon string) {
	t.Helper()
	again, err := ingress.CanonicalPath(canon)
	if err != nil || again != canon {
		t.Fatalf("CanonicalPath(%q) = %q, which canonicalises to %q, %v", target, canon, again, err)
	}
	bad := func(why string) { t.Fatalf("CanonicalPath(%q) = %q: %s", target, canon, why) }
	if !strings.HasPrefix(canon, "/") {
		bad("not absolute")
	}
	for _, s := range []string{"//", "/./", "/../", "\\", ";", "?", "#", " "} {
		if strings.Contains(canon, s) {
			bad("holds " + s)
		}
	}
	if strings.HasSuffix(canon, "/.") || strings.HasSuffix(canon, "/..") {
		bad("ends in a dot segment")
	}
	lower := strings.ToLower(canon)
	for _, s := range []string{"%2f", "%5c", "%2e", "%3b"} {
		if strings.Contains(lower, s) {
			bad("holds " + s)
		}
	}
	for i := 0; i < len(canon); i++ {
		if c := canon[i]; c < 0x20 || c >= 0x7f {
			bad("holds a control or non-ASCII byte")
		}
	}
}

// ---- the reference canonicaliser ----

// refCanonical canonicalises the path of target as the package
// documentation says, the slow and obvious way.
func refCanonical(target string) (string, bool) {
	path, _, _ := strings.Cut(target, "?")
	if !strings.HasPrefix(path, "/") {
		return "", false
	}
	var stack []string
	sawEmpty, trailing := false, false
	segs := strings.Split(path[1:], "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		name, params, hasParams := strings.Cut(seg, ";")
		if hasParams {
			if _, ok := refDecode(params, true); !ok {
				return "", false
			}
		}
		trailing = true
		switch {
		case name == "":
			if !last {
				sawEmpty = true
			}
		case name == "." || name == "..":
			if hasParams {
				return "", false
			}
			if name == ".." {
				if sawEmpty || len(stack) == 0 {
					return "", false
				}
				stack = stack[:len(stack)-1]
			}
		default:
			dec, ok := refDecode(name, false)
			if !ok || strings.Trim(dec, ". ") == "" {
				return "", false
			}
			stack = append(stack, refEncode(dec))
			trailing = false
		}
	}
	out := "/" + strings.Join(stack, "/")
	if trailing && len(stack) > 0 {
		out += "/"
	}
	return out, true
}

// refDecode percent-decodes a segment name (or parameter text) and checks
// what the canonical form refuses.
func refDecode(s string, param bool) (string, bool) {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) || !isHexDigit(s[i+1]) || !isHexDigit(s[i+2]) {
				return "", false
			}
			d := fromHex(s[i+1])<<4 | fromHex(s[i+2])
			if strings.IndexByte("/\\.;", d) >= 0 || d < 0x20 || d == 0x7f {
				return "", false
			}
			b = append(b, d)
			i += 2
			continue
		}
		if c < 0x20 || c == 0x7f || c == '\\' || c == ' ' || c == '#' || c == ';' && !param {
			return "", false
		}
		b = append(b, c)
	}
	// A '%' in the decoded text came from %25: followed by two hex digits,
	// it is double encoding.
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' && isHexDigit(b[i+1]) && isHexDigit(b[i+2]) {
			return "", false
		}
	}
	if !utf8.Valid(b) {
		return "", false
	}
	for _, r := range string(b) {
		if refConfusable(r) {
			return "", false
		}
	}
	return string(b), true
}

// refEncode writes decoded text in canonical form.
func refEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~!$&'()*+,=:@", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		}
	}
	return b.String()
}

func refConfusable(r rune) bool {
	return 0xff01 <= r && r <= 0xff5e || 0xfe50 <= r && r <= 0xfe6b || 0x2024 <= r && r <= 0x2026 ||
		strings.ContainsRune("\u2044\u2215\u29f8\u2216\u29f5\u29f9\u00a5\u20a9\u037e", r)
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func fromHex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// ---- models of origins ----

// originModel normalises a request path as one kind of origin does before
// it picks what serves it, into one or more paths (decoded) that it may
// serve it as.
type originModel struct {
	name      string
	fold      bool // matches paths ignoring case, and any non-ASCII character as any letter
	normalise func(string) []string
}

var origins = []originModel{
	{"nginx", false, func(p string) []string { return one(removeDots(decode(p))) }},
	{"Tomcat", false, func(p string) []string { return one(removeDots(decode(tomcatStrip(p)))) }},
	{"Spring", false, func(p string) []string {
		// Tomcat's normalisation, then the suffix pattern match: a
		// handler for "/x" also serves "/x.json".
		n := removeDots(decode(tomcatStrip(p)))
		if n == "" {
			return nil
		}
		out := []string{n}
		start := strings.LastIndexByte(n, '/') + 1
		if dot := strings.IndexByte(n[start:], '.'); dot > 0 {
			out = append(out, n[:start+dot])
		}
		return out
	}},
	{"IIS", true, func(p string) []string {
		// Backslashes are slashes, segments lose NTFS stream suffixes and
		// trailing dots and spaces, case is ignored (fold).
		d := strings.ReplaceAll(decode(p), "\\", "/")
		segs := strings.Split(d, "/")
		for i, s := range segs {
			if c := strings.IndexByte(s, ':'); c > 0 && strings.Contains(s[c:], "$") {
				s = s[:c]
			}
			segs[i] = strings.TrimRight(s, ". ")
		}
		return one(removeDots(strings.Join(segs, "/")))
	}},
}

func one(p string) []string {
	if p == "" {
		return nil
	}
	return []string{p}
}

// tomcatStrip drops the ;parameters of every segment, as Tomcat does
// before decoding.
func tomcatStrip(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	return strings.Join(segs, "/")
}

func decode(p string) string {
	d, err := url.PathUnescape(p)
	if err != nil {
		return ""
	}
	return d
}

// removeDots merges slashes and removes dot segments; "" if ".." climbs
// above the root.
func removeDots(p string) string {
	if p == "" {
		return ""
	}
	var stack []string
	segs := strings.Split(p, "/")[1:]
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		trailing = last && (s == "" || s == "." || s == "..")
		switch s {
		case "", ".":
		case "..":
			if len(stack) == 0 {
				return ""
			}
			stack = stack[:len(stack)-1]
		default:
			stack = append(stack, s)
		}
	}
	out := "/" + strings.Join(stack, "/")
	if trailing && len(stack) > 0 {
		out += "/"
	}
	return out
}

// modelMatch is the rule an origin's resolved (decoded) path p falls
// under: rule paths decoded, compared ignoring case if fold, a non-ASCII
// character in p matching any one letter if fold.
func modelMatch(c *ingress.Config, host string, p string, fold bool) int {
	for _, r := range c.Rules() {
		if !hostMatches(r.Hostname(), host) {
			continue
		}
		if rp := r.Path(); rp != "" && !modelPrefix(decode(rp), p, fold) {
			continue
		}
		return r.Index()
	}
	return -1
}

func hostMatches(ruleHost, host string) bool {
	switch {
	case ruleHost == "":
		return true
	case strings.HasPrefix(ruleHost, "*."):
		return strings.HasSuffix(host, ruleHost[1:]) && len(host) > len(ruleHost)-1
	}
	return ruleHost == host
}

// modelPrefix reports whether the decoded path p falls under the decoded
// rule path prefix at a segment boundary.
func modelPrefix(prefix, p string, fold bool) bool {
	j := 0
	for i := 0; i < len(prefix); i++ {
		if j >= len(p) {
			return false
		}
		pc := p[j]
		if fold && pc >= utf8.RuneSelf {
			// Unicode folding or a best-fit code page may make it any letter.
			_, n := utf8.DecodeRuneInString(p[j:])
			if prefix[i] == '/' {
				return false
			}
			j += n
			continue
		}
		if fold {
			pc, prefixC := lowerASCII(pc), lowerASCII(prefix[i])
			if pc != prefixC {
				return false
			}
		} else if pc != prefix[i] {
			return false
		}
		j++
	}
	return j == len(p) || p[j] == '/' || strings.HasSuffix(prefix, "/")
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
