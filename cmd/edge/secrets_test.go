package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// Tests of hole 8 (secrets) against the built edge binary and an
// in-process admin API.

func modeOf(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// checkDataModes checks the modes a user would check with ls -l.
func checkDataModes(t *testing.T, data string, socket bool) {
	t.Helper()
	want := map[string]fs.FileMode{"": 0o700, "edge.db": 0o600, "edge.key": 0o600, "edge.crt": 0o644}
	if socket {
		want["admin.sock"] = 0o600
	}
	for name, perm := range want {
		if got := modeOf(t, filepath.Join(data, name)); got != perm {
			t.Errorf("%s: mode %#o, want %#o", filepath.Join(data, name), got, perm)
		}
	}
}

// TestSecretsDataModes: the edge started under umask 000 makes its data
// directory 0700 and its store, key and admin socket 0600; modes made
// wider since are narrowed, with a log line, when `edge serve` starts and
// when an offline subcommand opens the store.
func TestSecretsDataModes(t *testing.T) {
	e, _, _ := newEdgeCLI(t)
	old := syscall.Umask(0)
	srv := startEdge(t, e) // inherits umask 000
	syscall.Umask(old)
	checkDataModes(t, e.data, true)
	srv.stop(t)

	widen := func() {
		t.Helper()
		for name, perm := range map[string]fs.FileMode{"": 0o755, "edge.db": 0o644, "edge.key": 0o666} {
			if err := os.Chmod(filepath.Join(e.data, name), perm); err != nil {
				t.Fatal(err)
			}
		}
	}
	widen()
	srv = startEdge(t, e)
	checkDataModes(t, e.data, true)
	srv.stop(t)
	for _, want := range []string{e.data + " was mode 0755", "edge.db was mode 0644", "edge.key was mode 0666"} {
		if !strings.Contains(srv.log.String(), want) {
			t.Errorf("serve log lacks %q:\n%s", want, srv.log.String())
		}
	}

	widen()
	_, stderr := e.mustRun(t, "tunnel", "list")
	checkDataModes(t, e.data, false)
	for _, want := range []string{e.data + " was mode 0755", "edge.db was mode 0644"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("offline tunnel list did not report %q:\n%s", want, stderr)
		}
	}
	// Nothing to narrow: nothing said.
	if _, stderr := e.mustRun(t, "tunnel", "list"); strings.Contains(stderr, "was mode") {
		t.Errorf("narrow modes reported again: %s", stderr)
	}
}

// publicDir is a directory every user can enter, for a child process that
// runs as another uid.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "onramp-secrets-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(t *testing.T, from, to string, perm fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, perm); err != nil {
		t.Fatal(err)
	}
}

// TestSecretsAdminSocketPeerUID: another user who reaches the admin socket
// (here its directory and socket modes are opened after start, as a bind
// mount or a stray chmod would) is refused by its uid, with an error that
// says so and a line in the edge's log; root is served. Needs root to run
// the client as uid 65534 (nobody).
func TestSecretsAdminSocketPeerUID(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI: the admin socket's uid check needs root to run a client as another uid")
		}
		t.Skip("needs root to run a client as another uid")
	}
	e, _, _ := newEdgeCLI(t)
	pub := publicDir(t)
	bin := filepath.Join(pub, "edge")
	copyFile(t, e.bin, bin, 0o755)
	cfg, _ := os.ReadFile(e.config)
	data := filepath.Join(pub, "data")
	cfgText := strings.Replace(string(cfg), "data: "+e.data+"\n", "data: "+data+"\n", 1)
	e.bin, e.data, e.config = bin, data, filepath.Join(pub, "edge.yml")
	if err := os.WriteFile(e.config, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startEdge(t, e)
	e.mustRun(t, "tunnel", "create", "office")
	// Open the way to the socket; the uid check alone stands.
	if err := os.Chmod(e.data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(e.data, "admin.sock"), 0o777); err != nil {
		t.Fatal(err)
	}

	run := func(uid uint32) (string, error) {
		cmd := exec.Command(bin, "--config", e.config, "tunnel", "list")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		cmd.Dir = pub
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(65534)
	if err == nil || !strings.Contains(out, "uid 65534 may not use the edge's admin API") {
		t.Fatalf("uid 65534: %v\n%s", err, out)
	}
	t.Logf("uid 65534 was told: %s", strings.TrimSpace(out))
	out, err = run(0)
	if err != nil || !strings.Contains(out, "office") {
		t.Fatalf("root: %v\n%s", err, out)
	}
	srv.stop(t)
	log := srv.log.String()
	if !strings.Contains(log, "admin socket: caller refused") || !strings.Contains(log, "uid=65534") {
		t.Fatalf("the edge did not log the refusal:\n%s", log)
	}
}

// TestSecretsConnectorKeys: with the built binary, a connector is added
// with the public key it made and never with a key from the edge: no
// --public-key is refused naming connector l3 init; the l3.yml printed at
// add, by config and through the running edge's admin API names the key
// file and holds no private key; --out replaces a world-readable file with
// a 0600 one.
func TestSecretsConnectorKeys(t *testing.T) {
	e, _, _ := newEdgeCLI(t)
	if _, s, err := e.run(t, "l3", "connector", "add", "site-a", "--subnet", "198.18.30.0/24"); err == nil ||
		!strings.Contains(s, "--public-key: missing: run connector l3 init --key "+l3config.DefaultKeyFile) {
		t.Fatalf("add without --public-key: %v\n%s", err, s)
	}
	key, _ := l3config.GeneratePrivateKey()
	out := filepath.Join(t.TempDir(), "site-a.yml")
	if err := os.WriteFile(out, []byte("old, world readable\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustRun(t, "l3", "connector", "add", "site-a", "--subnet", "198.18.30.0/24", "--public-key", key.PublicKey().String(),
		"--key-file", "/etc/onramp/site-a.key", "--out", out)
	if m := modeOf(t, out); m != 0o600 {
		t.Fatalf("--out file mode %#o, want 0600", m)
	}
	added, _ := os.ReadFile(out)
	again, _ := e.mustRun(t, "l3", "connector", "config", "site-a")
	srv := startEdge(t, e)
	live, _ := e.mustRun(t, "l3", "connector", "config", "site-a")
	srv.stop(t)
	for what, yml := range map[string]string{"add --out": string(added), "config": again, "config (running edge)": live} {
		c, err := l3config.ParseConnector([]byte(yml))
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, yml)
		}
		if !c.PrivateKey.IsZero() || strings.Contains(yml, "privateKey:") || c.PrivateKeyFile != "/etc/onramp/site-a.key" {
			t.Fatalf("%s: l3.yml holds a key or not the key file:\n%s", what, yml)
		}
	}
	if string(added) != again {
		t.Fatalf("config differs from add:\n%s\n---\n%s", added, again)
	}
}

// TestSecretsLegacyConnectorKey: a store of an earlier edge that kept a
// connector's private key loses it at the first open, with a warning that
// names the connector and the way out; the connector's old l3.yml (key
// inline) still loads, its public key is unchanged on the edge, and the
// l3.yml printed now names the default key file.
func TestSecretsLegacyConnectorKey(t *testing.T) {
	e, _, _ := newEdgeCLI(t)
	key, _ := l3config.GeneratePrivateKey()
	e.mustRun(t, "l3", "connector", "add", "site-a", "--subnet", "198.18.30.0/24", "--public-key", key.PublicKey().String())
	// Make the record an earlier edge's: the private key kept, no key
	// file.
	db, err := bolt.Open(filepath.Join(e.data, "edge.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("l3_peers"))
		var rec map[string]any
		if err := json.Unmarshal(b.Get([]byte("site-a")), &rec); err != nil {
			return err
		}
		delete(rec, "key_file")
		rec["private_key"] = key.String()
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte("site-a"), v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	listed, stderr := e.mustRun(t, "l3", "connector", "list")
	if !strings.Contains(stderr, "deleted the private key an earlier edge made and kept for connector site-a") ||
		!strings.Contains(stderr, "connector l3 init --from-config") {
		t.Fatalf("no upgrade warning:\n%s", stderr)
	}
	if !strings.Contains(listed, key.PublicKey().String()) {
		t.Fatalf("site-a's public key changed:\n%s", listed)
	}
	if _, stderr := e.mustRun(t, "l3", "connector", "list"); strings.Contains(stderr, "deleted the private key") {
		t.Fatalf("warned twice:\n%s", stderr)
	}
	raw := dumpPeers(t, e.data)
	if strings.Contains(raw, "private_key") || strings.Contains(raw, key.String()) {
		t.Fatalf("the store still holds the key: %s", raw)
	}
	yml, _ := e.mustRun(t, "l3", "connector", "config", "site-a")
	c, err := l3config.ParseConnector([]byte(yml))
	if err != nil || c.PrivateKeyFile != l3config.DefaultKeyFile || strings.Contains(yml, key.String()) {
		t.Fatalf("config after upgrade: %v\n%s", err, yml)
	}
}

func dumpPeers(t *testing.T, data string) string {
	t.Helper()
	db, err := bolt.Open(filepath.Join(data, "edge.db"), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	_ = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("l3_peers")).ForEach(func(k, v []byte) error {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
			return nil
		})
	})
	return b.String()
}

// TestSecretsEdgeYAMLSecondDocument: `edge serve` refuses an edge.yml with
// a second document instead of running on the first alone.
func TestSecretsEdgeYAMLSecondDocument(t *testing.T) {
	e, _, _ := newEdgeCLI(t)
	f, err := os.OpenFile(e.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "---\nlisten: {tunnels: \"127.0.0.1:0\", http: \"127.0.0.1:0\"}\n")
	f.Close()
	_, s, err := e.run(t, "serve")
	if err == nil || !strings.Contains(s, "more than one YAML document") || !strings.Contains(s, e.config) {
		t.Fatalf("serve with two documents: %v\n%s", err, s)
	}
}

// startAdmin serves an in-process edge's admin API on its socket.
func startAdmin(t *testing.T) (*app, string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	a := newTestApp(t, slog.New(slog.NewTextHandler(logs, nil)))
	sock := filepath.Join(a.cfg.Data, "admin.sock")
	closeAdmin, err := a.serveAdmin(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAdmin() })
	return a, sock, logs
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecretsAdminSocket: the in-process admin socket is 0600 under umask
// 000 with no stray private directory left, serves its own uid, and cuts
// a caller that stalls in its body (ReadTimeout) or sits idle between
// requests (IdleTimeout); a body over the limit is refused with 413.
func TestSecretsAdminSocket(t *testing.T) {
	defer func(r, i time.Duration) { adminReadTimeout, adminIdleTimeout = r, i }(adminReadTimeout, adminIdleTimeout)
	adminReadTimeout, adminIdleTimeout = 300*time.Millisecond, 300*time.Millisecond
	old := syscall.Umask(0)
	_, sock, _ := startAdmin(t)
	syscall.Umask(old)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %v %v, want a socket of mode 0600", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(filepath.Dir(sock))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".a") {
			t.Errorf("private directory %s left behind", e.Name())
		}
	}

	c := dialAdmin(sock)
	if c == nil {
		t.Fatal("no admin socket")
	}
	var infos []tunnelInfo
	if err := c.do(http.MethodGet, "/v1/tunnels", &infos); err != nil {
		t.Fatalf("own uid refused: %v", err)
	}
	big := strings.NewReader(`{"name":"` + strings.Repeat("a", int(adminMaxBody)) + `"}`)
	req, _ := http.NewRequest(http.MethodPost, "http://edge/v1/l3/clients", big)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("body over %d bytes: %s", adminMaxBody, resp.Status)
	}

	// Cut: a body that never comes, and an idle keep-alive connection.
	for _, tc := range []struct{ name, send string }{
		{"stalled body", "POST /v1/l3/clients HTTP/1.1\r\nHost: edge\r\nContent-Length: 100\r\n\r\n{"},
		{"idle", "GET /v1/tunnels HTTP/1.1\r\nHost: edge\r\n\r\n"},
	} {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := io.WriteString(conn, tc.send); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		if tc.name == "idle" {
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		_, err = io.Copy(io.Discard, r)
		took := time.Since(start)
		conn.Close()
		if err != nil || took > 5*time.Second {
			t.Fatalf("%s: connection not closed by the edge (%v after %v)", tc.name, err, took)
		}
		t.Logf("%s: closed by the edge after %v", tc.name, took.Round(time.Millisecond))
	}
}
