package main

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// consoleBackend runs the admin API's handlers in process: the console's
// actions do what the CLI does, and their errors keep the API's status,
// which the console answers with (a name taken is 409, a bad name 400, a
// missing one 404).
func TestConsoleBackend(t *testing.T) {
	a := newTestApp(t, slog.New(slog.DiscardHandler))
	b := consoleBackend{c: inProcessAdmin(a.adminHandler())}
	status := func(err error) int {
		var se interface{ HTTPStatus() int }
		if !errors.As(err, &se) {
			return 0
		}
		return se.HTTPStatus()
	}

	tun, err := b.CreateTunnel("web")
	if err != nil || tun.Name != "web" || tun.Token == "" {
		t.Fatalf("create: %+v, %v", tun, err)
	}
	if _, err := b.CreateTunnel("web"); status(err) != http.StatusConflict {
		t.Errorf("create again: %v (status %d), want 409", err, status(err))
	}
	for _, bad := range []string{"Web", "a/b", "a b"} {
		if _, err := b.CreateTunnel(bad); status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "invalid tunnel name") {
			t.Errorf("create %q: %v (status %d), want 400 invalid tunnel name", bad, err, status(err))
		}
	}
	rot, err := b.RotateTunnel("web")
	if err != nil || rot.Token == "" || rot.Token == tun.Token {
		t.Errorf("rotate: %+v, %v", rot, err)
	}
	if _, err := b.DeleteTunnel("nope"); status(err) != http.StatusNotFound {
		t.Errorf("delete missing: %v (status %d), want 404", err, status(err))
	}
	if _, err := b.DeleteTunnel("web"); err != nil {
		t.Errorf("delete: %v", err)
	}

	conf, err := b.AddClient("phone", []string{"dev"})
	if err != nil {
		t.Fatalf("add client: %v", err)
	}
	cc, err := l3config.ParseClient(conf)
	if err != nil || cc.PrivateKey.IsZero() {
		t.Fatalf("client config: %+v, %v\n%s", cc, err, conf)
	}
	if _, err := b.AddClient("phone", nil); status(err) != http.StatusConflict {
		t.Errorf("add client again: %v (status %d), want 409", err, status(err))
	}
	peers, err := b.L3Peers("client")
	if err != nil || len(peers) != 1 || peers[0].Name != "phone" {
		t.Errorf("clients: %+v, %v", peers, err)
	}
	if _, err := b.L3Config("client", "phone"); err != nil {
		t.Errorf("client config: %v", err)
	}
	if err := b.RemoveL3("client", "gone"); status(err) != http.StatusNotFound {
		t.Errorf("remove missing: %v (status %d), want 404", err, status(err))
	}
	if err := b.RemoveL3("client", "phone"); err != nil {
		t.Errorf("remove: %v", err)
	}
}
