package ingress

import "strings"

// index builds the match indexes. Rule indices fit in int32: a file with
// more rules would not parse in any reasonable memory.
func (c *Config) index() {
	c.exact = make(map[string][]int32)
	c.wild = make(map[string][]int32)
	for i := range c.rules {
		r := &c.rules[i]
		switch {
		case r.hostname == "":
			c.any = append(c.any, int32(i))
		case strings.HasPrefix(r.hostname, "*."):
			c.wild[r.hostname[2:]] = append(c.wild[r.hostname[2:]], int32(i))
		default:
			c.exact[r.hostname] = append(c.exact[r.hostname], int32(i))
		}
	}
}

// Match returns the first rule, in file order, that matches a request for
// host and path. It never returns nil for a Config from Parse or Load,
// whose last rule matches everything.
//
// The host is compared case-insensitively (ASCII only) after dropping a
// port ("a.test:443", "[fd00::1]:443") and one trailing dot. A rule
// without hostname matches every host; "*.example.test" matches any name
// with at least one more label ("a.example.test", "a.b.example.test") but
// not "example.test". Hosts longer than 253 bytes match only rules without
// hostname.
//
// The path is a canonical request path ([CanonicalPath]); pass "" when
// there is none (TCP, TLS passthrough). A rule with a path matches only
// when the path starts with the rule's path at a segment boundary: "/api"
// matches "/api", "/api/", "/api/x" and "/api?x", but not "/apix" or "";
// a rule path ending in "/" is a plain prefix. Paths are compared byte for
// byte: Match does not canonicalise. HTTP requests are matched with
// [Config.MatchHTTP], which canonicalises the request-target, refuses
// ambiguous ones and then calls Match; the origin then receives the
// canonical path (with the user's ;parameters), not the spelling the user
// sent, so that what the rules matched is what it serves.
//
// Match does not allocate.
func (c *Config) Match(host, path string) *Rule {
	return c.match(host, path, false)
}

// match is Match, with the rule paths compared by loosePathMatch if loose.
func (c *Config) match(host, path string, loose bool) *Rule {
	if c == nil || len(c.any) == 0 {
		return nil
	}
	best := int32(len(c.rules))
	for _, i := range c.any {
		if c.pathMatch(i, path, loose) {
			best = i
			break
		}
	}
	host = trimHost(host)
	if len(host) == 0 || len(host) > maxHostLen || best == 0 {
		return c.rule(best)
	}
	var buf [maxHostLen]byte
	lower := lowerHost(&buf, host)
	if len(c.exact) > 0 {
		best = c.first(c.exact[string(lower)], best, path, loose)
	}
	if len(c.wild) > 0 {
		// Try every proper suffix that follows a non-empty first label.
		for i := 1; i < len(lower); i++ {
			if lower[i] == '.' {
				best = c.first(c.wild[string(lower[i+1:])], best, path, loose)
			}
		}
	}
	return c.rule(best)
}

func (c *Config) pathMatch(i int32, path string, loose bool) bool {
	if loose {
		return loosePathMatch(c.rules[i].path, path)
	}
	return pathMatch(c.rules[i].path, path)
}

// lowerHost writes host (at most maxHostLen bytes) into buf in ASCII lower
// case and returns that part of buf: the key of the hostname indexes.
func lowerHost(buf *[maxHostLen]byte, host string) []byte {
	lower := buf[:len(host)]
	for i := 0; i < len(host); i++ {
		lower[i] = lowerByte(host[i])
	}
	return lower
}

func lowerByte(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		b += 'a' - 'A'
	}
	return b
}

// first returns the first index in candidates below best whose rule
// matches path, or best.
func (c *Config) first(candidates []int32, best int32, path string, loose bool) int32 {
	for _, i := range candidates {
		if i >= best {
			break
		}
		if c.pathMatch(i, path, loose) {
			return i
		}
	}
	return best
}

func (c *Config) rule(i int32) *Rule {
	if int(i) >= len(c.rules) {
		return nil
	}
	return &c.rules[i]
}
