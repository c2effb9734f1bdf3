package ingress

import (
	"fmt"
	"strconv"
	"strings"
)

// MatchHTTP returns the rule for one HTTP request to host with the
// request-target target in origin form ("/a/b?q"), and the path the
// origin is to receive: the canonical path with the user's ;parameters
// (see the package documentation, "Request paths"), the query not
// included. When target's path is already canonical, originPath is that
// part of target and nothing is allocated.
//
// A malformed or ambiguous path is a *PathError, to be answered with 400:
// one [CanonicalPath] refuses; one with a ;parameter in the part of a
// segment the matched rule's path covers ("/admin;x" for a rule "/admin");
// one that an origin ignoring ASCII case, trailing dots and spaces of
// segments, an NTFS stream suffix ("::$DATA") or a ".ext" suffix (IIS,
// Windows, Spring) would take for another rule's path ("/ADMIN",
// "/admin.", "/admin.json" when they match no rule "/admin" does); and one
// with a non-ASCII character in a segment that a path rule for the host
// reaches, the segments before it matching the rule's (origins may fold
// it to ASCII).
//
// The stream's own Host is the caller's business (a request for another
// host than the connection's is answered 421 before this).
func (c *Config) MatchHTTP(host, target string) (rule *Rule, originPath string, err error) {
	canon, info, err := canonicalize(target, false)
	if err != nil {
		return nil, "", err
	}
	rule = c.Match(host, canon)
	if rule == nil {
		return nil, "", nil
	}
	if p := rule.path; p != "" && info.paramAt >= 0 &&
		(info.paramAt < len(p) || info.paramAt == len(p) && p[len(p)-1] != '/') {
		return nil, "", &PathError{target, fmt.Sprintf("a ;parameter inside %q, the path of %s (origins disagree whether it is part of the name)", p, rule)}
	}
	originPath = canon
	if path, _, _ := strings.Cut(target, "?"); strings.IndexByte(path, ';') >= 0 {
		originPath, _, _ = canonicalize(target, true)
	}
	// Folding origins: those that drop ;parameters (Spring) see canon,
	// those that do not (IIS) originPath.
	for _, p := range [...]string{canon, originPath} {
		if loose := c.match(host, p, true); loose != rule {
			return nil, "", &PathError{target, fmt.Sprintf("%q falls under %s, but under %s (path %q) for an origin that ignores case, trailing dots and spaces, stream suffixes or a suffix (IIS, Windows, Spring)",
				p, rule, loose, loose.path)}
		}
		if p == originPath {
			break
		}
	}
	if info.nonASCIISeg > 0 && c.foldReach(host, canon, info.nonASCIISeg) {
		return nil, "", &PathError{target, "non-ASCII character in segment " + strconv.Itoa(info.nonASCIISeg) +
			", which a path rule for this host reaches (origins may fold it to ASCII)"}
	}
	return rule, originPath, nil
}

// loosePathMatch is pathMatch for an origin that folds paths: segment by
// segment, equal as segLoose says. The rule path prefix and p are
// canonical; p has no query.
func loosePathMatch(prefix, p string) bool {
	if prefix == "" {
		return true
	}
	if p == "" || p[0] != '/' {
		return false
	}
	i, j := 1, 1 // the starts of the current segments of prefix and p
	for {
		ri := nextSlash(prefix, i)
		if ri == len(prefix) && ri == i {
			// prefix ends in "/": a plain prefix, and p has its slash.
			return true
		}
		rj := nextSlash(p, j)
		if !segLoose(prefix[i:ri], p[j:rj]) {
			return false
		}
		if ri == len(prefix) {
			return true
		}
		if rj == len(p) {
			return false
		}
		i, j = ri+1, rj+1
	}
}

func nextSlash(s string, from int) int {
	if k := strings.IndexByte(s[from:], '/'); k >= 0 {
		return from + k
	}
	return len(s)
}

// segLoose reports whether an origin may take the request segment q for
// the rule segment r: equal ignoring ASCII case once both are folded
// (foldSeg), or q is r with a ".ext" suffix and r has no dot (Spring MVC's
// suffix pattern match serves "/admin.json" with the handler of "/admin").
func segLoose(r, q string) bool {
	r, q = foldSeg(r), foldSeg(q)
	if equalFoldASCII(r, q) {
		return true
	}
	return r != "" && strings.IndexByte(r, '.') < 0 && len(q) > len(r) && q[len(r)] == '.' && equalFoldASCII(r, q[:len(r)])
}

// foldSeg drops from a canonical segment what Windows ignores: an NTFS
// stream suffix (from a ':' followed later by '$', as in "admin::$DATA"
// or "admin:$i30:$INDEX_ALLOCATION"), then trailing dots and (encoded)
// spaces.
func foldSeg(s string) string {
	if i := strings.IndexByte(s, ':'); i > 0 && strings.IndexByte(s[i:], '$') > 0 {
		s = s[:i]
	}
	for {
		switch {
		case strings.HasSuffix(s, "."):
			s = s[:len(s)-1]
		case strings.HasSuffix(s, "%20"):
			s = s[:len(s)-3]
		default:
			return s
		}
	}
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}

// foldReach reports whether a path rule that can match host could match
// canon if an origin folded its segment seg (from 1) to any ASCII text:
// whether a rule with a path at least seg segments deep, before the first
// rule without path matching host, matches the segments of canon before
// seg as loosePathMatch compares them.
func (c *Config) foldReach(host, canon string, seg int) bool {
	if c == nil {
		return false
	}
	limit := int32(len(c.rules))
	c.hostLists(host, func(l []int32) { limit = c.firstPlain(l, limit) })
	reach := false
	c.hostLists(host, func(l []int32) {
		for _, i := range l {
			if i >= limit || reach {
				break
			}
			r := &c.rules[i]
			reach = r.depth >= seg && looseSegments(r.path, canon, seg-1)
		}
	})
	return reach
}

// hostLists calls f with each index list of rules that can match host,
// as Match walks them: rules without hostname, the exact hostname's, each
// wildcard's.
func (c *Config) hostLists(host string, f func([]int32)) {
	f(c.any)
	host = trimHost(host)
	if len(host) == 0 || len(host) > maxHostLen {
		return
	}
	var buf [maxHostLen]byte
	lower := lowerHost(&buf, host)
	if l := c.exact[string(lower)]; len(l) > 0 {
		f(l)
	}
	for i := 1; i < len(lower); i++ {
		if lower[i] == '.' {
			if l := c.wild[string(lower[i+1:])]; len(l) > 0 {
				f(l)
			}
		}
	}
}

// firstPlain returns the first index in candidates below limit whose rule
// has no path, or limit.
func (c *Config) firstPlain(candidates []int32, limit int32) int32 {
	for _, i := range candidates {
		if i >= limit {
			break
		}
		if c.rules[i].path == "" {
			return i
		}
	}
	return limit
}

// looseSegments reports whether the first n segments of the rule path
// prefix and of p are equal as segLoose compares them, p having more.
func looseSegments(prefix, p string, n int) bool {
	i, j := 1, 1
	for range n {
		ri, rj := nextSlash(prefix, i), nextSlash(p, j)
		if rj == len(p) || !segLoose(prefix[i:ri], p[j:rj]) {
			return false
		}
		i, j = min(ri+1, len(prefix)), rj+1
	}
	return true
}

// segmentDepth is the number of segments of a rule path ("/" has none,
// "/a" and "/a/" one).
func segmentDepth(p string) int {
	n := strings.Count(p, "/")
	if strings.HasSuffix(p, "/") {
		n--
	}
	return n
}

// SameHost reports whether two request hosts name the same host as Match
// sees it: a port ("a.test:8080", "[fd00::1]:80") and one trailing dot are
// dropped and ASCII case is ignored. An empty host is the same as nothing.
func SameHost(a, b string) bool {
	a, b = trimHost(a), trimHost(b)
	if a == "" || len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}
