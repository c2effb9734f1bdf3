// Package edgetest runs an edge [edge.Server] and connectors in process, over
// the real tunnel transports on loopback, for the tests of l4proxy/edge and
// l4proxy/connector. Only tests import it.
package edgetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/connector"
	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// Auth is a mutable [tunnel.Authenticator] that can mark tunnels deleted
// and rotate their secrets. Its Admit is the matching [edge.Options.Admit].
type Auth struct {
	mu      sync.Mutex
	secrets map[[16]byte][]byte
	gens    map[[16]byte]uint64
	deleted map[[16]byte]bool
}

// Add allows the tunnel of tok, at generation 1.
func (a *Auth) Add(tok tunnel.Token) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.secrets == nil {
		a.secrets = make(map[[16]byte][]byte)
		a.gens = make(map[[16]byte]uint64)
		a.deleted = make(map[[16]byte]bool)
	}
	a.secrets[tok.TunnelID] = tok.Secret[:]
	a.gens[tok.TunnelID] = 1
	delete(a.deleted, tok.TunnelID)
}

// Delete refuses the tunnel from now on (reason [tunnel.AuthTunnelDeleted]).
func (a *Auth) Delete(id [16]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.secrets, id)
	a.deleted[id] = true
}

// Rotate gives the tunnel of tok a new secret and the next generation, and
// returns tok with the new secret.
func (a *Auth) Rotate(tok tunnel.Token) tunnel.Token {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := rand.Read(tok.Secret[:]); err != nil {
		panic(err)
	}
	a.secrets[tok.TunnelID] = tok.Secret[:]
	a.gens[tok.TunnelID]++
	return tok
}

// Secret implements [tunnel.Authenticator].
func (a *Auth) Secret(id [16]byte) ([]byte, bool) {
	s, _, r := a.LookupTunnel(id)
	return s, r == tunnel.AuthOK
}

// LookupTunnel implements [tunnel.TunnelLookup].
func (a *Auth) LookupTunnel(id [16]byte) ([]byte, uint64, tunnel.AuthReason) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.deleted[id] {
		return nil, 0, tunnel.AuthTunnelDeleted
	}
	s, ok := a.secrets[id]
	if !ok {
		return nil, 0, tunnel.AuthUnknownTunnel
	}
	return s, a.gens[id], tunnel.AuthOK
}

// Admit is the [edge.Options.Admit] that matches a: a deleted or unknown
// tunnel is refused with [tunnel.AuthTunnelDeleted], a generation other than
// the current one with [tunnel.AuthRotated].
func (a *Auth) Admit(id [16]byte, generation uint64) tunnel.AuthReason {
	_, gen, r := a.LookupTunnel(id)
	switch {
	case r != tunnel.AuthOK:
		return tunnel.AuthTunnelDeleted
	case gen != generation:
		return tunnel.AuthRotated
	}
	return tunnel.AuthOK
}

// TunnelName is the name of the Env's tunnel in routes and bindings.
const TunnelName = "test"

// Env is one edge with one tunnel listener, and the connectors started on it.
type Env struct {
	T        testing.TB
	Proto    string // "quic" or "http2"
	Host     string // loopback address: "127.0.0.1" or "::1"
	Server   *edge.Server
	Registry *prometheus.Registry
	Auth     *Auth
	Token    tunnel.Token    // the tunnel every connector joins by default
	Cert     tls.Certificate // the edge certificate pinned in Token
	Listener tunnel.Listener
	Ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Logger returns a logger writing to stderr at the level of
// ONRAMP_TEST_LOG ("debug", "info"; default: warnings and errors).
func Logger() *slog.Logger {
	level := slog.LevelWarn
	switch strings.ToLower(os.Getenv("ONRAMP_TEST_LOG")) {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Start starts an edge server with a tunnel listener of proto on host and
// one tunnel, named TunnelName. opts.Registerer, opts.Logger and opts.Admit
// (e.Auth.Admit) are filled in if nil.
func Start(t testing.TB, proto, host string, opts edge.Options) *Env {
	t.Helper()
	cert, _, _, err := tunnel.GenerateEdgeCertificate(host)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := tunnel.CertificatePin(&cert)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{T: t, Proto: proto, Host: host, Auth: &Auth{}, Registry: prometheus.NewRegistry(), Cert: cert}
	if opts.Registerer == nil {
		opts.Registerer = e.Registry
	}
	if opts.Logger == nil {
		opts.Logger = Logger().With("side", "edge")
	}
	if opts.Admit == nil {
		opts.Admit = e.Auth.Admit
	}
	e.Server = edge.NewServer(opts)
	// The server counts the listener's failed authentications and refusals.
	cfg := e.Server.TunnelConfig(TunnelConfig())
	addr := net.JoinHostPort(host, "0")
	switch proto {
	case tunnel.ProtoQUIC:
		e.Listener, err = tunnel.ListenQUIC(addr, cert, e.Auth, cfg)
	case tunnel.ProtoHTTP2:
		e.Listener, err = tunnel.ListenHTTP2(addr, cert, e.Auth, cfg)
	default:
		t.Fatalf("edgetest: protocol %q", proto)
	}
	if err != nil {
		t.Fatal(err)
	}
	e.Token, err = tunnel.NewToken([]string{e.Listener.Addr().String()}, pin)
	if err != nil {
		t.Fatal(err)
	}
	e.Auth.Add(e.Token)
	e.Server.SetTunnels(map[string][16]byte{TunnelName: e.Token.TunnelID})
	e.Ctx, e.cancel = context.WithCancel(context.Background())
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.Server.ServeConnectors(e.Ctx, e.Listener); err != nil {
			t.Errorf("ServeConnectors: %v", err)
		}
	}()
	t.Cleanup(e.Close)
	return e
}

// TunnelConfig is the transport configuration of the tests.
func TunnelConfig() *tunnel.Config {
	return &tunnel.Config{}
}

// Close stops everything the Env started.
func (e *Env) Close() {
	e.cancel()
	e.Listener.Close()
	e.wg.Wait()
}

// Go runs f in a goroutine that Close waits for.
func (e *Env) Go(f func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

// Running is a connector started by [Env.StartConnector].
type Running struct {
	*connector.Connector
	// Done is closed when Run returned; Err then returns its result.
	Done chan struct{}
	err  error
	// Registry holds the connector's metrics (nil if mod set a Registerer
	// that is not a *prometheus.Registry).
	Registry *prometheus.Registry
	stop     context.CancelFunc
}

// Stop cancels Run's context and waits for it to return.
func (r *Running) Stop() error {
	r.stop()
	<-r.Done
	return r.err
}

// Err returns Run's result once Done is closed.
func (r *Running) Err() error {
	<-r.Done
	return r.err
}

// Ingress parses an ingress configuration or fails the test.
func Ingress(t testing.TB, yaml string) *ingress.Config {
	t.Helper()
	cfg, err := ingress.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("ingress: %v\n%s", err, yaml)
	}
	return cfg
}

// StartConnector starts a connector on e's tunnel with rules (YAML) and
// waits until all its connections are registered at the edge. mod, if not
// nil, edits the options first (default: e.Proto, 2 connections).
func (e *Env) StartConnector(rules string, mod func(*connector.Options)) *Running {
	t := e.T
	t.Helper()
	opts := connector.Options{
		Token:       e.Token,
		Protocol:    e.Proto,
		Connections: 2,
		Ingress:     Ingress(t, rules),
		Logger:      Logger().With("side", "connector"),
		Registerer:  prometheus.NewRegistry(),
		Tunnel:      TunnelConfig(),
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := connector.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Connector: c, Done: make(chan struct{}), stop: cancel}
	r.Registry, _ = opts.Registerer.(*prometheus.Registry)
	before := len(e.Server.Connections())
	go func() {
		r.err = c.Run(ctx)
		close(r.Done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.Done:
		case <-time.After(20 * time.Second):
			t.Errorf("connector Run did not return")
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for len(c.Connections()) < opts.Connections || len(e.Server.Connections()) < before+opts.Connections {
		if time.Now().After(deadline) {
			t.Fatalf("connector: %d of %d connections up after 15s (edge sees %d)", len(c.Connections()), opts.Connections, len(e.Server.Connections()))
		}
		select {
		case <-r.Done:
			t.Fatalf("connector Run returned early: %v", r.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return r
}

// Listen returns a TCP listener on e.Host, closed at the end of the test.
func (e *Env) Listen() net.Listener {
	ln, err := net.Listen("tcp", net.JoinHostPort(e.Host, "0"))
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { ln.Close() })
	return ln
}

// ServeTCP starts a TCP port binding of the tunnel for service and returns its address.
func (e *Env) ServeTCP(service string) string {
	ln := e.Listen()
	b := edge.Binding{Tunnel: TunnelName, Service: service}
	e.Go(func() { e.check("ServeTCP", e.Server.ServeTCP(e.Ctx, ln, b)) })
	return ln.Addr().String()
}

// ServeHTTP starts the HTTP listener and returns its address.
func (e *Env) ServeHTTP() string {
	ln := e.Listen()
	e.Go(func() { e.check("ServeHTTP", e.Server.ServeHTTP(e.Ctx, ln)) })
	return ln.Addr().String()
}

// ServeTLS starts the TLS listener and returns its address.
func (e *Env) ServeTLS() string {
	ln := e.Listen()
	e.Go(func() { e.check("ServeTLS", e.Server.ServeTLS(e.Ctx, ln)) })
	return ln.Addr().String()
}

// ServeUDP starts a UDP port binding of the tunnel for service and returns its address.
func (e *Env) ServeUDP(service string) string {
	pc, err := net.ListenPacket("udp", net.JoinHostPort(e.Host, "0"))
	if err != nil {
		e.T.Fatal(err)
	}
	b := edge.Binding{Tunnel: TunnelName, Service: service}
	e.Go(func() { e.check("ServeUDP", e.Server.ServeUDP(e.Ctx, pc, b)) })
	return pc.LocalAddr().String()
}

func (e *Env) check(what string, err error) {
	if err != nil && !errors.Is(err, net.ErrClosed) {
		e.T.Errorf("%s: %v", what, err)
	}
}

// Route routes hostnames (exact or "*.") to e's tunnel.
func (e *Env) Route(hostnames ...string) {
	routes := make([]edge.Route, len(hostnames))
	for i, h := range hostnames {
		routes[i] = edge.Route{Hostname: h, Tunnel: TunnelName}
	}
	if err := e.Server.SetRoutes(routes); err != nil {
		e.T.Fatal(err)
	}
}

// Metric returns the value of the counter or gauge name with the given
// label value (any label name) in g, or 0.
func Metric(t testing.TB, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					match = true
				}
			}
			if !match {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
		}
	}
	return 0
}
