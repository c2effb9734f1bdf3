package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/dataplane/relay"
	"github.com/onramp-net/onramp/l4proxy/connector"
	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/spf13/cobra"
)

func forwardCmd(logFlags *cli.LogFlags) *cobra.Command {
	var (
		config   string
		strategy string
		maxConns int
	)
	cmd := &cobra.Command{
		Use:   "forward LISTEN SERVICE --config ingress.yml",
		Short: "a local port forward to a service of the ingress rules, relayed in the kernel",
		Long: `Listen on LISTEN (host:port) on this host and relay each connection to the
origin that the ingress rule for SERVICE names, as a port binding of the tunnel
would, without the edge: for operators who need a service of the private
network at a local port (a jump host, a sidecar).

The origin must be tcp://, http:// or unix:. Both legs are kernel sockets, so
the relay engine moves the bytes with splice(2) where the kernel allows it
(--relay-strategy: auto, splice, sockmap or copy); user space never sees the
payload. The rule's idleTimeout applies. SIGTERM or SIGINT stops it.

Example: connector forward 127.0.0.1:5432 db.internal --config ingress.yml`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := logFlags.Logger(os.Stderr)
			if err != nil {
				return err
			}
			if config == "" {
				return errors.New("--config: the ingress rules file is required")
			}
			rules, err := ingress.Load(config)
			if err != nil {
				return err
			}
			listen, service := args[0], args[1]
			rule, err := connector.ForwardRule(rules, service)
			if err != nil {
				return err
			}
			s, err := relay.ParseStrategy(strategy)
			if err != nil {
				return fmt.Errorf("--relay-strategy: %w", err)
			}
			engine, err := relay.New(relay.Config{Strategy: s, Log: log})
			if err != nil {
				return err
			}
			defer engine.Close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			log.Info("forwarding", "listen", ln.Addr().String(), "service", service, "rule", rule.String(), "origin", rule.Service().String())
			f := &connector.Forward{Service: service, Rules: rules, Engine: engine, MaxConns: maxConns, Logger: log}
			err = f.Serve(ctx, ln)
			log.Info("forward stopped")
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&config, "config", "c", "", "ingress rules file (YAML)")
	f.StringVar(&strategy, "relay-strategy", "auto", "how bytes move: auto (the fastest that works here), splice, sockmap or copy")
	f.IntVar(&maxConns, "max-conns", 1024, "connections relayed at once; more are reset at accept")
	return cmd
}
