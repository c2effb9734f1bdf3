// Package console is the edge's web console: pages to watch both on-ramps
// (tunnels and their connections, L3 clients and connectors, limits hit and
// drops, a live chart of the last 15 minutes) and to run them (create,
// rotate and delete tunnels; add and remove L3 clients, with their config as
// text and as a QR code). It is served on its own listener
// (listen.console), off by default.
//
// Every action goes through Backend, which the edge implements with its
// admin API's handlers: the console runs the same code as the CLI, not a
// second implementation.
//
// Security (auth.go): a login with the password whose hash is in edge.yml
// or a one-time link (NewLink, printed by `edge console link`); a session
// cookie (Secure over TLS, HttpOnly, SameSite=Strict); every POST carries
// the session's CSRF token and, when the browser sends one, a same-origin
// Origin; logins are rate-limited per source; every answer carries a strict
// Content-Security-Policy. Every asset is embedded: the console works
// offline and loads nothing from another origin.
package console

import (
	"bytes"
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
	"github.com/onramp-net/onramp/internal/connlimit"
	"github.com/prometheus/client_golang/prometheus"
)

// Backend is what the console shows and does. The edge implements it with
// the admin API (in process): each method is the call the CLI makes.
type Backend interface {
	Status() (*edgeapi.Status, error)
	// History is the edge's history, only the series whose keys start
	// with one of prefixes (all without).
	History(prefixes ...string) (*edgeapi.History, error)
	// L3Peers lists the clients (kind "client") or connectors ("connector").
	L3Peers(kind string) ([]edgeapi.L3Peer, error)
	// CreateTunnel and RotateTunnel answer the tunnel with its token.
	CreateTunnel(name string) (edgeapi.Tunnel, error)
	RotateTunnel(name string) (edgeapi.Tunnel, error)
	DeleteTunnel(name string) (edgeapi.Tunnel, error)
	// AddClient adds an L3 client with a key pair made for it and
	// returns its wg-quick config, private key included: as `edge l3
	// client add` prints it. The edge keeps no private key.
	AddClient(name string, groups []string) ([]byte, error)
	// RemoveL3 removes a client or connector (kind as in L3Peers).
	RemoveL3(kind, name string) error
	// L3Config is a peer's file as `edge l3 client|connector config
	// NAME` prints it (the client's without its private key).
	L3Config(kind, name string) ([]byte, error)
	// ConnectorConfig is how to run a connector of the tunnel with the
	// token: the command line and a starting ingress file, as text.
	ConnectorConfig(tunnel, token string) (string, error)
}

// Defaults of Options.MaxConns and MaxConnsPerSource. A console is for a
// few operators: a browser opens at most 6 connections to a host (1 over
// HTTP/2), so 32 per source lets an office behind one NAT in, and 256 in
// all bounds what idle sockets can hold (a goroutine, a 4 KiB read buffer
// and TLS state each: some 10 MiB together).
const (
	DefaultMaxConns          = 256
	DefaultMaxConnsPerSource = 32
)

// Options configure a console.
type Options struct {
	// Addr is listen.console (host:port).
	Addr string
	// TLS, if set, serves HTTPS; without it the console answers plain
	// HTTP, which New allows on a loopback address only.
	TLS *tls.Config
	// PasswordHash is console.password_hash from edge.yml ("": password
	// login off; one-time links still work).
	PasswordHash string
	Backend      Backend
	Logger       *slog.Logger
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
	// MaxConns and MaxConnsPerSource bound the open connections, in all
	// and per source (an IPv4 address or an IPv6 /64); 0: the defaults.
	// One over is closed at accept (package connlimit).
	MaxConns, MaxConnsPerSource int
	// Registerer, if set, gets the console's metrics.
	Registerer prometheus.Registerer
}

//go:embed templates static
var assets embed.FS

// Server is a console. Its methods are safe for concurrent use.
type Server struct {
	opts  Options
	log   *slog.Logger
	pages map[string]*template.Template // by page name: the layout and the page
	auth  *authState
	mux   *http.ServeMux
	// refused counts the connections closed at accept, by limit.
	refused *prometheus.CounterVec
	// conns is Serve's listener, for the tests.
	conns atomic.Pointer[connlimit.Listener]
	// cert is the TLS certificate served (SetCertificate), when
	// Options.TLS came with one.
	cert atomic.Pointer[tls.Certificate]
}

// New checks the options and makes a console; Serve serves it.
func New(o Options) (*Server, error) {
	if o.Backend == nil {
		return nil, errors.New("console: no backend")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxConnsPerSource <= 0 {
		o.MaxConnsPerSource = DefaultMaxConnsPerSource
	}
	if err := checkExposure(o); err != nil {
		return nil, err
	}
	s := &Server{opts: o, log: o.Logger, mux: http.NewServeMux()}
	if o.TLS != nil && len(o.TLS.Certificates) > 0 {
		// Serve the certificate SetCertificate last gave: a renewed one
		// takes over at a reload, on the same listener.
		s.cert.Store(&o.TLS.Certificates[0])
		s.opts.TLS = o.TLS.Clone()
		s.opts.TLS.Certificates = nil
		s.opts.TLS.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil }
	}
	s.refused = connlimit.NewRefused("onramp_edge_console_connections_refused_total",
		"Connections to the web console closed at accept, by the limit that refused them (maxConns, maxConnsPerSource).")
	if o.Registerer != nil {
		if err := o.Registerer.Register(s.refused); err != nil {
			return nil, fmt.Errorf("console metrics: %w", err)
		}
	}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if s.auth, err = newAuthState(o); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(assets, "static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.authRoutes(s.mux)
	s.routes(s.mux)
	return s, nil
}

// SetCertificate serves c from the next TLS handshake on (a reload of
// edge.yml that found renewed certificate files); connections already up
// keep theirs. It reports whether c differs from the one served; it does
// nothing for a console without TLS.
func (s *Server) SetCertificate(c tls.Certificate) (changed bool) {
	old := s.cert.Load()
	if old == nil {
		return false
	}
	s.cert.Store(&c)
	return !slices.EqualFunc(old.Certificate, c.Certificate, bytes.Equal)
}

// Handler is the console with its security in front (auth.go).
func (s *Server) Handler() http.Handler { return s.secure(s.mux) }

// Serve serves the console on ln until ctx ends. A connection over
// MaxConns or MaxConnsPerSource is closed at accept; each one that is
// served has 5 s to send its request head (TLS handshake included) and is
// closed after 2 minutes idle.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	lim := connlimit.New(ln, connlimit.Config{Max: s.opts.MaxConns, PerSource: s.opts.MaxConnsPerSource,
		Refused: s.refused, Log: s.log, Name: "console", Now: s.opts.Now})
	s.conns.Store(lim)
	ln = lim // before TLS: a refused connection costs no handshake
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	err := srv.Serve(ln)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// page is what every page's template gets.
type page struct {
	Title string
	// CSRF is the session's token: every form carries it as the field
	// "csrf", every script's POST as the header X-CSRF-Token.
	CSRF string
	// Nav is the page's name, for the menu.
	Nav  string
	Data any
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := n[len("templates/") : len(n)-len(".html")]
		if base == "layout" {
			continue
		}
		t, err := template.New("").Funcs(funcs).ParseFS(assets, "templates/layout.html", n)
		if err != nil {
			return nil, err
		}
		out[base] = t
	}
	return out, nil
}

// render writes the page name with data, the layout around it.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	t := s.pages[name]
	if t == nil {
		http.Error(w, "no page "+name, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	p := page{Title: title, CSRF: s.csrfToken(r), Nav: name, Data: data}
	if err := t.ExecuteTemplate(w, "layout", p); err != nil {
		s.log.Warn("console: page", "page", name, "err", err)
	}
}
