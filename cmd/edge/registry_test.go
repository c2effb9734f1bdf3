package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onramp-net/onramp/dataplane/registry/etcdtest"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// TestRegistryExportImport moves a single edge's state into etcd with the
// built binary, as an operator would: export from edge.db, import into an
// empty etcd prefix; the edge on etcd lists the same tunnels and L3 peers,
// prints the same token (same pin: the certificate moved), and a second
// import into the same prefix is refused. A bad export is refused.
func TestRegistryExportImport(t *testing.T) {
	member := etcdtest.Shared(t)
	e, _, _ := newEdgeCLI(t)
	if err := appendFile(e.config, "advertise: [\"198.18.0.1:7844\"]\n"); err != nil {
		t.Fatal(err)
	}
	tok, _ := e.mustRun(t, "tunnel", "create", "office")
	e.mustRun(t, "l3", "client", "add", "alice", "--public-key", mustKey(t).PublicKey().String())
	e.mustRun(t, "l3", "connector", "add", "site-a", "--subnet", "198.18.30.0/24", "--public-key", mustKey(t).PublicKey().String())
	out := filepath.Join(t.TempDir(), "state.json")
	_, stderr := e.mustRun(t, "registry", "export", "--out", out)
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", st, err)
	}
	if !strings.Contains(stderr, "exported") {
		t.Fatalf("export says: %s", stderr)
	}

	// The same edge, on etcd.
	etcdCfg := filepath.Join(t.TempDir(), "edge-etcd.yml")
	base, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(base), "data: "+e.data, "data: "+filepath.Join(t.TempDir(), "data"), 1) +
		fmt.Sprintf("registry: {etcd: {endpoints: [%q], prefix: %q}}\n", member.Client, etcdtest.Prefix(t))
	if err := os.WriteFile(etcdCfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	onEtcd := &edgeCLI{bin: e.bin, config: etcdCfg}
	_, stderr = onEtcd.mustRun(t, "registry", "import", out)
	if !strings.Contains(stderr, "imported") {
		t.Fatalf("import says: %s", stderr)
	}
	for _, args := range [][]string{{"tunnel", "list"}, {"l3", "client", "list"}, {"l3", "connector", "list"}} {
		a, _ := e.mustRun(t, args...)
		b, _ := onEtcd.mustRun(t, args...)
		if a != b {
			t.Errorf("%s on bbolt:\n%s\non etcd:\n%s", strings.Join(args, " "), a, b)
		}
	}
	// The token of the rotated tunnel has the pin of the old edge.
	rot, _ := onEtcd.mustRun(t, "tunnel", "rotate", "office")
	old, err := tunnel.ParseToken(strings.TrimSpace(tok))
	if err != nil {
		t.Fatal(err)
	}
	now, err := tunnel.ParseToken(strings.TrimSpace(rot))
	if err != nil {
		t.Fatal(err)
	}
	if old.EdgePin != now.EdgePin || old.TunnelID != now.TunnelID {
		t.Fatalf("the tunnel or the edge's pin changed in the move: %x/%x -> %x/%x", old.TunnelID, old.EdgePin, now.TunnelID, now.EdgePin)
	}
	if _, stderr, err := onEtcd.run(t, "registry", "import", out); err == nil || !strings.Contains(stderr, "already holds") {
		t.Fatalf("a second import: %v %s", err, stderr)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	data, _ := json.Marshal(exportFile{Format: exportFormat, Version: 1, Pairs: []exportPair{{Key: []byte("other/x"), Value: []byte("v")}}})
	if err := os.WriteFile(bad, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := onEtcd.run(t, "registry", "import", "--force", bad); err == nil || !strings.Contains(stderr, "is not edge state") {
		t.Fatalf("import of foreign records: %v %s", err, stderr)
	}
}

// TestMain stops the etcd member the tests shared.
func TestMain(m *testing.M) {
	code := m.Run()
	etcdtest.StopShared()
	os.Exit(code)
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(s)
	return err
}
