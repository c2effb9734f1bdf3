package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
)

// What the edge keeps secret on disk, and who may use its admin socket.
//
// The data directory holds the tunnel store (tunnel secrets, the edge's
// WireGuard key), the edge's TLS key and the admin socket: it is 0700 and
// the files in it 0600, whatever the umask; a wider mode found at start
// (an old install, a restored backup, a hand-made directory) is narrowed
// and logged. The admin socket answers root and the edge's own uid only,
// checked on each connection with SO_PEERCRED, so a socket reachable by
// mistake (a bind mount, a chmod) still refuses other users.

// secretFiles are the files of the data directory that hold secrets.
var secretFiles = []string{"edge.db", "edge.key"}

// secureData creates the data directory with mode 0700 if needed, and
// narrows the modes of the directory (to 0700) and of the files holding
// secrets (to 0600) where group or others have any access, logging each.
func secureData(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := narrow(dir, 0o700, log); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	for _, name := range secretFiles {
		if err := narrow(filepath.Join(dir, name), 0o600, log); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	return nil
}

// narrow sets path's mode to perm if group or others have any access.
func narrow(path string, perm fs.FileMode, log *slog.Logger) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		// Follow a link (a data directory moved elsewhere) and narrow
		// its target.
		if fi, err = os.Stat(path); err != nil {
			return err
		}
	}
	was := fi.Mode().Perm()
	if was&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, perm); err != nil {
		return err
	}
	log.Warn(fmt.Sprintf("%s was mode %#o, open to other users; set to %#o", path, was, perm),
		"path", path, "was", fmt.Sprintf("%#o", was), "now", fmt.Sprintf("%#o", perm))
	return nil
}

// listenAdmin listens on a unix socket at path with mode 0600 and no moment
// of a wider one: it binds in a new private directory (mode 0700) in
// path's directory, sets the socket's mode there, and renames it into
// place, replacing a stale socket of a crashed edge (the store's lock
// guards against a live one). The process umask, which other goroutines
// share, is not touched.
func listenAdmin(path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".a")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // it is renamed; serveAdmin removes path
	if err := os.Chmod(tmp, 0o600); err != nil {
		ul.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ul.Close()
		return nil, err
	}
	return ul, nil
}

// peer is the process at the other end of an admin connection, as the
// kernel reports it (SO_PEERCRED).
type peer struct {
	uid, gid uint32
	pid      int32
	err      error // why the credentials are unknown
}

type peerKey struct{}

// withPeer is the admin server's ConnContext: it records the caller's
// credentials for authorize.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, peerOf(c))
}

// allowed reports whether uid may use the admin API: root, and the uid the
// edge runs as.
func allowed(uid uint32) bool {
	return uid == 0 || int64(uid) == int64(os.Geteuid())
}

// authorize refuses callers other than root and the edge's own uid with
// 403 and a log line naming them.
func (a *app) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(peerKey{}).(peer)
		switch {
		case !ok || p.err != nil && p.err != errNoPeerCred:
			err := p.err
			if !ok {
				err = errors.New("no credentials")
			}
			a.log.Warn("admin socket: caller refused: its credentials are unknown", "err", err, "method", r.Method, "path", r.URL.Path)
			writeJSON(w, http.StatusForbidden, apiError{Error: "admin socket: refused: the edge could not check who is calling"})
			return
		case p.err == nil && !allowed(p.uid):
			a.log.Warn("admin socket: caller refused: only root and the edge's own uid may use it",
				"uid", p.uid, "gid", p.gid, "pid", p.pid, "edge_uid", os.Geteuid(), "method", r.Method, "path", r.URL.Path)
			writeJSON(w, http.StatusForbidden, apiError{Error: fmt.Sprintf(
				"admin socket: uid %d may not use the edge's admin API: only root and the edge's own uid (%d) may", p.uid, os.Geteuid())})
			return
		}
		next.ServeHTTP(w, r)
	})
}
