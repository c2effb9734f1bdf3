package console

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/console/password"
	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
)

const testPassword = "correct horse battery staple"

// cheap are argon2id costs that keep the tests fast; the format and the
// code path are the real ones.
var cheap = password.Params{Memory: 64, Time: 1, Threads: 1}

func testHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := password.HashWith([]byte(pw), cheap)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// authBackend records every call; the security tests want none.
type authBackend struct {
	mu    sync.Mutex
	calls []string
}

func (f *authBackend) called(c string) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

// actions returns the calls that change state.
func (f *authBackend) actions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "get ") {
			out = append(out, c)
		}
	}
	return out
}

func (f *authBackend) Status() (*edgeapi.Status, error) {
	f.called("get status")
	return &edgeapi.Status{}, nil
}
func (f *authBackend) History(...string) (*edgeapi.History, error) {
	f.called("get history")
	return &edgeapi.History{}, nil
}
func (f *authBackend) L3Peers(kind string) ([]edgeapi.L3Peer, error) {
	f.called("get l3 " + kind)
	return nil, nil
}
func (f *authBackend) CreateTunnel(name string) (edgeapi.Tunnel, error) {
	f.called("create " + name)
	return edgeapi.Tunnel{Name: name, Token: "tok"}, nil
}
func (f *authBackend) RotateTunnel(name string) (edgeapi.Tunnel, error) {
	f.called("rotate " + name)
	return edgeapi.Tunnel{Name: name, Token: "tok"}, nil
}
func (f *authBackend) DeleteTunnel(name string) (edgeapi.Tunnel, error) {
	f.called("delete " + name)
	return edgeapi.Tunnel{Name: name}, nil
}
func (f *authBackend) AddClient(name string, groups []string) ([]byte, error) {
	f.called("add client " + name)
	return []byte("[Interface]\n"), nil
}
func (f *authBackend) RemoveL3(kind, name string) error {
	f.called("remove " + kind + " " + name)
	return nil
}
func (f *authBackend) L3Config(kind, name string) ([]byte, error) {
	f.called("get config " + kind + " " + name)
	return []byte("[Interface]\n"), nil
}
func (f *authBackend) ConnectorConfig(tunnel, token string) (string, error) {
	f.called("get connector config " + tunnel)
	return "connector tunnel run", nil
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// actionPaths are the console's actions (POST): views.go serves them.
var actionPaths = []string{"/tunnels", "/tunnels/x/rotate", "/tunnels/x/delete", "/l3/clients", "/l3/clients/x/delete", "/l3/connectors/x/delete"}

// env is a console on a fake backend and a fake clock.
type env struct {
	t   *testing.T
	s   *Server
	h   http.Handler
	b   *authBackend
	clk *clock
	log *bytes.Buffer
}

func newEnv(t *testing.T, o Options) *env {
	t.Helper()
	e := &env{t: t, b: &authBackend{}, clk: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, log: &bytes.Buffer{}}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8080"
	}
	o.Backend, o.Now = e.b, e.clk.now
	o.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: e.log}, nil))
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.s, e.h = s, s.Handler()
	// The actions views.go does not serve (yet) get a stand-in that
	// calls the backend as the real one does: what is tested is that
	// secure stops a request before any handler runs.
	for _, p := range actionPaths {
		if _, pattern := s.mux.Handler(httptest.NewRequest(http.MethodPost, p, nil)); pattern != "" {
			continue
		}
		s.mux.HandleFunc("POST "+p, func(w http.ResponseWriter, r *http.Request) {
			e.b.called("stand-in " + r.URL.Path + " " + r.PostFormValue("name"))
			w.WriteHeader(http.StatusOK)
		})
	}
	return e
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// req is one request to the console.
type req struct {
	method, path string
	form         url.Values
	remote       string // default 198.18.0.1:40000
	cookie       *http.Cookie
	header       map[string]string
	host         string // default localhost:8844
}

func (e *env) do(q req) *http.Response {
	e.t.Helper()
	var body io.Reader
	if q.form != nil {
		body = strings.NewReader(q.form.Encode())
	}
	r := httptest.NewRequest(q.method, "http://localhost:8844"+q.path, body)
	if q.form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if q.host != "" {
		r.Host = q.host
	}
	r.RemoteAddr = q.remote
	if r.RemoteAddr == "" {
		r.RemoteAddr = "198.18.0.1:40000"
	}
	if q.cookie != nil {
		r.AddCookie(q.cookie)
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w.Result()
}

func body(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// sessionCookie returns the session cookie resp sets, or nil.
func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == cookieName || c.Name == cookieNameTLS {
			return c
		}
	}
	return nil
}

// login logs in with the password from remote and returns the session
// cookie and its CSRF token (as the page's meta tag carries it).
func (e *env) login(remote string) (*http.Cookie, string) {
	e.t.Helper()
	resp := e.do(req{method: "POST", path: "/login", form: url.Values{"password": {testPassword}}, remote: remote})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		e.t.Fatalf("login: %s, Location %q: %s", resp.Status, resp.Header.Get("Location"), body(resp))
	}
	c := sessionCookie(resp)
	if c == nil {
		e.t.Fatal("login set no session cookie")
	}
	return c, e.csrfOf(c)
}

// csrfOf reads the CSRF token from the overview page's meta tag.
func (e *env) csrfOf(c *http.Cookie) string {
	e.t.Helper()
	resp := e.do(req{method: "GET", path: "/", cookie: c})
	b := body(resp)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET / with the session: %s: %s", resp.Status, b)
	}
	const meta = `<meta name="csrf-token" content="`
	i := strings.Index(b, meta)
	if i < 0 {
		e.t.Fatalf("no csrf-token meta in %s", b)
	}
	tok, _, _ := strings.Cut(b[i+len(meta):], `"`)
	if len(tok) < 40 {
		e.t.Fatalf("csrf token %q too short", tok)
	}
	return tok
}

func newPasswordEnv(t *testing.T) *env {
	return newEnv(t, Options{PasswordHash: testHash(t, testPassword)})
}

// TestActionsRefused: every action without a session, without or with a
// wrong CSRF token, from another origin or site, or after logout is
// refused, and the backend never hears of it; the same request done
// right goes through (so the refusals are the checks' doing).
func TestActionsRefused(t *testing.T) {
	e := newPasswordEnv(t)
	cookie, csrf := e.login("")
	ended, endedCSRF := e.login("198.18.0.2:1")
	if resp := e.do(req{method: "POST", path: "/logout", cookie: ended, form: url.Values{"csrf": {endedCSRF}}}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("logout: %s %q", resp.Status, resp.Header.Get("Location"))
	}
	own := "http://localhost:8844"
	wrong := csrf[:len(csrf)-1] + "A" // the token with its last character changed
	if strings.HasSuffix(csrf, "A") {
		wrong = csrf[:len(csrf)-1] + "B"
	}
	cases := []struct {
		name   string
		cookie *http.Cookie
		form   url.Values
		header map[string]string
		want   int
	}{
		{"no session", nil, url.Values{"csrf": {csrf}}, map[string]string{"Origin": own}, http.StatusSeeOther},
		{"no csrf", cookie, url.Values{}, map[string]string{"Origin": own}, http.StatusForbidden},
		{"wrong csrf", cookie, url.Values{"csrf": {wrong}}, map[string]string{"Origin": own}, http.StatusForbidden},
		{"wrong csrf header", cookie, url.Values{}, map[string]string{"X-CSRF-Token": endedCSRF}, http.StatusForbidden},
		{"other session's csrf", cookie, url.Values{"csrf": {endedCSRF}}, nil, http.StatusForbidden},
		{"other origin", cookie, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "http://evil.test"}, http.StatusForbidden},
		{"other port", cookie, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "http://localhost:81"}, http.StatusForbidden},
		{"https origin on http", cookie, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "https://localhost:8844"}, http.StatusForbidden},
		{"null origin", cookie, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "null"}, http.StatusForbidden},
		{"cross-site", cookie, url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site", cookie, url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"after logout", ended, url.Values{"csrf": {endedCSRF}}, map[string]string{"Origin": own}, http.StatusSeeOther},
		{"forged cookie", &http.Cookie{Name: cookieName, Value: strings.Repeat("A", 43)}, url.Values{"csrf": {csrf}}, nil, http.StatusSeeOther},
	}
	for _, p := range actionPaths {
		for _, c := range cases {
			form := url.Values{"name": {"x"}, "groups": {"g"}}
			for k, v := range c.form {
				form[k] = v
			}
			resp := e.do(req{method: "POST", path: p, cookie: c.cookie, form: form, header: c.header})
			if resp.StatusCode != c.want {
				t.Errorf("POST %s %s: %s, want %d", p, c.name, resp.Status, c.want)
			}
			if c.want == http.StatusSeeOther && resp.Header.Get("Location") != "/login" {
				t.Errorf("POST %s %s: Location %q, want /login", p, c.name, resp.Header.Get("Location"))
			}
			if a := e.b.actions(); len(a) > 0 {
				t.Fatalf("POST %s %s reached the backend: %v", p, c.name, a)
			}
		}
	}
	// Done right (session, token as field or header, own origin), each
	// action reaches the backend.
	for i, p := range actionPaths {
		q := req{method: "POST", path: p, cookie: cookie, form: url.Values{"name": {"x"}, "groups": {"g"}}, header: map[string]string{"Origin": own, "Sec-Fetch-Site": "same-origin"}}
		if i%2 == 0 {
			q.form.Set("csrf", csrf)
		} else {
			q.header["X-CSRF-Token"] = csrf
		}
		resp := e.do(q)
		if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/login" {
			t.Errorf("POST %s with the session and token: %s", p, resp.Status)
		}
		if a := e.b.actions(); len(a) != i+1 {
			t.Errorf("POST %s with the session and token: backend calls %v", p, a)
		}
	}
}

// TestPagesNeedSession: pages redirect to the login, the JSON API answers
// 401, without a live session; login and static files are public.
func TestPagesNeedSession(t *testing.T) {
	e := newPasswordEnv(t)
	for _, p := range []string{"/", "/tunnels", "/l3", "/l3/clients/x/config", "/l3/connectors/x/config", "/nosuchpage"} {
		resp := e.do(req{method: "GET", path: p})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("GET %s without a session: %s to %q, want 303 to /login", p, resp.Status, resp.Header.Get("Location"))
		}
	}
	for _, p := range []string{"/api/status", "/api/history", "/api/l3"} {
		resp := e.do(req{method: "GET", path: p})
		var j struct{ Error string }
		if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || resp.StatusCode != http.StatusUnauthorized || j.Error == "" ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s without a session: %s %q %v, want 401 with a JSON error", p, resp.Status, j.Error, err)
		}
	}
	if calls := e.b.calls; len(calls) > 0 {
		t.Errorf("backend called without a session: %v", calls)
	}
	for _, p := range []string{"/login", "/static/login.css", "/static/console.css"} {
		if resp := e.do(req{method: "GET", path: p}); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a session: %s, want 200", p, resp.Status)
		}
	}
	cookie, _ := e.login("")
	if resp := e.do(req{method: "GET", path: "/", cookie: cookie}); resp.StatusCode != http.StatusOK {
		t.Errorf("GET / with a session: %s", resp.Status)
	}
	// A logged-in browser at /login goes to the console.
	if resp := e.do(req{method: "GET", path: "/login", cookie: cookie}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("GET /login with a session: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
}

// TestLoginPage: the form and its ids, the error in #login-error.
func TestLoginPage(t *testing.T) {
	e := newPasswordEnv(t)
	b := body(e.do(req{method: "GET", path: "/login"}))
	for _, want := range []string{`<form id="login" method="post" action="/login">`, `id="password" name="password" type="password"`, `id="login-error"`, `type="submit"`} {
		if !strings.Contains(b, want) {
			t.Errorf("login page lacks %s:\n%s", want, b)
		}
	}
	resp := e.do(req{method: "POST", path: "/login", form: url.Values{"password": {"wrong password"}}})
	b = body(resp)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(b, `id="login-error" class="login-error" role="alert">Wrong password.</p>`) {
		t.Errorf("wrong password: %s\n%s", resp.Status, b)
	}
	if sessionCookie(resp) != nil {
		t.Error("a wrong password set a session cookie")
	}
	// Without a hash: no password logs in, and the page says how to.
	off := newEnv(t, Options{})
	resp = off.do(req{method: "POST", path: "/login", form: url.Values{"password": {""}}})
	if b := body(resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(b, "edge console link") {
		t.Errorf("password login off: %s\n%s", resp.Status, b)
	}
	// A body over the bound is refused before the password is looked at.
	big := url.Values{"password": {strings.Repeat("x", maxBody+1)}}
	if resp := e.do(req{method: "POST", path: "/login", form: big, remote: "198.18.0.9:1"}); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("login with a %d-byte body: %s, want 413", maxBody+1, resp.Status)
	}
}

// TestLoginRateLimit: a brute-force loop gets 429 once its budget is
// spent, the right password included, for the source's whole /64; other
// sources log in; the lock ends and doubles; failures are logged at a
// bounded rate.
func TestLoginRateLimit(t *testing.T) {
	e := newPasswordEnv(t)
	try := func(remote, pw string) *http.Response {
		return e.do(req{method: "POST", path: "/login", form: url.Values{"password": {pw}}, remote: remote})
	}
	attacker := "[2001:db8:1:2::1]:5555"
	for i := range loginBudget {
		if resp := try(attacker, "guess"+strconv.Itoa(i)); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("try %d: %s, want 401", i+1, resp.Status)
		}
	}
	for i := range 50 {
		resp := try(attacker, "guess-more"+strconv.Itoa(i))
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("try %d after the budget: %s, want 429", loginBudget+i+1, resp.Status)
		}
	}
	resp := try("[2001:db8:1:2:ffff::9]:1", testPassword) // the same /64, right password
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || ra < 1 || ra > int(lockBase/time.Second) {
		t.Fatalf("right password from the limited /64: %s, Retry-After %q; want 429 with 1-%d", resp.Status, resp.Header.Get("Retry-After"), lockBase/time.Second)
	}
	if !strings.Contains(body(resp), "try again in") {
		t.Error("the 429 page does not say when to try again")
	}
	if sessionCookie(resp) != nil {
		t.Fatal("a limited source got a session")
	}
	// Others are not affected.
	e.login("[2001:db8:1:3::1]:1")
	e.login("198.18.0.7:1")
	// The lock ends after lockBase; the next failure locks for twice as long.
	e.clk.add(lockBase)
	if resp := try(attacker, "again"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after %v: %s, want 401", lockBase, resp.Status)
	}
	e.clk.add(lockBase)
	if resp := try(attacker, "again"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after %v of a %v lock: %s, want 429", lockBase, 2*lockBase, resp.Status)
	}
	e.clk.add(lockBase)
	e.login(attacker) // the right password, once the lock is over, works and resets
	for range loginBudget - 1 {
		if resp := try(attacker, "typo"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("after a login: %s, want 401 (the budget starts again)", resp.Status)
		}
	}
	// One line per failLogEvery at most, counting those it left out.
	if n, most := strings.Count(e.log.String(), "login failed"), 1+int(3*lockBase/failLogEvery); n < 1 || n > most {
		t.Errorf("%d log lines for the failed logins in %v; want 1 to %d:\n%s", n, 3*lockBase, most, e.log.String())
	}
	if !strings.Contains(e.log.String(), "more_failures_not_logged=55") {
		t.Errorf("the log does not count the failures it left out:\n%s", e.log.String())
	}
}

// TestLoginParallel: parallel tries from one source cannot slip past the
// budget before their failures are counted.
func TestLoginParallel(t *testing.T) {
	e := newPasswordEnv(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 40 {
		wg.Go(func() {
			resp := e.do(req{method: "POST", path: "/login", form: url.Values{"password": {"guess"}}, remote: "198.18.0.3:1"})
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[http.StatusUnauthorized] != loginBudget || codes[http.StatusTooManyRequests] != 40-loginBudget {
		t.Errorf("40 parallel tries: %v, want %d checked and the rest 429", codes, loginBudget)
	}
}

// TestHashChecksBounded: parallel logins from many sources run at most
// maxHashChecks password checks at once.
func TestHashChecksBounded(t *testing.T) {
	e := newPasswordEnv(t)
	var mu sync.Mutex
	running, most := 0, 0
	orig := verify
	verify = func(h string, pw []byte) (bool, error) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return orig(h, pw)
	}
	t.Cleanup(func() { verify = orig })
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			resp := e.do(req{method: "POST", path: "/login", form: url.Values{"password": {"guess"}}, remote: "198.18.2." + strconv.Itoa(i) + ":1"})
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("login %d: %s", i, resp.Status)
			}
		})
	}
	wg.Wait()
	if most != maxHashChecks {
		t.Errorf("%d password checks ran at once, want at most (and, with 16 waiting, exactly) %d", most, maxHashChecks)
	}
}

// TestSecurityHeaders: the CSP and the other headers on every answer:
// pages, redirects, errors, refusals, JSON and static files.
func TestSecurityHeaders(t *testing.T) {
	e := newPasswordEnv(t)
	cookie, csrf := e.login("")
	for _, q := range []req{
		{method: "GET", path: "/login"},
		{method: "GET", path: "/"},
		{method: "GET", path: "/", cookie: cookie},
		{method: "GET", path: "/nosuchpage", cookie: cookie},
		{method: "GET", path: "/static/console.css"},
		{method: "GET", path: "/static/login.css"},
		{method: "GET", path: "/static/nosuchfile.js"},
		{method: "GET", path: "/api/status"},
		{method: "GET", path: "/login/link/nosuchlink"},
		{method: "POST", path: "/login", form: url.Values{"password": {"wrong"}}, remote: "198.18.1.1:1"},
		{method: "POST", path: "/tunnels", cookie: cookie, form: url.Values{"name": {"x"}}},
		{method: "POST", path: "/tunnels", cookie: cookie, form: url.Values{"csrf": {csrf}}, header: map[string]string{"Origin": "http://evil.test"}},
		{method: "DELETE", path: "/", cookie: cookie, header: map[string]string{"X-CSRF-Token": csrf}},
	} {
		resp := e.do(q)
		h := resp.Header
		if h.Get("Content-Security-Policy") != csp || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Referrer-Policy") != "same-origin" || h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s %s (%s): headers %v", q.method, q.path, resp.Status, h)
		}
	}
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.HasPrefix(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
}

// TestLinks: a link's GET (a chat's link preview, a scanner, a HEAD)
// spends nothing and shows a button; its POST logs in once, not twice,
// not from another origin; it expires; only so many are outstanding.
func TestLinks(t *testing.T) {
	e := newEnv(t, Options{}) // links work without a password
	path, err := e.s.NewLink()
	if err != nil || !strings.HasPrefix(path, "/login/link/") || len(path) < len("/login/link/")+43 {
		t.Fatalf("NewLink: %q %v", path, err)
	}
	if resp := e.do(req{method: "HEAD", path: path}); sessionCookie(resp) != nil {
		t.Fatal("HEAD of a link logged in")
	}
	for range 3 { // a preview, a scanner, the user: none spends it
		resp := e.do(req{method: "GET", path: path})
		if b := body(resp); resp.StatusCode != http.StatusOK || sessionCookie(resp) != nil ||
			!strings.Contains(b, `<form id="link-login" method="post" action="`+path+`">`) {
			t.Fatalf("GET of a link: %s, cookie %v\n%s", resp.Status, sessionCookie(resp), b)
		}
	}
	if resp := e.do(req{method: "POST", path: path, header: map[string]string{"Origin": "http://evil.test"}}); resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil {
		t.Fatalf("POST of a link from another origin: %s", resp.Status)
	}
	resp := e.do(req{method: "POST", path: path})
	c := sessionCookie(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" || c == nil {
		t.Fatalf("link: %s to %q, cookie %v", resp.Status, resp.Header.Get("Location"), c)
	}
	e.csrfOf(c) // the session works
	for _, m := range []string{"GET", "POST"} {
		resp = e.do(req{method: m, path: path})
		if b := body(resp); resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil || !strings.Contains(b, "not valid") {
			t.Errorf("%s of a link used already: %s\n%s", m, resp.Status, b)
		}
	}
	path, _ = e.s.NewLink()
	e.clk.add(linkLifetime)
	if resp := e.do(req{method: "POST", path: path}); resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil {
		t.Errorf("link after %v: %s", linkLifetime, resp.Status)
	}
	path, _ = e.s.NewLink()
	e.clk.add(linkLifetime - time.Second)
	if resp := e.do(req{method: "POST", path: path}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("link after %v: %s", linkLifetime-time.Second, resp.Status)
	}
	for i := range maxLinks {
		if _, err := e.s.NewLink(); err != nil {
			t.Fatalf("link %d: %v", i+1, err)
		}
	}
	if _, err := e.s.NewLink(); err == nil {
		t.Errorf("link %d made; want at most %d outstanding", maxLinks+1, maxLinks)
	}
	e.clk.add(linkLifetime)
	if _, err := e.s.NewLink(); err != nil {
		t.Errorf("a link once the others expired: %v", err)
	}
}

// TestSessionCookie: the cookie's flags, over plain HTTP and TLS.
func TestSessionCookie(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  *tls.Config
		want string
	}{{"http", nil, cookieName}, {"tls", &tls.Config{}, "__Host-onramp-console"}} {
		e := newEnv(t, Options{PasswordHash: testHash(t, testPassword), TLS: tc.tls})
		resp := e.do(req{method: "POST", path: "/login", form: url.Values{"password": {testPassword}}})
		c := sessionCookie(resp)
		if c == nil {
			t.Fatalf("%s: no cookie: %s", tc.name, resp.Status)
		}
		if c.Name != tc.want || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" || c.Secure != (tc.tls != nil) || len(c.Value) < 43 {
			t.Errorf("%s: cookie %+v", tc.name, c)
		}
		if tc.tls != nil {
			// Over TLS the origin is https, and a plain-HTTP name is no session.
			if got := e.do(req{method: "GET", path: "/", cookie: &http.Cookie{Name: cookieName, Value: c.Value}}); got.StatusCode != http.StatusSeeOther {
				t.Errorf("tls: the session under the plain name: %s", got.Status)
			}
			csrf := e.csrfOf(c)
			if got := e.do(req{method: "POST", path: "/tunnels", cookie: c, form: url.Values{"csrf": {csrf}, "name": {"x"}}, header: map[string]string{"Origin": "http://localhost:8844"}}); got.StatusCode != http.StatusForbidden {
				t.Errorf("tls: POST from the http origin: %s", got.Status)
			}
			if got := e.do(req{method: "POST", path: "/tunnels", cookie: c, form: url.Values{"csrf": {csrf}, "name": {"x"}}, header: map[string]string{"Origin": "https://localhost:8844"}}); got.StatusCode == http.StatusForbidden {
				t.Errorf("tls: POST from its own origin: %s", got.Status)
			}
		}
		// Logout clears the cookie.
		csrf := e.csrfOf(c)
		out := sessionCookie(e.do(req{method: "POST", path: "/logout", cookie: c, form: url.Values{"csrf": {csrf}}}))
		if out == nil || out.MaxAge >= 0 || out.Value != "" {
			t.Errorf("%s: logout's cookie %+v", tc.name, out)
		}
	}
}

// TestSessionExpiry: idle and absolute expiry, the bounded table, and a
// new password ending every session.
func TestSessionExpiry(t *testing.T) {
	e := newPasswordEnv(t)
	alive := func(c *http.Cookie) bool {
		return e.do(req{method: "GET", path: "/", cookie: c}).StatusCode == http.StatusOK
	}
	c, _ := e.login("")
	e.clk.add(sessionIdle - time.Minute)
	if !alive(c) {
		t.Fatal("session ended before its idle time")
	}
	e.clk.add(sessionIdle - time.Minute) // used just now: still alive
	if !alive(c) {
		t.Fatal("a used session ended at its idle time from the login")
	}
	e.clk.add(sessionIdle)
	if alive(c) {
		t.Error("session alive after being idle for", sessionIdle)
	}
	c, _ = e.login("")
	for e.clk.add(sessionIdle / 2); e.clk.now().Before(e.clk.t.Add(sessionLifetime)); e.clk.add(sessionIdle / 2) {
		if !alive(c) {
			break
		}
	}
	if alive(c) {
		t.Error("session alive after its lifetime")
	}

	first, _ := e.login("")
	for range maxSessions {
		e.clk.add(time.Second)
		e.s.auth.sessions.create(e.clk.now())
	}
	if alive(first) {
		t.Errorf("the least recently used session alive after %d newer ones", maxSessions)
	}
	if n := len(e.s.auth.sessions.m); n != maxSessions {
		t.Errorf("%d sessions held, want %d", n, maxSessions)
	}

	c, _ = e.login("")
	if err := e.s.SetPasswordHash(testHash(t, "another password")); err != nil {
		t.Fatal(err)
	}
	if alive(c) {
		t.Error("session alive after the password changed")
	}
	if resp := e.do(req{method: "POST", path: "/login", form: url.Values{"password": {"another password"}}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the new password: %s", resp.Status)
	}
	if err := e.s.SetPasswordHash("$argon2id$v=19$m=1,t=1,p=1$bad"); err == nil {
		t.Error("SetPasswordHash took a malformed hash")
	}
}

// TestExposure: New refuses a console off loopback without TLS and a
// password, naming what is missing.
func TestExposure(t *testing.T) {
	hash := testHash(t, testPassword)
	for _, tc := range []struct {
		addr string
		tls  bool
		hash string
		want string // "" : allowed
	}{
		{"127.0.0.1:8080", false, "", ""},
		{"[::1]:8080", false, "", ""},
		{"localhost:8080", false, "", ""},
		{"0.0.0.0:8443", false, hash, "console.tls_cert"},
		{"[::]:8443", true, "", "console.password_hash"},
		{":8443", false, "", "console.tls_cert and console.tls_key and console.password_hash"},
		{"198.18.0.1:8443", false, hash, "listen.console 198.18.0.1:8443 is not a loopback address"},
		{"198.18.0.1:8443", true, hash, ""},
	} {
		o := Options{Addr: tc.addr, PasswordHash: tc.hash, Backend: &authBackend{}}
		if tc.tls {
			o.TLS = &tls.Config{}
		}
		_, err := New(o)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s tls=%v password=%v: %v", tc.addr, tc.tls, tc.hash != "", err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s tls=%v password=%v: %v, want an error naming %q", tc.addr, tc.tls, tc.hash != "", err, tc.want)
		}
	}
	if _, err := New(Options{Addr: "127.0.0.1:1", PasswordHash: "plaintext", Backend: &authBackend{}}); err == nil || !strings.Contains(err.Error(), "console.password_hash") {
		t.Errorf("New with a password that is no hash: %v", err)
	}
	s, err := New(Options{Addr: "198.18.0.1:8443", TLS: &tls.Config{}, PasswordHash: hash, Backend: &authBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPasswordHash(""); err == nil {
		t.Error("a reload removed the password of a console off loopback")
	}
}
