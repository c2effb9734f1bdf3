package diag

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/onramp-net/onramp/cmd/internal/cli"
)

// Bundle is the files of a --bundle tarball, for a bug report. Every file
// goes through [Bundle.Redact] on the way in.
type Bundle struct {
	// Prefix is the directory the files are under in the tarball.
	Prefix string
	// Secrets are strings that must not appear in the bundle (a token's
	// secret in its encodings, private keys): each is replaced.
	Secrets []string
	files   []bundleFile
}

type bundleFile struct {
	name string
	data []byte
}

// Add adds a file, redacted.
func (b *Bundle) Add(name string, data []byte) {
	b.files = append(b.files, bundleFile{name, b.Redact(data)})
}

// AddFile adds the file at path as name, redacted; a file that cannot be
// read is replaced by a note saying why.
func (b *Bundle) AddFile(name, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		data = fmt.Appendf(nil, "not included: %v\n", err)
	}
	b.Add(name, data)
}

// Names lists the files added, in order.
func (b *Bundle) Names() []string {
	var out []string
	for _, f := range b.files {
		out = append(out, b.Prefix+f.name)
	}
	return out
}

// Write writes the tarball to path (mode 0600: it holds configuration).
func (b *Bundle) Write(path string) error {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	now := time.Now()
	for _, f := range b.files {
		if err := tw.WriteHeader(&tar.Header{Name: b.Prefix + f.name, Mode: 0o600, Size: int64(len(f.data)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return cli.WriteFile(path, buf.Bytes(), 0o600)
}

// Redacted is what a secret is replaced by.
const Redacted = "REDACTED"

var (
	// A YAML key holding a secret itself (not a path to one: keyFile,
	// privateKeyFile and password_file stay).
	secretKey = regexp.MustCompile(`(?im)^(\s*(?:-\s*)?["']?(?:private_?key|secret|password|token|pre_?shared_?key|psk)["']?\s*:\s*)(\S.*)$`)
	// A wg-quick style "PrivateKey = ..." line.
	iniKey = regexp.MustCompile(`(?im)^(\s*(?:PrivateKey|PresharedKey)\s*=\s*)(\S.*)$`)
	// A tunnel token, wherever it is.
	tokenRe = regexp.MustCompile(`onr1_[A-Za-z0-9_-]+`)
	pemKey  = regexp.MustCompile(`(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----`)
)

// Redact replaces the secrets in data: the values of YAML keys that hold
// one (privateKey, secret, password, token), wg-quick PrivateKey lines,
// tunnel tokens, PEM private keys, and each of b.Secrets.
func (b *Bundle) Redact(data []byte) []byte {
	data = secretKey.ReplaceAll(data, []byte("${1}"+Redacted))
	data = iniKey.ReplaceAll(data, []byte("${1}"+Redacted))
	data = tokenRe.ReplaceAll(data, []byte("onr1_"+Redacted))
	data = pemKey.ReplaceAll(data, []byte("-----"+Redacted+" PRIVATE KEY-----"))
	for _, s := range b.Secrets {
		if len(s) >= 8 {
			data = bytes.ReplaceAll(data, []byte(s), []byte(Redacted))
		}
	}
	return data
}

// Journal returns the last lines of a systemd unit's journal, or a note
// saying why there are none.
func Journal(ctx context.Context, unit string, lines int) []byte {
	if unit == "" {
		return []byte("no logs: the service name is not known (give --name NAME for onramp-connector@NAME).\n")
	}
	path, err := exec.LookPath("journalctl")
	if err != nil {
		return []byte("no logs: journalctl is not installed here (not a systemd host?); attach the log of the process by hand.\n")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-u", unit, "-n", fmt.Sprint(lines), "--no-pager", "-o", "short-iso")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Appendf(out, "\njournalctl -u %s: %v\n", unit, err)
	}
	return append([]byte(fmt.Sprintf("journalctl -u %s -n %d\n", unit, lines)), out...)
}

// Tail returns the last n lines of the file at path, or a note.
func Tail(path string, n int) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Appendf(nil, "no logs: %v\n", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > n+1 {
		lines = lines[len(lines)-n-1:]
	}
	return []byte(strings.Join(lines, ""))
}

// HTTPGet fetches url with a short timeout for a bundle: the body, or a
// note saying what went wrong.
func HTTPGet(client *http.Client, url string) []byte {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Appendf(nil, "not included: %v\n", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Appendf(body, "\nnot complete: %s %v\n", resp.Status, err)
	}
	return body
}
