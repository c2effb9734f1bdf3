package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/cmd/internal/diag"
	"github.com/onramp-net/onramp/l4proxy/store"
)

// writeCert writes a self-signed certificate valid until notAfter.
func writeCert(t *testing.T, path string, notAfter time.Time) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: notAfter.Add(-365 * 24 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDiagCert(t *testing.T) {
	dir := t.TempDir()
	cfg := edgeconfig.Default()
	for _, tc := range []struct {
		name   string
		until  time.Duration
		status diag.Status
		want   string
	}{
		{"fine", 400 * 24 * time.Hour, diag.OK, "(400 days)"},
		{"soon", 10 * 24 * time.Hour, diag.Warn, "pin its key, not its dates"},
		{"expired", -24 * time.Hour, diag.Warn, "expired on"},
	} {
		p := filepath.Join(dir, tc.name+".crt")
		writeCert(t, p, time.Now().Add(tc.until+time.Hour))
		if r := certCheck(p, cfg); r.Status != tc.status || !strings.Contains(r.Detail, tc.want) {
			t.Errorf("%s: %s\nwant %v, %q", tc.name, r.Line(), tc.status, tc.want)
		}
	}
	if r := certCheck(filepath.Join(dir, "none.crt"), cfg); r.Status != diag.OK || !strings.Contains(r.Detail, "makes one at its first start") {
		t.Errorf("no certificate yet: %s", r.Line())
	}
	bad := filepath.Join(dir, "bad.crt")
	_ = os.WriteFile(bad, []byte("not pem"), 0o644)
	if r := certCheck(bad, cfg); r.Status != diag.Fail {
		t.Errorf("garbage: %s", r.Line())
	}
}

func TestDiagStore(t *testing.T) {
	dir := t.TempDir()
	cfg := edgeconfig.Default()
	db := filepath.Join(dir, "edge.db")
	if r := storeChecks(context.Background(), cfg, db, false)[0]; r.Status != diag.Warn || !strings.Contains(r.Detail, "no such file") {
		t.Errorf("no file: %s", r.Line())
	}
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	// Held by a (pretend) edge that does not answer: the lock times out.
	if r := storeChecks(context.Background(), cfg, db, false)[0]; r.Status != diag.Fail || !strings.Contains(r.Detail, "cannot open it") {
		t.Errorf("locked: %s", r.Line())
	}
	if r := storeChecks(context.Background(), cfg, db, true)[0]; r.Status != diag.OK || !strings.Contains(r.Detail, "served by the running edge") {
		t.Errorf("running edge: %s", r.Line())
	}
	st.Close()
	if r := storeChecks(context.Background(), cfg, db, false)[0]; r.Status != diag.OK || !strings.Contains(r.Detail, "readable") {
		t.Errorf("closed: %s", r.Line())
	}
	cfg.Registry.Etcd = &edgeconfig.Etcd{Endpoints: []string{"http://127.0.0.1:1"}}
	if r := storeChecks(context.Background(), cfg, db, false)[0]; r.Status != diag.Fail || !strings.Contains(r.Detail, "0 of 1 endpoints answer") {
		t.Errorf("etcd down: %s", r.Line())
	}
}

func TestDiagListenersOfConfig(t *testing.T) {
	cfg, err := edgeconfig.Parse([]byte(`listen: {tunnels: ":7844", http: ":80", metrics: "127.0.0.1:9100"}
bindings:
  - {listen: "udp://[::]:5353", tunnel: t, service: dns.internal}
l3: {listen: ":51820", endpoint: "edge.example.test:51820"}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range edgeListeners(cfg) {
		got = append(got, l.Name+" "+l.Network+"://"+l.Addr)
	}
	want := "listen.tunnels (QUIC) udp://:7844|listen.tunnels (HTTP/2) tcp://:7844|listen.http tcp://:80|listen.metrics tcp://127.0.0.1:9100|bindings[0] udp://[::]:5353|l3.listen (WireGuard) udp://:51820"
	if strings.Join(got, "|") != want {
		t.Errorf("listeners:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
}
