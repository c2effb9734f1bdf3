package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/onramp-net/onramp/cmd/edge/console"
	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/prometheus/client_golang/prometheus"
)

// startConsole serves the web console on listen.console, if set, until
// ctx ends. Its actions run through the admin API's handlers in process
// (consoleBackend): the code the CLI runs against a live edge.
func (a *app) startConsole(ctx context.Context, reg prometheus.Registerer) error {
	addr := a.cfg.Listen.Console
	if addr == "" {
		return nil
	}
	opts := console.Options{
		Addr: addr, PasswordHash: a.cfg.Console.PasswordHash, Logger: a.log,
		Backend:    consoleBackend{c: inProcessAdmin(a.adminHandler())},
		Registerer: reg,
	}
	if a.cfg.Console.TLSCert != "" {
		cert, err := loadConsoleCert(&a.cfg.Console)
		if err != nil {
			return err
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	srv, err := console.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen.console %s: %w", addr, err)
	}
	a.console = srv
	go func() {
		if err := srv.Serve(ctx, ln); err != nil {
			a.log.Error("console stopped", "addr", addr, "err", err)
		}
	}()
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	a.log.Info("console", "url", scheme+"://"+ln.Addr().String()+"/")
	return nil
}

// loadConsoleCert reads console.tls_cert and tls_key: at start, and at
// each reload, which serves renewed files without a restart.
func loadConsoleCert(c *edgeconfig.Console) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("console TLS (console.tls_cert %s, tls_key %s): %w", c.TLSCert, c.TLSKey, err)
	}
	return cert, nil
}

// inProcessAdmin is an admin API client whose requests h serves in
// process, with no socket.
func inProcessAdmin(h http.Handler) *adminClient {
	return &adminClient{http: &http.Client{Transport: handlerTransport{h}}}
}

// handlerTransport is an http.RoundTripper that answers with a handler.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	t.h.ServeHTTP(rec, req)
	return &http.Response{
		Status: fmt.Sprintf("%d %s", rec.status, http.StatusText(rec.status)), StatusCode: rec.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

// recorder is the http.ResponseWriter of handlerTransport.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.body.Write(p)
}

// consoleBackend is console.Backend over the admin API. Names go into the
// paths escaped: a name the store refuses is its 400, not a missing route.
// Errors keep the API's status (adminError), which the console answers.
type consoleBackend struct{ c *adminClient }

func (b consoleBackend) Status() (*edgeapi.Status, error) {
	var st edgeapi.Status
	return &st, b.c.call(http.MethodGet, "/v1/status", nil, &st)
}

func (b consoleBackend) History(prefixes ...string) (*edgeapi.History, error) {
	var h edgeapi.History
	path := "/v1/history"
	if len(prefixes) > 0 {
		path += "?" + url.Values{"key": prefixes}.Encode()
	}
	return &h, b.c.call(http.MethodGet, path, nil, &h)
}

func (b consoleBackend) L3Peers(kind string) ([]edgeapi.L3Peer, error) {
	var out []edgeapi.L3Peer
	return out, b.c.call(http.MethodGet, "/v1/l3/"+kind+"s", nil, &out)
}

func (b consoleBackend) CreateTunnel(name string) (edgeapi.Tunnel, error) {
	var t edgeapi.Tunnel
	return t, b.c.call(http.MethodPost, "/v1/tunnels/"+url.PathEscape(name), nil, &t)
}

func (b consoleBackend) RotateTunnel(name string) (edgeapi.Tunnel, error) {
	var t edgeapi.Tunnel
	return t, b.c.call(http.MethodPost, "/v1/tunnels/"+url.PathEscape(name)+"/rotate", nil, &t)
}

func (b consoleBackend) DeleteTunnel(name string) (edgeapi.Tunnel, error) {
	var t edgeapi.Tunnel
	return t, b.c.call(http.MethodDelete, "/v1/tunnels/"+url.PathEscape(name), nil, &t)
}

func (b consoleBackend) AddClient(name string, groups []string) ([]byte, error) {
	data, _, err := addL3Client(postClient(b.c), name, groups, "")
	return data, err
}

func (b consoleBackend) RemoveL3(kind, name string) error {
	var p edgeapi.L3Peer
	return b.c.call(http.MethodDelete, "/v1/l3/"+kind+"s/"+url.PathEscape(name), nil, &p)
}

func (b consoleBackend) L3Config(kind, name string) ([]byte, error) {
	path := "/v1/l3/" + kind + "s/" + url.PathEscape(name) + "/config"
	if kind == "client" {
		var cc l3config.Client
		if err := b.c.call(http.MethodGet, path, nil, &cc); err != nil {
			return nil, err
		}
		return cc.Marshal()
	}
	var cc l3config.Connector
	if err := b.c.call(http.MethodGet, path, nil, &cc); err != nil {
		return nil, err
	}
	return cc.Marshal()
}

func (b consoleBackend) ConnectorConfig(tunnel, token string) (string, error) {
	var s strings.Builder
	fmt.Fprintf(&s, "# On the connector's host: the token in a file only its user reads\n")
	fmt.Fprintf(&s, "umask 077; printf '%%s\\n' '%s' > %s.token\n\n", token, tunnel)
	fmt.Fprintf(&s, "# Run it (ingress.yml maps hostnames to private services):\n")
	fmt.Fprintf(&s, "connector tunnel run --token-file %s.token --config ingress.yml\n\n", tunnel)
	fmt.Fprintf(&s, "# Or as a systemd service:\n")
	fmt.Fprintf(&s, "connector service install --name %s --token-file %s.token --ingress ingress.yml\n", tunnel, tunnel)
	return s.String(), nil
}
