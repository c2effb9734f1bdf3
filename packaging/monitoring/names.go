package monitoring

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
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

// Selector is a vector selector of a query: the metric it names and its
// label matchers. A __name__ matcher that is an alternation of names
// makes one Selector per name, with the other matchers.
type Selector struct {
	Metric   string
	Matchers []Matcher
}

// Matcher is a label matcher: Label Op "Value" with Op one of =, !=, =~,
// !~, Value unquoted.
type Matcher struct {
	Label, Op, Value string
}

// MetricNames returns the metric names a PromQL expression (Grafana
// variables allowed) selects, sorted and without duplicates: the bare
// names of its vector selectors and the plain names of __name__ matchers.
func MetricNames(expr string) ([]string, error) {
	sels, err := Selectors(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, sel := range sels {
		names = append(names, sel.Metric)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// Selectors returns the vector selectors of a PromQL expression (Grafana
// variables allowed), in order.
// It tokenizes rather than parses: it skips string literals, ranges in
// brackets, label lists after by, without, on, ignoring, group_left and
// group_right, numbers and durations, keywords, Grafana variables, and
// identifiers followed by "(" (functions and aggregations); what is left
// are metric names, each with the matchers in braces after it, and
// selectors of braces alone, named by __name__. A __name__ matcher that is
// a regular expression other than an alternation of names is an error:
// its names cannot be checked.
func Selectors(expr string) ([]Selector, error) {
	var sels []Selector
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
		case c == '{': // a selector of matchers alone: named by __name__
			j, err := closing(s, i, '{', '}')
			if err != nil {
				return nil, err
			}
			ms, err := parseMatchers(s[i+1 : j-1])
			if err != nil {
				return nil, err
			}
			var names, rest = []string(nil), []Matcher(nil)
			for _, m := range ms {
				switch {
				case m.Label != "__name__":
					rest = append(rest, m)
				case m.Op == "=":
					names = append(names, m.Value)
				case m.Op == "=~" && plainNames.MatchString(m.Value):
					names = append(names, strings.Split(m.Value, "|")...)
				default:
					return nil, fmt.Errorf("__name__%s%q: not an alternation of metric names", m.Op, m.Value)
				}
			}
			for _, n := range names {
				sels = append(sels, Selector{Metric: n, Matchers: rest})
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
				sel := Selector{Metric: word}
				if k < len(s) && s[k] == '{' {
					e, err := closing(s, k, '{', '}')
					if err != nil {
						return nil, err
					}
					if sel.Matchers, err = parseMatchers(s[k+1 : e-1]); err != nil {
						return nil, err
					}
					j = e
				}
				sels = append(sels, sel)
			}
			i = j
		default:
			i++
		}
	}
	return sels, nil
}

// matcherRE matches one label matcher and the comma after it.
var matcherRE = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`" + `)\s*(,|$)`)

// unquote returns the value of a PromQL string literal, whose escapes are
// Go's; a single-quoted one is made double-quoted first.
func unquote(q string) (string, error) {
	if q[0] == '\'' {
		q = `"` + strings.ReplaceAll(q[1:len(q)-1], `"`, `\"`) + `"`
	}
	return strconv.Unquote(q)
}

// parseMatchers parses the label matchers between a selector's braces.
func parseMatchers(s string) ([]Matcher, error) {
	var ms []Matcher
	for rest := s; strings.TrimSpace(rest) != ""; {
		m := matcherRE.FindStringSubmatchIndex(rest)
		if m == nil {
			return nil, fmt.Errorf("label matchers %q: cannot parse %q", s, rest)
		}
		value, err := unquote(rest[m[6]:m[7]])
		if err != nil {
			return nil, fmt.Errorf("label matchers %q: %w", s, err)
		}
		ms = append(ms, Matcher{Label: rest[m[2]:m[3]], Op: rest[m[4]:m[5]], Value: value})
		rest = rest[m[1]:]
	}
	return ms, nil
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
