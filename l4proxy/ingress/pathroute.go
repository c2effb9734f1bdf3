package ingress

// PathRouted reports whether requests for host can match different rules
// depending on their path: whether a rule with a path that could match host
// comes before the first rule without path that matches host.
//
// When it is false, Match(host, p) returns the same rule for every p (""
// included), so one match serves a whole connection, every request on it.
// When it is true, a connection carrying several HTTP requests must be
// matched request by request: matching only its first request would send
// the later ones, whatever their path, to the first one's service.
//
// The host is taken as Match takes it (port, trailing dot and case do not
// matter). PathRouted walks the hostname indexes built at parse time, as
// Match does, without allocating; a nil Config has no path rules.
func (c *Config) PathRouted(host string) bool {
	if c == nil || len(c.any) == 0 {
		return false
	}
	plain, pathed := firstPlainAndPathed(c, c.any, int32(len(c.rules)))
	host = trimHost(host)
	if len(host) > 0 && len(host) <= maxHostLen && plain > 0 {
		var buf [maxHostLen]byte
		lower := lowerHost(&buf, host)
		if len(c.exact) > 0 {
			p, q := firstPlainAndPathed(c, c.exact[string(lower)], plain)
			plain, pathed = min(plain, p), min(pathed, q)
		}
		if len(c.wild) > 0 {
			for i := 1; i < len(lower); i++ {
				if lower[i] == '.' {
					p, q := firstPlainAndPathed(c, c.wild[string(lower[i+1:])], plain)
					plain, pathed = min(plain, p), min(pathed, q)
				}
			}
		}
	}
	return pathed < plain
}

// firstPlainAndPathed returns the first index in candidates (ascending)
// whose rule has no path and the first whose rule has one, looking only
// below limit; limit stands for "none".
func firstPlainAndPathed(c *Config, candidates []int32, limit int32) (plain, pathed int32) {
	plain, pathed = limit, limit
	for _, i := range candidates {
		if i >= limit {
			break
		}
		if c.rules[i].path == "" {
			return i, pathed
		}
		if pathed == limit {
			pathed = i
		}
	}
	return plain, pathed
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
