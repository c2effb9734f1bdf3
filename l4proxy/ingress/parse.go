package ingress

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxCAPoolSize bounds the size of a caPool file.
const maxCAPoolSize = 1 << 20

var (
	topFields    = []string{"ingress", "originRequest"}
	ruleFields   = []string{"hostname", "path", "service", "tlsPassthrough", "originRequest"}
	originFields = []string{"connectTimeout", "tcpKeepAlive", "idleTimeout", "noTLSVerify", "caPool", "originServerName"}
	tlsFields    = []string{"noTLSVerify", "caPool", "originServerName"}
)

// origin holds the originRequest fields set at one level; nil means unset.
type origin struct {
	connectTimeout   *time.Duration
	tcpKeepAlive     *time.Duration
	idleTimeout      *time.Duration
	noTLSVerify      *bool
	caPool           *x509.CertPool
	caPoolPath       string // set, unloaded: loaded once the scheme is known
	caPoolLine       int
	originServerName *string

	tlsField string // first TLS-only field set, for errors
	tlsLine  int
}

// over returns o with the fields set in top filling the unset ones.
func (o origin) over(top origin) origin {
	if o.connectTimeout == nil {
		o.connectTimeout = top.connectTimeout
	}
	if o.tcpKeepAlive == nil {
		o.tcpKeepAlive = top.tcpKeepAlive
	}
	if o.idleTimeout == nil {
		o.idleTimeout = top.idleTimeout
	}
	if o.noTLSVerify == nil {
		o.noTLSVerify = top.noTLSVerify
	}
	if o.caPool == nil {
		o.caPool = top.caPool
	}
	if o.originServerName == nil {
		o.originServerName = top.originServerName
	}
	return o
}

// parser carries the state of one Parse call.
type parser struct {
	baseDir string // for relative caPool paths; "" means the working directory
}

// Parse parses an ingress configuration (see the package documentation for
// the schema). Parsing is strict: unknown or duplicate fields, values of
// the wrong type and every semantic problem are errors. Every error is a
// *ConfigError naming the rule, the field and the reason (YAML syntax
// errors have Rule -1 and no Field). A relative caPool path is relative to
// the working directory.
//
// Parse reads caPool files; it does nothing else with the outside world.
func Parse(data []byte) (*Config, error) {
	return parser{}.parse(data)
}

func (p parser) parse(data []byte) (*Config, error) {
	// Decode into a node tree and walk it, rather than decoding into
	// structs with Decoder.KnownFields: the decoder's unknown-field errors
	// cannot name the rule, and a walk checks known fields as strictly.
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, topErr("", 0, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, topErr("", 0, err)
		}
		return nil, topErr("", extra.Line, errors.New("more than one YAML document"))
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	root = resolve(root)
	var top origin
	var rulesNode *yaml.Node
	if root.Kind != 0 && !isNull(root) {
		if root.Kind != yaml.MappingNode {
			return nil, topErr("", root.Line, fmt.Errorf("want a mapping with an ingress list, got %s", kindName(root)))
		}
		kvs, err := mapping(root, topFields)
		if err != nil {
			return nil, topErr(err.field, err.line, err.err)
		}
		for _, kv := range kvs {
			switch kv.key {
			case "ingress":
				rulesNode = kv.val
			case "originRequest":
				o, ferr := p.parseOrigin(kv.val)
				if ferr == nil {
					ferr = p.loadOriginCAPool(&o)
				}
				if ferr != nil {
					return nil, topErr(ferr.field, ferr.line, ferr.err)
				}
				top = o
			}
		}
	}
	if rulesNode == nil || isNull(rulesNode) || rulesNode.Kind == yaml.SequenceNode && len(rulesNode.Content) == 0 {
		return nil, topErr("ingress", 0, errors.New("at least one rule is required, the last one a catch-all without hostname or path"))
	}
	if rulesNode.Kind != yaml.SequenceNode {
		return nil, topErr("ingress", rulesNode.Line, fmt.Errorf("want a list of rules, got %s", kindName(rulesNode)))
	}
	c := &Config{rules: make([]Rule, len(rulesNode.Content))}
	for i, n := range rulesNode.Content {
		if err := p.parseRule(&c.rules[i], i, resolve(n), top); err != nil {
			return nil, err
		}
	}
	if err := c.checkOrder(); err != nil {
		return nil, err
	}
	c.index()
	return c, nil
}

// checkOrder checks that the last rule, and only it, is a catch-all.
func (c *Config) checkOrder() error {
	last := len(c.rules) - 1
	for i := range c.rules {
		r := &c.rules[i]
		if i < last && r.IsCatchAll() {
			next := &c.rules[i+1]
			return &ConfigError{Rule: i + 1, Hostname: next.hostname,
				Err: fmt.Errorf("unreachable: rule %d before it has no hostname and no path and matches everything (the catch-all must be last)", i)}
		}
	}
	if r := &c.rules[last]; !r.IsCatchAll() {
		field, what := "hostname", "a hostname"
		if r.hostname == "" {
			field, what = "path", "a path"
		}
		return &ConfigError{Rule: last, Hostname: r.hostname, Field: field,
			Err: fmt.Errorf("the last rule must be a catch-all without hostname or path, but has %s (add a last rule such as \"- service: http_status:404\")", what)}
	}
	return nil
}

// parseRule fills r from the rule node n at index i.
func (p parser) parseRule(r *Rule, i int, n *yaml.Node, top origin) error {
	r.index = i
	if isNull(n) || n.Kind != yaml.MappingNode {
		return &ConfigError{Rule: i, Line: n.Line, Err: fmt.Errorf("want a mapping with a service, got %s", kindName(n))}
	}
	kvs, merr := mapping(n, ruleFields)
	// Name the rule by its hostname as written, even when the hostname
	// itself or another field is wrong.
	var rawHost string
	for _, kv := range kvs {
		if kv.key == "hostname" && kv.val.Kind == yaml.ScalarNode && !isNull(kv.val) {
			rawHost = kv.val.Value
		}
	}
	ferr := func(field string, line int, err error) error {
		return &ConfigError{Rule: i, Hostname: rawHost, Field: field, Line: line, Err: err}
	}
	if merr != nil {
		return ferr(merr.field, merr.line, merr.err)
	}
	var serviceNode, pathNode, passNode *yaml.Node
	var own origin
	for _, kv := range kvs {
		switch kv.key {
		case "hostname":
			s, err := str(kv.val)
			if err != nil {
				return ferr("hostname", kv.val.Line, err)
			}
			if s == "" && isNull(kv.val) {
				continue
			}
			name, _, err := parseHostname(s)
			if err != nil {
				return ferr("hostname", kv.val.Line, err)
			}
			r.hostname = name
		case "path":
			s, err := str(kv.val)
			if err != nil {
				return ferr("path", kv.val.Line, err)
			}
			if s == "" && isNull(kv.val) {
				continue
			}
			if err := checkPath(s); err != nil {
				return ferr("path", kv.val.Line, err)
			}
			r.path, r.depth, pathNode = s, segmentDepth(s), kv.val
		case "tlsPassthrough":
			if isNull(kv.val) {
				continue
			}
			if kv.val.Kind != yaml.ScalarNode || kv.val.Decode(&r.tlsPassthrough) != nil {
				return ferr("tlsPassthrough", kv.val.Line, fmt.Errorf("want true or false, got %s", describe(kv.val)))
			}
			passNode = kv.val
		case "service":
			s, err := str(kv.val)
			if err != nil {
				return ferr("service", kv.val.Line, err)
			}
			svc, err := parseService(s)
			if err != nil {
				return ferr("service", kv.val.Line, err)
			}
			r.service, serviceNode = svc, kv.val
		case "originRequest":
			o, oerr := p.parseOrigin(kv.val)
			if oerr != nil {
				return ferr(oerr.field, oerr.line, oerr.err)
			}
			own = o
		}
	}
	if serviceNode == nil {
		return ferr("service", n.Line, errors.New("missing service"))
	}
	scheme := r.service.Scheme
	if pathNode != nil && (scheme == SchemeTCP || scheme == SchemeUDP) {
		return ferr("path", pathNode.Line, fmt.Errorf("not allowed on a %s service (paths are matched only for HTTP)", scheme))
	}
	if r.tlsPassthrough {
		switch {
		case scheme != SchemeTCP && scheme != SchemeHTTPS && scheme != SchemeUnix:
			return ferr("tlsPassthrough", passNode.Line, fmt.Errorf("not allowed on a %s service (want tcp, https or unix: the user's TLS is carried to the origin as it is)", scheme))
		case pathNode != nil:
			return ferr("tlsPassthrough", passNode.Line, errors.New("not allowed on a rule with a path (passthrough sees no paths)"))
		}
	}
	if own.tlsField != "" && scheme != SchemeHTTPS {
		return ferr(own.tlsField, own.tlsLine, fmt.Errorf("only valid for https services, not %s", scheme))
	}
	if err := p.loadOriginCAPool(&own); err != nil {
		return ferr(err.field, err.line, err.err)
	}
	o := own.over(top)
	r.connectTimeout = DefaultConnectTimeout
	if o.connectTimeout != nil {
		r.connectTimeout = *o.connectTimeout
	}
	r.tcpKeepAlive = DefaultTCPKeepAlive
	if o.tcpKeepAlive != nil {
		r.tcpKeepAlive = *o.tcpKeepAlive
	}
	r.idleTimeout = DefaultIdleTimeout
	if o.idleTimeout != nil {
		r.idleTimeout = *o.idleTimeout
	}
	if scheme == SchemeHTTPS {
		cfg := &tls.Config{
			ServerName: zoneless(r.service.Host()),
			RootCAs:    o.caPool,
			NextProtos: []string{"http/1.1"},
			MinVersion: tls.VersionTLS12,
		}
		if o.originServerName != nil && *o.originServerName != "" {
			cfg.ServerName = *o.originServerName
		}
		if o.noTLSVerify != nil && *o.noTLSVerify {
			cfg.InsecureSkipVerify = true
		}
		r.tls = cfg
	}
	return nil
}

// fieldError is a problem with one field inside a mapping.
type fieldError struct {
	field string
	line  int
	err   error
}

// parseOrigin parses an originRequest mapping. Field names in errors are
// prefixed with "originRequest.".
func (p parser) parseOrigin(n *yaml.Node) (origin, *fieldError) {
	var o origin
	n = resolve(n)
	if isNull(n) {
		return o, nil
	}
	if n.Kind != yaml.MappingNode {
		return o, &fieldError{"originRequest", n.Line, fmt.Errorf("want a mapping, got %s", kindName(n))}
	}
	kvs, merr := mapping(n, originFields)
	if merr != nil {
		merr.field = "originRequest." + merr.field
		return o, merr
	}
	for _, kv := range kvs {
		field := "originRequest." + kv.key
		bad := func(err error) (origin, *fieldError) {
			return o, &fieldError{field, kv.val.Line, err}
		}
		if isNull(kv.val) {
			continue
		}
		if slices.Contains(tlsFields, kv.key) && o.tlsField == "" {
			o.tlsField, o.tlsLine = field, kv.val.Line
		}
		switch kv.key {
		case "connectTimeout", "tcpKeepAlive", "idleTimeout":
			d, err := duration(kv.val)
			if err != nil {
				return bad(err)
			}
			switch kv.key {
			case "connectTimeout":
				o.connectTimeout = &d
			case "tcpKeepAlive":
				o.tcpKeepAlive = &d
			default:
				o.idleTimeout = &d
			}
		case "noTLSVerify":
			var b bool
			if kv.val.Kind != yaml.ScalarNode || kv.val.Decode(&b) != nil {
				return bad(fmt.Errorf("want true or false, got %s", describe(kv.val)))
			}
			o.noTLSVerify = &b
		case "caPool":
			s, err := str(kv.val)
			if err != nil {
				return bad(err)
			}
			if s == "" {
				return bad(errors.New("empty path"))
			}
			o.caPoolPath, o.caPoolLine = s, kv.val.Line
		case "originServerName":
			s, err := str(kv.val)
			if err != nil {
				return bad(err)
			}
			if s != "" {
				if err := checkDNSName(strings.TrimSuffix(s, ".")); err != nil {
					return bad(fmt.Errorf("bad name %q: %v", s, err))
				}
			}
			o.originServerName = &s
		}
	}
	return o, nil
}

// loadOriginCAPool loads the caPool file named in o, if any.
func (p parser) loadOriginCAPool(o *origin) *fieldError {
	if o.caPoolPath == "" {
		return nil
	}
	pool, err := p.loadCAPool(o.caPoolPath)
	if err != nil {
		return &fieldError{"originRequest.caPool", o.caPoolLine, err}
	}
	o.caPool = pool
	return nil
}

// loadCAPool reads a PEM bundle of CA certificates.
func (p parser) loadCAPool(path string) (*x509.CertPool, error) {
	if p.baseDir != "" && !filepath.IsAbs(path) {
		path = filepath.Join(p.baseDir, path)
	}
	// Stat first so that a FIFO or device is refused, not read forever.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCAPoolSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxCAPoolSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxCAPoolSize)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("no PEM certificates found in %s", path)
	}
	return pool, nil
}

func topErr(field string, line int, err error) error {
	return &ConfigError{Rule: -1, Field: field, Line: line, Err: err}
}

// keyValue is one entry of a YAML mapping.
type keyValue struct {
	key string
	val *yaml.Node // aliases resolved
}

// mapping returns the entries of the mapping n in order. It returns the
// entries seen so far and an error for the first key that is not a plain
// string, not in known, or repeated.
func mapping(n *yaml.Node, known []string) ([]keyValue, *fieldError) {
	kvs := make([]keyValue, 0, len(n.Content)/2)
	var first *fieldError
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if first != nil {
			continue
		}
		switch {
		case k.Kind != yaml.ScalarNode:
			first = &fieldError{"", k.Line, fmt.Errorf("field name must be a string, got %s", kindName(k))}
		case k.Tag == "!!merge":
			first = &fieldError{k.Value, k.Line, errors.New("merge keys are not supported")}
		case !slices.Contains(known, k.Value):
			first = &fieldError{k.Value, k.Line, fmt.Errorf("unknown field (want one of %s)", strings.Join(known, ", "))}
		case slices.ContainsFunc(kvs, func(kv keyValue) bool { return kv.key == k.Value }):
			first = &fieldError{k.Value, k.Line, errors.New("duplicate field")}
		default:
			kvs = append(kvs, keyValue{k.Value, v})
		}
	}
	return kvs, first
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 16 && n != nil && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// str returns the value of a scalar; null is "".
func str(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("want a string, got %s", kindName(n))
	}
	if isNull(n) {
		return "", nil
	}
	return n.Value, nil
}

// duration parses a non-negative duration such as "10s" or "1m30s".
func duration(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("want a duration such as \"10s\", got %s", kindName(n))
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (want e.g. \"10s\" or \"1m30s\")", n.Value)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", n.Value)
	}
	return d, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return "scalar " + describe(n)
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "nothing"
}

// describe quotes a scalar for an error message, shortened if long.
func describe(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return kindName(n)
	}
	v := n.Value
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return fmt.Sprintf("%q", v)
}
