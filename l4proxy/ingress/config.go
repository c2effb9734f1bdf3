package ingress

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Defaults for origin options not set in the file.
const (
	// DefaultConnectTimeout bounds dialing the origin, including the TLS
	// handshake for https services. It matches cloudflared's default.
	DefaultConnectTimeout = 30 * time.Second
	// DefaultTCPKeepAlive is the TCP keep-alive period of origin
	// connections.
	DefaultTCPKeepAlive = 30 * time.Second
	// DefaultIdleTimeout is 0: origin connections are never closed for
	// being idle.
	DefaultIdleTimeout = 0
)

// Config is a parsed ingress configuration: an ordered list of rules whose
// last rule is a catch-all.
//
// A Config is immutable once Parse or Load returns it, and so are its
// Rules: any number of goroutines may call its methods without locking,
// and a new Config can replace an old one with an atomic.Pointer swap
// (e.g. on SIGHUP) while readers still hold the old one.
type Config struct {
	rules []Rule

	// Match indexes. Each slice holds rule indices in ascending order.
	exact map[string][]int32 // lowercase hostname
	wild  map[string][]int32 // "example.test" for "*.example.test"
	any   []int32            // rules without hostname; ends with the catch-all
}

// Rule is one ingress rule. Rules are immutable; their methods are safe
// for concurrent use.
type Rule struct {
	index          int
	hostname       string // lowercase, no trailing dot; "*.x" for a wildcard
	path           string // canonical (CanonicalPath)
	depth          int    // segments of path (segmentDepth)
	service        Service
	tlsPassthrough bool

	connectTimeout time.Duration
	tcpKeepAlive   time.Duration
	idleTimeout    time.Duration
	tls            *tls.Config // https only; never handed out uncloned
}

// Index returns the rule's position in the ingress list, from 0.
func (r *Rule) Index() int { return r.index }

// Hostname returns the rule's hostname in lowercase without a trailing dot
// ("*.example.test" for a wildcard), or "" if the rule matches every host.
func (r *Rule) Hostname() string { return r.hostname }

// Path returns the rule's path prefix, or "" if it matches every path.
func (r *Rule) Path() string { return r.path }

// Service returns where the rule sends connections.
func (r *Rule) Service() Service { return r.service }

// TLSPassthrough reports whether users of the edge's TLS listener may
// reach the rule's service by the SNI of their ClientHello, their TLS
// carried through to the origin untouched (tlsPassthrough: true; tcp,
// https and unix services only).
func (r *Rule) TLSPassthrough() bool { return r.tlsPassthrough }

// ConnectTimeout returns the bound on dialing the origin, TLS handshake
// included; 0 means only the context bounds it.
func (r *Rule) ConnectTimeout() time.Duration { return r.connectTimeout }

// TCPKeepAlive returns the TCP keep-alive period for origin connections;
// 0 means keep-alive is off.
func (r *Rule) TCPKeepAlive() time.Duration { return r.tcpKeepAlive }

// IdleTimeout returns how long an origin connection may stay idle before
// the proxy closes it; 0 means never. The dialers do not enforce it: the
// code copying bytes does.
func (r *Rule) IdleTimeout() time.Duration { return r.idleTimeout }

// TLSConfig returns a copy of the TLS client configuration used to reach
// an https origin, or nil for other schemes.
func (r *Rule) TLSConfig() *tls.Config {
	if r.tls == nil {
		return nil
	}
	return r.tls.Clone()
}

// IsCatchAll reports whether the rule matches every host and path.
func (r *Rule) IsCatchAll() bool { return r.hostname == "" && r.path == "" }

// String describes the rule as in error messages: `ingress rule 2
// (hostname "a.test")`.
func (r *Rule) String() string {
	return ruleName(r.index, r.hostname)
}

func ruleName(index int, hostname string) string {
	s := "ingress rule " + strconv.Itoa(index)
	if hostname != "" {
		s += " (hostname " + strconv.Quote(hostname) + ")"
	}
	return s
}

// Rules returns the rules in file order. The slice is the caller's; the
// rules are shared and must not be modified.
func (c *Config) Rules() []*Rule {
	out := make([]*Rule, len(c.rules))
	for i := range c.rules {
		out[i] = &c.rules[i]
	}
	return out
}

// Len returns the number of rules.
func (c *Config) Len() int { return len(c.rules) }

// ConfigError is the error Parse and Load return for a configuration that
// is valid YAML but not a valid ingress configuration.
type ConfigError struct {
	// Rule is the index of the offending rule, or -1 for the top level.
	Rule int
	// Hostname is the rule's hostname as written, if it has one.
	Hostname string
	// Field is the offending field, e.g. "service" or
	// "originRequest.caPool"; empty if the error is about the whole rule.
	Field string
	// Line is the line of the offending YAML node, 0 if unknown.
	Line int
	// Err is the reason.
	Err error
}

// Error formats the error as
// `ingress rule 2 (hostname "a.test"): service: unsupported scheme "ftp" (...)`,
// or as `ingress config: originRequest.idleTimeout: ...` outside the rules.
func (e *ConfigError) Error() string {
	s := "ingress config: "
	if e.Rule >= 0 {
		s = ruleName(e.Rule, e.Hostname) + ": "
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Err.Error()
}

// Unwrap returns the reason.
func (e *ConfigError) Unwrap() error { return e.Err }

// Load reads and parses the ingress configuration file at path, like
// Parse except that a relative caPool path is relative to the directory
// holding the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ingress: load: %w", err)
	}
	c, err := parser{baseDir: filepath.Dir(path)}.parse(data)
	if err != nil {
		return nil, fmt.Errorf("ingress: load %s: %w", path, err)
	}
	return c, nil
}
