package console

// The console's security: who may see it and run its actions.
//
//   - Login: POST /login with the password whose argon2id hash is
//     console.password_hash (package password), or a one-time link
//     (NewLink, `edge console link`): GET /login/link/TOKEN shows a
//     button that POSTs it, which logs in. Both start a session
//     (session.go).
//   - Tries are limited per source (ratelimit.go), and at most
//     maxHashChecks password checks run at once: argon2id is slow and big
//     on purpose, and parallel logins must not take the edge's memory and
//     CPU.
//   - secure, in front of every route: the security headers on every
//     answer; a body of at most maxBody bytes; no page, action or API
//     without a live session but the login's and the static files; every
//     request but GET and HEAD carries the session's CSRF token (the form
//     field "csrf" or the header X-CSRF-Token), and is refused if the
//     browser says it comes from another site (Origin, Sec-Fetch-Site).
//   - checkExposure: no console off loopback without TLS and a password;
//     over plain HTTP (loopback), secure answers only to a loopback Host
//     (loopbackHost: no DNS rebinding).
//   - Serve: connections bounded in count, in all and per source (package
//     connlimit), and in time (the http.Server's timeouts).

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/console/password"
	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

const (
	maxHashChecks = 2               // password checks (argon2id, 64 MiB each by default) at once
	hashWait      = 5 * time.Second // a login waits this long for its turn, then gets 503
	maxBody       = 64 << 10        // bytes of a request body
	maxPassword   = password.MaxLen // bytes of a password tried
	csp           = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	cookieName    = "onramp-console" // over plain HTTP (loopback)
	cookieNameTLS = "__Host-onramp-console"
)

// verify is password.Verify (a test watches how many run at once).
var verify = password.Verify

type authState struct {
	mu   sync.Mutex
	hash string // console.password_hash; "": password login off

	sessions sessions
	links    links
	limit    loginLimiter
	checks   chan struct{} // a slot per password check under way

	logMu      sync.Mutex
	loggedAt   time.Time // the last log line about failed logins
	suppressed int       // failed logins not logged since
}

func newAuthState(o Options) (*authState, error) {
	if o.PasswordHash != "" {
		if err := password.Check(o.PasswordHash); err != nil {
			return nil, fmt.Errorf("console: console.password_hash: %w", err)
		}
	}
	return &authState{hash: o.PasswordHash, checks: make(chan struct{}, maxHashChecks)}, nil
}

// checkExposure refuses a console on a non-loopback address without TLS
// and a password: the login, the session cookie and every page would
// cross the network in the clear, or anyone reaching the port could try
// links only an operator can make but nobody could log in with a password.
func checkExposure(o Options) error {
	if edgeconfig.Loopback(o.Addr) {
		return nil
	}
	var missing []string
	if o.TLS == nil {
		missing = append(missing, "console.tls_cert and console.tls_key")
	}
	if o.PasswordHash == "" {
		missing = append(missing, "console.password_hash (`edge console passwd`)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("console: listen.console %s is not a loopback address: it needs %s (or listen on 127.0.0.1 or [::1])",
			o.Addr, strings.Join(missing, " and "))
	}
	return nil
}

// SetPasswordHash changes the login password (a reload of edge.yml). A
// changed password ends every session: whoever logged in with the old one
// logs in again.
func (s *Server) SetPasswordHash(hash string) error {
	if hash != "" {
		if err := password.Check(hash); err != nil {
			return fmt.Errorf("console: console.password_hash: %w", err)
		}
	}
	o := s.opts
	o.PasswordHash = hash
	if err := checkExposure(o); err != nil {
		return err
	}
	a := s.auth
	a.mu.Lock()
	changed := a.hash != hash
	a.hash = hash
	a.mu.Unlock()
	if changed {
		n := a.sessions.endAll()
		s.log.Info("console: password changed; sessions ended", "sessions", n, "password_login", hash != "")
	}
	return nil
}

func (a *authState) passwordHash() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hash
}

// NewLink returns a one-time login link's path (/login/link/TOKEN): good
// once, for linkLifetime; at most maxLinks are outstanding.
func (s *Server) NewLink() (string, error) {
	token, err := s.auth.links.create(s.opts.Now())
	if err != nil {
		return "", err
	}
	s.log.Info("console: one-time login link made", "valid", linkLifetime)
	return "/login/link/" + token, nil
}

// sessionCtx is the context key of the request's session.
type sessionCtx struct{}

type sessionInfo struct{ id, csrf string }

func sessionOf(r *http.Request) (sessionInfo, bool) {
	si, ok := r.Context().Value(sessionCtx{}).(sessionInfo)
	return si, ok
}

// csrfToken is the session's CSRF token for the page's forms; "" without
// a session (the login page).
func (s *Server) csrfToken(r *http.Request) string {
	si, _ := sessionOf(r)
	return si.csrf
}

func (s *Server) cookieName() string {
	if s.opts.TLS != nil {
		return cookieNameTLS
	}
	return cookieName
}

// setSession gives the browser its session cookie: HttpOnly (no script
// reads it), SameSite=Strict (no other site's page sends it), Secure and
// __Host- (HTTPS only, this host only, path /) over TLS.
func (s *Server) setSession(w http.ResponseWriter, id string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(), Value: id, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.opts.TLS != nil,
	})
}

func (s *Server) startSession(w http.ResponseWriter) {
	id, _ := s.auth.sessions.create(s.opts.Now())
	s.setSession(w, id, int(sessionLifetime/time.Second))
}

// isPublic reports whether path is served without a session.
func isPublic(path string) bool {
	return path == "/login" || strings.HasPrefix(path, "/login/link/") || strings.HasPrefix(path, "/static/")
}

// secure is the console's front: see the top of the file.
func (s *Server) secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin") // not no-referrer: Chromium then sends "Origin: null" with the console's own form posts
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		if s.opts.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		w = noStoreWriter{w}
		if s.opts.TLS == nil && !loopbackHost(r.Host) {
			s.refuse(w, r, http.StatusMisdirectedRequest, "refused: Host "+strconv.Quote(r.Host)+
				" is not this console's (over plain HTTP it answers to localhost and loopback addresses only)")
			return
		}

		if c, err := r.Cookie(s.cookieName()); err == nil {
			if csrf, ok := s.auth.sessions.get(c.Value, s.opts.Now()); ok {
				r = r.WithContext(context.WithValue(r.Context(), sessionCtx{}, sessionInfo{id: c.Value, csrf: csrf}))
			}
		}
		si, live := sessionOf(r)
		unsafe := r.Method != http.MethodGet && r.Method != http.MethodHead
		if unsafe {
			if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
				s.refuse(w, r, http.StatusForbidden, "refused: the request comes from another site (Sec-Fetch-Site: "+site+")")
				return
			}
			if o := r.Header.Get("Origin"); o != "" && o != s.origin(r) {
				s.refuse(w, r, http.StatusForbidden, "refused: the request comes from another origin ("+o+")")
				return
			}
		}
		if isPublic(r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		if !live {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				s.refuse(w, r, http.StatusUnauthorized, "no session: log in at /login")
				return
			}
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if unsafe {
			token := r.Header.Get("X-CSRF-Token")
			if token == "" {
				token = r.PostFormValue("csrf")
			}
			if token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(si.csrf)) != 1 {
				s.refuse(w, r, http.StatusForbidden, "refused: no valid CSRF token (reload the page and try again)")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// noStoreWriter keeps Cache-Control: no-store on an answer whose handler
// dropped it (http.FileServer does on its errors).
type noStoreWriter struct{ http.ResponseWriter }

func (w noStoreWriter) WriteHeader(code int) {
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w noStoreWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// origin is the request's own origin, as a browser writes it in Origin.
func (s *Server) origin(r *http.Request) string {
	if s.opts.TLS != nil || r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// loopbackHost reports whether a request's Host names the loopback: a
// plain-HTTP console (which checkExposure allows on loopback only) answers
// no other name, so a page whose name an attacker rebinds to 127.0.0.1
// (DNS rebinding) cannot reach it from a browser on the edge's host.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// refuse answers an error: JSON under /api/, text elsewhere.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(edgeapi.Error{Error: msg})
		return
	}
	http.Error(w, msg, code)
}

// errLinkInvalid is what a spent, expired or unknown link answers.
const errLinkInvalid = "This link is not valid: it was used already, it expired (links last 10 minutes), or the edge restarted since. Make a new one with `edge console link`."

// loginData is the login page's.
type loginData struct {
	Error string
	// PasswordOff: no console.password_hash; only links log in.
	PasswordOff bool
}

func (s *Server) authRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := sessionOf(r); ok {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		s.loginPage(w, r, http.StatusOK, "")
	})
	mux.HandleFunc("POST /login", s.login)
	// A link is opened from a terminal or a chat, whose link previews
	// and scanners fetch it too: its GET spends nothing and answers a
	// page whose button POSTs it back (the Origin checks of every POST
	// apply), and only that POST logs in.
	mux.HandleFunc("GET /login/link/{token}", func(w http.ResponseWriter, r *http.Request) {
		if !s.auth.links.valid(r.PathValue("token"), s.opts.Now()) {
			s.loginPage(w, r, http.StatusForbidden, errLinkInvalid)
			return
		}
		s.render(w, r, http.StatusOK, "link", "Log in", r.URL.Path)
	})
	mux.HandleFunc("POST /login/link/{token}", func(w http.ResponseWriter, r *http.Request) {
		if !s.auth.links.use(r.PathValue("token"), s.opts.Now()) {
			s.loginPage(w, r, http.StatusForbidden, errLinkInvalid)
			return
		}
		s.endSession(r)
		s.startSession(w)
		s.log.Info("console: logged in with a one-time link", "source", tunnel.SourceString(sourceOf(r.RemoteAddr)))
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		s.endSession(r)
		s.setSession(w, "", -1)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
}

func (s *Server) endSession(r *http.Request) {
	if si, ok := sessionOf(r); ok {
		s.auth.sessions.end(si.id)
	}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "login", "Log in", loginData{Error: msg, PasswordOff: s.auth.passwordHash() == ""})
}

// login is POST /login.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	a := s.auth
	hash := a.passwordHash()
	if hash == "" {
		s.loginPage(w, r, http.StatusForbidden, "Password login is off: edge.yml has no console.password_hash. Set one with `edge console passwd`, or log in with a link from `edge console link`.")
		return
	}
	src := sourceOf(r.RemoteAddr)
	if wait := a.limit.admit(src, s.opts.Now()); wait > 0 {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		s.logFailure(src, "rate limited")
		s.loginPage(w, r, http.StatusTooManyRequests, fmt.Sprintf("Too many tries from your address: try again in %d seconds.", secs))
		return
	}
	var maxErr *http.MaxBytesError
	if err := r.ParseForm(); errors.As(err, &maxErr) {
		s.loginPage(w, r, http.StatusRequestEntityTooLarge, "The request is too large.")
		return
	}
	pw := r.PostForm.Get("password")
	// Wait for a turn at the hash; a queue longer than hashWait is an
	// attack or an overload, not a login to wait for.
	t := time.NewTimer(hashWait)
	select {
	case a.checks <- struct{}{}:
		t.Stop()
	case <-t.C:
		w.Header().Set("Retry-After", "1")
		s.loginPage(w, r, http.StatusServiceUnavailable, "The console is busy checking other logins: try again in a moment.")
		return
	case <-r.Context().Done():
		t.Stop()
		return
	}
	ok := false
	if pw != "" && len(pw) <= maxPassword {
		ok, _ = verify(hash, []byte(pw)) // checked by newAuthState and SetPasswordHash
	}
	<-a.checks
	if !ok {
		s.logFailure(src, "wrong password")
		s.loginPage(w, r, http.StatusUnauthorized, "Wrong password.")
		return
	}
	a.limit.succeeded(src)
	s.endSession(r)
	s.startSession(w)
	s.log.Info("console: logged in with the password", "source", tunnel.SourceString(src))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logFailure logs a failed login, at most once per failLogEvery with the
// count of those it did not log: a brute force cannot flood the log.
func (s *Server) logFailure(src netip.Addr, why string) {
	a := s.auth
	now := s.opts.Now()
	a.logMu.Lock()
	if !a.loggedAt.IsZero() && now.Sub(a.loggedAt) < failLogEvery {
		a.suppressed++
		a.logMu.Unlock()
		return
	}
	n := a.suppressed
	a.loggedAt, a.suppressed = now, 0
	a.logMu.Unlock()
	s.log.Warn("console: login failed", "source", tunnel.SourceString(src), "why", why, "more_failures_not_logged", n, "next_line_in", failLogEvery)
}
