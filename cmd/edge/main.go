// Command edge is onramp's public relay: connectors dial it, users connect to
// it, and it sends each user connection down a tunnel to a connector.
//
//	edge serve --config edge.yml      run the edge
//	edge tunnel create NAME           record a tunnel and print its token
//	edge tunnel list                  list tunnels and their live connections
//	edge status [--json]              the running edge: connections, L3 peers, subnet owners
//	edge diag [--bundle FILE]         listeners, registry, BPF, buffers, certificate: what is wrong
//	edge tunnel delete NAME           delete a tunnel, dropping its connections
//	edge l3 client add NAME           add a WireGuard client, print its wg-quick config
//	edge l3 connector add NAME ...    register an L3 connector's public key, print its l3.yml
//	edge console passwd|link          the web console's password (into edge.yml), a one-time login link
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/cmd/internal/cli"
)

// globals are the flags every subcommand shares.
type globals struct {
	config string
	data   string
	log    cli.LogFlags
}

// load returns the edge configuration: the file named by --config, or the
// defaults, with --data applied.
func (g *globals) load() (*edgeconfig.Config, error) {
	cfg := edgeconfig.Default()
	if g.config != "" {
		c, err := edgeconfig.Load(g.config)
		if err != nil {
			return nil, err
		}
		cfg = c
	}
	if g.data != "" {
		cfg.Data = g.data
	}
	return cfg, nil
}

func (g *globals) paths(cfg *edgeconfig.Config) (db, cert, key, admin string) {
	return filepath.Join(cfg.Data, "edge.db"), filepath.Join(cfg.Data, "edge.crt"),
		filepath.Join(cfg.Data, "edge.key"), filepath.Join(cfg.Data, "admin.sock")
}

func main() {
	g := &globals{}
	root := &cobra.Command{
		Use:           "edge",
		Short:         "onramp edge: the public relay that connectors dial and users reach",
		SilenceUsage:  true,
		SilenceErrors: true,
		Long: `onramp's public relay: connectors dial it, users connect to it, and it sends
each user connection down a tunnel to a connector.

Installed by the onramp package, it runs as onramp-edge.service, as the
onramp user: onramp-edge --config /etc/onramp/edge.yml --data
/var/lib/onramp-edge serve. The edge.yml the package installs shows every
key; the data directory holds the tunnel store, the edge's certificate and
the admin socket the other commands use.`,
	}
	root.PersistentFlags().StringVarP(&g.config, "config", "c", "", "edge configuration file (YAML); without it the defaults apply")
	root.PersistentFlags().StringVar(&g.data, "data", "", "data directory: tunnel store, certificate, admin socket (overrides the config; default "+edgeconfig.DefaultData+")")
	root.PersistentFlags().StringVar(&g.log.Format, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&g.log.Level, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(serveCmd(g), tunnelCmd(g))
	root.AddCommand(l3Cmd(g), registryCmd(g), statusCmd(g))
	root.AddCommand(diagCmd(g))
	root.AddCommand(consoleCmd(g))
	cli.Setup(root)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, root.Name()+":", err)
		os.Exit(1)
	}
}
