package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/packaging/systemd"
)

// service runs `connector service ARGS...` and returns what it printed.
func service(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := serviceCmd(&cli.LogFlags{Format: "text", Level: "info"})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantFile checks that path holds data with mode.
func wantFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if fi.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Errorf("%s holds %q, want %q", path, got, data)
	}
}

// tree lists the files under root, as "path mode" lines.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var got []string
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			got = append(got, rel+" "+fi.Mode().String())
		}
		return nil
	})
	return got
}

const testIngress = `ingress:
  - {hostname: echo.internal, service: "tcp://198.18.30.2:7000"}
  - service: "http_status:404"
`

// TestServiceInstallTunnel: install --root writes the token and the
// ingress rules (0600, in a 0755 /etc/onramp), the unit byte for byte the
// embedded one (which is the packaging/systemd file), and the enable link;
// refuses an installed name without --force, bad tokens and bad rules
// (writing nothing); uninstall removes the instance, and the template
// with the last one.
func TestServiceInstallTunnel(t *testing.T) {
	src := t.TempDir()
	root := t.TempDir()
	tok := testToken(t, 1)
	tokFile := writeFile(t, filepath.Join(src, "demo.token"), tok+"\n\n", 0o644)
	ingFile := writeFile(t, filepath.Join(src, "ingress.yml"), testIngress, 0o644)

	out, err := service(t, "install", "--token-file", tokFile, "--ingress", ingFile, "--root", root)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	t.Logf("install printed:\n%s", out)
	etc := filepath.Join(root, "etc/onramp")
	wantFile(t, filepath.Join(etc, "demo.token"), []byte(tok+"\n"), 0o600)
	wantFile(t, filepath.Join(etc, "demo.ingress.yml"), []byte(testIngress), 0o600)
	if fi, err := os.Stat(etc); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("%s: %v %v, want a 0755 directory", etc, fi.Mode(), err)
	}
	unit, err := systemd.Units.ReadFile("onramp-connector@.service")
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile("../../packaging/systemd/onramp-connector@.service")
	if err != nil || !bytes.Equal(unit, onDisk) {
		t.Fatalf("the embedded unit is not packaging/systemd/onramp-connector@.service (%v)", err)
	}
	unitPath := filepath.Join(root, "usr/lib/systemd/system/onramp-connector@.service")
	wantFile(t, unitPath, unit, 0o644)
	link := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/onramp-connector@demo.service")
	if target, err := os.Readlink(link); err != nil || target != "/usr/lib/systemd/system/onramp-connector@.service" {
		t.Errorf("enable link %s -> %q (%v), want /usr/lib/systemd/system/onramp-connector@.service", link, target, err)
	}
	for _, want := range []string{"wrote " + filepath.Join(etc, "demo.token") + " (mode 0600)", "enabled onramp-connector@demo.service"} {
		if !strings.Contains(out, want) {
			t.Errorf("install did not say %q", want)
		}
	}

	// The same name again: refused, nothing changed; --force replaces.
	tok2 := testToken(t, 2)
	tokFile2 := writeFile(t, filepath.Join(src, "demo2.token"), tok2, 0o600)
	before := tree(t, root)
	if _, err := service(t, "install", "--token-file", tokFile2, "--ingress", ingFile, "--name", "demo", "--root", root); err == nil ||
		!strings.Contains(err.Error(), "demo.token exists") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("installing demo again: %v, want refused naming the file and --force", err)
	}
	if after := tree(t, root); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("a refused install changed the tree:\n%q\nto\n%q", before, after)
	}
	wantFile(t, filepath.Join(etc, "demo.token"), []byte(tok+"\n"), 0o600)
	if out, err := service(t, "install", "--token-file", tokFile2, "--ingress", ingFile, "--name", "demo", "--root", root, "--force"); err != nil {
		t.Fatalf("--force: %v\n%s", err, out)
	}
	wantFile(t, filepath.Join(etc, "demo.token"), []byte(tok2+"\n"), 0o600)

	// Refused before anything is written: a bad token, bad rules, no
	// rules, a bad name, both kinds at once.
	bad := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"garbage token", []string{"--token-file", writeFile(t, filepath.Join(src, "bad.token"), "onr1_AAAA", 0o600), "--ingress", ingFile}, "parse token"},
		{"no token", []string{"--token-file", writeFile(t, filepath.Join(src, "empty.token"), "\n", 0o600), "--ingress", ingFile}, "no token"},
		{"missing token file", []string{"--token-file", filepath.Join(src, "absent.token"), "--ingress", ingFile}, "absent.token"},
		{"no catch-all", []string{"--token-file", tokFile, "--ingress", writeFile(t, filepath.Join(src, "bad.yml"),
			"ingress:\n  - {hostname: a.internal, service: \"tcp://198.18.30.2:1\"}\n", 0o644)}, "the last rule must be a catch-all"},
		{"no ingress", []string{"--token-file", tokFile}, "the tunnel needs ingress rules"},
		{"bad name", []string{"--token-file", tokFile, "--ingress", ingFile, "--name", "../x"}, `name "../x"`},
		{"edge", []string{"--token-file", tokFile, "--ingress", ingFile, "--name", "edge"}, "edge.yml is the edge's configuration"},
		{"both", []string{"--token-file", tokFile, "--l3-config", ingFile}, "not both"},
		{"neither", nil, "give --token-file FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := service(t, append(append([]string{"install"}, tc.args...), "--root", bad)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one saying %q", err, tc.want)
			}
			if got := tree(t, bad); len(got) != 0 {
				t.Errorf("a refused install wrote %q", got)
			}
		})
	}

	// The default name: the token file's name, or tunnel-ID8 for a file
	// called "token"; an ingress file already in /etc/onramp serves.
	writeFile(t, filepath.Join(etc, "tunnel-01000000.ingress.yml"), testIngress, 0o600)
	tokFile3 := writeFile(t, filepath.Join(t.TempDir(), "token"), testToken(t, 1), 0o600)
	if out, err := service(t, "install", "--token-file", tokFile3, "--root", root); err != nil {
		t.Fatalf("install of a file named token: %v\n%s", err, out)
	}
	wantFile(t, filepath.Join(etc, "tunnel-01000000.token"), []byte(tok+"\n"), 0o600)

	// Uninstall: two enabled, so --name is needed; the template stays
	// until the last.
	if _, err := service(t, "uninstall", "--root", root); err == nil || !strings.Contains(err.Error(), "which connector service") {
		t.Errorf("uninstall without --name of two: %v", err)
	}
	if out, err := service(t, "uninstall", "--name", "demo", "--root", root); err != nil {
		t.Fatalf("uninstall demo: %v\n%s", err, out)
	}
	for _, p := range []string{filepath.Join(etc, "demo.token"), filepath.Join(etc, "demo.ingress.yml"), link} {
		if exists(p) {
			t.Errorf("uninstall left %s", p)
		}
	}
	if !exists(unitPath) {
		t.Errorf("uninstall of demo removed the template, which tunnel-01000000 uses")
	}
	if _, err := service(t, "uninstall", "--name", "demo", "--root", root); err == nil || !strings.Contains(err.Error(), "no connector service demo") {
		t.Errorf("uninstall of demo again: %v", err)
	}
	out, err = service(t, "uninstall", "--root", root) // the only one left
	if err != nil {
		t.Fatalf("uninstall of the last: %v\n%s", err, out)
	}
	if exists(unitPath) || exists(filepath.Join(etc, "tunnel-01000000.token")) || exists(filepath.Join(etc, "tunnel-01000000.ingress.yml")) {
		t.Errorf("the last uninstall left files: %q", tree(t, root))
	}
}

// TestServiceUninstallKeepsPackagedUnit: the template a package installed
// is the package's to remove.
func TestServiceUninstallKeepsPackagedUnit(t *testing.T) {
	root := t.TempDir()
	src := t.TempDir()
	dpkg := filepath.Join(root, "var/lib/dpkg/info")
	if err := os.MkdirAll(dpkg, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dpkg, "onramp.list"), "/.\n/usr/lib/systemd/system/onramp-connector@.service\n", 0o644)
	tokFile := writeFile(t, filepath.Join(src, "a.token"), testToken(t, 1), 0o600)
	ingFile := writeFile(t, filepath.Join(src, "ingress.yml"), testIngress, 0o644)
	if out, err := service(t, "install", "--token-file", tokFile, "--ingress", ingFile, "--root", root); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	if out, err := service(t, "uninstall", "--name", "a", "--root", root); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if !exists(filepath.Join(root, "usr/lib/systemd/system/onramp-connector@.service")) {
		t.Error("uninstall removed the unit the onramp package owns")
	}
}

// l3Files writes a key file and an l3.yml naming it as keyRef.
func l3Files(t *testing.T, dir, name, keyRef string) (config, key string) {
	t.Helper()
	priv, _ := l3config.GeneratePrivateKey()
	key = writeFile(t, filepath.Join(dir, "l3.key"), string(priv.KeyFileData()), 0o600)
	edgeKey, _ := l3config.GeneratePrivateKey()
	c := l3config.Connector{Name: name, PrivateKeyFile: keyRef, Edge: l3config.EdgePeer{PublicKey: edgeKey.PublicKey(), Endpoint: "198.18.0.1:51820"}}
	y, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, filepath.Join(dir, "l3.yml"), string(y), 0o644), key
}

// TestServiceInstallL3: an l3.yml is checked as l3 run would (its key file
// read), copied to NAME.yml (0600) under the name it holds; a relative
// privateKeyFile that would name another file from /etc/onramp and a bad
// l3.yml are refused; an L4 tunnel cannot take an L3 connector's name.
func TestServiceInstallL3(t *testing.T) {
	root := t.TempDir()
	src := t.TempDir()
	config, key := l3Files(t, src, "site-a", "")
	// An absolute key path.
	data, _ := os.ReadFile(config)
	data = []byte(strings.Replace(string(data), "edge:", "privateKeyFile: "+key+"\nedge:", 1))
	writeFile(t, config, string(data), 0o644)
	if out, err := service(t, "install", "--l3-config", config, "--root", root); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	etc := filepath.Join(root, "etc/onramp")
	wantFile(t, filepath.Join(etc, "site-a.yml"), data, 0o600)
	if _, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/onramp-connector@site-a.service")); err != nil {
		t.Errorf("not enabled: %v", err)
	}
	if _, err := service(t, "install", "--l3-config", config, "--root", root); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("site-a again: %v, want refused", err)
	}
	tokFile := writeFile(t, filepath.Join(src, "t.token"), testToken(t, 1), 0o600)
	ingFile := writeFile(t, filepath.Join(src, "ingress.yml"), testIngress, 0o644)
	if _, err := service(t, "install", "--token-file", tokFile, "--ingress", ingFile, "--name", "site-a", "--root", root, "--force"); err == nil ||
		!strings.Contains(err.Error(), "is an L3 connector") {
		t.Errorf("an L4 tunnel named site-a: %v, want refused", err)
	}

	bad := t.TempDir()
	rel, _ := l3Files(t, t.TempDir(), "site-b", "l3.key")
	unknown := writeFile(t, filepath.Join(src, "unknown.yml"), string(data)+"bogus: 1\n", 0o644)
	noKey, _ := l3Files(t, t.TempDir(), "site-c", "/nonexistent/l3.key")
	for _, tc := range []struct{ name, config, want string }{
		{"relative key", rel, "give its absolute path"},
		{"unknown field", unknown, "bogus"},
		{"missing key file", noKey, "privateKeyFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := service(t, "install", "--l3-config", tc.config, "--root", bad); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one saying %q", err, tc.want)
			}
			if got := tree(t, bad); len(got) != 0 {
				t.Errorf("a refused install wrote %q", got)
			}
		})
	}
	if out, err := service(t, "uninstall", "--root", root); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if exists(filepath.Join(etc, "site-a.yml")) || !exists(key) {
		t.Errorf("uninstall: site-a.yml left, or the key file removed: %q", tree(t, root))
	}
}

// TestServiceRunFiles: service run NAME finds NAME.token or NAME.yml and
// says clearly when there is neither, both, or a token without rules.
func TestServiceRunFiles(t *testing.T) {
	etc := t.TempDir()
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{nil, "neither " + filepath.Join(etc, "x.token")},
		{[]string{"x.token", "x.yml"}, "both"},
		{[]string{"x.token"}, "no ingress rules: " + filepath.Join(etc, "x.ingress.yml") + " does not exist"},
	} {
		for _, f := range tc.files {
			writeFile(t, filepath.Join(etc, f), testToken(t, 1), 0o600)
		}
		if _, err := service(t, "run", "x", "--etc", etc); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("files %q: %v, want an error saying %q", tc.files, err, tc.want)
		}
		for _, f := range tc.files {
			_ = os.Remove(filepath.Join(etc, f))
		}
	}
	if _, err := service(t, "run", "../etc/passwd", "--etc", etc); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("a path as NAME: %v", err)
	}
}

// TestServiceSystemctl: without --root, install runs systemctl
// daemon-reload and enable --now (and restart when --force replaced a
// running instance's files), uninstall disable --now and, after the last
// instance, daemon-reload; a failing systemctl is reported. systemctl is a
// recorder here, and the files go under a temporary root.
func TestServiceSystemctl(t *testing.T) {
	var calls []string
	fail := ""
	old := systemctl
	systemctl = func(args ...string) error {
		c := strings.Join(args, " ")
		calls = append(calls, c)
		if c == fail {
			return errors.New("systemctl " + c + ": exit status 1")
		}
		return nil
	}
	defer func() { systemctl = old }()
	root, src := t.TempDir(), t.TempDir()
	tokFile := writeFile(t, filepath.Join(src, "demo.token"), testToken(t, 1), 0o600)
	ingFile := writeFile(t, filepath.Join(src, "ingress.yml"), testIngress, 0o644)
	f := installFlags{tokenFile: tokFile, ingressFile: ingFile, root: root, viaSystemctl: true}
	var out bytes.Buffer
	check := func(what string, want ...string) {
		t.Helper()
		if strings.Join(calls, "; ") != strings.Join(want, "; ") {
			t.Errorf("%s ran systemctl %q, want %q", what, calls, want)
		}
		calls = nil
	}
	if err := install(&out, f); err != nil {
		t.Fatalf("install: %v\n%s", err, out.String())
	}
	check("install", "daemon-reload", "enable --now onramp-connector@demo.service")
	if exists(filepath.Join(root, wantsDir)) {
		t.Error("install via systemctl made the link itself")
	}
	f.force = true
	if err := install(&out, f); err != nil {
		t.Fatal(err)
	}
	check("install --force", "daemon-reload", "enable --now onramp-connector@demo.service", "restart onramp-connector@demo.service")

	fail = "enable --now onramp-connector@demo.service"
	if err := install(&out, f); err == nil || !strings.Contains(err.Error(), "the files are written, but systemctl enable --now") {
		t.Errorf("failing systemctl: %v", err)
	}
	fail = ""
	calls = nil

	if err := uninstall(&out, "demo", root, true); err != nil {
		t.Fatal(err)
	}
	check("uninstall", "disable --now onramp-connector@demo.service", "daemon-reload")
	if exists(filepath.Join(root, "etc/onramp/demo.token")) || exists(filepath.Join(root, unitDir, unitTemplate)) {
		t.Errorf("uninstall left files: %q", tree(t, root))
	}
}

// TestServiceInstallMetrics: --metrics is written to NAME.env (0600) as
// the flag service run gets from the unit, a bad address is refused, and
// uninstall removes the file.
func TestServiceInstallMetrics(t *testing.T) {
	src := t.TempDir()
	root := t.TempDir()
	tokFile := writeFile(t, filepath.Join(src, "demo.token"), testToken(t, 1), 0o600)
	ingFile := writeFile(t, filepath.Join(src, "ingress.yml"), testIngress, 0o644)
	if out, err := service(t, "install", "--token-file", tokFile, "--ingress", ingFile, "--metrics", "9200", "--root", root); err == nil {
		t.Fatalf("--metrics 9200 accepted:\n%s", out)
	}
	if out, err := service(t, "install", "--token-file", tokFile, "--ingress", ingFile, "--metrics", "127.0.0.1:9200", "--root", root); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	env := filepath.Join(root, "etc/onramp/demo.env")
	data, err := os.ReadFile(env)
	if err != nil || !strings.Contains(string(data), "\nONRAMP_CONNECTOR_FLAGS=--metrics 127.0.0.1:9200\n") {
		t.Fatalf("%s: %q, %v", env, data, err)
	}
	wantFile(t, env, data, 0o600)
	unit, _ := systemd.Units.ReadFile("onramp-connector@.service")
	for _, want := range []string{"EnvironmentFile=-/etc/onramp/%i.env", "service run %i $ONRAMP_CONNECTOR_FLAGS"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	if out, err := service(t, "uninstall", "--name", "demo", "--root", root); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if _, err := os.Stat(env); err == nil {
		t.Error("uninstall left demo.env")
	}
}
