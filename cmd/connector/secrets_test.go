package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

func testToken(t *testing.T, id byte) string {
	t.Helper()
	tok := tunnel.Token{Edges: []string{"198.18.0.1:7844"}}
	tok.TunnelID[0], tok.Secret[0], tok.EdgePin[0] = id, 1, 1
	return tunnel.EncodeToken(tok)
}

// TestSecretsTokenSources: the token comes from --token-file, TUNNEL_TOKEN
// or its alias ONRAMP_TOKEN (TUNNEL_TOKEN first), and from --token with a
// warning that names the risk and the safe ways.
func TestSecretsTokenSources(t *testing.T) {
	a, b, c := testToken(t, 1), testToken(t, 2), testToken(t, 3)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(c+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		flags         tokenFlags
		tunnel, alias string
		want          byte // tunnel ID's first byte; 0: an error
		warn          bool
	}{
		{name: "TUNNEL_TOKEN", tunnel: a, want: 1},
		{name: "ONRAMP_TOKEN alias", alias: b, want: 2},
		{name: "TUNNEL_TOKEN before the alias", tunnel: a, alias: b, want: 1},
		{name: "--token-file before the environment", flags: tokenFlags{file: file}, tunnel: a, want: 3},
		{name: "--token warns", flags: tokenFlags{token: b}, tunnel: a, want: 2, warn: true},
		{name: "none"},
		{name: "both flags", flags: tokenFlags{token: a, file: file}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TUNNEL_TOKEN", tc.tunnel)
			t.Setenv("ONRAMP_TOKEN", tc.alias)
			tok, warning, err := tc.flags.load()
			if tc.want == 0 {
				if err == nil {
					t.Fatal("no error")
				}
				if tc.name == "none" && !strings.Contains(err.Error(), "TUNNEL_TOKEN") {
					t.Fatalf("error does not name TUNNEL_TOKEN: %v", err)
				}
				return
			}
			if err != nil || tok.TunnelID[0] != tc.want {
				t.Fatalf("token %x, %v; want tunnel %x", tok.TunnelID[0], err, tc.want)
			}
			if got := warning != ""; got != tc.warn {
				t.Fatalf("warning %q", warning)
			}
			if tc.warn && (!strings.Contains(warning, "/proc") || !strings.Contains(warning, "--token-file") || !strings.Contains(warning, "TUNNEL_TOKEN")) {
				t.Fatalf("warning %q", warning)
			}
		})
	}
}

func buildConnector(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "connector")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func runBin(t *testing.T, env []string, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestSecretsConnectorBinary runs the built connector: `tunnel run` warns
// in its log when the token is in argv and not when it comes from
// TUNNEL_TOKEN; `l3 init` writes a 0600 key file (under umask 000, in a
// new 0700 directory) and prints its public key, keeps an existing key
// (re-run), replaces it only with --force, and moves the inline key of an
// old l3.yml into a key file with --from-config.
func TestSecretsConnectorBinary(t *testing.T) {
	bin := buildConnector(t)
	dir := t.TempDir()
	tok := testToken(t, 1)
	_, stderr, err := runBin(t, nil, bin, "tunnel", "run", "--token", tok)
	if err == nil || !strings.Contains(stderr, "every local user can read in /proc/PID/cmdline") {
		t.Fatalf("--token: %v\n%s", err, stderr)
	}
	if strings.Contains(stderr, tok) {
		t.Fatalf("the warning repeats the token:\n%s", stderr)
	}
	_, stderr, err = runBin(t, []string{"TUNNEL_TOKEN=" + tok, "ONRAMP_TOKEN="}, bin, "tunnel", "run")
	if err == nil || !strings.Contains(stderr, "--config: the ingress rules file is required") || strings.Contains(stderr, "/proc") {
		t.Fatalf("TUNNEL_TOKEN: %v\n%s", err, stderr)
	}

	key := filepath.Join(dir, "keys", "site-a.key")
	old := syscall.Umask(0)
	pub, stderr, err := runBin(t, nil, bin, "l3", "init", "--key", key)
	syscall.Umask(old)
	if err != nil {
		t.Fatalf("l3 init: %v\n%s", err, stderr)
	}
	for path, want := range map[string]os.FileMode{key: 0o600, filepath.Dir(key): 0o700} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %v %v, want %#o", path, fi.Mode().Perm(), err, want)
		}
	}
	priv, err := l3config.ReadKeyFile(key)
	if err != nil || strings.TrimSpace(pub) != priv.PublicKey().String() {
		t.Fatalf("printed %q for the key in the file (%v)", pub, err)
	}
	if !strings.Contains(stderr, "edge l3 connector add NAME --subnet PREFIX --public-key "+priv.PublicKey().String()+" --key-file "+key) {
		t.Fatalf("l3 init does not say how to register:\n%s", stderr)
	}
	again, stderr, err := runBin(t, nil, bin, "l3", "init", "--key", key)
	if err != nil || again != pub || !strings.Contains(stderr, "kept") {
		t.Fatalf("re-run: %q %v\n%s", again, err, stderr)
	}
	forced, _, err := runBin(t, nil, bin, "l3", "init", "--key", key, "--force")
	if err != nil || forced == pub {
		t.Fatalf("--force: %q %v", forced, err)
	}

	// An l3.yml an earlier edge printed, with the key inline.
	inline, _ := l3config.GeneratePrivateKey()
	edgeKey, _ := l3config.GeneratePrivateKey()
	c := l3config.Connector{Name: "site-a", PrivateKey: inline, Edge: l3config.EdgePeer{PublicKey: edgeKey.PublicKey(), Endpoint: "198.18.0.1:51820"}}
	y, _ := c.Marshal()
	oldYML := filepath.Join(dir, "old.yml")
	if err := os.WriteFile(oldYML, y, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runBin(t, nil, bin, "l3", "init", "--key", key, "--from-config", oldYML); err == nil || !strings.Contains(stderr, "holds another key: --force replaces it") {
		t.Fatalf("--from-config over another key: %v\n%s", err, stderr)
	}
	moved := filepath.Join(dir, "moved.key")
	out, stderr, err := runBin(t, nil, bin, "l3", "init", "--key", moved, "--from-config", oldYML)
	if err != nil || strings.TrimSpace(out) != inline.PublicKey().String() {
		t.Fatalf("--from-config: %q %v\n%s", out, err, stderr)
	}
	if k, err := l3config.ReadKeyFile(moved); err != nil || k != inline {
		t.Fatalf("moved key: %v", err)
	}
}

// TestSecretsWarnKeyModes: connector l3 run warns when the private key is
// in a file other users may read (the key file, or l3.yml with the key
// inline), and says nothing for 0600.
func TestSecretsWarnKeyModes(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "l3.yml")
	keyFile := filepath.Join(dir, "l3.key")
	for _, p := range []string{config, keyFile} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	warned := func(c *l3config.Connector) string {
		var b bytes.Buffer
		warnKeyModes(slog.New(slog.NewTextHandler(&b, nil)), c, config)
		return b.String()
	}
	withFile := &l3config.Connector{PrivateKeyFile: "l3.key"}
	inline := &l3config.Connector{}
	if w := warned(withFile) + warned(inline); w != "" {
		t.Fatalf("0600 files warned: %s", w)
	}
	_ = os.Chmod(keyFile, 0o644)
	if w := warned(withFile); !strings.Contains(w, "privateKeyFile "+keyFile+" is mode 0644") {
		t.Fatalf("0644 key file: %q", w)
	}
	_ = os.Chmod(config, 0o640)
	if w := warned(inline); !strings.Contains(w, "l3.yml (its privateKey) "+config+" is mode 0640") {
		t.Fatalf("0640 l3.yml with the key inline: %q", w)
	}
}
