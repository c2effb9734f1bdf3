package main

// `edge console`: the web console's password and one-time links.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"

	"github.com/onramp-net/onramp/cmd/edge/console/password"
	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/cmd/internal/cli"
)

// consoleLink is the answer of POST /v1/console/link.
type consoleLink struct {
	// Path is /login/link/TOKEN, good once, for 10 minutes.
	Path string `json:"path"`
}

// serveConsoleLink serves POST /v1/console/link: a one-time login link of
// the running edge's console (`edge console link`).
func (a *app) serveConsoleLink(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/console/link", func(w http.ResponseWriter, r *http.Request) {
		if a.console == nil {
			writeJSON(w, http.StatusConflict, apiError{Error: "the console is off: set listen.console in edge.yml and restart the edge"})
			return
		}
		path, err := a.console.NewLink()
		if err != nil {
			writeJSON(w, http.StatusTooManyRequests, apiError{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, consoleLink{Path: path})
	})
}

func consoleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "console",
		Short: "the web console: set its password, make a one-time login link",
		Long: `The edge's web console (listen.console in edge.yml, off by default) shows both
on-ramps and runs their actions from a browser. Log in with the password whose
hash is console.password_hash (set it with 'edge console passwd'), or with a
one-time link from 'edge console link'.

Off a loopback address the console needs TLS (console.tls_cert and
console.tls_key) and a password; the edge refuses to start without them.`,
	}
	cmd.AddCommand(consolePasswdCmd(g), consoleLinkCmd(g), consoleURLCmd(g))
	return cmd
}

func consolePasswdCmd(g *globals) *cobra.Command {
	var stdin bool
	cmd := &cobra.Command{
		Use:   "passwd",
		Short: "set the console's login password: its hash goes into edge.yml",
		Long: `Read a new console password and write its argon2id hash into the --config
file as console.password_hash. The rest of the file (comments, order, layout)
and its mode and owner stay as they were; the file is replaced atomically.

From a terminal the password is asked twice, without echo. With --stdin, or
when standard input is not a terminal, its first line is the password (for
scripts: printf '%s\n' "$PW" | edge console passwd --stdin).

A running edge applies the new password when it reloads (systemctl reload
onramp-edge, or SIGHUP); the console's sessions end then.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.config == "" {
				return errors.New("console passwd: --config names the edge.yml to write console.password_hash into")
			}
			pw, err := readNewPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), stdin)
			if err != nil {
				return fmt.Errorf("console passwd: %w", err)
			}
			hash, err := password.Hash(pw)
			if err != nil {
				return fmt.Errorf("console passwd: %w", err)
			}
			if err := writePasswordHash(g.config, hash); err != nil {
				return fmt.Errorf("console passwd: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "console.password_hash written to %s.\nReload the edge to apply it (systemctl reload onramp-edge, or send edge serve a SIGHUP): the console then takes the new password and ends its sessions.\n", g.config)
			return nil
		},
	}
	cmd.Flags().BoolVar(&stdin, "stdin", false, "read the password from the first line of standard input, once, without a prompt")
	return cmd
}

// readNewPassword reads the new password: twice without echo from a
// terminal, else the first line of in.
func readNewPassword(in io.Reader, prompt io.Writer, stdin bool) ([]byte, error) {
	f, isFile := in.(*os.File)
	if !stdin && isFile && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		fmt.Fprint(prompt, "New console password: ")
		pw, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, err
		}
		if err := checkNewPassword(pw); err != nil {
			return nil, err
		}
		fmt.Fprint(prompt, "The same again: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the two passwords differ; nothing written")
		}
		return pw, nil
	}
	line, err := bufio.NewReaderSize(io.LimitReader(in, password.MaxLen+2), password.MaxLen+2).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	pw := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(pw) == 0 {
		return nil, errors.New("no password on standard input")
	}
	return pw, checkNewPassword(pw)
}

func checkNewPassword(pw []byte) error {
	switch {
	case len(pw) < password.MinLen:
		return fmt.Errorf("the password is %d bytes: want at least %d", len(pw), password.MinLen)
	case len(pw) > password.MaxLen:
		return fmt.Errorf("the password is over %d bytes", password.MaxLen)
	}
	return nil
}

// writePasswordHash sets console.password_hash in the YAML file path,
// keeping the rest of it, its mode and its owner.
func writePasswordHash(path, hash string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := setPasswordHash(data, hash)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := cli.WriteFile(path, out, fi.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid()) {
		// The new file is the writer's: give it back to the old owner
		// (root, group onramp, as the package installs it).
		if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("%s: keep its owner %d:%d: %w", path, st.Uid, st.Gid, err)
		}
	}
	return nil
}

// setPasswordHash returns the YAML document data with console.password_hash
// set to hash. It edits the text where it can (the value's line, or a line
// added under console:, or console: added at the end), which keeps every
// byte else; where the YAML's shape does not allow that (flow style, an
// empty console:), it re-encodes the document from its node tree, which
// keeps the comments and the order. Either result is read back and
// checked to be the old document with the one value changed.
func setPasswordHash(data []byte, hash string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	want, err := withHash(data, hash)
	if err != nil {
		return nil, err
	}
	if out, ok := editText(data, &doc, hash); ok && sameDoc(out, want) {
		return out, nil
	}
	out, err := editNodes(data, &doc, hash)
	if err != nil {
		return nil, err
	}
	if !sameDoc(out, want) {
		return nil, errors.New("cannot set console.password_hash in this file's layout: set it by hand")
	}
	return out, nil
}

// withHash is the document data decoded, with console.password_hash set.
func withHash(data []byte, hash string) (map[string]any, error) {
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	c, ok := m["console"].(map[string]any)
	if !ok {
		if m["console"] != nil {
			return nil, errors.New("console: is not a mapping")
		}
		c = map[string]any{}
		m["console"] = c
	}
	c["password_hash"] = hash
	return m, nil
}

func sameDoc(out []byte, want map[string]any) bool {
	var got map[string]any
	return yaml.Unmarshal(out, &got) == nil && reflect.DeepEqual(got, want)
}

// mapValue returns the key and value nodes of key in the mapping m.
func mapValue(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// editText sets the value in the text; ok is false where it cannot.
func editText(data []byte, doc *yaml.Node, hash string) (out []byte, ok bool) {
	lines := strings.SplitAfter(string(data), "\n")
	quoted := strconv.Quote(hash) // the hash is ASCII without quotes: a valid YAML double-quoted string
	if doc.Kind == 0 {            // an empty file
		return []byte(string(data) + sep(data) + "console:\n  password_hash: " + quoted + "\n"), true
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode || doc.Content[0].Style&yaml.FlowStyle != 0 {
		return nil, false
	}
	root := doc.Content[0]
	ck, cv := mapValue(root, "console")
	if ck == nil {
		if root.Column != 1 {
			return nil, false
		}
		return []byte(string(data) + sep(data) + "console:\n" + strings.Repeat(" ", indentOf(root)) + "password_hash: " + quoted + "\n"), true
	}
	if cv.Kind != yaml.MappingNode || cv.Style&yaml.FlowStyle != 0 || len(cv.Content) == 0 || cv.Content[0].Line <= ck.Line {
		return nil, false
	}
	hk, hv := mapValue(cv, "password_hash")
	if hk == nil {
		// A line of its own right under console:, indented as its keys.
		first := cv.Content[0]
		line := strings.Repeat(" ", first.Column-1) + "password_hash: " + quoted + "\n"
		i := ck.Line // the index of the line after console:
		if i > len(lines) {
			return nil, false
		}
		if !strings.HasSuffix(lines[i-1], "\n") {
			return nil, false
		}
		return []byte(strings.Join(lines[:i], "") + line + strings.Join(lines[i:], "")), true
	}
	if hv.Kind != yaml.ScalarNode || hv.Line != hk.Line || hv.Line > len(lines) {
		return nil, false
	}
	l := lines[hv.Line-1]
	start := hv.Column - 1
	if start >= len(l) {
		return nil, false
	}
	var end int
	switch hv.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		q := l[start]
		e := strings.IndexByte(l[start+1:], q)
		if e < 0 {
			return nil, false
		}
		end = start + 1 + e + 1
	case 0:
		rest := l[start:]
		if c := strings.Index(rest, " #"); c >= 0 {
			rest = rest[:c]
		}
		end = start + len(strings.TrimRight(rest, " \t\r\n"))
	default:
		return nil, false
	}
	lines[hv.Line-1] = l[:start] + quoted + l[end:]
	return []byte(strings.Join(lines, "")), true
}

// sep is what goes between data and a line appended to it.
func sep(data []byte) string {
	if len(data) == 0 || data[len(data)-1] == '\n' {
		return ""
	}
	return "\n"
}

// indentOf is the indentation of the block mappings under root: of its
// first value that is one, or 2.
func indentOf(root *yaml.Node) int {
	for i := 1; i < len(root.Content); i += 2 {
		v := root.Content[i]
		if v.Kind == yaml.MappingNode && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 && v.Content[0].Column > root.Column {
			return v.Content[0].Column - root.Column
		}
	}
	return 2
}

// editNodes sets the value in the node tree and encodes it.
func editNodes(data []byte, doc *yaml.Node, hash string) ([]byte, error) {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, errors.New("no YAML document")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("the file is not a YAML mapping")
	}
	val := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: hash, Style: yaml.DoubleQuotedStyle}
	_, cv := mapValue(root, "console")
	switch {
	case cv == nil:
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "console"},
			&yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: "password_hash"}, val}})
	case cv.Kind == yaml.ScalarNode && cv.Tag == "!!null":
		*cv = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: "password_hash"}, val},
			HeadComment: cv.HeadComment, LineComment: cv.LineComment, FootComment: cv.FootComment}
	case cv.Kind == yaml.MappingNode:
		if _, hv := mapValue(cv, "password_hash"); hv != nil {
			hv.Kind, hv.Tag, hv.Value, hv.Style = yaml.ScalarNode, "!!str", hash, yaml.DoubleQuotedStyle
		} else {
			cv.Content = append([]*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: "password_hash"}, val}, cv.Content...)
		}
	default:
		return nil, errors.New("console: is not a mapping")
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(indentOf(root))
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func consoleLinkCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "link",
		Short: "print a one-time login link to the running edge's console",
		Long: `Ask the running edge (over its admin socket) for a one-time login link to its
console, and print it as a full URL. The link logs in whoever opens it first,
once, within 10 minutes: treat it as a password. At most 16 are outstanding.
Links work with or without console.password_hash; they end when the edge
restarts.

The URL's host is listen.console's; for a wildcard address ([::]:8844,
0.0.0.0:8844) it is this machine's host name: use any name of the edge the
browser reaches (with TLS, one its certificate names).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if cfg.Listen.Console == "" {
				return errors.New("console link: the console is off: set listen.console in " + configName(g) + " and restart the edge")
			}
			_, _, _, adminPath := g.paths(cfg)
			c, err := connectAdmin(adminPath)
			if err != nil {
				return err
			}
			var l consoleLink
			if err := c.do(http.MethodPost, "/v1/console/link", &l); err != nil {
				return fmt.Errorf("console link: %w", err)
			}
			base, note := consoleURL(cfg)
			if note != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), note)
			}
			fmt.Fprintln(cmd.OutOrStdout(), base+l.Path)
			return nil
		},
	}
}

func consoleURLCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "url",
		Short: "print the console's URL, as edge.yml sets it",
		Long: `Print the console's URL from edge.yml: https with console.tls_cert and
tls_key, else http; the host and port of listen.console (a wildcard address
as this machine's host name). It asks nothing of the running edge.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if cfg.Listen.Console == "" {
				return errors.New("console url: the console is off: set listen.console in " + configName(g))
			}
			base, note := consoleURL(cfg)
			if note != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), note)
			}
			fmt.Fprintln(cmd.OutOrStdout(), base+"/")
			return nil
		},
	}
}

func configName(g *globals) string {
	if g.config == "" {
		return "edge.yml (--config)"
	}
	return g.config
}

// consoleURL is the console's URL without a path: https with
// console.tls_*, the host and port of listen.console. A wildcard host
// becomes this machine's name (or 127.0.0.1 without one), with a note.
func consoleURL(cfg *edgeconfig.Config) (base, note string) {
	scheme := "http"
	if cfg.Console.TLSCert != "" {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(cfg.Listen.Console)
	if err != nil {
		return scheme + "://" + cfg.Listen.Console, ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		name, err := os.Hostname()
		if err != nil || name == "" {
			name = "127.0.0.1"
		}
		host = name
		note = fmt.Sprintf("note: listen.console %s is every address; the link names this machine as %s: use any name or address of it your browser reaches", cfg.Listen.Console, name)
	}
	return scheme + "://" + net.JoinHostPort(host, port), note
}
