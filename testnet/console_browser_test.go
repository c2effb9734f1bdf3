package testnet_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/onramp-net/onramp/testnet"
)

// The console's Content-Security-Policy (the contract): nothing but
// the console's own scripts, styles, images and JSON.
const consoleCSP = `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`

// consoleBrowser is the browser test's world: the real edge (tunnels, the
// L3 hub, the console) in a Tunnel topology, and a headless Chromium in
// the edge's namespace, where the console listens on loopback.
type consoleBrowser struct {
	t     *testing.T
	n     *testnet.Net
	rig   *testnet.ConsoleRig
	b     *testnet.Browser
	shots string // where the screenshots go
}

// step runs actions in the page, each step bounded; on failure it saves
// a screenshot of the page as it was and fails the test.
func (c *consoleBrowser) step(what string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	if err := c.b.Do(20*time.Second, actions...); err != nil {
		c.fail(what, err)
	}
}

// load runs the action (a click or a submit) and waits for the page it
// leads to.
func (c *consoleBrowser) load(what string, action chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	if _, err := testnet.BrowserRun(c.b, 20*time.Second, chromedp.WaitEvent(page.LoadEventFired, nil, action)); err != nil {
		c.fail(what, err)
	}
}

func (c *consoleBrowser) fail(what string, err error) {
	c.t.Helper()
	shot := filepath.Join(c.shots, "failed.png")
	if serr := c.b.Screenshot(shot, 10*time.Second); serr != nil {
		shot = serr.Error()
	}
	loc, _ := testnet.BrowserRun(c.b, 5*time.Second, chromedp.Location())
	c.t.Fatalf("%s: %v\npage %s (screenshot %s)\nbrowser console:\n%s", what, err, loc, shot, strings.Join(c.b.Messages(), "\n"))
}

// clickSubmit clicks the submit button of the form: what a user does
// (unlike form.submit(), it runs the page's submit handlers).
func clickSubmit(form string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(form + ` [type="submit"]`))
}

// eval evaluates a JavaScript expression in the page (over DevTools: the
// page's CSP does not apply to it, and it adds no script to the page).
func eval[T any](c *consoleBrowser, what, expr string) T {
	c.t.Helper()
	v, err := testnet.BrowserRun(c.b, 10*time.Second, chromedp.Evaluate[T](expr))
	if err != nil {
		c.fail(what, err)
	}
	return v
}

// waitJS waits until the expression is true in the page. It polls from
// Go: chromedp's Poll builds its predicate with new Function, which the
// console's CSP (rightly) refuses.
func (c *consoleBrowser) waitJS(what, expr string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := testnet.BrowserRun(c.b, 5*time.Second, chromedp.Evaluate[bool]("Boolean("+expr+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("still false after %v: %s", timeout, expr)
			}
			c.fail(what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *consoleBrowser) text(what, sel string) string {
	c.t.Helper()
	s, err := testnet.BrowserRun(c.b, 10*time.Second, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		c.fail(what, err)
	}
	return s
}

func (c *consoleBrowser) location() string {
	c.t.Helper()
	loc, err := testnet.BrowserRun(c.b, 10*time.Second, chromedp.Location())
	if err != nil {
		c.fail("location", err)
	}
	return loc
}

// screenshot saves the window as NAME.png in the screenshot directory.
func (c *consoleBrowser) screenshot(name string) {
	c.t.Helper()
	if err := c.b.Screenshot(filepath.Join(c.shots, name+".png"), 15*time.Second); err != nil {
		c.t.Fatal(err)
	}
}

// edgeConns returns the connector IDs of the tunnel's connections as the
// edge reports them (edge status --json, over the admin socket).
func (c *consoleBrowser) edgeConns(tunnelName string) []string {
	c.t.Helper()
	out, err := c.rig.EdgeCLI(context.Background(), "status", "--json")
	if err != nil {
		c.t.Fatal(err)
	}
	var st edgeStatusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("edge status --json: %v\n%s", err, out)
	}
	var ids []string
	for _, tu := range st.Tunnels {
		if tu.Name == tunnelName {
			for _, cn := range tu.Connections {
				ids = append(ids, cn.Connector)
			}
		}
	}
	return ids
}

// TestConsoleBrowser drives the edge console with a real headless
// Chromium against the real edge and connector: log in with the password
// `edge console passwd` set, create a tunnel and read its token, start a
// connector with it and watch its connections appear without a reload,
// send traffic and watch the tunnel's chart move, add an L3 client and
// read its QR code back into its config, delete the tunnel and see its
// connections go, log out and back in with a one-time link (edge console
// link). All along: the CSP header on every answer, no CSP
// violation on the browser's console, no request to another origin. It
// saves a screenshot of each page ($ONRAMP_SCREENSHOTS, else
// testnet/screenshots).
func TestConsoleBrowser(t *testing.T) {
	if _, err := testnet.ChromiumPath(); err != nil {
		testnet.SkipOrFail(t, "browser test: %v", err)
	}
	start := time.Now()
	n := testnet.New(t, testnet.Tunnel())
	ctx := context.Background()
	if _, err := n.Node("origin").ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	const password = "correct horse battery staple"
	rig, err := testnet.StartConsoleRig(ctx, n, testnet.ConsoleOptions{Dir: t.TempDir(), Tunnel: "web", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	shots, err := testnet.ScreenshotDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots go to %s", shots)
	b, err := n.Node("edge").StartBrowser(testnet.BrowserOptions{Width: 1280, Height: 800})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	c := &consoleBrowser{t: t, n: n, rig: rig, b: b, shots: shots}
	base := rig.URL

	// Log in: the console sends a browser with no session to its login.
	c.step("open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("login")))
	if loc := c.location(); loc != base+"/login" {
		t.Errorf("without a session / leads to %s, want %s/login", loc, base)
	}
	c.screenshot("login")
	c.step("type the password", chromedp.SendKeys(chromedp.ID("password"), password))
	c.load("log in", clickSubmit("#login"))
	if loc := c.location(); loc != base+"/" {
		body := c.text("page", "body")
		t.Fatalf("after logging in the browser is at %s, want the overview %s/\n%s", loc, base, body)
	}
	c.step("overview", chromedp.WaitVisible(chromedp.ID("nav-tunnels")), chromedp.WaitReady(chromedp.ID("chart-edge")))
	// The session cookie, as the browser keeps it: out of the page's
	// reach (HttpOnly) and never sent by another site's requests.
	cctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	cookies, err := chromedp.Call(cctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	cancel()
	if err != nil {
		c.fail("cookies", err)
	}
	if len(cookies.Cookies) == 0 {
		t.Errorf("no session cookie after the login")
	}
	for _, ck := range cookies.Cookies {
		if !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteStrict {
			t.Errorf("cookie %s: HttpOnly %v, SameSite %q; want HttpOnly and SameSite=Strict", ck.Name, ck.HTTPOnly, ck.SameSite)
		}
	}

	// Create tunnel web: its token is on the page once.
	c.load("open the tunnels page", chromedp.Click(chromedp.ID("nav-tunnels")))
	c.step("name the tunnel", chromedp.SendKeys(chromedp.ID("tunnel-name"), "web"))
	c.load("create the tunnel", clickSubmit("#tunnel-create"))
	token := strings.TrimSpace(c.text("the token", "#token"))
	if _, err := tunnel.ParseToken(token); err != nil {
		t.Fatalf("#token %q is not a tunnel token: %v", token, err)
	}
	if cfg := c.text("the connector's config", "#connector-config"); !strings.Contains(cfg, token) {
		t.Errorf("#connector-config does not hold the token:\n%s", cfg)
	}
	c.screenshot("token")

	// The connector starts with that token while the tunnels page is
	// open: its connections appear in place, the page not reloaded (the
	// marker set in this document stays).
	c.load("back to the tunnels page", chromedp.Click(chromedp.ID("nav-tunnels")))
	c.waitJS("tunnel web listed", `document.querySelector('#tunnels tr[data-tunnel="web"]') !== null`, 10*time.Second)
	if n := eval[int](c, "count connections", `document.querySelectorAll('tr.conn[data-tunnel="web"]').length`); n != 0 {
		t.Fatalf("%d connections of web listed before its connector runs", n)
	}
	eval[chromedp.Void](c, "mark the document", `window.onrampNotReloaded = 42`)
	tokenFile := filepath.Join(rig.Dir, "web.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conn, err := rig.StartTunnelConnector(n.Node("conn"), tokenFile, "web", "quic", testnet.DefaultIngressYAML("198.18.30.2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.WaitReady(20 * time.Second); err != nil {
		t.Fatalf("connector: %v\n%s", err, conn.Output())
	}
	c.waitJS("the connector's connections appear", `document.querySelectorAll('tr.conn[data-tunnel="web"]').length > 0`, 15*time.Second)
	// Every connection the edge has (edge status), each in its row, by
	// its connector's ID.
	var ids []string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		ids = c.edgeConns("web")
		shown := eval[int](c, "count connections", `document.querySelectorAll('tr.conn[data-tunnel="web"]').length`)
		if len(ids) > 0 && shown == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("tunnels page: %d rows tr.conn of web, edge status has %d connections; want a row for each", shown, len(ids))
			break
		}
	}
	if len(ids) == 0 {
		t.Fatal("edge status lists no connection of web")
	}
	shown := eval[[]string](c, "connector IDs", `Array.from(document.querySelectorAll('tr.conn[data-tunnel="web"]'), r => r.dataset.connector)`)
	for _, id := range shown {
		if id != ids[0] {
			t.Errorf("the page shows a connection of connector %q, the edge has connector %s", id, ids[0])
		}
	}
	if rows := eval[string](c, "connection rows", `Array.from(document.querySelectorAll('tr.conn[data-tunnel="web"]'), r => r.textContent).join('\n')`); !strings.Contains(rows, "quic") {
		t.Errorf("the connection rows do not name the transport quic:\n%s", rows)
	}
	if eval[int](c, "the marker", `window.onrampNotReloaded || 0`) != 42 {
		t.Fatal("the tunnels page was reloaded to show the connections; want them added in place")
	}

	// Traffic through the tunnel, a few MB each way at a time until the
	// charts have drawn it (bounded: at most 256 MB).
	chart := `document.getElementById('chart-tunnel-web')`
	c.waitJS("tunnel web's chart", chart+` !== null`, 5*time.Second)
	updates0 := eval[float64](c, "chart updates", `Number(`+chart+`.dataset.updates || 0)`)
	stop := make(chan struct{})
	var sent sync.WaitGroup
	var trafficErr error
	sent.Add(1)
	go func() {
		defer sent.Done()
		edge := n.Addr("edge", "user", false).String()
		sum := net.JoinHostPort(edge, fmt.Sprint(testnet.EdgeSumPort))
		source := net.JoinHostPort(edge, fmt.Sprint(testnet.EdgeSourcePort))
		for total := 0; total < 256<<20; total += 8 << 20 {
			// 4 MB each way: to the origin, and back to the user.
			if _, err := n.Node("user").Upload(sum, 4<<20); err != nil {
				trafficErr = err
				return
			}
			if _, err := n.Node("user").Download(source, 4<<20); err != nil {
				trafficErr = err
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	c.waitJS("tunnel web's chart draws the traffic",
		fmt.Sprintf(`Number(%[1]s.dataset.peak) > 0 && Number(%[1]s.dataset.updates) > %[2]v`, chart, updates0), 30*time.Second)
	// The connections' rates: some bytes/s other than 0 on the page.
	c.waitJS("a connection shows its bytes/s", `/[1-9][0-9.,]*\s*[kKMG]?i?B\/s/.test(Array.from(document.querySelectorAll('tr.conn[data-tunnel="web"]'), r => r.textContent).join(' '))`, 20*time.Second)
	c.screenshot("tunnels")
	if eval[int](c, "the marker", `window.onrampNotReloaded || 0`) != 42 {
		t.Fatal("the tunnels page reloaded while the chart moved; want it updated in place")
	}

	// The overview's edge chart draws the traffic too (a few updates of
	// it, for a screenshot with a curve).
	c.load("open the overview", chromedp.Click(chromedp.ID("nav-overview")))
	c.waitJS("the edge chart draws the traffic",
		`Number(document.getElementById('chart-edge').dataset.peak) > 0 && Number(document.getElementById('chart-edge').dataset.updates) >= 3`, 20*time.Second)
	c.step("the overview's tables", chromedp.WaitReady(chromedp.ID("limits")), chromedp.WaitReady(chromedp.ID("drops")))
	c.screenshot("overview")
	close(stop)
	sent.Wait()
	if trafficErr != nil {
		t.Fatalf("traffic through tunnel web: %v", trafficErr)
	}

	// An L3 client: its config as text and as a QR code that reads back
	// into the same text, less its comment lines.
	c.load("open the L3 page", chromedp.Click(chromedp.ID("nav-l3")))
	c.step("name the client", chromedp.SendKeys(chromedp.ID("client-name"), "phone"))
	c.load("add the client", clickSubmit("#client-add"))
	conf := c.text("the client's config", "#client-config")
	client, err := l3config.ParseClient([]byte(conf))
	if err != nil {
		t.Fatalf("#client-config does not parse as a client config: %v\n%s", err, conf)
	}
	if client.PrivateKey.IsZero() {
		t.Errorf("#client-config has no private key:\n%s", conf)
	}
	src := eval[string](c, "the QR image", `document.getElementById('client-qr').getAttribute('src')`)
	data, ok := strings.CutPrefix(src, "data:image/png;base64,")
	if !ok {
		t.Fatalf("#client-qr src is %.60q..., want a data:image/png;base64 URL", src)
	}
	qr, err := decodeQR(data)
	if err != nil {
		t.Fatalf("#client-qr: %v", err)
	}
	if want := withoutComments(conf); qr != want {
		t.Errorf("the QR code reads\n%s\nwant the config without its comment lines:\n%s", qr, want)
	}
	// As a phone sees it: the code drawn on the screen reads the same. A
	// phone reads many frames; the test takes up to three screenshots,
	// as a clip at fractional page coordinates can blur the code's edge
	// so that ZXing misjudges the grid (see decodeShot).
	var seen string
	var shotErr error
	for range 3 {
		shot, err := testnet.BrowserRun(b, 15*time.Second, chromedp.Screenshot(chromedp.ID("client-qr")))
		if err != nil {
			c.fail("screenshot of the QR code", err)
		}
		if seen, shotErr = decodeShot(shot); shotErr == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if shotErr != nil || seen != qr {
		t.Errorf("the QR code as drawn on the page reads %q, %v; want what its image holds", seen, shotErr)
	}
	c.screenshot("client-qr")
	c.load("back to the L3 page", chromedp.Click(chromedp.ID("nav-l3")))
	c.waitJS("client phone listed", `document.querySelector('#l3-clients tr[data-client="phone"]') !== null`, 10*time.Second)
	if row := c.text("client phone's row", `#l3-clients tr[data-client="phone"]`); !strings.Contains(row, client.Addresses[0].Addr().String()) {
		t.Errorf("client phone's row does not show its address %s: %q", client.Addresses[0].Addr(), row)
	}
	c.step("the L3 tables", chromedp.WaitReady(chromedp.ID("l3-connectors")), chromedp.WaitReady(chromedp.ID("l3-subnets")))
	c.screenshot("l3")
	if out, err := rig.EdgeCLI(ctx, "l3", "client", "list"); err != nil || !strings.Contains(out, "phone") {
		t.Errorf("edge l3 client list after adding phone in the console: %v\n%s", err, out)
	}

	// Delete tunnel web: its connector is dropped, its connections go.
	c.load("open the tunnels page", chromedp.Click(chromedp.ID("nav-tunnels")))
	c.load("delete tunnel web", clickSubmit(`form.tunnel-delete[data-tunnel="web"]`))
	if !slices.ContainsFunc(b.Messages(), func(m string) bool {
		return strings.HasPrefix(m, "dialog confirm: Delete tunnel web? Its connectors are cut")
	}) {
		t.Errorf("the delete asked for no confirmation; browser console:\n%s", strings.Join(b.Messages(), "\n"))
	}
	if loc := c.location(); !strings.HasPrefix(loc, base+"/tunnels") {
		t.Errorf("after the delete the browser is at %s, want %s/tunnels", loc, base)
	}
	c.waitJS("tunnel web and its connections gone",
		`document.querySelector('#tunnels tr[data-tunnel="web"]') === null && document.querySelectorAll('tr.conn[data-tunnel="web"]').length === 0`, 10*time.Second)
	select {
	case <-conn.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("the connector of the deleted tunnel still runs:\n%s", conn.Output())
	}
	if out := conn.Output(); !strings.Contains(out, "tunnel deleted") {
		t.Errorf("the connector of the deleted tunnel said:\n%s\nwant the refusal naming \"tunnel deleted\"", out)
	}
	if ids := c.edgeConns("web"); len(ids) != 0 {
		t.Errorf("edge status still lists %d connections of web", len(ids))
	}
	// A poll later the page still shows none.
	time.Sleep(2500 * time.Millisecond)
	if n := eval[int](c, "count connections", `document.querySelectorAll('tr.conn[data-tunnel="web"]').length`); n != 0 {
		t.Errorf("%d connections of the deleted tunnel back on the page", n)
	}

	// Log out: the session is gone, a page leads to the login again.
	c.load("log out", clickSubmit("#logout"))
	if loc := c.location(); loc != base+"/login" {
		t.Errorf("after logging out the browser is at %s, want %s/login", loc, base)
	}
	c.step("a page after the logout", chromedp.Navigate(base+"/tunnels"), chromedp.WaitVisible(chromedp.ID("login")))
	if loc := c.location(); loc != base+"/login" {
		t.Errorf("after logging out /tunnels leads to %s, want %s/login", loc, base)
	}

	// Back in with a one-time link from `edge console link`, as an
	// operator without the password would.
	link, err := rig.EdgeCLI(ctx, "console", "link")
	if err != nil {
		t.Fatal(err)
	}
	link = strings.TrimSpace(link)
	if !strings.HasPrefix(link, base+"/login/link/") {
		t.Fatalf("edge console link printed %q, want a link under %s/login/link/", link, base)
	}
	c.step("open the one-time link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("link-login")))
	c.load("log in with the link's button", clickSubmit("#link-login"))
	c.step("the overview", chromedp.WaitVisible(chromedp.ID("nav-tunnels")))
	if loc := c.location(); loc != base+"/" {
		t.Errorf("the one-time link leads to %s, want the overview %s/", loc, base)
	}

	// The browser's side of the console's security.
	checkBrowserSecurity(t, b, base)
	t.Logf("browser test done in %v; screenshots in %s", time.Since(start).Round(time.Second), shots)
}

// checkBrowserSecurity checks what the browser saw: the console's CSP on
// every answer, no CSP violation nor uncaught exception on the console,
// no request to another origin.
func checkBrowserSecurity(t *testing.T, b *testnet.Browser, base string) {
	t.Helper()
	t.Logf("browser console:\n%s", strings.Join(b.Messages(), "\n"))
	for _, p := range browserProblems(b, base) {
		t.Error(p)
	}
	responses := b.Responses()
	docs := 0
	for _, r := range responses {
		if !strings.HasPrefix(r.URL, base+"/") {
			continue
		}
		if r.Type == "Document" {
			docs++
		}
		if got := r.Headers.Get("Content-Security-Policy"); got != consoleCSP {
			t.Errorf("%s (%s, %d): Content-Security-Policy %q, want %q", r.URL, r.Type, r.Status, got, consoleCSP)
		}
		if got := r.Headers.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q, want nosniff", r.URL, got)
		}
	}
	if docs < 8 {
		t.Errorf("the browser saw %d pages of the console; want every page of the test", docs)
	}
}

// browserProblems lists what the browser saw that a page of base must
// not cause: a CSP violation, an uncaught exception or a rendering error
// (an input's pattern that is no valid regular expression) on its
// console, a request to another origin.
func browserProblems(b *testnet.Browser, base string) []string {
	var out []string
	for _, m := range b.Messages() {
		if strings.Contains(m, "Content Security Policy") || strings.Contains(m, "Refused to") || strings.HasPrefix(m, "exception") ||
			strings.HasPrefix(m, "log rendering/error") {
			out = append(out, "browser console: "+m)
		}
	}
	for _, r := range b.ForeignRequests(base) {
		out = append(out, "request to another origin: "+r)
	}
	return out
}

// TestBrowserChecksCanFail shows that the browser test's security checks
// see what they look for: a page whose inline script its CSP refuses, and
// a page that loads an image from another origin.
func TestBrowserChecksCanFail(t *testing.T) {
	if _, err := testnet.ChromiumPath(); err != nil {
		testnet.SkipOrFail(t, "browser test: %v", err)
	}
	n := testnet.New(t, testnet.Topology{Name: "browser", Nodes: []testnet.NodeSpec{{Name: "web"}}})
	node := n.Node("web")
	serve := func(addr string, h http.HandlerFunc) string {
		var ln net.Listener
		if err := node.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return "http://" + ln.Addr().String()
	}
	other := serve("127.0.0.2:0", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	base := serve("127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/inline":
			w.Header().Set("Content-Security-Policy", consoleCSP)
			fmt.Fprint(w, `<!doctype html><title>x</title><script>document.title = "ran"</script>`)
		case "/foreign":
			fmt.Fprintf(w, `<!doctype html><title>x</title><img src="%s/pixel.png">`, other)
		default:
			http.NotFound(w, r)
		}
	})
	b, err := node.StartBrowser(testnet.BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if problems := browserProblems(b, base); len(problems) != 0 {
		t.Fatalf("problems before any page: %v", problems)
	}
	if err := b.Do(20*time.Second, chromedp.Navigate(base+"/inline")); err != nil {
		t.Fatal(err)
	}
	if title, err := testnet.BrowserRun(b, 10*time.Second, chromedp.Title()); err != nil || title != "x" {
		t.Errorf("page title %q, %v: the CSP did not stop the inline script", title, err)
	}
	waitProblem := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			for _, p := range browserProblems(b, base) {
				if strings.Contains(p, want) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the checks did not see %q: %v\nconsole: %v", want, browserProblems(b, base), b.Messages())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitProblem("Content Security Policy")
	if err := b.Do(20*time.Second, chromedp.Navigate(base+"/foreign")); err != nil {
		t.Fatal(err)
	}
	waitProblem("request to another origin: " + other + "/pixel.png")
}

// decodeQR reads the text of the QR code in a base64 PNG.
func decodeQR(b64 string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("base64: %w", err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("png: %w", err)
	}
	return decodeQRImage(img)
}

// decodeShot reads a screenshot of the code: as taken, and else inside a
// white margin as the page around it, which gives ZXing's finder-pattern
// search the quiet zone a clip at the image's edge may have cut.
func decodeShot(shot []byte) (string, error) {
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		return "", fmt.Errorf("png: %w", err)
	}
	text, err := decodeQRImage(img)
	if err == nil {
		return text, nil
	}
	r := img.Bounds()
	m := max(8, r.Dx()/8)
	framed := image.NewRGBA(image.Rect(0, 0, r.Dx()+2*m, r.Dy()+2*m))
	draw.Draw(framed, framed.Bounds(), image.White, image.Point{}, draw.Src)
	draw.Draw(framed, image.Rect(m, m, m+r.Dx(), m+r.Dy()), img, r.Min, draw.Src)
	text, err2 := decodeQRImage(framed)
	if err2 != nil {
		return "", fmt.Errorf("%w; in a white margin: %w", err, err2)
	}
	return text, nil
}

// decodeQRImage reads the QR code that fills img.
func decodeQRImage(img image.Image) (string, error) {
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	// The image is the code alone: PURE_BARCODE takes the module grid
	// from its bounds. ZXing's finder-pattern search, tried next,
	// misplaces the grid on some 1 in 10 of such images (gozxing issue
	// 14), which says nothing of the code; a phone reads many frames.
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		var err2 error
		if res, err2 = qrcode.NewQRCodeReader().Decode(bmp, nil); err2 != nil {
			return "", fmt.Errorf("qr decode: %w; without PURE_BARCODE: %w", err, err2)
		}
	}
	return res.GetText(), nil
}

// withoutComments is a wg-quick config less its comment lines, as the QR
// code of `edge l3 client add --qr` holds it.
func withoutComments(conf string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(conf, "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}
