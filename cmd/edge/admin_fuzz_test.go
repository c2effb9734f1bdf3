package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/onramp-net/onramp/dataplane/registry"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/hub"
	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/store"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// newTestApp is an edge without listeners over a store in a new data
// directory, with the L3 on-ramp configured (no hub: what the admin API
// does on the store is what is tested).
func newTestApp(t testing.TB, log *slog.Logger) *app {
	t.Helper()
	a, err := openTestApp(t.TempDir(), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.store.Close() })
	return a
}

// openTestApp opens the app over data; before the L3 store is opened,
// prepare (if not nil) may write into the database.
func openTestApp(data string, log *slog.Logger, prepare func(registry.Store) error) (*app, error) {
	cfg, err := edgeconfig.Parse(fmt.Appendf(nil, `data: %s
listen: {tunnels: "127.0.0.1:0"}
advertise: ["198.18.0.1:7844"]
l3:
  listen: "[::]:51820"
  endpoint: "198.18.0.1:51820"
  pools: {ipv4: 198.18.96.0/20, ipv6: "fd00:96::/48"}
`, data))
	if err != nil {
		return nil, err
	}
	if err := secureData(data, log); err != nil {
		return nil, err
	}
	dbPath, certPath, keyPath, _ := (&globals{}).paths(cfg)
	_, pin, err := loadOrCreateCert(cfg, certPath, keyPath)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(dbPath)
	if err != nil {
		return nil, err
	}
	if prepare != nil {
		if err := prepare(st.Registry()); err != nil {
			st.Close()
			return nil, err
		}
	}
	a := &app{
		cfg: cfg, log: log, store: st, pin: pin, ctx: context.Background(),
		srv: edge.NewServer(edge.Options{Logger: log}),
	}
	tunnels, err := st.Mirror(context.Background(), a.onTunnel)
	if err != nil {
		st.Close()
		return nil, err
	}
	a.tunnels.Store(tunnels)
	if a.l3, err = newL3ctl(cfg, st, log); err != nil {
		st.Close()
		return nil, err
	}
	return a, nil
}

// adminFuzz is the state of FuzzAdminAPI: one edge whose store the
// requests change, and the secrets it must never answer with.
type adminFuzz struct {
	a       *app
	handler http.Handler
	// legacy is the private key an earlier edge kept for connector
	// "old-site", dropped at open.
	legacy l3config.Key
}

func newAdminFuzz(t testing.TB) *adminFuzz {
	f := &adminFuzz{}
	var err error
	if f.legacy, err = l3config.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	f.a, err = openTestApp(t.TempDir(), log, func(db registry.Store) error {
		// A store of an earlier edge: a connector whose private key it
		// made and kept.
		s, err := hub.OpenStore(db, hub.Pools{IPv4: netip.MustParsePrefix("198.18.96.0/20"), IPv6: netip.MustParsePrefix("fd00:96::/48")}, 0)
		if err != nil {
			return err
		}
		if _, err := s.Add(hub.Peer{Name: "old-site", Kind: l3router.KindConnector, PublicKey: f.legacy.PublicKey(),
			KeyFile: "x", Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.50.0/24")}}); err != nil {
			return err
		}
		_, err = db.Update(context.Background(), func(tx registry.Txn) error {
			v, err := tx.Get("l3_peers/old-site")
			if err != nil {
				return err
			}
			var rec map[string]any
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			delete(rec, "key_file")
			rec["private_key"] = f.legacy.String()
			v, _ = json.Marshal(rec)
			return tx.Put("l3_peers/old-site", v)
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.a.store.Close() })
	f.handler = f.a.adminHandler()
	// Something of each kind to list and print.
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/tunnels/office", ""},
		{"POST", "/v1/l3/clients", `{"name":"alice","groups":["eng"],"public_key":"` + mustKey(t).PublicKey().String() + `"}`},
		{"POST", "/v1/l3/connectors", `{"name":"site-a","subnets":["198.18.30.0/24"],"public_key":"` + mustKey(t).PublicKey().String() + `"}`},
	} {
		if code, body := f.serve(t, r.method, r.path, []byte(r.body)); code >= 300 {
			t.Fatalf("%s %s: %d %s", r.method, r.path, code, body)
		}
	}
	return f
}

func mustKey(t testing.TB) l3config.Key {
	k, err := l3config.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// serve sends one request as the admin socket's server would parse it
// from the wire and checks the answer; a request the server would not
// parse is skipped (code 0).
func (f *adminFuzz) serve(t testing.TB, method, path string, body []byte) (int, string) {
	raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, path, len(body))
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + string(body))))
	if err != nil {
		return 0, ""
	}
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	f.check(t, req, rec.Code, rec.Body.String())
	return rec.Code, rec.Body.String()
}

// keyText finds the base64 WireGuard keys in an answer.
var keyText = regexp.MustCompile(`[A-Za-z0-9+/]{43}=`)

// check asserts the invariants of one answer: no 5xx (the store is
// healthy), and no secret: no tunnel secret in any encoding, no token but
// the one a create call returns, no private key of the edge (WireGuard or
// TLS) or of any peer it knows the public key of (the connector key an
// earlier edge kept included).
func (f *adminFuzz) check(t testing.TB, req *http.Request, code int, body string) {
	t.Helper()
	what := fmt.Sprintf("%s %q -> %d", req.Method, req.URL.RequestURI(), code)
	if code >= 500 {
		t.Fatalf("%s: server error: %s", what, body)
	}
	create := code == http.StatusCreated && req.Method == http.MethodPost && strings.HasPrefix(req.URL.Path, "/v1/tunnels/")
	rotate := code == http.StatusOK && req.Method == http.MethodPost && strings.HasPrefix(req.URL.Path, "/v1/tunnels/") &&
		strings.HasSuffix(req.URL.Path, "/rotate")
	if create || rotate {
		// A create or rotate call answers with the tunnel's new token, once.
		var info tunnelInfo
		if err := json.Unmarshal([]byte(body), &info); err != nil || info.Token == "" {
			t.Fatalf("%s: create or rotate answered without a token: %s", what, body)
		}
		tok, err := tunnel.ParseToken(info.Token)
		if err != nil || hex.EncodeToString(tok.TunnelID[:]) != info.ID {
			t.Fatalf("%s: token of another tunnel (%v): %s", what, err, body)
		}
		body = strings.ReplaceAll(body, info.Token, "")
	}
	if strings.Contains(body, tunnel.TokenPrefix) {
		t.Fatalf("%s: a token in the answer: %s", what, body)
	}
	if strings.Contains(body, "PRIVATE KEY") {
		t.Fatalf("%s: a PEM private key in the answer: %s", what, body)
	}
	var secrets [][]byte
	ts, err := f.a.store.ListTunnels()
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range ts {
		secrets = append(secrets, tn.Secret)
	}
	edgeKey, err := f.a.l3.store.EdgeKey()
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, edgeKey[:], f.legacy[:])
	for _, s := range secrets {
		for _, enc := range []string{hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s),
			base64.URLEncoding.EncodeToString(s), base64.RawURLEncoding.EncodeToString(s)} {
			if strings.Contains(body, enc) {
				t.Fatalf("%s: a secret (%s) in the answer: %s", what, enc, body)
			}
		}
		if bytes.Contains([]byte(body), s) {
			t.Fatalf("%s: a secret's bytes in the answer", what)
		}
	}
	// Any key in the answer whose public key is one the edge knows is
	// that peer's private key.
	peers, err := f.a.l3.store.List()
	if err != nil {
		t.Fatal(err)
	}
	public := map[l3config.Key]string{edgeKey.PublicKey(): "the edge", f.legacy.PublicKey(): "old-site"}
	for _, p := range peers {
		public[p.PublicKey] = p.Name
	}
	for _, m := range keyText.FindAllString(body, -1) {
		if k, err := l3config.ParseKey(m); err == nil && !k.IsZero() {
			if who, ok := public[k.PublicKey()]; ok {
				t.Fatalf("%s: the private key of %s in the answer: %s", what, who, body)
			}
		}
	}
}

// FuzzAdminAPI drives the admin socket's handler with any method, path and
// body, on one edge whose store the requests keep changing: no panic, no
// 5xx, and no secret in any answer but the token of a create call (see
// check).
func FuzzAdminAPI(f *testing.F) {
	k := mustKey(f).PublicKey().String()
	for _, s := range []struct{ method, path, body string }{
		{"GET", "/v1/tunnels", ""},
		{"POST", "/v1/tunnels/branch", ""},
		{"POST", "/v1/tunnels/office", ""},
		{"DELETE", "/v1/tunnels/office", ""},
		{"DELETE", "/v1/tunnels/nobody", ""},
		{"POST", "/v1/tunnels/Bad%20Name", ""},
		{"GET", "/v1/l3/clients", ""},
		{"GET", "/v1/l3/connectors", ""},
		{"GET", "/v1/l3/clients/alice/config", ""},
		{"GET", "/v1/l3/connectors/site-a/config", ""},
		{"GET", "/v1/l3/connectors/old-site/config", ""},
		{"GET", "/v1/l3/connectors/alice/config", ""},
		{"POST", "/v1/l3/clients", `{"name":"bob","public_key":"` + k + `"}`},
		{"POST", "/v1/l3/clients", `{"name":"carol","groups":["x"]}`},
		{"POST", "/v1/l3/connectors", `{"name":"site-b","subnets":["198.18.40.0/24","fd00:40::/64"],"public_key":"` + k + `","key_file":"/etc/onramp/b.key"}`},
		{"POST", "/v1/l3/connectors", `{"name":"site-c","subnets":["0.0.0.0/0"]}`},
		{"POST", "/v1/l3/connectors", `{"name":"site-d","subnets":["198.18.41.0/24"],"public_key":"` + k + `","key_file":"a\nprivateKey: x"}`},
		{"POST", "/v1/l3/connectors", `{`},
		{"DELETE", "/v1/l3/connectors/site-a", ""},
		{"DELETE", "/v1/l3/clients/site-a", ""},
		{"PUT", "/v1/tunnels", "x"},
		{"GET", "/v1/tunnels/../l3/clients", ""},
		{"GET", "//v1/tunnels", ""},
		{"GET", "/v1/l3/connectors/%2e%2e/config", ""},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	state := newAdminFuzz(f)
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		state.serve(t, method, path, body)
	})
}

// TestSecretsAdminAPINoSecrets: the admin API's answers to every kind of
// request hold no secret (the checks of FuzzAdminAPI, on the requests a
// user makes) and the create call holds the token.
func TestSecretsAdminAPINoSecrets(t *testing.T) {
	f := newAdminFuzz(t)
	code, body := f.serve(t, "POST", "/v1/tunnels/branch", nil)
	if code != http.StatusCreated || !strings.Contains(body, tunnel.TokenPrefix) {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, path := range []string{"/v1/tunnels", "/v1/l3/clients", "/v1/l3/connectors", "/v1/l3/clients/alice/config",
		"/v1/l3/connectors/site-a/config", "/v1/l3/connectors/old-site/config"} {
		if code, body := f.serve(t, "GET", path, nil); code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
	}
	code, body = f.serve(t, "POST", "/v1/l3/connectors", []byte(`{"name":"site-b","subnets":["198.18.40.0/24"]}`))
	if code != http.StatusBadRequest || !strings.Contains(body, "connector l3 init") {
		t.Fatalf("connector without a public key: %d %s", code, body)
	}
	if _, err := f.a.store.TunnelByName("branch"); err != nil {
		t.Fatal(err)
	}
}
