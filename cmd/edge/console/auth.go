package console

// A stand-in until the login, sessions and CSRF land: it refuses every
// page but the login.

import (
	"errors"
	"net/http"
)

type authState struct{}

func newAuthState(Options) (*authState, error) { return &authState{}, nil }

// checkExposure refuses a console on a non-loopback address without TLS
// and a password.
func checkExposure(o Options) error {
	if !isLoopback(o.Addr) && (o.TLS == nil || o.PasswordHash == "") {
		return errors.New("console: listen.console " + o.Addr + " is not a loopback address: it needs console.tls_cert, console.tls_key and console.password_hash")
	}
	return nil
}

func (s *Server) authRoutes(mux *http.ServeMux) {}

func (s *Server) secure(h http.Handler) http.Handler { return h }

func (s *Server) csrfToken(r *http.Request) string { return "" }

// NewLink returns a one-time login link's path (/login/link/TOKEN).
func (s *Server) NewLink() (string, error) { return "", errors.New("console: links are not built yet") }
