package main

// The edge's configuration reload: SIGHUP (systemctl reload) re-reads the
// --config file and applies what a running edge can change without
// dropping a connection. The pattern is the connector's ingress reload:
// everything is checked and every new listener opened before anything
// changes, then each part is swapped in at once (atomic pointers in
// package edge), then what is gone is closed. A file that fails any step
// changes nothing.
//
// Applied at run time:
//   - routes: new connections are routed by the new table; a connection
//     already routed (a TLS session, an HTTP keep-alive connection) stays
//     on its target until it ends.
//   - bindings, listen.tls, listen.http: a listener for each new address is
//     opened (all of them before any change, so a port held by another
//     process refuses the whole file), a removed one is closed: it accepts
//     no more, and the TCP connections it accepted run to their end (as the
//     managed tunnel and HAProxy let them: a reload is no reason to cut a
//     user off). A removed UDP binding's flows end with its socket, the
//     only way their answers had back. A binding whose listen address
//     stays but whose tunnel, service or origin changed keeps its
//     listener (no moment where the port refuses): new connections and
//     flows go to the new target, open ones stay where they were.
//   - limits, except maxHandshakes, maxHandshakesPerSource and
//     quicRetryAbove: new connections, streams and flows are held to the
//     new values; open ones are not cut (a lowered limit refuses new ones
//     until enough have ended).
//   - log_level (unless --log-level was given on the command line, which
//     wins).
//   - l3.acl: the L3 hub's policy applies from its next packet on, to the
//     WireGuard sessions already up too (a policy is over packets: one
//     narrowed stops at once what it no longer allows).
//   - console.password_hash (`edge console passwd`): the console's login
//     takes the new password at once, and a changed one ends every
//     console session.
//   - the console's certificate: console.tls_cert and tls_key are read
//     again, and a renewed pair is served from the next TLS handshake on
//     (files that do not load fail the reload). Their paths need a
//     restart.
//
// Refused, naming the fields, the running configuration kept: data (and
// with it the certificate, store and admin socket paths), registry,
// listen.tunnels, listen.metrics, advertise, relay, quic_steering, stream_spread, xdp, l3
// but its acl (the hub's socket, key, pools and limits are set up once)
// and the three handshake limits, which the tunnel listeners take at
// start, listen.console and the paths console.tls_cert and tls_key (the
// console's listener is opened once). Restart the edge to change them.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l4proxy/edge"
)

// logLevel is the edge's log level: the LevelVar its logger obeys, and
// whether --log-level was given (then the file's log_level is ignored).
type logLevel struct {
	v        *slog.LevelVar
	fromFlag bool
}

// reloader holds what a reload changes in the running edge.
type reloader struct {
	a     *app
	path  string // the --config file; "" when the edge runs on the defaults
	level logLevel

	ctx    context.Context // the user listeners serve until it is done (stop)
	cancel context.CancelFunc

	mu        sync.Mutex               // one apply at a time
	cur       *edgeconfig.Config       // the configuration applied last
	listeners map[string]*userListener // by listenSpec.key
	wg        sync.WaitGroup           // the listeners' serving goroutines
	reloads   *prometheus.CounterVec   // result: ok, error
	lastOK    prometheus.Gauge         // unix time of the last successful load
	lastGood  prometheus.Gauge         // 1 if the last reload succeeded
}

func newReloader(a *app, path string, level logLevel, reg prometheus.Registerer) *reloader {
	r := &reloader{a: a, path: path, level: level, listeners: make(map[string]*userListener),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onramp_edge_config_reloads_total",
			Help: "Reloads of the edge configuration (SIGHUP), by result: ok (applied) or error (refused; the running configuration stayed).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "onramp_edge_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful load of the edge configuration (the start, or a reload).",
		}),
		lastGood: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "onramp_edge_config_last_reload_successful",
			Help: "1 if the last load of the edge configuration succeeded, 0 if the last reload was refused.",
		}),
	}
	r.ctx, r.cancel = context.WithCancel(a.ctx)
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("error")
	reg.MustRegister(r.reloads, r.lastOK, r.lastGood)
	return r
}

// listenSpec is one user listener a configuration asks for.
type listenSpec struct {
	key     string // the same key across reloads is the same listener
	kind    string // as logged: "tls (SNI)", "http (Host)", "tcp binding", "udp binding"
	field   string // the field it comes from, for errors: "listen.tls", "bindings[2]"
	network string // tcp or udp
	addr    string
	binding *edgeconfig.Binding // bindings only
}

// userListener is an open user listener.
type userListener struct {
	spec listenSpec
	ln   net.Listener   // tcp
	pc   net.PacketConn // udp
	bind *edge.BindingVar
}

func (l *userListener) close() error {
	if l.ln != nil {
		return l.ln.Close()
	}
	return l.pc.Close()
}

func (l *userListener) addr() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.pc.LocalAddr().String()
}

// listenSpecs lists the user listeners of cfg; two with the same address
// are an error.
func listenSpecs(cfg *edgeconfig.Config) ([]listenSpec, error) {
	var specs []listenSpec
	if cfg.Listen.TLS != "" {
		specs = append(specs, listenSpec{key: "tls " + cfg.Listen.TLS, kind: "tls (SNI)", field: "listen.tls", network: "tcp", addr: cfg.Listen.TLS})
	}
	if cfg.Listen.HTTP != "" {
		specs = append(specs, listenSpec{key: "http " + cfg.Listen.HTTP, kind: "http (Host)", field: "listen.http", network: "tcp", addr: cfg.Listen.HTTP})
	}
	for i := range cfg.Bindings {
		b := &cfg.Bindings[i]
		network, addr := b.Network()
		specs = append(specs, listenSpec{key: b.Listen, kind: network + " binding", field: fmt.Sprintf("bindings[%d]", i),
			network: network, addr: addr, binding: b})
	}
	seen := make(map[string]string) // network and address -> field
	for _, s := range specs {
		k := s.network + " " + s.addr
		if prev, ok := seen[k]; ok {
			return nil, fmt.Errorf("edge config: %s: %s %s is also the address of %s", s.field, s.network, s.addr, prev)
		}
		seen[k] = s.field
	}
	return specs, nil
}

// edgeBinding turns a configured binding into the Server's.
func edgeBinding(b *edgeconfig.Binding) edge.Binding {
	if b.Direct() {
		return edge.Binding{Origin: edgeconfig.Origin(b.Service), ProxyProtocol: b.ProxyProtocol == "v2"}
	}
	return edge.Binding{Tunnel: b.Tunnel, Service: b.Service}
}

// routesOf returns the Server's routes of cfg.
func routesOf(cfg *edgeconfig.Config) []edge.Route {
	routes := make([]edge.Route, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		if r.Direct() {
			routes = append(routes, edge.Route{Hostname: r.Hostname, Origin: edgeconfig.Origin(r.Service), ProxyProtocol: r.ProxyProtocol == "v2"})
		} else {
			routes = append(routes, edge.Route{Hostname: r.Hostname, Tunnel: r.Tunnel})
		}
	}
	return routes
}

// limitsOf returns the Server's reloadable limits of cfg.
func limitsOf(cfg *edgeconfig.Config) edge.Limits {
	l := &cfg.Limits
	idle := time.Duration(l.IdleTimeout)
	if idle == 0 {
		idle = -1 // limits.idleTimeout: 0s turns it off
	}
	return edge.Limits{
		MaxStreamsPerTunnel: l.MaxStreamsPerTunnel, IdleTimeout: idle,
		MaxConns: l.MaxConns, MaxConnsPerSource: l.MaxConnsPerSource, HeaderTimeout: time.Duration(l.HeaderTimeout),
		UDPFlowIdle: time.Duration(l.UDPFlowIdle), UDPUnrepliedIdle: time.Duration(l.UDPUnrepliedIdle),
		MaxUDPFlowsPerTunnel: l.MaxUDPFlowsPerTunnel, UDPNewFlowsPerSource: l.UDPNewFlowsPerSource, UDPNewFlowsPerTunnel: l.UDPNewFlowsPerTunnel,
	}
}

// fixedLimits are the limits the tunnel listeners take at start.
var fixedLimits = []string{"maxHandshakes", "maxHandshakesPerSource", "quicRetryAbove"}

// fixedFields are the settings a reload cannot change, by their names in
// edge.yml.
var fixedFields = []struct {
	name string
	get  func(*edgeconfig.Config) any
}{
	{"data", func(c *edgeconfig.Config) any { return c.Data }},
	{"registry", func(c *edgeconfig.Config) any { return c.Registry }},
	{"listen.tunnels", func(c *edgeconfig.Config) any { return c.Listen.Tunnels }},
	{"listen.metrics", func(c *edgeconfig.Config) any { return c.Listen.Metrics }},
	{"advertise", func(c *edgeconfig.Config) any { return c.Advertise }},
	{"relay", func(c *edgeconfig.Config) any { return c.Relay }},
	{"quic_steering", func(c *edgeconfig.Config) any { return c.Steering() }},
	{"stream_spread", func(c *edgeconfig.Config) any { return c.StreamSpread }},
	{"xdp", func(c *edgeconfig.Config) any { return c.XDP }},
	{"l3", func(c *edgeconfig.Config) any { l := c.L3; l.ACL = l3router.ACLConfig{}; return l }}, // l3.acl reloads
	{"limits.maxHandshakes", func(c *edgeconfig.Config) any { return c.Limits.MaxHandshakes }},
	{"limits.maxHandshakesPerSource", func(c *edgeconfig.Config) any { return c.Limits.MaxHandshakesPerSource }},
	{"limits.quicRetryAbove", func(c *edgeconfig.Config) any { return c.Limits.QUICRetryAbove }},
	{"listen.console", func(c *edgeconfig.Config) any { return c.Listen.Console }},
	{"console.tls_cert", func(c *edgeconfig.Config) any { return c.Console.TLSCert }},
	{"console.tls_key", func(c *edgeconfig.Config) any { return c.Console.TLSKey }},
}

// checkFixed returns an error naming the settings that differ between the
// running configuration and next and that need a restart.
func checkFixed(cur, next *edgeconfig.Config) error {
	var changed []string
	for _, f := range fixedFields {
		if !reflect.DeepEqual(f.get(cur), f.get(next)) {
			changed = append(changed, f.name)
		}
	}
	// Whatever is left once the reloadable parts are made equal must be
	// equal too: a setting added to edge.yml later and not sorted into
	// either kind is refused rather than silently ignored.
	rest := *next
	rest.Routes, rest.Bindings, rest.LogLevel = cur.Routes, cur.Bindings, cur.LogLevel
	rest.Listen.TLS, rest.Listen.HTTP = cur.Listen.TLS, cur.Listen.HTTP
	rest.QUICSteering = cur.QUICSteering // nil and true are the same
	rest.L3.ACL = cur.L3.ACL
	rest.Console.PasswordHash = cur.Console.PasswordHash
	lim := cur.Limits
	lim.MaxHandshakes, lim.MaxHandshakesPerSource, lim.QUICRetryAbove = next.Limits.MaxHandshakes, next.Limits.MaxHandshakesPerSource, next.Limits.QUICRetryAbove
	rest.Limits = lim
	if len(changed) == 0 && !reflect.DeepEqual(&rest, cur) {
		changed = append(changed, "a setting")
	}
	if len(changed) > 0 {
		return fmt.Errorf("%s changed: only a restart of the edge applies that (a reload applies routes, bindings, listen.tls, listen.http, log_level, l3.acl, console.password_hash, the console's certificate files read again and the limits but the handshake ones)",
			strings.Join(changed, ", "))
	}
	return nil
}

// limitChanges names the limits that differ between a and b ("maxConnsPerSource 256->2").
func limitChanges(a, b *edgeconfig.Limits) []string {
	va, vb := reflect.ValueOf(*a), reflect.ValueOf(*b)
	var out []string
	for i := range va.NumField() {
		name, _, _ := strings.Cut(va.Type().Field(i).Tag.Get("yaml"), ",")
		if slices.Contains(fixedLimits, name) {
			continue
		}
		x, y := va.Field(i).Interface(), vb.Field(i).Interface()
		if x == y {
			continue
		}
		if d, ok := x.(edgeconfig.Duration); ok {
			x, y = time.Duration(d), time.Duration(y.(edgeconfig.Duration))
		}
		out = append(out, fmt.Sprintf("%s %v->%v", name, x, y))
	}
	return out
}

// of returns the log level for cfg: the --log-level flag's if it was
// given, else the file's log_level, else info.
func (l logLevel) of(cfg *edgeconfig.Config) slog.Level {
	switch {
	case l.fromFlag:
		return l.v.Level()
	case cfg.LogLevel == "":
		return slog.LevelInfo
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated
	return level
}

// change counts what an apply added (+), removed (-) and changed (~).
type change struct{ add, del, mod int }

func (c change) String() string { return fmt.Sprintf("+%d -%d ~%d", c.add, c.del, c.mod) }

// start applies the configuration the edge starts with: its routes, and
// its user listeners opened (an address that cannot be bound stops the
// start). The limits are the Server's Options already.
func (r *reloader) start(cfg *edgeconfig.Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.level.v.Set(r.level.of(cfg))
	_, err := r.applyLocked(&edgeconfig.Config{}, cfg, true)
	if err == nil {
		r.lastOK.SetToCurrentTime()
		r.lastGood.Set(1)
	}
	return err
}

// stop closes the user listeners, aborts their connections and waits for
// them: when the edge stops (or fails to start).
func (r *reloader) stop() {
	r.cancel()
	r.wg.Wait()
}

// reload re-reads the --config file and applies it; a file that is
// refused changes nothing. It logs one line either way (what changed, or
// why the file was refused) and counts the reload in
// onramp_edge_config_reloads_total. It is the one entry of a reload (the
// SIGHUP loop calls it): wrap it for what must happen around each.
func (a *app) reload(ctx context.Context) error {
	r := a.reloader
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	summary, err := r.reloadLocked()
	if err != nil {
		r.reloads.WithLabelValues("error").Inc()
		r.lastGood.Set(0)
		a.log.Error("edge config reload refused; the running configuration stays", "file", r.path, "err", err)
		return err
	}
	r.reloads.WithLabelValues("ok").Inc()
	r.lastOK.SetToCurrentTime()
	r.lastGood.Set(1)
	a.log.Info("edge config reloaded", append([]any{"file", r.path}, append(summary, "took", time.Since(start).Round(time.Microsecond))...)...)
	return nil
}

func (r *reloader) reloadLocked() ([]any, error) {
	if r.path == "" {
		return nil, errors.New("the edge runs without --config: there is no file to re-read")
	}
	next, err := r.a.g.load()
	if err != nil {
		return nil, err
	}
	if err := checkFixed(r.cur, next); err != nil {
		return nil, fmt.Errorf("%s: %w", r.path, err)
	}
	return r.applyLocked(r.cur, next, false)
}

// applyLocked changes the running edge from cur to next, all or nothing:
// it checks the routes and bindings and opens the new listeners first,
// then swaps routes, limits and bindings in, starts the new listeners and
// closes the removed ones. It returns the key-value pairs of the reload's
// log line. At the start (first) cur is empty and the Server's limits are
// already next's (its Options).
func (r *reloader) applyLocked(cur, next *edgeconfig.Config, first bool) ([]any, error) {
	a := r.a
	routes := routesOf(next)
	if err := edge.ValidateRoutes(routes); err != nil {
		return nil, fmt.Errorf("edge config: routes: %w", err)
	}
	specs, err := listenSpecs(next)
	if err != nil {
		return nil, err
	}
	// The bindings that stay, with their new targets, checked.
	type retarget struct {
		l *userListener
		b edge.Binding
	}
	var retargets []retarget
	var bindings change
	var listeners change // listen.tls and listen.http
	keep := make(map[string]bool)
	var added []listenSpec
	for _, s := range specs {
		l, ok := r.listeners[s.key]
		if !ok {
			added = append(added, s)
			continue
		}
		keep[s.key] = true
		if s.binding == nil {
			continue
		}
		if nb := edgeBinding(s.binding); nb != l.bind.Load() {
			if _, err := edge.NewBindingVar(nb); err != nil {
				return nil, fmt.Errorf("edge config: %s: %w", s.field, err)
			}
			retargets = append(retargets, retarget{l, nb})
			bindings.mod++
		}
	}
	// Open the new listeners, all before any change.
	var opened []*userListener
	for _, s := range added {
		l, err := openListener(a.ctx, s)
		if err != nil {
			for _, o := range opened {
				_ = o.close()
			}
			return nil, fmt.Errorf("edge config: %s: %w", s.field, err)
		}
		opened = append(opened, l)
	}

	// The console's certificate, read again from the same files: a
	// renewed one (certbot's deploy hook, say) is served from the next
	// handshake on. Unreadable files fail the reload; the old one stays.
	var consoleCert *tls.Certificate
	if !first && a.console != nil && next.Console.TLSCert != "" {
		c, err := loadConsoleCert(&next.Console)
		if err != nil {
			for _, o := range opened {
				_ = o.close()
			}
			return nil, err
		}
		consoleCert = &c
	}

	// The L3 policy: the hub checks it against its peers as it takes it.
	aclChanged := !first && !reflect.DeepEqual(cur.L3.ACL, next.L3.ACL)
	if aclChanged {
		if err := a.setACL(next.L3.ACL); err != nil {
			for _, o := range opened {
				_ = o.close()
			}
			return nil, fmt.Errorf("edge config: l3.acl: %w", err)
		}
	}

	// From here nothing fails.
	certNote := "unchanged"
	if consoleCert != nil && a.console.SetCertificate(*consoleCert) {
		certNote = "renewed"
	}
	// The console's password, checked as edge.yml was read (its format,
	// and that a console off loopback keeps one).
	passwordChanged := !first && cur.Console.PasswordHash != next.Console.PasswordHash
	if passwordChanged && a.console != nil {
		if err := a.console.SetPasswordHash(next.Console.PasswordHash); err != nil {
			a.log.Error("console password not changed", "err", err)
		}
	}
	known := r.knownTunnels()
	_ = a.srv.SetRoutes(routes) // validated
	var routeChange change
	oldRoutes := make(map[string]edgeconfig.Route)
	for _, rt := range cur.Routes {
		oldRoutes[strings.ToLower(rt.Hostname)] = rt
	}
	for _, rt := range next.Routes {
		old, ok := oldRoutes[strings.ToLower(rt.Hostname)]
		switch {
		case !ok:
			routeChange.add++
		case old != rt:
			routeChange.mod++
		}
		delete(oldRoutes, strings.ToLower(rt.Hostname))
		if (!ok || old.Tunnel != rt.Tunnel) && !rt.Direct() && known != nil && !known[rt.Tunnel] {
			a.log.Warn("route names an unknown tunnel; its users find the tunnel offline until it is created", "hostname", rt.Hostname, "tunnel", rt.Tunnel)
		}
	}
	routeChange.del = len(oldRoutes)

	limChanges := limitChanges(&cur.Limits, &next.Limits)
	if !first {
		a.srv.SetLimits(limitsOf(next))
	}
	for _, rt := range retargets {
		_ = rt.l.bind.Store(rt.b) // checked
		a.log.Info("binding changed; new connections go to its new target, open ones stay", "listen", rt.l.spec.key,
			"tunnel", rt.b.Tunnel, "service", rt.b.Service, "origin", rt.b.Origin)
	}
	for _, l := range opened {
		r.listeners[l.spec.key] = l
		r.serve(l, known)
		if l.spec.binding != nil {
			bindings.add++
		} else {
			listeners.add++
		}
	}
	for key, l := range r.listeners {
		if keep[key] || slices.Contains(opened, l) {
			continue
		}
		delete(r.listeners, key)
		_ = l.close()
		if l.spec.binding != nil {
			bindings.del++
		} else {
			listeners.del++
		}
		a.log.Info("stopped listening for users; connections it accepted may finish", "kind", l.spec.kind, "addr", l.addr())
	}

	oldLevel := r.level.v.Level()
	newLevel := r.level.of(next)
	r.level.v.Set(newLevel)
	r.cur = next

	level := "unchanged"
	switch {
	case newLevel != oldLevel:
		level = strings.ToLower(fmt.Sprintf("%s->%s", oldLevel, newLevel))
	case r.level.fromFlag && next.LogLevel != "" && next.LogLevel != strings.ToLower(newLevel.String()):
		level = fmt.Sprintf("%s (log_level %s ignored: --log-level given)", strings.ToLower(newLevel.String()), next.LogLevel)
	}
	limits := "unchanged"
	if len(limChanges) > 0 {
		limits = strings.Join(limChanges, ", ")
	}
	acl := "unchanged"
	if aclChanged {
		acl = "changed"
	}
	pw := "unchanged"
	if passwordChanged {
		pw = "changed"
	}
	return []any{"routes", routeChange.String(), "bindings", bindings.String(), "listeners", listeners.String(),
		"limits", limits, "log_level", level, "l3_acl", acl, "console_password", pw, "console_cert", certNote}, nil
}

// setACL gives the L3 hub a new policy; without a hub (L3 off) there is
// nothing to apply it to.
func (a *app) setACL(acl l3router.ACLConfig) error {
	if a.l3 == nil {
		return nil
	}
	a.l3.hubMu.Lock()
	h := a.l3.hub
	a.l3.hubMu.Unlock()
	if h == nil {
		return nil
	}
	return h.SetACL(acl)
}

// knownTunnels returns the names of the store's tunnels, or nil if they
// cannot be listed (then nothing is warned about).
func (r *reloader) knownTunnels() map[string]bool {
	tunnels, err := r.a.store.ListTunnels()
	if err != nil {
		return nil
	}
	known := make(map[string]bool, len(tunnels))
	for _, t := range tunnels {
		known[t.Name] = true
	}
	return known
}

// openListener binds the socket of s. A TCP binding's listener is wrapped
// so that its connections' TCP keep-alive follows the binding's kind even
// after a reload switched it between a tunnel and a direct origin.
func openListener(ctx context.Context, s listenSpec) (*userListener, error) {
	l := &userListener{spec: s}
	if s.binding != nil {
		l.bind, _ = edge.NewBindingVar(edgeBinding(s.binding)) // edgeconfig bounds the service
	}
	if s.network == "udp" {
		pc, err := net.ListenPacket("udp", s.addr)
		if err != nil {
			return nil, err
		}
		l.pc = pc
		return l, nil
	}
	var lc net.ListenConfig
	keepAlive := true
	if s.binding != nil && s.binding.Direct() {
		// No TCP keep-alive on a direct binding's users, as on its
		// origin connections: limits.idleTimeout ends dead ones.
		lc.KeepAlive = -1
		keepAlive = false
	} else {
		keepAliveOnListener(&lc)
	}
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	l.ln = ln
	if s.binding != nil {
		l.ln = keepAliveListener{Listener: ln, b: l.bind, on: keepAlive}
	}
	return l, nil
}

// keepAliveListener is a TCP binding's listener: it corrects the TCP
// keep-alive of a connection when the binding changed kind since the
// listener was opened (keep-alive on for a tunnel, off for a direct
// origin); otherwise the listener's own setting is right.
type keepAliveListener struct {
	net.Listener
	b  *edge.BindingVar
	on bool
}

func (l keepAliveListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	if want := l.b.Load().Origin == ""; want != l.on {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: want})
		}
	}
	return c, nil
}

// serve starts serving l until the edge stops or a reload closes l.
func (r *reloader) serve(l *userListener, known map[string]bool) {
	a, s := r.a, l.spec
	var run func() error
	switch {
	case s.binding == nil && strings.HasPrefix(s.key, "tls "):
		run = func() error { return a.srv.ServeTLS(r.ctx, l.ln) }
	case s.binding == nil:
		run = func() error { return a.srv.ServeHTTP(r.ctx, l.ln) }
	case s.network == "tcp":
		run = func() error { return a.srv.ServeTCPVar(r.ctx, l.ln, l.bind) }
	default:
		run = func() error { return a.srv.ServeUDPVar(r.ctx, l.pc, l.bind) }
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := run(); err != nil && r.ctx.Err() == nil {
			a.log.Error("listener stopped", "kind", s.kind, "addr", l.addr(), "err", err)
		}
	}()
	b := s.binding
	switch {
	case b == nil:
		a.log.Info("listening for users", "kind", s.kind, "addr", l.addr())
	case b.Direct():
		a.log.Info("listening for users", "kind", s.kind+", direct", "addr", l.addr(), "origin", edgeconfig.Origin(b.Service), "proxy_protocol", b.ProxyProtocol)
	default:
		if known != nil && !known[b.Tunnel] {
			a.log.Warn("binding names an unknown tunnel; its users find the tunnel offline until it is created", "listen", b.Listen, "tunnel", b.Tunnel)
		}
		a.log.Info("listening for users", "kind", s.kind, "addr", l.addr(), "tunnel", b.Tunnel, "service", b.Service)
	}
}

// reloadOnSIGHUP calls reload for each signal on hup until ctx is done.
func (a *app) reloadOnSIGHUP(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = a.notify.Reload(func() error { return a.reload(ctx) })
		}
	}
}
