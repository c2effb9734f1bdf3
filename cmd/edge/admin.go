package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l4proxy/store"
)

// The admin API lives on a unix socket in the data directory (mode 0600 in
// a directory of mode 0700, and only for root and the edge's own uid), so
// the tunnel subcommands act on a running edge: a deleted tunnel's
// connections, and those of a rotated token, drop at once. Without a
// running edge they open the store directly.
//
//	GET    /v1/tunnels              the tunnels and their live connections
//	GET    /v1/status               the edge, its tunnels' connections (with their
//	                                bytes and rate), L3 (edgeStatus)
//	GET    /v1/history              the last 15 minutes of the edge's counters as
//	                                rates, one point per 2 s step (edgeapi.History;
//	                                the series' keys at edgeapi.Series, their
//	                                sources and bounds in history.go);
//	                                ?key=PREFIX (repeatable) only the series
//	                                whose key starts so, ?points=N the last N
//	                                points of each
//	POST   /v1/tunnels/{name}        create; the answer holds the token
//	DELETE /v1/tunnels/{name}        delete; its connections are dropped
//	POST   /v1/tunnels/{name}/rotate a new secret; the answer holds the new
//	                                token, the old one's connections are dropped

// Admin API budgets: a request is small JSON, answered at once; a caller
// that stalls is cut. Variables for the tests.
var (
	adminMaxBody           int64 = 64 << 10
	adminReadHeaderTimeout       = 5 * time.Second
	adminReadTimeout             = 10 * time.Second
	adminWriteTimeout            = 30 * time.Second
	adminIdleTimeout             = 60 * time.Second
)

// serveAdmin serves the admin API on a unix socket at path, created with
// mode 0600 (listenAdmin), for callers of the edge's own uid and root only
// (authorize), until the returned function closes it.
func (a *app) serveAdmin(path string) (func() error, error) {
	ln, err := listenAdmin(path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	srv := &http.Server{
		Handler:           a.authorize(a.adminHandler()),
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    int(adminMaxBody),
		ConnContext:       withPeer,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	go func() { _ = srv.Serve(ln) }()
	return func() error {
		err := srv.Close()
		_ = os.Remove(path)
		return err
	}, nil
}

// adminHandler is the admin API: the tunnel and L3 endpoints, with request
// bodies bounded. serveAdmin puts the caller check in front of it.
func (a *app) adminHandler() http.Handler {
	mux := a.adminMux()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, adminMaxBody)
		mux.ServeHTTP(w, r)
	})
}

func (a *app) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tunnels", func(w http.ResponseWriter, r *http.Request) {
		out, err := a.tunnelInfos()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.status()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST /v1/tunnels/{name}", func(w http.ResponseWriter, r *http.Request) {
		info, status, err := createTunnel(a.cfg, a.store, a.pin, r.PathValue("name"))
		if err != nil {
			writeJSON(w, status, apiError{Error: err.Error()})
			return
		}
		// The store returns once this edge applied the change (onTunnel).
		writeJSON(w, http.StatusCreated, info)
	})
	mux.HandleFunc("DELETE /v1/tunnels/{name}", func(w http.ResponseWriter, r *http.Request) {
		t, err := a.store.DeleteTunnel(r.PathValue("name"))
		if err != nil {
			writeJSON(w, statusOf(err), apiError{Error: err.Error()})
			return
		}
		// The store returns once this edge applied the change: onTunnel
		// dropped the tunnel's connections.
		writeJSON(w, http.StatusOK, infoOf(t))
	})
	mux.HandleFunc("POST /v1/tunnels/{name}/rotate", func(w http.ResponseWriter, r *http.Request) {
		info, _, status, err := rotateTunnel(a.cfg, a.store, a.pin, r.PathValue("name"))
		if err != nil {
			writeJSON(w, status, apiError{Error: err.Error()})
			return
		}
		// onTunnel dropped the old token's connections.
		writeJSON(w, http.StatusOK, info)
	})
	a.serveL3(mux)
	a.serveHistory(mux)
	a.serveConsoleLink(mux)
	return mux
}

// createTunnel records a tunnel and returns it with its token, and the HTTP
// status that fits an error.
func createTunnel(cfg *edgeconfig.Config, st *store.Store, pin [32]byte, name string) (tunnelInfo, int, error) {
	if len(advertised(cfg)) == 0 { // refuse before recording a tunnel nobody can join
		_, err := newToken(cfg, store.Tunnel{}, pin)
		return tunnelInfo{}, http.StatusBadRequest, err
	}
	t, err := st.CreateTunnel(name)
	if err != nil {
		return tunnelInfo{}, statusOf(err), err
	}
	tok, err := newToken(cfg, t, pin)
	if err != nil {
		return tunnelInfo{}, http.StatusInternalServerError, err
	}
	info := infoOf(t)
	info.Token = tok
	return info, http.StatusCreated, nil
}

// rotateTunnel gives a tunnel a new secret and returns it with its new
// token, the tunnel, and the HTTP status that fits an error. The caller
// drops the connections of the old secret.
func rotateTunnel(cfg *edgeconfig.Config, st *store.Store, pin [32]byte, name string) (tunnelInfo, store.Tunnel, int, error) {
	if len(advertised(cfg)) == 0 { // refuse before revoking a token that cannot be replaced
		_, err := newToken(cfg, store.Tunnel{}, pin)
		return tunnelInfo{}, store.Tunnel{}, http.StatusBadRequest, err
	}
	t, err := st.RotateTunnel(name)
	if err != nil {
		return tunnelInfo{}, store.Tunnel{}, statusOf(err), err
	}
	tok, err := newToken(cfg, t, pin)
	if err != nil {
		return tunnelInfo{}, store.Tunnel{}, http.StatusInternalServerError, err
	}
	info := infoOf(t)
	info.Token = tok
	return info, t, http.StatusOK, nil
}

func infoOf(t store.Tunnel) tunnelInfo {
	return tunnelInfo{Name: t.Name, ID: hex.EncodeToString(t.ID[:]), Created: t.Created}
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrExists):
		return http.StatusConflict
	case errors.Is(err, store.ErrInvalidName):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// adminError is an error answer of the admin API: its message (what the
// CLI prints) and its HTTP status, which the console answers with too.
type adminError struct {
	status int
	msg    string
}

func (e *adminError) Error() string { return e.msg }

// HTTPStatus is the admin API's status for the error (400, 404, 409...).
func (e *adminError) HTTPStatus() int { return e.status }

// adminClient talks to a running edge's admin socket.
type adminClient struct {
	http *http.Client
}

// dialAdmin returns a client if an edge answers on the socket, or nil.
func dialAdmin(path string) *adminClient {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil
	}
	c.Close()
	return &adminClient{http: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// do sends a request and decodes the JSON answer into out, or returns the
// API's error message.
func (c *adminClient) do(method, path string, out any) error {
	return c.call(method, path, nil, out)
}
