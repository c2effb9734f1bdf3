package ingress

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrBadPath is the sentinel a *PathError unwraps to.
var ErrBadPath = errors.New("request path refused")

// PathError is the error of [CanonicalPath] and [Config.MatchHTTP] for a
// request path that is malformed, or ambiguous: origins would read it
// differently. A server answers it with 400.
type PathError struct {
	Target string // the request-target as received
	Reason string // what is wrong, worded for the user
}

// Error returns e.g. `request path "/a%2fb": encoded '/' (%2F)`.
func (e *PathError) Error() string {
	t := e.Target
	if len(t) > 200 {
		t = t[:200] + "..."
	}
	return "request path " + strconv.Quote(t) + ": " + e.Reason
}

// Unwrap returns ErrBadPath.
func (e *PathError) Unwrap() error { return ErrBadPath }

// Byte classes of a request path (see the package documentation, "Request
// paths").
const (
	clsRaw      = iota + 1 // stays raw; an escape of it is decoded
	clsKeep                // printable, not allowed raw: written as %XX
	clsRawBad              // refused raw, kept as %XX when escaped: ' ', '#', '?'
	clsBad                 // refused raw and escaped: control bytes, DEL, '\'
	clsDot                 // '.': raw only
	clsSlash               // '/': raw only, the separator
	clsSemi                // ';': raw only, starts path parameters
	clsPercent             // '%': raw starts an escape; %25 is kept
	clsNonASCII            // 0x80-0xFF: valid UTF-8, written as %XX
)

var pathClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c < 0x20 || c == 0x7f || c == '\\':
			t[c] = clsBad
		case c >= 0x80:
			t[c] = clsNonASCII
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			t[c] = clsRaw
		}
	}
	for _, c := range []byte("-_~!$&'()*+,=:@") {
		t[c] = clsRaw
	}
	for _, c := range []byte("\"<>[]^`{|}") {
		t[c] = clsKeep
	}
	t[' '], t['#'], t['?'] = clsRawBad, clsRawBad, clsRawBad
	t['.'], t['/'], t[';'], t['%'] = clsDot, clsSlash, clsSemi, clsPercent
	return t
}()

const upperHex = "0123456789ABCDEF"

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// pathInfo is what CanonicalPath learns about a path besides its
// canonical form.
type pathInfo struct {
	// paramAt is the offset in the canonical path where the user's
	// spelling, parameters kept, first differs from it (where its first
	// ";" sits); -1 if no parameter survives.
	paramAt int
	// nonASCIISeg is the index, from 1, of the first canonical segment
	// holding a non-ASCII character; 0 if none.
	nonASCIISeg int
}

// CanonicalPath returns the canonical form of the path of an HTTP
// request-target in origin form ("/a/b?q"): the form ingress rules match
// (see the package documentation, "Request paths"). The query is not part
// of it. An ambiguous or malformed path is a *PathError.
//
// CanonicalPath does not allocate when the path is already canonical.
func CanonicalPath(target string) (string, error) {
	canon, _, err := canonicalize(target, false)
	return canon, err
}

// canonicalize returns the canonical path of target, with the user's path
// parameters if keepParams (the form the origin receives) or without them
// (the form rules match; info is only meaningful then).
func canonicalize(target string, keepParams bool) (string, pathInfo, error) {
	info := pathInfo{paramAt: -1}
	path := target
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "" || path[0] != '/' {
		return "", info, &PathError{target, "not an absolute path"}
	}
	if ok, seg := isCanonical(path); ok {
		info.nonASCIISeg = seg
		return path, info, nil
	}
	out := make([]byte, 0, len(path)+8)
	segs := 0         // segments in out
	sawEmpty := false // an empty segment ("//", "/;p/") before this one
	trailing := false // out needs a trailing "/"
	rest := path[1:]
	for {
		seg, next, more := strings.Cut(rest, "/")
		name, params, hasParams := strings.Cut(seg, ";")
		switch {
		case name == "":
			if hasParams {
				if info.paramAt < 0 {
					info.paramAt = len(out) + 1
				}
				if reason := checkPart(params); reason != "" {
					return "", info, &PathError{target, reason}
				}
			}
			sawEmpty = sawEmpty || more
			trailing = true
		case name == "." || name == "..":
			if hasParams {
				return "", info, &PathError{target, "dot segment " + strconv.Quote(seg) + " with a ;parameter (some origins read it as " + strconv.Quote(name) + ", others as a name)"}
			}
			if name == ".." {
				if sawEmpty {
					return "", info, &PathError{target, `".." after an empty segment (origins that merge slashes and those that do not resolve it differently)`}
				}
				if segs == 0 {
					return "", info, &PathError{target, `".." above the root`}
				}
				out = out[:bytes.LastIndexByte(out, '/')]
				segs--
				if info.paramAt > len(out) {
					info.paramAt = -1
				}
				if info.nonASCIISeg > segs {
					info.nonASCIISeg = 0
				}
			}
			trailing = true
		case dotsAndSpaces(name):
			return "", info, &PathError{target, "segment " + strconv.Quote(name) + " of dots and spaces (Windows strips trailing dots and spaces)"}
		default:
			out = append(out, '/')
			segs++
			var nonASCII bool
			var reason string
			out, nonASCII, reason = appendCanon(out, name)
			if reason != "" {
				return "", info, &PathError{target, reason}
			}
			if nonASCII && info.nonASCIISeg == 0 {
				info.nonASCIISeg = segs
			}
			if hasParams {
				if info.paramAt < 0 {
					info.paramAt = len(out)
				}
				if reason := checkPart(params); reason != "" {
					return "", info, &PathError{target, reason}
				}
				if keepParams {
					out = append(out, ';')
					out, _, _ = appendCanon(out, params)
				}
			}
			trailing = false
		}
		if !more {
			break
		}
		rest = next
	}
	if trailing || len(out) == 0 {
		out = append(out, '/')
	}
	return string(out), info, nil
}

// checkPart checks the ;parameters of a segment as appendCanon would write
// them and returns the reason they are refused, or "".
func checkPart(s string) string {
	var buf [64]byte
	_, _, reason := appendCanon(buf[:0], s)
	return reason
}

// isCanonical reports whether the path p (starting with "/", no query) is
// its own canonical form: only raw bytes of class clsRaw or clsDot and
// upper-case escapes of clsKeep and clsRawBad bytes, of a '%' not
// followed by two hex digits and of valid, unconfusable UTF-8; no empty
// segment but a trailing one; no segment of dots and spaces; no
// parameter. It returns the index of the first segment holding a
// non-ASCII character too (pathInfo.nonASCIISeg).
func isCanonical(p string) (ok bool, nonASCIISeg int) {
	start, seg := 1, 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			name := p[start:i]
			if name == "" && i < len(p) || dotsAndSpaces(name) {
				return false, 0
			}
			start = i + 1
			seg++
			continue
		}
		switch pathClass[p[i]] {
		case clsRaw, clsDot:
		case clsPercent:
			if i+2 >= len(p) || !isUpperHex(p[i+1]) || !isUpperHex(p[i+2]) {
				return false, 0
			}
			switch d := hexByte(p[i+1], p[i+2]); pathClass[d] {
			case clsKeep, clsRawBad:
			case clsPercent:
				if i+4 < len(p) && isHex(p[i+3]) && isHex(p[i+4]) {
					return false, 0
				}
			case clsNonASCII:
				// Canonical only as upper-case escapes: appendUTF8's output.
				var buf [4 * 3]byte
				out, n, reason := appendUTF8(buf[:0], p, i)
				if reason != "" || string(out) != p[i:i+n] {
					return false, 0
				}
				if nonASCIISeg == 0 {
					nonASCIISeg = seg
				}
				i += n - 3
			default:
				return false, 0
			}
			i += 2
		default:
			return false, 0
		}
	}
	return true, nonASCIISeg
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func isHex(c byte) bool { _, ok := unhex(c); return ok }

func hexByte(hi, lo byte) byte {
	h, _ := unhex(hi)
	l, _ := unhex(lo)
	return h<<4 | l
}

// dotsAndSpaces reports whether a raw segment name is made of '.' and
// "%20" only ("." and ".." included).
func dotsAndSpaces(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch {
		case name[i] == '.':
		case name[i] == '%' && i+2 < len(name) && name[i+1] == '2' && name[i+2] == '0':
			i += 2
		default:
			return false
		}
	}
	return true
}

// appendCanon appends the canonical spelling of a raw segment name (or
// parameter text) s to out: escapes of clsRaw bytes decoded, other
// printable bytes and UTF-8 sequences written as upper-case %XX. It
// reports whether s holds a non-ASCII character, and the reason s is
// refused, or "".
func appendCanon(out []byte, s string) ([]byte, bool, string) {
	nonASCII := false
	for i := 0; i < len(s); {
		c, n, reason := pathByte(s, i)
		if reason != "" {
			return out, nonASCII, reason
		}
		escaped := n == 3
		switch pathClass[c] {
		case clsRaw:
			out = append(out, c)
		case clsDot:
			if escaped {
				return out, nonASCII, "encoded '.' (" + s[i:i+3] + ")"
			}
			out = append(out, c)
		case clsKeep:
			out = append(out, '%', upperHex[c>>4], upperHex[c&15])
		case clsRawBad:
			if !escaped {
				return out, nonASCII, "raw " + strconv.QuoteRune(rune(c)) + " in the path"
			}
			out = append(out, '%', upperHex[c>>4], upperHex[c&15])
		case clsPercent:
			// Raw '%' is always an escape (pathByte); this is %25.
			if end := hexPairAt(s, i+3); end > 0 {
				return out, nonASCII, "double encoding (" + s[i:end] + ")"
			}
			out = append(out, "%25"...)
		case clsSlash:
			return out, nonASCII, "encoded '/' (" + s[i:i+3] + ")"
		case clsSemi:
			// Raw only in parameter text ("a;b=1;c").
			if escaped {
				return out, nonASCII, "encoded ';' (" + s[i:i+3] + ")"
			}
			out = append(out, c)
		case clsBad:
			switch {
			case c == '\\' && escaped:
				return out, nonASCII, "encoded backslash (" + s[i:i+3] + ")"
			case c == '\\':
				return out, nonASCII, "backslash in the path"
			}
			return out, nonASCII, "control byte " + strconv.QuoteRune(rune(c)) + " in the path"
		case clsNonASCII:
			var reason string
			out, n, reason = appendUTF8(out, s, i)
			if reason != "" {
				return out, nonASCII, reason
			}
			nonASCII = true
		}
		i += n
	}
	return out, nonASCII, ""
}

// hexPairAt returns the end of two hex digits, raw or escaped ("41",
// "%34%31"), at s[i:], or 0: after a %25, an escape once decoded again.
func hexPairAt(s string, i int) int {
	for range 2 {
		if i >= len(s) {
			return 0
		}
		c, n, reason := pathByte(s, i)
		if reason != "" || !isHex(c) {
			return 0
		}
		i += n
	}
	return i
}

// pathByte returns the byte at s[i], decoding an escape, and the bytes of s
// it took (1 or 3).
func pathByte(s string, i int) (byte, int, string) {
	if s[i] != '%' {
		return s[i], 1, ""
	}
	if i+2 < len(s) {
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if ok1 && ok2 {
			return hi<<4 | lo, 3, ""
		}
	}
	end := min(i+3, len(s))
	return 0, 0, "invalid percent-escape " + strconv.Quote(s[i:end])
}

// appendUTF8 appends, as %XX escapes, the UTF-8 sequence starting at s[i]
// (raw bytes and escapes may mix) and returns the bytes of s it took. It
// refuses invalid UTF-8 (overlong forms of '/' and '.' among them) and
// the characters that Unicode normalisation or Windows code pages turn
// into path syntax ([confusable]).
func appendUTF8(out []byte, s string, i int) ([]byte, int, string) {
	var seq [utf8.UTFMax]byte
	start := i
	want := 0
	for k := 0; k == 0 || k < want; k++ {
		if i >= len(s) {
			return out, 0, "invalid UTF-8 in the path"
		}
		c, n, reason := pathByte(s, i)
		if reason != "" {
			return out, 0, reason
		}
		if k == 0 {
			switch {
			case 0xc2 <= c && c <= 0xdf:
				want = 2
			case 0xe0 <= c && c <= 0xef:
				want = 3
			case 0xf0 <= c && c <= 0xf4:
				want = 4
			default:
				return out, 0, "invalid UTF-8 in the path"
			}
		} else if c&0xc0 != 0x80 {
			return out, 0, "invalid UTF-8 in the path"
		}
		seq[k] = c
		i += n
	}
	r, size := utf8.DecodeRune(seq[:want])
	if size != want { // U+FFFD itself is valid
		return out, 0, "invalid UTF-8 in the path"
	}
	if confusable(r) {
		return out, 0, "character " + strconv.QuoteRune(r) + " that origins may read as path syntax"
	}
	for _, c := range seq[:want] {
		out = append(out, '%', upperHex[c>>4], upperHex[c&15])
	}
	return out, i - start, ""
}

// confusable reports whether r is a character that Unicode compatibility
// normalisation (NFKC) or a Windows "best fit" code page conversion maps
// to an ASCII character with a meaning in paths ('/', '\', '.', ';', '%',
// '?', '#') or to ASCII at all (the fullwidth forms).
func confusable(r rune) bool {
	switch {
	case 0xff01 <= r && r <= 0xff5e: // fullwidth ASCII
	case 0xfe50 <= r && r <= 0xfe6b: // small form variants: ﹒ ﹔ ﹖ ﹟ ﹨ ﹪
	case 0x2024 <= r && r <= 0x2026: // one, two and three dot leaders
	case r == 0x2044, r == 0x2215, r == 0x29f8: // fraction, division, big solidus
	case r == 0x2216, r == 0x29f5, r == 0x29f9: // set minus, reverse solidus operator, big reverse solidus
	case r == 0x00a5, r == 0x20a9: // yen, won: the backslash of Japanese and Korean code pages
	case r == 0x037e: // Greek question mark: ';' once NFC-normalised
	default:
		return false
	}
	return true
}
