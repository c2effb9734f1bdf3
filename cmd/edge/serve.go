package main

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/onramp-net/onramp/dataplane/relay"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/edge/console"
	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/cmd/internal/sdnotify"
	"github.com/onramp-net/onramp/dataplane/prefilter"
	"github.com/onramp-net/onramp/dataplane/registry"
	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/store"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

func serveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "run the edge: accept connectors and route users to their tunnels",
		Long: `Run the edge. It listens for connectors (QUIC on UDP and HTTP/2 over TLS on TCP,
same port), for users on the TLS (SNI), HTTP (Host) and bound TCP/UDP ports of
its configuration, and serves its admin socket for the tunnel subcommands.
SIGINT or SIGTERM stops it.

SIGHUP (systemctl reload) re-reads the --config file and applies its routes,
bindings, listen.tls, listen.http, limits, log_level, l3.acl and
console.password_hash without dropping a connection: connections on a removed
route or binding run to their end. A file that cannot be applied whole (a YAML or field error, a port
another process holds, a change of a setting that needs a restart, such as
data or listen.tunnels) is refused with the error logged, and the running
configuration stays.

Under systemd (Type=notify, the onramp-edge unit) it says READY=1 once every
listener is bound, RELOADING=1 and READY=1 around a reload, STOPPING=1 when
it stops, its connector connections as STATUS, and WATCHDOG=1 every half of
WatchdogSec while its connection table answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			log, level, err := g.log.LevelLogger(os.Stderr)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve(ctx, g, cfg, log, logLevel{v: level, fromFlag: cmd.Flags().Changed("log-level")})
		},
	}
}

// app is a running edge.
type app struct {
	g     *globals
	cfg   *edgeconfig.Config
	log   *slog.Logger
	store *store.Store
	// tunnels mirrors the store's tunnels (nil until the first listing
	// is in): connectors authenticate against it, and each change to it,
	// made on this edge or another sharing the registry, is applied by
	// onTunnel.
	tunnels atomic.Pointer[store.Tunnels]
	srv     *edge.Server
	pin     [32]byte
	ctx     context.Context
	l3      *l3ctl
	xdp     atomic.Pointer[prefilter.Filter] // the XDP pre-filter, once it runs
	// members mirrors the edges' membership records (etcd only).
	memberMirror atomic.Pointer[registry.Mirror]
	started      time.Time // when serve started
	reloader     *reloader // routes, user listeners and limits, as the last (re)load set them (reload.go)
	// notify tells systemd the edge's state (Type=notify); a reload is
	// a.notify.Reload(func() error { ... }).
	notify *sdnotify.Notifier
	// console is the web console (listen.console), or nil.
	console *console.Server
	// hist is the last 15 minutes of the edge's counters (history.go), or
	// nil before serve starts its sampler.
	hist *history

	mu sync.Mutex // orders syncTunnels
}

func serve(ctx context.Context, g *globals, cfg *edgeconfig.Config, log *slog.Logger, level logLevel) error {
	// SIGHUP is caught from the start (its default is to end the
	// process); one that comes before the edge is ready waits for it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	level.v.Set(level.of(cfg)) // the file's log_level, unless --log-level was given
	dbPath, certPath, keyPath, adminPath := g.paths(cfg)
	if err := secureData(cfg.Data, log); err != nil {
		return err
	}
	st, closeStore, err := openStore(ctx, cfg, dbPath)
	if err != nil {
		return err
	}
	defer closeStore()
	cert, pin, err := edgeCert(ctx, cfg, st.Registry(), certPath, keyPath)
	if err != nil {
		return err
	}
	log.Info("registry", "backend", st.Registry().String())

	reg := cli.NewRegistry()
	// The Server's metrics go to the history's registry too, which
	// gathers them at each of its samples (history.go).
	histReg := prometheus.NewRegistry()
	idle := time.Duration(cfg.Limits.IdleTimeout)
	if idle == 0 {
		idle = -1 // limits.idleTimeout: 0s turns it off
	}
	a := &app{g: g, cfg: cfg, log: log, store: st, pin: pin, ctx: ctx, started: time.Now(), notify: sdnotify.New(log)}
	a.reloader = newReloader(a, g.config, level, reg)
	strategy, _ := relay.ParseStrategy(cfg.Relay.Strategy) // validated
	engine, err := relay.New(relay.Config{Strategy: strategy, MaxPipes: cfg.Relay.MaxPipes, Log: log})
	if err != nil {
		return fmt.Errorf("relay.strategy %s: %w", strategy, err)
	}
	defer engine.Close()
	a.srv = edge.NewServer(edge.Options{
		Relay:               engine,
		Logger:              log,
		Registerer:          teeRegisterer{reg, histReg},
		MaxStreamsPerTunnel: cfg.Limits.MaxStreamsPerTunnel,
		StreamSpread:        cfg.StreamSpread,
		IdleTimeout:         idle,
		UDPFlowIdle:         time.Duration(cfg.Limits.UDPFlowIdle),

		MaxUDPFlowsPerTunnel: cfg.Limits.MaxUDPFlowsPerTunnel,
		UDPNewFlowsPerSource: cfg.Limits.UDPNewFlowsPerSource,
		UDPNewFlowsPerTunnel: cfg.Limits.UDPNewFlowsPerTunnel,
		UDPUnrepliedIdle:     time.Duration(cfg.Limits.UDPUnrepliedIdle),

		MaxConns:          cfg.Limits.MaxConns,
		MaxConnsPerSource: cfg.Limits.MaxConnsPerSource,
		HeaderTimeout:     time.Duration(cfg.Limits.HeaderTimeout),

		Admit:       a.admit,
		OnConnected: a.onConnected,
	})
	tunnels, err := st.Mirror(ctx, a.onTunnel)
	if err != nil {
		return err
	}
	a.tunnels.Store(tunnels)
	if err := a.syncTunnels(); err != nil {
		return err
	}
	reg.MustRegister(newStatusCollector(a))
	// The tunnel listeners' handshake limits, their failures counted by the server.
	tcfg := a.srv.TunnelConfig(&tunnel.Config{
		MaxHandshakes:          cfg.Limits.MaxHandshakes,
		MaxHandshakesPerSource: cfg.Limits.MaxHandshakesPerSource,
		QUICRetryAbove:         cfg.Limits.QUICRetryAbove,
		QUICSockets:            quicSockets(cfg),
	})

	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}()

	qln, err := tunnel.ListenQUIC(cfg.Listen.Tunnels, cert, storeAuth{st}, tcfg)
	if err != nil {
		return fmt.Errorf("tunnel listener (QUIC, udp %s): %w", cfg.Listen.Tunnels, err)
	}
	closers = append(closers, qln.Close)
	logSteering(cfg, qln, log, reg)
	hln, err := tunnel.ListenHTTP2(cfg.Listen.Tunnels, cert, storeAuth{st}, tcfg)
	if err != nil {
		return fmt.Errorf("tunnel listener (HTTP/2, tcp %s): %w", cfg.Listen.Tunnels, err)
	}
	closers = append(closers, hln.Close)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, ln := range []tunnel.Listener{qln, hln} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.srv.ServeConnectors(ctx, ln); err != nil && ctx.Err() == nil {
				log.Error("tunnel listener stopped", "addr", ln.Addr(), "err", err)
			}
		}()
	}
	log.Info("listening for connectors", "quic", qln.Addr().String(), "http2", hln.Addr().String(),
		"pin", hex.EncodeToString(pin[:]))
	a.advertiseEdges(ctx, &wg)

	// The user listeners (TLS, HTTP, bindings) and the routes.
	if err := a.reloader.start(cfg); err != nil {
		return err
	}
	defer a.reloader.stop()

	if a.l3, err = newL3ctl(cfg, st, log); err != nil {
		return err
	}
	// The pre-filter before the hub: the hub proves the sources of its
	// handshakes to it.
	if xf := startXDP(cfg, qln.Addr(), log, reg); xf != nil {
		closers = append(closers, xf.Close)
		a.l3.onHandshake = func(addr netip.Addr) { _ = xf.Prove(addr) }
		a.xdp.Store(xf)
	}
	if cfg.L3.Enabled() {
		h, err := startHub(ctx, a.l3, log, reg)
		if err != nil {
			return err
		}
		closers = append(closers, h.Close)
	}

	if cfg.Listen.Metrics != "" {
		if err := cli.ServeMetrics(ctx, log, cfg.Listen.Metrics, reg, nil, nil); err != nil {
			return err
		}
	}

	a.startHistory(ctx, histReg)

	adm, err := a.serveAdmin(adminPath)
	if err != nil {
		return err
	}
	closers = append(closers, adm)
	if err := a.startConsole(ctx, reg); err != nil {
		return err
	}

	log.Info("edge ready")
	a.notifyReady(ctx)
	a.reloadOnSIGHUP(ctx, hup)
	a.notify.Stopping()
	log.Info("edge stopping")
	return nil
}

// syncTunnels gives the Server the names of the mirrored tunnels. It runs
// at start and after each tunnel is created or deleted (onTunnel): the
// lock keeps the last table set the one of the last listing.
func (a *app) syncTunnels() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t := a.tunnels.Load(); t != nil {
		a.srv.SetTunnels(t.Names())
	}
	return nil
}

// onTunnel applies a change of the registry's tunnels, made on this edge
// or on another that shares the registry: a deleted tunnel's connections
// and a rotated token's are dropped, and the routes and bindings find
// tunnels by their names again. The mirror calls it once it holds the
// change, so admit and the authenticator see the same state.
func (a *app) onTunnel(old, new *store.Tunnel) {
	if a.tunnels.Load() == nil {
		return // the first listing: serve syncs once it is in
	}
	switch {
	case new == nil:
		_ = a.syncTunnels()
		n := a.srv.Revalidate(old.ID)
		a.log.Info("tunnel deleted; its connections dropped", "name", old.Name, "id", hex.EncodeToString(old.ID[:]), "connections", n)
	case old == nil:
		_ = a.syncTunnels()
		a.log.Info("tunnel created", "name", new.Name, "id", hex.EncodeToString(new.ID[:]))
	case old.Generation != new.Generation:
		n := a.srv.Revalidate(new.ID)
		a.log.Info("tunnel token rotated; the old token's connections dropped", "name", new.Name,
			"id", hex.EncodeToString(new.ID[:]), "generation", new.Generation, "connections", n)
	}
}

// admit is the Server's Options.Admit: a connection may be served while
// its tunnel exists and still has the secret generation it proved.
func (a *app) admit(id [16]byte, generation uint64) tunnel.AuthReason {
	_, gen, ok := a.store.Credential(id)
	switch {
	case !ok:
		return tunnel.AuthTunnelDeleted
	case gen != generation:
		return tunnel.AuthRotated
	}
	return tunnel.AuthOK
}

// storeAuth authenticates connectors against the store's mirrored
// tunnels (Store.Credential): each connection keeps the generation of the
// secret it proved.
type storeAuth struct{ st *store.Store }

// Secret implements tunnel.Authenticator.
func (s storeAuth) Secret(id [16]byte) ([]byte, bool) {
	secret, _, r := s.LookupTunnel(id)
	return secret, r == tunnel.AuthOK
}

// LookupTunnel implements tunnel.TunnelLookup.
func (s storeAuth) LookupTunnel(id [16]byte) ([]byte, uint64, tunnel.AuthReason) {
	secret, gen, ok := s.st.Credential(id)
	if !ok {
		return nil, 0, tunnel.AuthUnknownTunnel
	}
	return secret, gen, tunnel.AuthOK
}

// loadOrCreateCert loads the edge certificate from the data directory, or
// makes a self-signed one on first use. Connectors pin its key.
func loadOrCreateCert(cfg *edgeconfig.Config, certPath, keyPath string) (tls.Certificate, [32]byte, error) {
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if errors.Is(err, os.ErrNotExist) {
		var hosts []string
		for _, a := range advertised(cfg) {
			if h, _, err := net.SplitHostPort(a); err == nil {
				hosts = append(hosts, h)
			}
		}
		var certPEM, keyPEM []byte
		cert, certPEM, keyPEM, err = tunnel.GenerateEdgeCertificate(hosts...)
		if err != nil {
			return cert, [32]byte{}, err
		}
		if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
			return cert, [32]byte{}, err
		}
		// The key first: a certificate without its key is never left.
		if err := cli.WriteFile(keyPath, keyPEM, 0o600); err != nil {
			return cert, [32]byte{}, fmt.Errorf("edge key: %w", err)
		}
		if err := cli.WriteFile(certPath, certPEM, 0o644); err != nil {
			return cert, [32]byte{}, fmt.Errorf("edge certificate: %w", err)
		}
	} else if err != nil {
		return cert, [32]byte{}, fmt.Errorf("edge certificate %s: %w", certPath, err)
	}
	pin, err := tunnel.CertificatePin(&cert)
	return cert, pin, err
}

// advertised returns the edge addresses to put into tokens: the configured
// ones, or the tunnel listen address when it names a host.
func advertised(cfg *edgeconfig.Config) []string {
	if len(cfg.Advertise) > 0 {
		return cfg.Advertise
	}
	host, _, err := net.SplitHostPort(cfg.Listen.Tunnels)
	if err != nil || host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		return nil
	}
	return []string{cfg.Listen.Tunnels}
}

// newToken makes the token for a tunnel.
func newToken(cfg *edgeconfig.Config, t store.Tunnel, pin [32]byte) (string, error) {
	edges := advertised(cfg)
	if len(edges) == 0 {
		return "", fmt.Errorf("no edge address for the token: set advertise: [host:port] in the edge config (listen.tunnels %s names no host)", cfg.Listen.Tunnels)
	}
	tok := tunnel.Token{TunnelID: t.ID, Edges: edges, EdgePin: pin}
	copy(tok.Secret[:], t.Secret)
	return tunnel.EncodeToken(tok), nil
}
