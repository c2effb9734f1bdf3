package console

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"
	"golang.org/x/net/html"

	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// apiErr is an error as the edge's admin client returns it: a message and
// the admin API's status.
type apiErr struct {
	status int
	msg    string
}

func (e *apiErr) Error() string   { return e.msg }
func (e *apiErr) HTTPStatus() int { return e.status }

// fakeBackend is a Backend over fixed data that records its calls.
type fakeBackend struct {
	mu         sync.Mutex
	st         edgeapi.Status
	hist       edgeapi.History
	histErr    error
	clients    []edgeapi.L3Peer
	connectors []edgeapi.L3Peer
	conf       []byte
	// errs fails the named method.
	errs  map[string]error
	calls []string
}

func (f *fakeBackend) call(method string, args ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, strings.Join(append([]string{method}, args...), " "))
	return f.errs[method]
}

func (f *fakeBackend) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeBackend) Status() (*edgeapi.Status, error) {
	if err := f.call("Status"); err != nil {
		return nil, err
	}
	st := f.st
	return &st, nil
}

func (f *fakeBackend) History(prefixes ...string) (*edgeapi.History, error) {
	if err := f.call("History"); err != nil {
		return nil, err
	}
	h := f.hist
	if len(prefixes) > 0 { // as the edge's GET /v1/history?key=... does
		return seriesOf(&h, prefixes), f.histErr
	}
	return &h, f.histErr
}

// seriesOf is h with only the series whose keys start with a prefix.
func seriesOf(h *edgeapi.History, prefixes []string) *edgeapi.History {
	out := *h
	out.Series = []edgeapi.Series{}
	for _, sr := range h.Series {
		for _, p := range prefixes {
			if p != "" && strings.HasPrefix(sr.Key, p) {
				out.Series = append(out.Series, sr)
				break
			}
		}
	}
	return &out
}

func (f *fakeBackend) L3Peers(kind string) ([]edgeapi.L3Peer, error) {
	if err := f.call("L3Peers", kind); err != nil {
		return nil, err
	}
	if kind == "client" {
		return f.clients, nil
	}
	return f.connectors, nil
}

func (f *fakeBackend) CreateTunnel(name string) (edgeapi.Tunnel, error) {
	if err := f.call("CreateTunnel", name); err != nil {
		return edgeapi.Tunnel{}, err
	}
	return edgeapi.Tunnel{Name: name, ID: "0a0b", Token: "tok-new-" + name}, nil
}

func (f *fakeBackend) RotateTunnel(name string) (edgeapi.Tunnel, error) {
	if err := f.call("RotateTunnel", name); err != nil {
		return edgeapi.Tunnel{}, err
	}
	return edgeapi.Tunnel{Name: name, ID: "0a0b", Token: "tok-rotated-" + name}, nil
}

func (f *fakeBackend) DeleteTunnel(name string) (edgeapi.Tunnel, error) {
	return edgeapi.Tunnel{Name: name}, f.call("DeleteTunnel", name)
}

func (f *fakeBackend) AddClient(name string, groups []string) ([]byte, error) {
	if err := f.call("AddClient", name, strings.Join(groups, "|")); err != nil {
		return nil, err
	}
	return f.conf, nil
}

func (f *fakeBackend) RemoveL3(kind, name string) error { return f.call("RemoveL3", kind, name) }

func (f *fakeBackend) L3Config(kind, name string) ([]byte, error) {
	if err := f.call("L3Config", kind, name); err != nil {
		return nil, err
	}
	return []byte("# " + kind + " " + name + "\n[Interface]\nAddress = 198.18.96.2/32\n"), nil
}

func (f *fakeBackend) ConnectorConfig(tunnel, token string) (string, error) {
	if err := f.call("ConnectorConfig", tunnel, token); err != nil {
		return "", err
	}
	return "connector tunnel run --token-file " + tunnel + ".token # " + token, nil
}

const connHex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// evil is printed by the pages in several places: it must come out as
// text, never as markup.
const evil = `<script>alert("x")</script>`

// newFake is a backend with a realistic edge: two tunnels (one with two
// connections), L3 on with clients, connectors and subnets, a history
// with traffic, limits and drops.
func newFake(t *testing.T) *fakeBackend {
	t.Helper()
	now := time.Date(2026, 12, 5, 11, 0, 0, 0, time.UTC)
	priv, err := l3config.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	edgeKey, _ := l3config.GeneratePrivateKey()
	cc := l3config.Client{
		Name: "phone", PrivateKey: priv, Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.96.2/32"), netip.MustParsePrefix("fd00:96::2/128")},
		EdgePublicKey: edgeKey.PublicKey(), Endpoint: "198.18.0.1:51820", Keepalive: l3config.DefaultClientKeepalive,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.18.96.0/20"), netip.MustParsePrefix("198.18.30.0/24")},
	}
	conf, err := cc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return &fakeBackend{
		conf: conf,
		errs: map[string]error{},
		st: edgeapi.Status{
			Edge: edgeapi.Self{
				Version: "v0.9.0 " + evil, Registry: "bbolt /var/lib/onramp/edge.db", Advertise: []string{"edge.example.test:443"},
				Listen: "[::]:443", Started: now.Add(-3*time.Hour - 12*time.Minute), Now: now, Connections: 2, Quiet: 1,
			},
			Edges: []edgeapi.Member{
				{ID: "e1", Name: "edge-a:/var/lib/onramp", Advertise: []string{"a.example.test:443"}, Seen: now.Add(-2 * time.Second), Live: true, Self: true, Connections: 2, Tunnels: 2},
				{ID: "e2", Name: "edge-b:" + evil, Advertise: []string{"b.example.test:443"}, Seen: now.Add(-time.Minute), Connections: 0, Tunnels: 2},
			},
			Tunnels: []edgeapi.Tunnel{
				{Name: "web", ID: "01", Created: now.Add(-48 * time.Hour), Connections: []edgeapi.Conn{
					{Connector: connHex, Protocol: "quic", Remote: "198.18.5.2:40000", Since: now.Add(-3 * time.Minute), Streams: 4, Rate: 1536},
					{Connector: strings.Repeat("ab", 32), Protocol: "h2", Remote: evil, Since: now.Add(-10 * time.Second), Quiet: true},
				}},
				{Name: "db", ID: "02", Created: now.Add(-time.Hour)},
			},
			L3: edgeapi.L3Summary{
				Enabled: true, Listen: "[::]:51820", Endpoint: "198.18.0.1:51820", Clients: 2, ClientsRecent: 1,
				Connectors: []edgeapi.L3ConnectorStatus{{Name: "office", LastHandshake: now.Add(-20 * time.Second)}},
				Subnets: []edgeapi.SubnetStatus{
					{Prefix: netip.MustParsePrefix("198.18.30.0/24"), Active: "office", Standby: []string{"office-2"}},
					{Prefix: netip.MustParsePrefix("198.18.31.0/24")},
				},
			},
		},
		clients: []edgeapi.L3Peer{
			{Name: "laptop", Kind: "client", Address4: netip.MustParseAddr("198.18.96.3"), Address6: netip.MustParseAddr("fd00:96::3"),
				Groups: []string{"dev", evil}, Live: true, LastHandshake: now.Add(-42 * time.Second), RxBytes: 3 << 20, TxBytes: 1536, Drops: 7},
			{Name: "phone", Kind: "client", Address4: netip.MustParseAddr("198.18.96.2")},
		},
		connectors: []edgeapi.L3Peer{
			{Name: "office", Kind: "connector", Address4: netip.MustParseAddr("198.18.97.1"), Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.30.0/24")},
				Live: true, LastHandshake: now.Add(-20 * time.Second), RxBytes: 10 << 30, TxBytes: 5 << 20},
		},
		hist: edgeapi.History{
			Step: 5 * time.Second, Now: now,
			Series: []edgeapi.Series{
				{Key: "drop/l3/no_route", Unit: "1/s", Total: 12, Points: []float64{0, 0.4, 0.2}},
				{Key: "edge/to_origin", Unit: "B/s", Total: 1 << 30, Points: []float64{100, 2048, 4096}},
				{Key: "edge/to_user", Unit: "B/s", Total: 2 << 30, Points: []float64{50, 1024, 512}},
				{Key: "limit/handshakes/maxHandshakes", Unit: "1/s", Points: []float64{0, 0, 0}}, // never hit: not listed
				{Key: "limit/tunnel/streams", Unit: "1/s", Total: 3, Points: []float64{0, 0, 0.6}},
				{Key: "xdp/blocked", Unit: "1/s", Total: 99, Points: []float64{1, 2, 3}},
			},
		},
	}
}

func newTestServer(t *testing.T, b Backend) *Server {
	t.Helper()
	s, err := New(Options{Addr: "127.0.0.1:0", Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// get serves a GET by the console's routes (s.mux: without the session
// check, which auth_test.go covers).
func get(t *testing.T, s *Server, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	s.mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}

func post(t *testing.T, s *Server, path string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	s.mux.ServeHTTP(w, r)
	return w
}

// doc parses an answer's HTML.
func doc(t *testing.T, w *httptest.ResponseRecorder) *html.Node {
	t.Helper()
	n, err := html.Parse(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sel is a small selector: a tag ("" for any) and attributes that must
// have these values ("class" holds the class among others; a value "*"
// only needs the attribute).
type sel struct {
	tag   string
	attrs map[string]string
}

func (s sel) match(n *html.Node) bool {
	if n.Type != html.ElementNode || (s.tag != "" && n.Data != s.tag) {
		return false
	}
	for k, v := range s.attrs {
		got, ok := attr(n, k)
		switch {
		case !ok:
			return false
		case v == "*":
		case k == "class":
			if !slices.Contains(strings.Fields(got), v) {
				return false
			}
		case got != v:
			return false
		}
	}
	return true
}

func attr(n *html.Node, k string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == k {
			return a.Val, true
		}
	}
	return "", false
}

func findAll(n *html.Node, s sel) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if s.match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func find(t *testing.T, n *html.Node, s sel) *html.Node {
	t.Helper()
	all := findAll(n, s)
	if len(all) != 1 {
		t.Fatalf("%d elements %s %v, want 1", len(all), s.tag, s.attrs)
	}
	return all[0]
}

func byID(t *testing.T, n *html.Node, id string) *html.Node {
	t.Helper()
	return find(t, n, sel{attrs: map[string]string{"id": id}})
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// cells are a row's cells' texts, trimmed.
func cells(n *html.Node) []string {
	var out []string
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode && (c.Data == "td" || c.Data == "th") {
			out = append(out, strings.TrimSpace(text(c)))
		}
	}
	return out
}

// checkPage checks what every page must be: HTML that the CSP allows (no
// inline script, no style attribute, no on* handler, nothing from another
// origin) and evil printed as text only.
func checkPage(t *testing.T, w *httptest.ResponseRecorder, status int) *html.Node {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d:\n%s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	body := w.Body.String()
	if strings.Contains(body, "<script>alert") {
		t.Fatalf("unescaped markup in the page:\n%s", body)
	}
	n := doc(t, w)
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				if a.Key == "style" || strings.HasPrefix(a.Key, "on") {
					t.Errorf("<%s %s=%q>: the CSP blocks it", n.Data, a.Key, a.Val)
				}
				if (a.Key == "src" || a.Key == "href" || a.Key == "action") && !strings.HasPrefix(a.Val, "/") && !strings.HasPrefix(a.Val, "data:image/png;base64,") {
					t.Errorf("<%s %s=%q>: not from the console", n.Data, a.Key, a.Val)
				}
			}
			if n.Data == "script" {
				if src, _ := attr(n, "src"); src == "" || n.FirstChild != nil {
					t.Errorf("inline script")
				}
			}
			if n.Data == "style" {
				t.Errorf("<style> element")
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	for _, id := range []string{"nav-overview", "nav-tunnels", "nav-l3"} {
		byID(t, n, id)
	}
	return n
}

func TestOverview(t *testing.T) {
	f := newFake(t)
	s := newTestServer(t, f)
	n := checkPage(t, get(t, s, "/"), http.StatusOK)
	body := text(n)
	for _, want := range []string{
		"v0.9.0 " + evil, "3h 12m", "edge.example.test:443", "bbolt /var/lib/onramp/edge.db",
		"2 connector connections", "1 quiet", "2 clients", "1 connector", "2 subnets", "198.18.0.1:51820",
		"edge-b:" + evil, "silent", "this one",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	for id, series := range map[string]string{"chart-edge": "edge/to_origin,edge/to_user", "chart-l3": "l3/rx,l3/tx"} {
		c := byID(t, n, id)
		if got, _ := attr(c, "data-series"); got != series || !(sel{attrs: map[string]string{"class": "chart"}}).match(c) {
			t.Errorf("#%s: data-series %q, want %q (and class chart)", id, got, series)
		}
	}
	// Limits and drops: a row per series with its total and its rate now.
	rows := func(table string) map[string][]string {
		out := map[string][]string{}
		for _, tr := range findAll(byID(t, n, table), sel{tag: "tr", attrs: map[string]string{"data-key": "*"}}) {
			k, _ := attr(tr, "data-key")
			out[k] = cells(tr)
		}
		return out
	}
	if got, want := rows("limits"), map[string][]string{"limit/tunnel/streams": {"limit/tunnel/streams", "3", "0.6/s"}}; !equalRows(got, want) {
		t.Errorf("#limits rows %v, want %v", got, want)
	}
	if got, want := rows("drops"), map[string][]string{
		"drop/l3/no_route": {"drop/l3/no_route", "12", "0.2/s"},
		"xdp/blocked":      {"xdp/blocked", "99", "3/s"},
	}; !equalRows(got, want) {
		t.Errorf("#drops rows %v, want %v", got, want)
	}

	// Without a history (the edge cannot give one), the page still shows
	// the rest and says why the tables are empty.
	f.histErr = &apiErr{404, "404 page not found"}
	n = checkPage(t, get(t, s, "/"), http.StatusOK)
	if got := text(n); !strings.Contains(got, "No history yet: 404 page not found") || !strings.Contains(got, "2 connector connections") {
		t.Errorf("overview without history:\n%s", got)
	}
}

func equalRows(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestTunnelsPage(t *testing.T) {
	s := newTestServer(t, newFake(t))
	n := checkPage(t, get(t, s, "/tunnels"), http.StatusOK)
	form := byID(t, n, "tunnel-create")
	if a, _ := attr(form, "action"); a != "/tunnels" {
		t.Errorf("#tunnel-create action %q", a)
	}
	find(t, form, sel{tag: "input", attrs: map[string]string{"id": "tunnel-name", "name": "name"}})
	table := byID(t, n, "tunnels")
	for _, name := range []string{"web", "db"} {
		if len(findAll(table, sel{tag: "tr", attrs: map[string]string{"data-tunnel": name}})) == 0 {
			t.Errorf("no row of tunnel %s", name)
		}
		for _, cls := range []string{"tunnel-rotate", "tunnel-delete"} {
			f := find(t, table, sel{tag: "form", attrs: map[string]string{"class": cls, "data-tunnel": name}})
			verb := strings.TrimPrefix(cls, "tunnel-")
			if a, _ := attr(f, "action"); a != "/tunnels/"+name+"/"+verb {
				t.Errorf("%s of %s: action %q", cls, name, a)
			}
			if m, _ := attr(f, "method"); m != "post" {
				t.Errorf("%s: method %q", cls, m)
			}
			find(t, f, sel{tag: "input", attrs: map[string]string{"name": "csrf", "type": "hidden"}})
		}
		c := byID(t, n, "chart-tunnel-"+name)
		if got, _ := attr(c, "data-series"); got != "tunnel/"+name+"/to_origin,tunnel/"+name+"/to_user" {
			t.Errorf("chart of %s: data-series %q", name, got)
		}
	}
	conn := find(t, table, sel{tag: "tr", attrs: map[string]string{"class": "conn", "data-tunnel": "web", "data-connector": connHex}})
	if got, want := cells(conn), []string{connHex[:12], "edge-a:/var/lib/onramp", "quic", "198.18.5.2:40000", "3m ago", "4", "1.5 KiB/s"}; !slices.Equal(got, want) {
		t.Errorf("connection row %q, want %q", got, want)
	}
	quiet := find(t, table, sel{tag: "tr", attrs: map[string]string{"class": "quiet", "data-connector": strings.Repeat("ab", 32)}})
	if got := cells(quiet); got[3] != evil || got[4] != "10s ago" {
		t.Errorf("quiet connection row %q", got)
	}
	if got := len(findAll(table, sel{tag: "tr", attrs: map[string]string{"class": "conn", "data-tunnel": "db"}})); got != 0 {
		t.Errorf("tunnel db: %d connection rows, want 0", got)
	}
	// The "no connection" line shows for db only.
	for name, hidden := range map[string]bool{"web": true, "db": false} {
		tr := find(t, table, sel{tag: "tr", attrs: map[string]string{"class": "noconn", "data-tunnel": name}})
		if _, ok := attr(tr, "hidden"); ok != hidden {
			t.Errorf("tunnel %s: no-connection row hidden %v, want %v", name, ok, hidden)
		}
	}
}

func TestL3Page(t *testing.T) {
	s := newTestServer(t, newFake(t))
	n := checkPage(t, get(t, s, "/l3"), http.StatusOK)
	laptop := find(t, byID(t, n, "l3-clients"), sel{tag: "tr", attrs: map[string]string{"data-client": "laptop"}})
	if got, want := cells(laptop)[:7], []string{"laptop", "198.18.96.3, fd00:96::3", "dev, " + evil, "42s ago", "3 MiB", "1.5 KiB", "7"}; !slices.Equal(got, want) {
		t.Errorf("client row %q, want %q", got, want)
	}
	phone := find(t, byID(t, n, "l3-clients"), sel{tag: "tr", attrs: map[string]string{"data-client": "phone"}})
	if got := cells(phone)[3]; got != "never" {
		t.Errorf("client without handshake: %q", got)
	}
	rm := find(t, phone, sel{tag: "form", attrs: map[string]string{"class": "client-remove", "data-client": "phone"}})
	if a, _ := attr(rm, "action"); a != "/l3/clients/phone/delete" {
		t.Errorf("client-remove action %q", a)
	}
	office := find(t, byID(t, n, "l3-connectors"), sel{tag: "tr", attrs: map[string]string{"data-connector": "office"}})
	if got, want := cells(office)[:6], []string{"office", "198.18.97.1", "198.18.30.0/24", "20s ago", "10 GiB", "5 MiB"}; !slices.Equal(got, want) {
		t.Errorf("connector row %q, want %q", got, want)
	}
	find(t, office, sel{tag: "form", attrs: map[string]string{"class": "connector-remove", "data-connector": "office", "action": "/l3/connectors/office/delete"}})
	subnets := findAll(byID(t, n, "l3-subnets"), sel{tag: "tr", attrs: map[string]string{"data-prefix": "*"}})
	if len(subnets) != 2 || !slices.Equal(cells(subnets[0]), []string{"198.18.30.0/24", "office", "office-2"}) || !slices.Equal(cells(subnets[1]), []string{"198.18.31.0/24", "none", ""}) {
		t.Errorf("subnet rows: %v", subnets)
	}
	form := byID(t, n, "client-add")
	find(t, form, sel{tag: "input", attrs: map[string]string{"id": "client-name", "name": "name"}})
	find(t, form, sel{tag: "input", attrs: map[string]string{"id": "client-groups", "name": "groups"}})
	byID(t, n, "chart-l3")
}

func TestL3ConfigPages(t *testing.T) {
	f := newFake(t)
	s := newTestServer(t, f)
	for _, kind := range []string{"client", "connector"} {
		n := checkPage(t, get(t, s, "/l3/"+kind+"s/office/config"), http.StatusOK)
		if got, want := text(byID(t, n, "l3-config")), "# "+kind+" office\n[Interface]\nAddress = 198.18.96.2/32\n"; got != want {
			t.Errorf("%s config %q, want %q", kind, got, want)
		}
	}
	f.errs["L3Config"] = &apiErr{http.StatusNotFound, `client "gone": not found`}
	n := checkPage(t, get(t, s, "/l3/clients/gone/config"), http.StatusNotFound)
	if got := text(byID(t, n, "error")); got != `client "gone": not found` {
		t.Errorf("error %q", got)
	}
}

func TestTunnelActions(t *testing.T) {
	f := newFake(t)
	s := newTestServer(t, f)

	w := post(t, s, "/tunnels", url.Values{"name": {" web2 "}})
	n := checkPage(t, w, http.StatusOK)
	if got := text(byID(t, n, "token")); got != "tok-new-web2" {
		t.Errorf("#token %q", got)
	}
	if got := text(byID(t, n, "connector-config")); got != "connector tunnel run --token-file web2.token # tok-new-web2" {
		t.Errorf("#connector-config %q", got)
	}
	if !strings.Contains(text(n), "shown once") {
		t.Error("the token page does not say the token is shown once")
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("token page Cache-Control %q", cc)
	}

	n = checkPage(t, post(t, s, "/tunnels/web/rotate", nil), http.StatusOK)
	if got := text(byID(t, n, "token")); got != "tok-rotated-web" {
		t.Errorf("#token after rotate %q", got)
	}

	w = post(t, s, "/tunnels/web/delete", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/tunnels?deleted=web" {
		t.Fatalf("delete: %d to %q", w.Code, w.Header().Get("Location"))
	}
	n = checkPage(t, get(t, s, "/tunnels?deleted=web"), http.StatusOK)
	if got := text(byID(t, n, "done")); !strings.Contains(got, "Tunnel web deleted") {
		t.Errorf("after delete: %q", got)
	}

	var actions []string
	for _, c := range f.called() {
		if !strings.HasPrefix(c, "Status") {
			actions = append(actions, c)
		}
	}
	want := []string{"CreateTunnel web2", "ConnectorConfig web2 tok-new-web2", "RotateTunnel web", "ConnectorConfig web tok-rotated-web", "DeleteTunnel web"}
	if !slices.Equal(actions, want) {
		t.Errorf("backend calls %q, want %q", actions, want)
	}
}

// A name with characters of its own goes to the Backend as it was typed,
// through a path-escaped URL.
func TestActionNamesEscaped(t *testing.T) {
	f := newFake(t)
	s := newTestServer(t, f)
	f.errs["RotateTunnel"] = &apiErr{http.StatusBadRequest, "invalid tunnel name"}
	name := "a/b <c>?"
	w := post(t, s, "/tunnels/"+url.PathEscape(name)+"/rotate", nil)
	n := checkPage(t, w, http.StatusBadRequest)
	if got := text(byID(t, n, "error")); got != "rotate tunnel "+name+": invalid tunnel name" {
		t.Errorf("error %q", got)
	}
	if c := f.called(); !slices.Contains(c, "RotateTunnel "+name) {
		t.Errorf("calls %q", c)
	}
}

func TestActionErrors(t *testing.T) {
	for _, tc := range []struct {
		method string
		err    error
		path   string
		form   url.Values
		status int
		msg    string
	}{
		{"CreateTunnel", &apiErr{409, `tunnel "web" exists`}, "/tunnels", url.Values{"name": {"web"}}, 409, `create tunnel web: tunnel "web" exists`},
		{"CreateTunnel", &apiErr{400, "invalid tunnel name: character 'W'"}, "/tunnels", url.Values{"name": {"Web"}}, 400, "create tunnel Web: invalid tunnel name: character 'W'"},
		{"", nil, "/tunnels", url.Values{"name": {"  "}}, 400, "a tunnel needs a name"},
		{"RotateTunnel", &apiErr{404, "tunnel not found"}, "/tunnels/nope/rotate", nil, 404, "rotate tunnel nope: tunnel not found"},
		{"DeleteTunnel", &apiErr{404, "tunnel not found"}, "/tunnels/nope/delete", nil, 404, "delete tunnel nope: tunnel not found"},
		{"AddClient", &apiErr{400, "edge config: l3.listen is not set, the L3 on-ramp is off"}, "/l3/clients", url.Values{"name": {"phone"}}, 400, "add client phone: edge config: l3.listen is not set"},
		{"AddClient", &apiErr{409, `client "phone": exists`}, "/l3/clients", url.Values{"name": {"phone"}}, 409, `add client phone: client "phone": exists`},
		{"", nil, "/l3/clients", url.Values{"groups": {"a"}}, 400, "a client needs a name"},
		{"RemoveL3", &apiErr{404, "not found"}, "/l3/connectors/gone/delete", nil, 404, "remove connector gone: not found"},
		{"CreateTunnel", errors.New("admin socket: disk full"), "/tunnels", url.Values{"name": {"web"}}, 500, "create tunnel web: admin socket: disk full"},
	} {
		f := newFake(t)
		if tc.method != "" {
			f.errs[tc.method] = tc.err
		}
		s := newTestServer(t, f)
		n := checkPage(t, post(t, s, tc.path, tc.form), tc.status)
		if got := text(byID(t, n, "error")); !strings.HasPrefix(got, tc.msg) {
			t.Errorf("POST %s: error %q, want %q", tc.path, got, tc.msg)
		}
		// The page around the error is the one the action came from.
		if strings.HasPrefix(tc.path, "/tunnels") {
			byID(t, n, "tunnel-create")
		} else {
			byID(t, n, "client-add")
		}
		if tc.method == "" && slices.ContainsFunc(f.called(), func(c string) bool { return !strings.HasPrefix(c, "Status") && !strings.HasPrefix(c, "L3Peers") }) {
			t.Errorf("POST %s with no name called the backend: %q", tc.path, f.called())
		}
	}

	// A page whose data the edge cannot give is an error page with the
	// message, never a blank one.
	f := newFake(t)
	f.errs["Status"] = errors.New("admin socket: connection refused")
	s := newTestServer(t, f)
	for _, p := range []string{"/", "/tunnels", "/l3"} {
		n := checkPage(t, get(t, s, p), http.StatusInternalServerError)
		if got := text(byID(t, n, "error")); got != "admin socket: connection refused" {
			t.Errorf("GET %s: error %q", p, got)
		}
	}
}

func TestAddClient(t *testing.T) {
	f := newFake(t)
	s := newTestServer(t, f)
	w := post(t, s, "/l3/clients", url.Values{"name": {"phone"}, "groups": {" dev, ops,,"}})
	n := checkPage(t, w, http.StatusOK)
	if c := f.called(); !slices.Contains(c, "AddClient phone dev|ops") {
		t.Errorf("calls %q", c)
	}
	if got := text(byID(t, n, "client-config")); got != string(f.conf) {
		t.Errorf("#client-config:\n%s\nwant\n%s", got, f.conf)
	}
	if !strings.Contains(text(n), "shown once") {
		t.Error("the client page does not say the config is shown once")
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("client page Cache-Control %q", cc)
	}
	src, _ := attr(byID(t, n, "client-qr"), "src")
	b64, ok := strings.CutPrefix(src, "data:image/png;base64,")
	if !ok {
		t.Fatalf("#client-qr src %.40q", src)
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	// PURE_BARCODE: the image is the code alone, so the reader takes its
	// module grid from the image's bounds. Without it, ZXing's finder
	// pattern search misplaces the grid on some 1 in 10 of these
	// synthetic images (gozxing issue 14: "the original library has the
	// same problem"), which says nothing of the code.
	res, err := zxqr.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		t.Fatalf("QR code does not decode: %v", err)
	}
	// The code holds the config less its comments, the text `edge l3
	// client add --qr` encodes; a WireGuard app reads the same client
	// from it, private key included.
	if got, want := res.GetText(), l3config.QRText(f.conf); got != want {
		t.Fatalf("QR text:\n%s\nwant\n%s", got, want)
	}
	back, err := l3config.ParseClient([]byte(res.GetText()))
	want, _ := l3config.ParseClient(f.conf)
	if err != nil || back.PrivateKey != want.PrivateKey || back.Endpoint != want.Endpoint || !slices.Equal(back.Addresses, want.Addresses) {
		t.Errorf("QR config %+v, %v; want %+v", back, err, want)
	}

	for kind, path := range map[string]string{"client": "/l3/clients/laptop/delete", "connector": "/l3/connectors/office/delete"} {
		w := post(t, s, path, nil)
		if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/l3?removed=") {
			t.Errorf("remove %s: %d to %q", kind, w.Code, w.Header().Get("Location"))
		}
	}
	c := f.called()
	if !slices.Contains(c, "RemoveL3 client laptop") || !slices.Contains(c, "RemoveL3 connector office") {
		t.Errorf("calls %q", c)
	}
}

func TestAPI(t *testing.T) {
	f := newFake(t)
	s := newTestServer(t, f)

	decode := func(path string, v any) *httptest.ResponseRecorder {
		t.Helper()
		w := get(t, s, path)
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: Content-Type %q", path, ct)
		}
		if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, w.Body)
		}
		return w
	}
	var st edgeapi.Status
	if w := decode("/api/status", &st); w.Code != 200 || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("/api/status: %d, Cache-Control %q", w.Code, w.Header().Get("Cache-Control"))
	}
	if len(st.Tunnels) != 2 || st.Tunnels[0].Connections[0].Rate != 1536 || st.Edge.Version != f.st.Edge.Version {
		t.Errorf("/api/status: %+v", st)
	}
	// The fields the page script reads, by their JSON names.
	var raw struct {
		Tunnels []struct {
			Connections []map[string]any `json:"connections"`
		} `json:"tunnels"`
	}
	decode("/api/status", &raw)
	for _, k := range []string{"connector", "protocol", "remote", "since", "streams", "rate", "quiet", "draining"} {
		if _, ok := raw.Tunnels[0].Connections[0][k]; !ok {
			t.Errorf("/api/status: a connection has no %q", k)
		}
	}
	var h edgeapi.History
	decode("/api/history", &h)
	if h.Step != 5*time.Second || len(h.Series) != 6 || h.Series[1].Key != "edge/to_origin" || h.Series[1].Points[2] != 4096 {
		t.Errorf("/api/history: %+v", h)
	}
	// What a page draws only: series by key prefix.
	decode("/api/history?key=edge/to_origin&key=limit/&key=xdp/", &h)
	var keys []string
	for _, sr := range h.Series {
		keys = append(keys, sr.Key)
	}
	if !slices.Equal(keys, []string{"edge/to_origin", "limit/handshakes/maxHandshakes", "limit/tunnel/streams", "xdp/blocked"}) || h.Step != 5*time.Second {
		t.Errorf("/api/history by key: %q", keys)
	}
	if w := get(t, s, "/api/history?key=nothing/"); strings.TrimSpace(w.Body.String()) != `{"step":5000000000,"now":"2026-12-05T11:00:00Z","series":[]}` {
		t.Errorf("/api/history of no series: %s", w.Body)
	}
	var l3 map[string][]edgeapi.L3Peer
	decode("/api/l3", &l3)
	if len(l3) != 2 || len(l3["clients"]) != 2 || len(l3["connectors"]) != 1 || l3["clients"][0].RxBytes != 3<<20 {
		t.Errorf("/api/l3: %+v", l3)
	}

	// Empty lists are [], not null.
	f.clients, f.connectors = nil, nil
	if w := get(t, s, "/api/l3"); strings.TrimSpace(w.Body.String()) != `{"clients":[],"connectors":[]}` {
		t.Errorf("/api/l3 empty: %s", w.Body)
	}

	// Errors: the admin API's status and message, as edgeapi.Error.
	f.errs["History"] = &apiErr{404, "404 page not found"}
	var e edgeapi.Error
	if w := decode("/api/history", &e); w.Code != 404 || e.Error != "404 page not found" {
		t.Errorf("/api/history error: %d %+v", w.Code, e)
	}
	f.errs["Status"] = errors.New("admin socket: gone")
	if w := decode("/api/status", &e); w.Code != 500 || e.Error != "admin socket: gone" {
		t.Errorf("/api/status error: %d %+v", w.Code, e)
	}
}

func TestHumanUnits(t *testing.T) {
	now := time.Date(2026, 12, 5, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ got, want string }{
		{humanBytes(uint64(0)), "0 B"},
		{humanBytes(uint64(1023)), "1023 B"},
		{humanBytes(uint64(1536)), "1.5 KiB"},
		{humanBytes(uint64(10 << 30)), "10 GiB"},
		{humanBytes(float64(123.4 * (1 << 20))), "123 MiB"},
		{humanRate(2048.0, "B/s"), "2 KiB/s"},
		{humanRate(0.25, "1/s"), "0.2/s"},
		{humanRate(3.0, "1/s"), "3/s"},
		{ago(now, time.Time{}), "never"},
		{ago(now, now), "just now"},
		{ago(now, now.Add(-59*time.Second)), "59s ago"},
		{ago(now, now.Add(-3*time.Minute-5*time.Second)), "3m ago"},
		{ago(now, now.Add(-5*time.Hour)), "5h ago"},
		{ago(now, now.Add(-72*time.Hour)), "3d ago"},
		{uptime(now, now.Add(-90*time.Second)), "1m 30s"},
		{uptime(now, now.Add(-50*time.Hour)), "2d 2h"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// The vendored uPlot is the npm package's files: their hashes are the ones
// recorded when make console-assets checked the tarball's integrity, and
// the pages load them from the console itself.
func TestVendoredUPlot(t *testing.T) {
	const dir = "static/vendor/uplot"
	sums, err := os.Open(dir + "/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	defer sums.Close()
	var files []string
	sc := bufio.NewScanner(sums)
	line := regexp.MustCompile(`^([0-9a-f]{64})  (\S+)$`)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("SHA256SUMS: %q", sc.Text())
		}
		data, err := fs.ReadFile(assets, dir+"/"+m[2])
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != m[1] {
			t.Errorf("%s: sha256 %x, want %s (rebuild with make console-assets)", m[2], sum, m[1])
		}
		files = append(files, m[2])
	}
	slices.Sort(files)
	if !slices.Equal(files, []string{"LICENSE", "uPlot.iife.min.js", "uPlot.min.css"}) {
		t.Errorf("SHA256SUMS lists %q", files)
	}
	script, _ := os.ReadFile("../../../scripts/console-assets.sh")
	if !bytes.Contains(script, []byte("VERSION=1.6.32\n")) || !bytes.Contains(script, []byte("INTEGRITY=sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==\n")) {
		t.Error("scripts/console-assets.sh does not pin uplot 1.6.32 by its integrity")
	}

	s := newTestServer(t, newFake(t))
	n := checkPage(t, get(t, s, "/"), http.StatusOK)
	for _, p := range []string{"/static/vendor/uplot/uPlot.iife.min.js", "/static/vendor/uplot/uPlot.min.css", "/static/console.js", "/static/console.css"} {
		if len(findAll(n, sel{tag: "script", attrs: map[string]string{"src": p}}))+len(findAll(n, sel{tag: "link", attrs: map[string]string{"href": p}})) != 1 {
			t.Errorf("the page does not load %s", p)
		}
		w := get(t, s, p)
		body, _ := io.ReadAll(w.Body)
		if w.Code != 200 || len(body) < 100 {
			t.Errorf("GET %s: %d, %d bytes", p, w.Code, len(body))
		}
	}
}

// With a session, every form of every page carries its CSRF token, and the
// layout's menu has the logout form; without one (the login page) there is
// no logout.
func TestFormsCarryCSRF(t *testing.T) {
	f := newFake(t)
	s := newTestServer(t, f)
	const token = `tok"<&>`
	st, _ := f.Status()
	pages := map[string]any{
		"overview": overviewData{St: st},
		"tunnels":  tunnelsData{St: st},
		"l3":       l3Data{St: st, Clients: f.clients, Connectors: f.connectors},
		"token":    tokenData{Name: "web", Token: "t", Config: "c"},
	}
	for name, data := range pages {
		var b bytes.Buffer
		if err := s.pages[name].ExecuteTemplate(&b, "layout", page{Title: name, CSRF: token, Nav: name, Data: data}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n, err := html.Parse(&b)
		if err != nil {
			t.Fatal(err)
		}
		find(t, find(t, n, sel{tag: "nav"}), sel{tag: "form", attrs: map[string]string{"id": "logout", "action": "/logout", "method": "post"}})
		meta := find(t, n, sel{tag: "meta", attrs: map[string]string{"name": "csrf-token"}})
		if c, _ := attr(meta, "content"); c != token {
			t.Errorf("%s: meta csrf-token %q", name, c)
		}
		forms := findAll(n, sel{tag: "form"})
		if len(forms) < 1 {
			t.Fatalf("%s: no form", name)
		}
		for _, form := range forms {
			in := find(t, form, sel{tag: "input", attrs: map[string]string{"name": "csrf", "type": "hidden"}})
			if v, _ := attr(in, "value"); v != token {
				t.Errorf("%s: form %v: csrf %q", name, form.Attr, v)
			}
		}
	}
	// No session: no logout form, no menu on the login page.
	n := checkPage(t, get(t, s, "/"), http.StatusOK)
	if len(findAll(n, sel{attrs: map[string]string{"id": "logout"}})) != 0 {
		t.Error("a logout form without a session")
	}
}
