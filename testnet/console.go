package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ConsoleAddr is where the console rig's edge serves its web console:
// the loopback address of the edge node, where the rig's browser runs
// too (a console on loopback needs no TLS).
const ConsoleAddr = "127.0.0.1:9300"

// ConsoleRig is a [TunnelRig] whose edge also runs its L3 hub and serves
// its web console on [ConsoleAddr] with a login password.
type ConsoleRig struct {
	*TunnelRig
	URL      string // the console's base URL, as the browser in the edge node reaches it
	Password string
}

// ConsoleOptions shape [StartConsoleRig].
type ConsoleOptions struct {
	Dir string // required: a directory the rig owns
	// Tunnel is the tunnel the edge's routes and bindings name
	// ([DefaultEdgeYAML]); the rig does not create it (the browser
	// does). Default "web".
	Tunnel string
	// Password is the console's login password, which `edge console
	// passwd --stdin` hashes into the edge configuration.
	Password string
}

// StartConsoleRig starts the edge of a [Tunnel] topology with the routes
// and bindings of opt.Tunnel, the L3 hub (its endpoint the edge's address
// towards the user, addresses from [L3Pool4] and [L3Pool6]) and the
// console on [ConsoleAddr], its password set with `edge console passwd
// --stdin`. The rig's own tunnel is "demo", which no route names.
func StartConsoleRig(ctx context.Context, n *Net, opt ConsoleOptions) (*ConsoleRig, error) {
	if opt.Tunnel == "" {
		opt.Tunnel = "web"
	}
	l3 := fmt.Sprintf(`l3:
  listen: "[::]:%d"
  endpoint: "%s"
  pools: {ipv4: %s, ipv6: "%s"}
`, L3EdgePort, net.JoinHostPort(n.Addr("edge", "user", false).String(), fmt.Sprint(L3EdgePort)), L3Pool4, L3Pool6)
	rig, err := StartTunnelRig(ctx, n, RigOptions{
		Dir: opt.Dir, TunnelName: "demo", EdgeYAML: DefaultEdgeYAML(opt.Tunnel) + l3, Console: ConsoleAddr,
		BeforeServe: func(r *TunnelRig) error { return setConsolePassword(ctx, r, opt.Password) },
	})
	if err != nil {
		return nil, err
	}
	c := &ConsoleRig{TunnelRig: rig, URL: "http://" + ConsoleAddr, Password: opt.Password}
	// The edge starts its console just after its admin socket: wait
	// until it answers, from inside the edge node.
	client := n.Node("edge").HTTPClient(2 * time.Second)
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(c.URL + "/login")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("console at %s: %w\n%s", c.URL, err, rig.Edge.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c, nil
}

// setConsolePassword runs `edge console passwd --stdin` with the password
// on its standard input: it writes the password's hash into the edge
// configuration, as an operator sets it.
func setConsolePassword(ctx context.Context, r *TunnelRig, password string) error {
	cmd := r.Net.Node("edge").Command(ctx, r.EdgeBin, "--config", r.EdgeConfig, "console", "passwd", "--stdin")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.CombinedOutput()
	r.Net.logf("[edge] edge console passwd --stdin\n%s", out)
	if err != nil {
		return fmt.Errorf("edge console passwd --stdin: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ChromiumPath returns the path of the Chromium (or Chrome) binary the
// browser tests run, or why there is none.
func ChromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium binary in PATH (run make deps: Debian's chromium)")
}

// Browser is a headless Chromium running inside a node's network
// namespace, driven from the test over the DevTools protocol (chromedp,
// through a pipe, so that no debugging port is open). It records what the
// page said on its console and every request it made, and accepts every
// dialog (a confirm before an action).
type Browser struct {
	// Ctx is the browser's tab. Derive a context with a timeout from it
	// for each step ([Browser.Do], [BrowserRun]); a timeout on Ctx
	// itself would close the browser.
	Ctx    context.Context
	cancel func()

	mu        sync.Mutex
	messages  []string // console calls, exceptions and browser log entries
	requests  []string // the URL of every request the page made
	responses []BrowserResponse
}

// BrowserResponse is a response the page got.
type BrowserResponse struct {
	URL     string
	Type    string // as DevTools names it: Document, Script, Stylesheet, Fetch, Image...
	Status  int64
	Headers http.Header
}

// BrowserOptions shape [Node.StartBrowser].
type BrowserOptions struct {
	// Width and Height of the page's viewport (the screenshots' size);
	// default 1280x800.
	Width, Height int
	// Logf receives the browser's own output; nil: discarded.
	Logf func(format string, args ...any)
}

// StartBrowser starts a headless Chromium inside the node's namespace
// (through ip netns exec) and opens a blank tab. It closes when the Net
// closes, or with [Browser.Close].
func (node *Node) StartBrowser(opt BrowserOptions) (*Browser, error) {
	chromium, err := ChromiumPath()
	if err != nil {
		return nil, err
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		return nil, err
	}
	if opt.Width == 0 {
		opt.Width, opt.Height = 1280, 800
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.WindowSize(opt.Width, opt.Height),
		// Chromium's sandbox refuses to run as root, and the testbed
		// needs root (CI runs it so). The pages it opens are the test's
		// own, in a testbed namespace with no route off the machine.
		chromedp.NoSandbox,
		chromedp.Flag("hide-scrollbars", true),
		// Run it as `ip netns exec NS chromium ...`: the same process
		// (ip execs chromium), its DevTools pipe (fds 3 and 4) inherited.
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.Args = append([]string{"ip", "netns", "exec", node.NS, chromium}, cmd.Args[1:]...)
			cmd.Path = ipPath
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}),
	)
	if opt.Logf != nil {
		opts = append(opts, chromedp.CombinedOutput(logWriter{opt.Logf}))
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &Browser{}
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(b.record))
	b.Ctx = ctx
	b.cancel = sync.OnceFunc(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first run starts the browser; it is bounded by a timer, not by
	// a context deadline, which would stay bound to the browser's life.
	started := make(chan error, 1)
	// The window's size is not the page's (headless Chromium keeps room
	// for the browser's own bar): set the viewport itself.
	go func() { started <- chromedp.Do(ctx, chromedp.EmulateViewport(int64(opt.Width), int64(opt.Height))) }()
	select {
	case err = <-started:
	case <-time.After(60 * time.Second):
		err = errors.New("no answer in 60s")
	}
	if err != nil {
		b.cancel()
		return nil, fmt.Errorf("start chromium in %s: %w", node.Name, err)
	}
	node.net.OnClose(func() error { b.Close(); return nil })
	return b, nil
}

// logWriter sends what the browser prints to a Logf, line by line.
type logWriter struct{ logf func(string, ...any) }

func (w logWriter) Write(p []byte) (int, error) {
	for l := range strings.SplitSeq(strings.TrimRight(string(p), "\n"), "\n") {
		w.logf("[chromium] %s", l)
	}
	return len(p), nil
}

// record keeps the events a test looks at afterwards. It runs in the
// tab's event loop: quick, and no commands.
func (b *Browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var args []string
		for _, a := range ev.Args {
			if a.Value != nil {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		b.messages = append(b.messages, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		b.messages = append(b.messages, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, text))
	case *log.EventEntryAdded:
		e := ev.Entry
		b.messages = append(b.messages, fmt.Sprintf("log %s/%s: %s (%s)", e.Source, e.Level, e.Text, e.URL))
	case *page.EventJavascriptDialogOpening:
		// A confirm() before an action: answer OK, as the user who
		// clicked would. Not from this loop, which must run no command.
		b.messages = append(b.messages, fmt.Sprintf("dialog %s: %s (accepted)", ev.Type, ev.Message))
		go func() {
			_, _ = chromedp.Call(b.Ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}()
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, ev.Request.URL)
	case *network.EventResponseReceived:
		h := http.Header{}
		for k, v := range ev.Response.Headers {
			h.Add(k, fmt.Sprint(v))
		}
		b.responses = append(b.responses, BrowserResponse{URL: ev.Response.URL, Type: string(ev.Type), Status: ev.Response.Status, Headers: h})
	}
}

// Messages returns what the page wrote on its console so far: console API
// calls, uncaught exceptions, and the browser's log entries (CSP
// violations, failed loads).
func (b *Browser) Messages() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.messages)
}

// Requests returns the URL of every request the page made so far.
func (b *Browser) Requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.requests)
}

// Responses returns every response the page got so far.
func (b *Browser) Responses() []BrowserResponse {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.responses)
}

// ForeignRequests returns the requests that went anywhere but base's
// origin (data: URLs, which the page draws itself, excepted).
func (b *Browser) ForeignRequests(base string) []string {
	want, err := url.Parse(base)
	if err != nil {
		return []string{"bad base " + base}
	}
	var out []string
	for _, r := range b.Requests() {
		u, err := url.Parse(r)
		if err == nil && (u.Scheme == "data" || (u.Scheme == want.Scheme && u.Host == want.Host)) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// Do runs actions in order in the tab, bounded by timeout.
func (b *Browser) Do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// BrowserRun runs one action with a result in the browser's tab, bounded
// by timeout.
func BrowserRun[T any](b *Browser, timeout time.Duration, action chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, action)
}

// Screenshot saves a PNG of the window (the viewport) to path.
func (b *Browser) Screenshot(path string, timeout time.Duration) error {
	png, err := BrowserRun(b, timeout, chromedp.CaptureScreenshot())
	if err != nil {
		return fmt.Errorf("screenshot %s: %w", filepath.Base(path), err)
	}
	return os.WriteFile(path, png, 0o644)
}

// Close closes the browser and waits until it has exited.
func (b *Browser) Close() { b.cancel() }

// ScreenshotDir is where browser tests save their screenshots for review:
// $ONRAMP_SCREENSHOTS if set, else screenshots/ in the testnet package's
// directory (ignored by git). It makes the directory.
func ScreenshotDir() (string, error) {
	dir := os.Getenv("ONRAMP_SCREENSHOTS")
	if dir == "" {
		dir = "screenshots"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return abs, os.MkdirAll(abs, 0o755)
}
