package console

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
	"github.com/onramp-net/onramp/testnet"
)

// cspForTest is the policy of the brief (auth.go sets it on every answer):
// the script test serves the pages with it to see that nothing it blocks
// is needed.
const cspForTest = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// changing is the fake edge moving on: from its third poll on, a
// connection of web went, db got one, web's traffic rose, a limit was hit
// and the laptop received more.
type changing struct {
	*fakeBackend
	mu    sync.Mutex
	polls int
}

// moved counts a call and reports whether the edge has moved on.
func (c *changing) moved() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.polls++
	return c.polls > 3
}

func (c *changing) Status() (*edgeapi.Status, error) {
	st, err := c.fakeBackend.Status()
	if err != nil || !c.moved() {
		return st, err
	}
	web, db := st.Tunnels[0], st.Tunnels[1]
	// A connector keeps several connections: the second is told apart by
	// its remote address.
	web.Connections = []edgeapi.Conn{web.Connections[0], web.Connections[0]}
	web.Connections[1].Remote, web.Connections[1].Since, web.Connections[1].Streams, web.Connections[1].Rate = "198.18.5.2:40001", st.Edge.Now.Add(-time.Minute), 2, 100
	web.Connections[0].Streams, web.Connections[0].Rate, web.Connections[0].BytesToOrigin = 9, 5<<20, 3<<20
	db.Connections = []edgeapi.Conn{{Connector: "cc00", Protocol: "h2", Remote: "198.18.9.9:1", Since: st.Edge.Now.Add(-5 * time.Second), Streams: 1}}
	st.Tunnels = []edgeapi.Tunnel{web, db}
	st.Edge.Connections = 2
	return st, nil
}

func (c *changing) History(prefixes ...string) (*edgeapi.History, error) {
	h, err := c.fakeBackend.History(prefixes...)
	if err != nil || !c.moved() {
		return h, err
	}
	series := slices.Clone(h.Series)
	series = append(series,
		edgeapi.Series{Key: "limit/l4/conns_per_source", Unit: "1/s", Total: 40, Points: []float64{0, 0, 8}},
		edgeapi.Series{Key: "limit/l4/zero", Unit: "1/s", Points: []float64{0, 0, 0}},
		edgeapi.Series{Key: "tunnel/web/to_origin", Unit: "B/s", Total: 1 << 20, Points: []float64{10, 20, 7000}},
		edgeapi.Series{Key: "tunnel/web/to_user", Unit: "B/s", Total: 1 << 20, Points: []float64{5, 123456, 30}},
	)
	h.Series = series
	return h, nil
}

func (c *changing) L3Peers(kind string) ([]edgeapi.L3Peer, error) {
	ps, err := c.fakeBackend.L3Peers(kind)
	if err != nil || kind != "client" || !c.moved() {
		return ps, err
	}
	ps = slices.Clone(ps)
	ps[0].RxBytes, ps[0].Drops = 5<<20, 8
	return ps, nil
}

// browse loads path in a headless Chromium long enough for a few polls and
// returns the page as it then is, with what the browser logged.
func browse(t *testing.T, url string) (*html.Node, string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		testnet.SkipOrFail(t, "no chromium (make deps installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Virtual time runs the page's timers without waiting for them, and
	// stops while a request is under way: 9 s of it are 4 polls.
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--enable-logging=stderr", "--v=0",
		"--window-size=1280,1000", "--virtual-time-budget=9000", "--dump-dom", url)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	n, err := html.Parse(&stdout)
	if err != nil {
		t.Fatal(err)
	}
	return n, stderr.String()
}

// The page script, in a real browser under the console's CSP: the tables
// and charts follow the edge without a reload.
func TestPageScript(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	serve := func(t *testing.T, histErr error) string {
		f := newFake(t)
		f.errs["History"] = histErr
		f.st.Edge.Now = time.Now() // the charts' time axis is the browser's too
		f.hist.Now = f.st.Edge.Now
		f.st.Tunnels[0].Connections[0].Since = f.st.Edge.Now.Add(-3 * time.Minute)
		s := newTestServer(t, &changing{fakeBackend: f})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", cspForTest)
			s.mux.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	checkLog := func(t *testing.T, log string) {
		t.Helper()
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "Content Security Policy") || strings.Contains(l, "Uncaught") || strings.Contains(l, "console.js") {
				t.Errorf("browser: %s", l)
			}
		}
	}
	// chart checks that uPlot drew the chart (a canvas) from several
	// polls and that data-peak is the largest point it now draws.
	chart := func(t *testing.T, n *html.Node, id string, peak float64) {
		t.Helper()
		c := byID(t, n, id)
		if len(findAll(c, sel{tag: "canvas"})) != 1 {
			t.Errorf("#%s: no canvas: uPlot did not draw", id)
		}
		up, _ := attr(c, "data-updates")
		if u, _ := strconv.Atoi(up); u < 3 {
			t.Errorf("#%s: data-updates %q, want 3 or more", id, up)
		}
		if p, _ := attr(c, "data-peak"); p != strconv.FormatFloat(peak, 'f', -1, 64) {
			t.Errorf("#%s: data-peak %q, want %v", id, p, peak)
		}
	}

	t.Run("tunnels", func(t *testing.T) {
		n, log := browse(t, serve(t, nil)+"/tunnels")
		checkLog(t, log)
		table := byID(t, n, "tunnels")
		conns := findAll(table, sel{tag: "tr", attrs: map[string]string{"class": "conn"}})
		var got []string
		for _, tr := range conns {
			tun, _ := attr(tr, "data-tunnel")
			c, _ := attr(tr, "data-connector")
			got = append(got, tun+" "+short(c)+" "+strings.Join(cells(tr)[2:], " | "))
		}
		// web lost its quiet connection, its other one moved and its
		// connector made a second; db got one; in the same cells as the
		// server renders.
		if want := []string{
			"web 9f86d081884c quic | 198.18.5.2:40000 | 3m ago | 9 | 5 MiB/s",
			"web 9f86d081884c quic | 198.18.5.2:40001 | 1m ago | 2 | 100 B/s",
			"db cc00 h2 | 198.18.9.9:1 | 5s ago | 1 | 0 B/s",
		}; !slices.Equal(got, want) {
			t.Errorf("connection rows:\n%q\nwant\n%q", got, want)
		}
		rate := find(t, conns[0], sel{tag: "td", attrs: map[string]string{"data-field": "rate"}})
		if title, _ := attr(rate, "title"); title != "3 MiB to the origin, 0 B to the user since it came up" {
			t.Errorf("bytes/s cell's title %q", title)
		}
		for name, count := range map[string]string{"web": "2 connections", "db": "1 connection"} {
			body := find(t, table, sel{tag: "tbody", attrs: map[string]string{"data-tunnel": name}})
			if got := text(find(t, body, sel{attrs: map[string]string{"data-field": "count"}})); got != count {
				t.Errorf("tunnel %s: %q, want %q", name, got, count)
			}
			if _, hidden := attr(find(t, body, sel{tag: "tr", attrs: map[string]string{"class": "noconn"}}), "hidden"); !hidden {
				t.Errorf("tunnel %s: the no-connection line shows", name)
			}
		}
		chart(t, n, "chart-tunnel-web", 123456)
		chart(t, n, "chart-tunnel-db", 0)
	})

	t.Run("overview", func(t *testing.T) {
		n, log := browse(t, serve(t, nil)+"/")
		checkLog(t, log)
		chart(t, n, "chart-edge", 4096)
		chart(t, n, "chart-l3", 0)
		tr := find(t, byID(t, n, "limits"), sel{tag: "tr", attrs: map[string]string{"data-key": "limit/l4/conns_per_source"}})
		if got := cells(tr); !slices.Equal(got, []string{"limit/l4/conns_per_source", "40", "8/s"}) {
			t.Errorf("new limit row %q", got)
		}
		if rows := findAll(byID(t, n, "limits"), sel{tag: "tr", attrs: map[string]string{"data-key": "*"}}); len(rows) != 2 {
			t.Errorf("%d limit rows, want 2 (a series at zero is no limit hit)", len(rows))
		}
	})

	t.Run("l3", func(t *testing.T) {
		n, log := browse(t, serve(t, nil)+"/l3")
		checkLog(t, log)
		laptop := find(t, byID(t, n, "l3-clients"), sel{tag: "tr", attrs: map[string]string{"data-client": "laptop"}})
		if got := cells(laptop); got[4] != "5 MiB" || got[6] != "8" {
			t.Errorf("client row not updated: %q", got)
		}
		chart(t, n, "chart-l3", 0)
	})
	// An edge without a history: the charts say so, the tables still
	// follow the edge.
	t.Run("no history", func(t *testing.T) {
		n, log := browse(t, serve(t, &apiErr{404, "404 page not found"})+"/tunnels")
		checkLog(t, log)
		c := byID(t, n, "chart-tunnel-web")
		if !(sel{attrs: map[string]string{"class": "nodata"}}).match(c) || len(findAll(c, sel{tag: "canvas"})) != 0 {
			t.Errorf("chart without history: class %q", func() string { v, _ := attr(c, "class"); return v }())
		}
		if got := len(findAll(byID(t, n, "tunnels"), sel{tag: "tr", attrs: map[string]string{"class": "conn"}})); got != 3 {
			t.Errorf("%d connection rows, want 3 (as the edge moved on)", got)
		}
	})
}
