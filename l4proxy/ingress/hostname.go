package ingress

import (
	"errors"
	"fmt"
	"strings"
)

// maxHostLen is the longest DNS name in presentation form without the
// trailing dot. Longer request hosts match only rules without hostname.
const maxHostLen = 253

// checkDNSName reports whether name is a DNS name this package accepts:
// dot-separated labels of 1-63 ASCII letters, digits, '-' and '_', not
// starting or ending with '-', at most 253 bytes in all.
func checkDNSName(name string) error {
	if len(name) > maxHostLen {
		return fmt.Errorf("longer than %d bytes", maxHostLen)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q longer than 63 bytes", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("label %q has invalid character %q (want letters, digits, '-', '_')", label, c)
			}
		}
	}
	return nil
}

// parseHostname validates and normalises the hostname field of a rule. It
// returns the lowercase name without a trailing dot and whether it is a
// wildcard ("*.example.test").
func parseHostname(h string) (name string, wildcard bool, err error) {
	name = strings.ToLower(strings.TrimSuffix(h, "."))
	if name == "" {
		return "", false, errors.New("empty hostname (omit the field to match every host)")
	}
	if strings.IndexByte(name, ':') >= 0 {
		return "", false, fmt.Errorf("%q must not contain a port", h)
	}
	base := name
	if strings.HasPrefix(name, "*.") {
		wildcard, base = true, name[2:]
	}
	if strings.IndexByte(base, '*') >= 0 || name == "*" {
		return "", false, fmt.Errorf("bad wildcard %q (only a leading \"*.\" label is allowed, e.g. \"*.example.test\"; omit hostname to match every host)", h)
	}
	if err := checkDNSName(base); err != nil {
		return "", false, fmt.Errorf("bad hostname %q: %v", h, err)
	}
	return name, wildcard, nil
}

// checkPath validates the path field of a rule.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must start with \"/\"", p)
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c <= ' ' || c == 0x7f:
			return fmt.Errorf("%q contains a space or control character", p)
		case c == '?' || c == '#':
			return fmt.Errorf("%q contains %q (queries and fragments are not matched)", p, c)
		case c == ';':
			return fmt.Errorf("%q contains ';' (requests are matched without their ;parameters)", p)
		}
	}
	canon, err := CanonicalPath(p)
	if err != nil {
		var pe *PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("%q: %s", p, pe.Reason)
		}
		return err
	}
	if canon != p {
		return fmt.Errorf("%q is not in canonical form, which requests are matched in: write %q", p, canon)
	}
	return nil
}

// trimHost strips a port (":443", or the brackets and port of "[::1]:443")
// and one trailing dot from a request host. A host with more than one
// colon outside brackets (a bare IPv6 address) keeps its colons.
func trimHost(host string) string {
	end := -1
	if len(host) > 0 && host[0] == '[' {
		end = strings.IndexByte(host, ']')
	}
	if end > 0 {
		host = host[1:end]
	} else if i := strings.IndexByte(host, ':'); i >= 0 && strings.LastIndexByte(host, ':') == i {
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	return host
}

// pathMatch reports whether the request path p falls under the rule path
// prefix. An empty prefix matches every path (even an empty one). A
// prefix matches at a segment boundary: "/api" matches "/api", "/api/x"
// and "/api?q", not "/apix"; a prefix ending in "/" is a plain prefix.
func pathMatch(prefix, p string) bool {
	if prefix == "" {
		return true
	}
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	if len(p) == len(prefix) || prefix[len(prefix)-1] == '/' {
		return true
	}
	switch p[len(prefix)] {
	case '/', '?', '#':
		return true
	}
	return false
}
