// Command connector runs inside a private network and only dials out: it
// joins a tunnel on the edge and sends the users' connections that arrive
// through it to private services, by its ingress rules.
//
//	connector tunnel run --token-file FILE --config ingress.yml   (or TUNNEL_TOKEN=...)
//	connector token inspect TOKEN
//	connector l3 init --key /etc/onramp/l3.key       make the L3 key, print the public key
//	connector l3 run --config l3.yml
//	connector status --metrics ADDR          a running connector's connections, edges, errors
//	connector service install --token-file FILE --ingress FILE   (or --l3-config FILE) as a systemd service
//	connector diag --token-file F --config ingress.yml [--bundle FILE]   what is wrong, and the fix
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/l4proxy/connector"
	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

func main() {
	root := &cobra.Command{
		Use:           "connector",
		Short:         "onramp connector: joins private networks to the edge, dialing out only",
		SilenceUsage:  true,
		SilenceErrors: true,
		Long: `onramp's connector runs inside a private network and only dials out: it joins
a tunnel on the edge and sends the users' connections that arrive through it
to private services by its ingress rules (tunnel run), or joins the L3
on-ramp (l3 run).

Installed by the onramp package, connector NAME runs as
onramp-connector@NAME.service, with its token in /etc/onramp/NAME.token and
its ingress rules in /etc/onramp/NAME.ingress.yml (an L3 connector: its
configuration in /etc/onramp/NAME.yml); /etc/onramp/example.ingress.yml is
an example of ingress rules.`,
	}
	var logFlags cli.LogFlags
	root.PersistentFlags().StringVar(&logFlags.Format, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&logFlags.Level, "log-level", "info", "log level: debug, info, warn, error")
	tunnelCmd := &cobra.Command{Use: "tunnel", Short: "the L4 tunnel: TCP and UDP services reached through the edge"}
	tunnelCmd.AddCommand(runCmd(&logFlags))
	root.AddCommand(tunnelCmd, tokenCmd(), forwardCmd(&logFlags))
	root.AddCommand(l3Cmd(&logFlags), statusCmd())
	root.AddCommand(serviceCmd(&logFlags))
	root.AddCommand(diagCmd())
	cli.Setup(root)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, root.Name()+":", err)
		os.Exit(1)
	}
}

// tokenFlags reads the token from --token-file, the TUNNEL_TOKEN
// environment variable (ONRAMP_TOKEN is an alias) or --token.
type tokenFlags struct {
	token, file string
}

// Environment variables that hold the token: TUNNEL_TOKEN, and the name
// earlier releases read.
const (
	tokenEnv      = "TUNNEL_TOKEN"
	tokenEnvAlias = "ONRAMP_TOKEN"
)

// argvWarning is printed when the token is given with --token.
const argvWarning = "the token is in the command line (--token), which every local user can read in /proc/PID/cmdline or ps: give it with --token-file or the " + tokenEnv + " environment variable"

// load returns the token, and a warning to log if it came from argv.
func (f *tokenFlags) load() (tok tunnel.Token, warning string, err error) {
	s := f.token
	source := "--token"
	switch {
	case s != "" && f.file != "":
		return tunnel.Token{}, "", errors.New("give the token with --token or --token-file, not both")
	case f.file != "":
		b, err := os.ReadFile(f.file)
		if err != nil {
			return tunnel.Token{}, "", fmt.Errorf("--token-file: %w", err)
		}
		s, source = strings.TrimSpace(string(b)), "--token-file "+f.file
	case s != "":
		warning = argvWarning
	case os.Getenv(tokenEnv) != "":
		s, source = os.Getenv(tokenEnv), tokenEnv
	default:
		s, source = os.Getenv(tokenEnvAlias), tokenEnvAlias
	}
	if s == "" {
		return tunnel.Token{}, "", errors.New("no token: give --token-file or " + tokenEnv + " (edge tunnel create NAME prints one)")
	}
	tok, err = tunnel.ParseToken(s)
	if err != nil {
		return tunnel.Token{}, "", fmt.Errorf("token from %s: %w", source, err)
	}
	return tok, warning, nil
}

func runCmd(logFlags *cli.LogFlags) *cobra.Command {
	var (
		tf          tokenFlags
		config      string
		protocol    string
		connections int
		grace       time.Duration
		metrics     string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "join the tunnel and serve its users until stopped",
		Long: `Join the tunnel named by the token and send each user connection to the
service its ingress rule names. Dials out only, over QUIC, or HTTP/2 over TLS
where UDP is blocked (--protocol auto tries QUIC first).

The token comes from --token-file or the TUNNEL_TOKEN environment variable
(ONRAMP_TOKEN is read too). --token works but is warned about: a process's
arguments are readable by every local user.

--metrics ADDR serves /metrics, /ready (200 while a connection to the edge
is live) and /status, which connector status --metrics ADDR prints: each
connection (edge, transport, since when, streams) and each edge's dial
errors with the last error.

SIGTERM or SIGINT drains: the edge sends no new streams, live ones get up to
--grace-period to finish. SIGHUP reloads the ingress file without dropping
live streams; a bad file is refused and the old rules stay.

Under systemd (Type=notify; see connector service) it says READY=1 when its
first connection to the edge is up, RELOADING=1 and READY=1 around a
reload, STOPPING=1 when it drains, its connections as STATUS, and WATCHDOG=1
every half of WatchdogSec while its run loop answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logFlags.Logger(os.Stderr)
			if err != nil {
				return err
			}
			tok, warning, err := tf.load()
			if err != nil {
				return err
			}
			if warning != "" {
				log.Warn(warning)
			}
			if config == "" {
				return errors.New("--config: the ingress rules file is required")
			}
			rules, err := ingress.Load(config)
			if err != nil {
				return err
			}
			switch protocol {
			case "quic", "http2", "auto":
			default:
				return fmt.Errorf("--protocol %q: want quic, http2 or auto", protocol)
			}
			return run(cmd.Context(), log, tok, config, rules, protocol, connections, grace, metrics)
		},
	}
	f := cmd.Flags()
	f.StringVar(&tf.file, "token-file", "", "read the tunnel token from this file (or set "+tokenEnv+")")
	f.StringVar(&tf.token, "token", "", "the tunnel token; avoid: other local users can read a process's arguments (use --token-file or "+tokenEnv+")")
	f.StringVarP(&config, "config", "c", "", "ingress rules file (YAML)")
	f.StringVar(&protocol, "protocol", "auto", "transport: quic, http2, or auto (QUIC, falling back to HTTP/2)")
	f.IntVar(&connections, "connections", 4, "connections to keep to the edges (spread over the token's edge addresses)")
	f.DurationVar(&grace, "grace-period", 30*time.Second, "on SIGTERM, how long live streams may take to finish")
	f.StringVar(&metrics, "metrics", "", "serve /metrics, /ready and /status (connector status) on this address (e.g. 127.0.0.1:9200)")
	return cmd
}

func run(ctx context.Context, log *slog.Logger, tok tunnel.Token, config string, rules *ingress.Config,
	protocol string, connections int, grace time.Duration, metrics string) error {
	started := time.Now()
	reg := cli.NewRegistry()
	c, err := connector.New(connector.Options{
		Token:       tok,
		Protocol:    protocol,
		Connections: connections,
		Ingress:     rules,
		Logger:      log,
		Registerer:  reg,
	})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if metrics != "" {
		status := func() *connectorStatus { return tunnelStatusOf(c, started) }
		if err := cli.ServeMetricsWith(runCtx, log, metrics, reg, c.Ready, c.Summary, statusHandler(status)); err != nil {
			return err
		}
	}
	log.Info("connector starting", "tunnel", tok.TunnelIDString(), "edges", strings.Join(tok.Edges, ","),
		"protocol", protocol, "connections", connections, "rules", rules.Len())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	sn := newRunNotifier(runCtx, log)
	defer sn.close()
	for {
		select {
		case <-sn.C:
			sn.update(c.Ready(), c.Summary())
		case reply := <-sn.probes:
			close(reply)
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				sn.reload(func() error {
					next, err := ingress.Load(config)
					if err != nil {
						log.Error("reload refused; keeping the old rules", "err", err)
						return err
					}
					c.Reload(next)
					log.Info("ingress rules reloaded", "file", config, "rules", next.Len())
					return nil
				})
				continue
			}
			sn.stop()
			log.Info("draining", "signal", sig.String(), "grace", grace)
			shut, cancelShut := context.WithTimeout(context.Background(), grace)
			if err := c.Shutdown(shut); err != nil {
				log.Warn("drain ended with streams still open", "err", err)
			}
			cancelShut()
			cancel()
			err := <-done
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			log.Info("connector stopped")
			return nil
		}
	}
}

func tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "token helpers"}
	var tf tokenFlags
	inspect := &cobra.Command{
		Use:   "inspect [TOKEN]",
		Short: "show what a token holds (never the secret); the token from TOKEN, --token-file or " + tokenEnv,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				tf.token = args[0]
			}
			tok, _, err := tf.load()
			if err != nil {
				return err
			}
			fmt.Printf("tunnel   %s\nedges    %s\nedge pin %s\n", tok.TunnelIDString(),
				strings.Join(tok.Edges, ", "), hex.EncodeToString(tok.EdgePin[:]))
			return nil
		},
	}
	inspect.Flags().StringVar(&tf.file, "token-file", "", "read the token from this file")
	cmd.AddCommand(inspect)
	return cmd
}
