package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// TestDiagL3Bundle runs connector diag on an L3 connector's l3.yml with
// a bundle: the report has the L3 checks, and neither the private key in
// the file nor the one in a key file reaches the bundle.
func TestDiagL3Bundle(t *testing.T) {
	dir := t.TempDir()
	key, _ := l3config.GeneratePrivateKey()
	edgeKey, _ := l3config.GeneratePrivateKey()
	cfgPath := filepath.Join(dir, "site.yml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, `name: site
privateKey: %s
addresses: [100.96.0.2/32]
interface: onrdiagt0
edge: {publicKey: %s, endpoint: "127.0.0.1:51820"}
`, key, edgeKey.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "connector.log")
	// A log line that quotes the key: the bundle must not carry it either.
	if err := os.WriteFile(logFile, []byte("level=INFO msg=started\nlevel=DEBUG key="+key.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := &diagOptions{l3Config: cfgPath, bundle: filepath.Join(dir, "b.tar.gz"), logFile: logFile}
	o.host.TunPath = filepath.Join(dir, "no-tun")
	var out bytes.Buffer
	err := runDiag(t.Context(), &out, o)
	if err == nil || !strings.Contains(out.String(), "FAIL  tun ") {
		t.Errorf("no TUN device: err %v, report:\n%s\nwant a FAIL tun line and an error", err, out.String())
	}
	for _, check := range []string{"forwarding net.ipv4.ip_forward", "interface onrdiagt0", "dns edge endpoint 127.0.0.1:51820", "mtu edge endpoint 127.0.0.1"} {
		if !strings.Contains(out.String(), "  "+check) {
			t.Errorf("no %q line:\n%s", check, out.String())
		}
	}
	f, err := os.Open(o.bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		names[h.Name] = true
		if bytes.Contains(data, []byte(key.String())) || bytes.Contains(data, []byte(key.Hex())) {
			t.Errorf("%s holds the private key:\n%s", h.Name, data)
		}
	}
	for _, n := range []string{"config/site.yml", "logs.txt", "diag.txt", "version.txt", "host.txt", "metrics.txt"} {
		if !names["onramp-connector-diag/"+n] {
			t.Errorf("bundle has no %s: %v", n, names)
		}
	}
}

func TestDiagNothingToCheck(t *testing.T) {
	t.Setenv(tokenEnv, "")
	t.Setenv(tokenEnvAlias, "")
	err := runDiag(t.Context(), io.Discard, &diagOptions{})
	if err == nil || !strings.Contains(err.Error(), "--token-file") || !strings.Contains(err.Error(), "--l3-config") {
		t.Errorf("no token, no l3.yml: %v", err)
	}
}

// TestDiagFromName: --name alone finds an installed connector's files.
func TestDiagFromName(t *testing.T) {
	dir := t.TempDir()
	old := configDir
	configDir = dir
	t.Cleanup(func() { configDir = old })
	for _, f := range []string{"web.token", "web.ingress.yml", "site.yml"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(tokenEnv, "")
	t.Setenv(tokenEnvAlias, "")
	o := &diagOptions{name: "web"}
	o.fromName()
	if o.tf.file != filepath.Join(dir, "web.token") || o.config != filepath.Join(dir, "web.ingress.yml") || o.l3Config != "" {
		t.Errorf("--name web: token %q, config %q, l3 %q", o.tf.file, o.config, o.l3Config)
	}
	o = &diagOptions{name: "site"}
	o.fromName()
	if o.l3Config != filepath.Join(dir, "site.yml") || o.tf.file != "" {
		t.Errorf("--name site: token %q, l3 %q", o.tf.file, o.l3Config)
	}
	o = &diagOptions{name: "web", l3Config: "/x.yml"}
	o.fromName()
	if o.tf.file != "" {
		t.Errorf("--name with --l3-config: the flags win, got token %q", o.tf.file)
	}
}
