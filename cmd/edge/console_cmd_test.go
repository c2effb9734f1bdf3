package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/onramp-net/onramp/cmd/edge/console/password"
	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
)

// testConsoleHash is a console.password_hash at a cheap cost.
var testConsoleHash = func() string {
	h, err := password.HashWith([]byte("a long password"), password.Params{Memory: 64, Time: 1, Threads: 1})
	if err != nil {
		panic(err)
	}
	return h
}()

// TestSetPasswordHash: the hash goes in, in every shape of edge.yml, and
// the rest of the file stays byte for byte where the text can be edited.
func TestSetPasswordHash(t *testing.T) {
	h := testConsoleHash
	q := fmt.Sprintf("%q", h)
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "console:\n  password_hash: " + q + "\n"},
		{"no console", "# the edge\ndata: /d # here\nlisten:\n    tunnels: \"[::]:7844\"\n",
			"# the edge\ndata: /d # here\nlisten:\n    tunnels: \"[::]:7844\"\nconsole:\n    password_hash: " + q + "\n"},
		{"no newline at the end", "data: /d", "data: /d\nconsole:\n  password_hash: " + q + "\n"},
		{"console without a hash", "data: /d\nconsole: # the web console\n  # its certificate\n  tls_cert: c.pem\n  tls_key: k.pem\nlimits: {maxConns: 5}\n",
			"data: /d\nconsole: # the web console\n  password_hash: " + q + "\n  # its certificate\n  tls_cert: c.pem\n  tls_key: k.pem\nlimits: {maxConns: 5}\n"},
		{"replace a quoted hash", "console:\n   password_hash: \"$argon2id$old\"   # set by edge console passwd\n   tls_cert: c\n",
			"console:\n   password_hash: " + q + "   # set by edge console passwd\n   tls_cert: c\n"},
		{"replace a plain hash", "console:\n  password_hash: $argon2id$old\nx: 1\n", "console:\n  password_hash: " + q + "\nx: 1\n"},
		{"replace an empty one", "console:\n  password_hash: ''\n", "console:\n  password_hash: " + q + "\n"},
	} {
		out, err := setPasswordHash([]byte(tc.in), h)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(out) != tc.want {
			t.Errorf("%s:\n%s\nwant\n%s", tc.name, out, tc.want)
		}
	}
	// Shapes the text edit leaves to the node tree: the value is set and
	// the comments stay.
	for _, in := range []string{
		"# top\nconsole: {tls_cert: c, tls_key: k} # flow\ndata: /d\n",
		"# top\nconsole:\ndata: /d # the data\n",
		"# top\nconsole: {}\n",
		"{data: /d}\n",
	} {
		out, err := setPasswordHash([]byte(in), h)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		var c struct {
			Console edgeconfig.Console `yaml:"console"`
		}
		if err := yaml.Unmarshal(out, &c); err != nil || c.Console.PasswordHash != h {
			t.Errorf("%q: got %q (%v):\n%s", in, c.Console.PasswordHash, err, out)
		}
		if strings.Contains(in, "# top") && !strings.Contains(string(out), "# top") {
			t.Errorf("%q: comment lost:\n%s", in, out)
		}
	}
	for _, bad := range []string{"console: 5\n", "- a\n- b\n", "data: [\n"} {
		if out, err := setPasswordHash([]byte(bad), h); err == nil {
			t.Errorf("%q: no error, wrote:\n%s", bad, out)
		}
	}
}

// consoleEdge is an edge binary with an edge.yml whose console listens on
// a free loopback port.
func consoleEdge(t *testing.T, extra string) (*edgeCLI, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "edge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	e := &edgeCLI{bin: bin, config: filepath.Join(dir, "edge.yml"), data: filepath.Join(dir, "data")}
	cfg := fmt.Sprintf("# the test's edge\ndata: %s # its data\nlisten:\n  tunnels: \"127.0.0.1:0\"\n  console: %q # the web console\n%s", e.data, addr, extra)
	if err := os.WriteFile(e.config, []byte(cfg), 0o640); err != nil {
		t.Fatal(err)
	}
	return e, "http://" + addr
}

// passwd runs `edge console passwd --stdin` with pw.
func (e *edgeCLI) passwd(t *testing.T, pw string) (string, error) {
	t.Helper()
	cmd := exec.Command(e.bin, "--config", e.config, "console", "passwd", "--stdin")
	cmd.Stdin = strings.NewReader(pw + "\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// consoleLogin posts pw to the console's login and returns the status and
// session cookie.
func consoleLogin(t *testing.T, base, pw string) (int, *http.Cookie) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 20 * time.Second}
	resp, err := c.PostForm(base+"/login", url.Values{"password": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	for _, ck := range resp.Cookies() {
		if strings.Contains(ck.Name, "onramp-console") && ck.Value != "" {
			return resp.StatusCode, ck
		}
	}
	return resp.StatusCode, nil
}

// waitConsole waits until the console answers.
func waitConsole(t *testing.T, base string, log fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/login")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("console %s: %v\n%s", base, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsolePasswdCLI: `edge console passwd --stdin` writes a hash the
// running edge's console logs in with, keeping the file's comments and
// mode; a reload (SIGHUP) applies a new one and ends the sessions; `edge
// console link` prints a link that logs in once.
func TestConsolePasswdCLI(t *testing.T) {
	e, base := consoleEdge(t, "")
	before, _ := os.ReadFile(e.config)
	out, err := e.passwd(t, "first password")
	if err != nil || !strings.Contains(out, "Reload the edge") {
		t.Fatalf("passwd: %v\n%s", err, out)
	}
	after, _ := os.ReadFile(e.config)
	if !bytes.HasPrefix(after, before) || !strings.Contains(string(after), "# its data") || !strings.Contains(string(after), "# the web console") {
		t.Errorf("passwd changed the rest of the file:\n%s\nwas\n%s", after, before)
	}
	if m := modeOf(t, e.config); m != 0o640 {
		t.Errorf("edge.yml mode %v after passwd, want 0640", m)
	}
	cfg, err := edgeconfig.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := password.Verify(cfg.Console.PasswordHash, []byte("first password")); !ok || err != nil {
		t.Fatalf("the written hash %q does not check the password: %v", cfg.Console.PasswordHash, err)
	}
	if !strings.HasPrefix(cfg.Console.PasswordHash, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Errorf("hash %q is not at the default cost", cfg.Console.PasswordHash)
	}
	if out, err := e.passwd(t, "short"); err == nil || !strings.Contains(out, "at least 8") {
		t.Errorf("passwd with a 5-byte password: %v\n%s", err, out)
	}

	p := startLoggedEdge(t, e)
	waitConsole(t, base, p.log)
	if code, _ := consoleLogin(t, base, "wrong password"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", code)
	}
	code, sess := consoleLogin(t, base, "first password")
	if code != http.StatusSeeOther || sess == nil {
		t.Fatalf("login with the password passwd wrote: %d, cookie %v\n%s", code, sess, p.log.String())
	}

	// A new password, applied by a reload.
	if out, err := e.passwd(t, "second password"); err != nil {
		t.Fatalf("passwd: %v\n%s", err, out)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log.String(), "console_password=changed") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload applied the password:\n%s", p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := consoleLogin(t, base, "second password"); code != http.StatusSeeOther {
		t.Errorf("the new password after the reload: %d", code)
	}
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.AddCookie(sess)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the old session after the password changed: %v %v", resp.Status, err)
	}

	// A one-time link.
	out2, errOut, err := e.run(t, "console", "link")
	if err != nil {
		t.Fatalf("console link: %v\n%s", err, errOut)
	}
	link := strings.TrimSpace(out2)
	if !strings.HasPrefix(link, base+"/login/link/") {
		t.Fatalf("console link printed %q, want %s/login/link/...", link, base)
	}
	// Opening it shows the button; its POST logs in, once.
	for i, want := range []int{http.StatusOK, http.StatusSeeOther, http.StatusForbidden} {
		method := http.MethodPost
		if i == 0 {
			method = http.MethodGet
		}
		req, _ := http.NewRequest(method, link, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("link, %s %d: %s, want %d", method, i+1, resp.Status, want)
		}
	}

	// A change of listen.console is refused by a reload, naming it.
	e.configEdit(t, base[len("http://"):], "127.0.0.1:1")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log.String(), "listen.console changed") {
		if time.Now().After(deadline) {
			t.Fatalf("a reload took a new listen.console:\n%s", p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loggedEdge is a running `edge serve` whose log the test reads while it
// runs.
type loggedEdge struct {
	cmd *exec.Cmd
	log *syncBuffer
}

func startLoggedEdge(t *testing.T, e *edgeCLI) *loggedEdge {
	t.Helper()
	p := &loggedEdge{log: &syncBuffer{}}
	p.cmd = exec.Command(e.bin, "--config", e.config, "serve")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
			t.Errorf("edge serve did not stop on SIGINT:\n%s", p.log.String())
		}
	})
	return p
}

func (e *edgeCLI) configEdit(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, bytes.ReplaceAll(b, []byte(from), []byte(to)), 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleExposureAtStart: edge serve refuses a console on a
// non-loopback address without TLS and a password, before it starts, and
// says which fields are missing; `edge console link` says when the
// console is off.
func TestConsoleExposureAtStart(t *testing.T) {
	e, _ := consoleEdge(t, "")
	e.configEdit(t, "127.0.0.1:", "0.0.0.0:")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.bin, "--config", e.config, "serve").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "listen.console 0.0.0.0:") ||
		!strings.Contains(string(out), "is not a loopback address: it needs console.tls_cert and console.tls_key and console.password_hash") {
		t.Errorf("serve with a public console without TLS: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(e.data, "admin.sock")); err == nil {
		t.Error("the edge got as far as its admin socket")
	}
	// With TLS but no password: refused too.
	e2, _ := consoleEdge(t, "console: {tls_cert: /nonexistent.crt, tls_key: /nonexistent.key}\n")
	e2.configEdit(t, "127.0.0.1:", "[::]:")
	if _, s, err := e2.run(t, "serve"); err == nil || !strings.Contains(s, "it needs console.password_hash") {
		t.Errorf("serve with a public console without a password: %v\n%s", err, s)
	}

	// The console off: the link command says so, and so does the admin API.
	e3, _ := consoleEdge(t, "")
	e3.configEdit(t, "console:", "metrics:")
	if _, s, err := e3.run(t, "console", "link"); err == nil || !strings.Contains(s, "the console is off") {
		t.Errorf("console link with the console off: %v\n%s", err, s)
	}
	mux := http.NewServeMux()
	(&app{}).serveConsoleLink(mux)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("POST", "/v1/console/link", nil))
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "the console is off") {
		t.Errorf("POST /v1/console/link with the console off: %d %s", w.Code, w.Body.String())
	}
}
