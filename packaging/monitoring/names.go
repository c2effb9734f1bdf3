package monitoring

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// keywords of PromQL that stand where a metric name could: binary
// operators, modifiers and the special values.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"inf": true, "nan": true, "start": true, "end": true,
}

// groupings are the keywords followed by a parenthesized list of labels.
var groupings = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// aggregations are PromQL's aggregation operators, which a grouping
// clause may separate from their parenthesized argument:
// sum by (x) (...).
var aggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// plainNames matches a __name__ regular expression that is an
// alternation of plain metric names.
var plainNames = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\|[a-zA-Z_:][a-zA-Z0-9_:]*)*$`)

// nameMatcher finds __name__ matchers inside a selector's braces.
var nameMatcher = regexp.MustCompile(`__name__\s*(=~|=)\s*"([^"]*)"`)

// MetricNames returns the metric names a PromQL expression (Grafana
// variables allowed) selects, sorted and without duplicates: the bare
// names of its vector selectors and the plain names of __name__ matchers.
// It tokenizes rather than parses: it skips string literals, label
// matchers in braces, ranges in brackets, label lists after by, without,
// on, ignoring, group_left and group_right, numbers and durations,
// keywords, Grafana variables, and identifiers followed by "(" (functions
// and aggregations). A __name__ matcher that is a regular expression other
// than an alternation of names is an error: its names cannot be checked.
func MetricNames(expr string) ([]string, error) {
	var names []string
	s := expr
	skipSpace := func(i int) int {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
		return i
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '#': // a comment runs to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '{':
			j, err := closing(s, i, '{', '}')
			if err != nil {
				return nil, err
			}
			for _, m := range nameMatcher.FindAllStringSubmatch(s[i:j], -1) {
				if m[1] == "=~" && !plainNames.MatchString(m[2]) {
					return nil, fmt.Errorf("__name__=~%q: not an alternation of metric names", m[2])
				}
				names = append(names, strings.Split(m[2], "|")...)
			}
			i = j
		case c == '[':
			j, err := closing(s, i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$': // a Grafana variable: $name or ${...}
			i++
			if i < len(s) && s[i] == '{' {
				j, err := closing(s, i, '{', '}')
				if err != nil {
					return nil, err
				}
				i = j
				break
			}
			for i < len(s) && isIdent(s[i], true) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			// A number or a duration: 5m, 1e9, 0x1f, 1h30m, 0.5.
			for i < len(s) && (isIdent(s[i], true) || s[i] == '.') {
				i++
			}
		case isIdent(c, false):
			j := i
			for j < len(s) && isIdent(s[j], true) {
				j++
			}
			word := s[i:j]
			k := skipSpace(j)
			lower := strings.ToLower(word)
			switch {
			case groupings[lower]:
				if k < len(s) && s[k] == '(' {
					e, err := closing(s, k, '(', ')')
					if err != nil {
						return nil, err
					}
					j = e
				}
			case keywords[lower]:
			case k < len(s) && s[k] == '(':
				// a function or an aggregation
			case aggregations[lower] && startsGrouping(s[k:]):
				// an aggregation, its grouping clause next
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// startsGrouping reports whether s starts with the keyword by or without.
func startsGrouping(s string) bool {
	for _, kw := range []string{"by", "without"} {
		if len(s) > len(kw) && strings.EqualFold(s[:len(kw)], kw) && !isIdent(s[len(kw)], true) {
			return true
		}
	}
	return false
}

func isIdent(c byte, inner bool) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || inner && c >= '0' && c <= '9'
}

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %d in %q", i, s)
}

// closing returns the index after the bracket that closes the one at i,
// skipping strings.
func closing(s string, i int, open, close byte) (int, error) {
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '"', '\'', '`':
			e, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = e - 1
		case open:
			depth++
		case close:
			depth--
			if depth == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("unclosed %c at %d in %q", open, i, s)
}
