package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/skip2/go-qrcode"
	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/hub"
	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l4proxy/store"
)

// startHub starts the L3 hub of a running edge with every client and
// connector of the registry, follows the registry's changes from then on
// (l3ctl.follow), and exports its counters on reg.
func startHub(ctx context.Context, c *l3ctl, log *slog.Logger, reg prometheus.Registerer) (*hub.Hub, error) {
	key, err := c.store.EdgeKey()
	if err != nil {
		return nil, err
	}
	mirror, err := c.store.Mirror(ctx, c.follow)
	if err != nil {
		return nil, err
	}
	c.hubMu.Lock()
	defer c.hubMu.Unlock()
	peers := mirror.Peers()
	l3 := &c.cfg.L3
	if l3.QueueLen != 0 {
		log.Warn("edge config: l3.queue_len is obsolete and ignored: the edge's WireGuard device forwards each packet in place, without a queue")
	}
	h, err := hub.New(hub.Config{
		ListenPort: l3.ListenPort(), ListenAddr: l3ListenAddr(l3.Listen), PrivateKey: key, Pools: poolsOf(c.cfg), MTU: l3.MTU, ACL: l3.ACL, Logger: log,
		Handshakes:     l3.Handshakes.Limits(),
		MaxStagedBytes: l3.MaxStagedBytes,
		Steer:          l3.Steering == nil || *l3.Steering,
		Loops:          l3.Loops,
		OnHandshake:    c.onHandshake,
		Failover:       failoverOf(l3.Failover),
	}, peers)
	if err != nil {
		return nil, fmt.Errorf("l3 (edge config l3.listen %s): %w", l3.Listen, err)
	}
	if err := reg.Register(h.Collector()); err != nil {
		h.Close()
		return nil, fmt.Errorf("l3 metrics: %w", err)
	}
	c.hub = h
	clients := 0
	for _, p := range peers {
		if p.Kind == l3router.KindClient {
			clients++
		}
	}
	log.Info("l3 hub listening", "udp", l3.Listen, "port", h.Port(), "endpoint", l3.Endpoint,
		"clients", clients, "connectors", len(peers)-clients, "public_key", h.PublicKey().String())
	if l3.Endpoint == "" {
		log.Warn("l3.endpoint is not set and advertise names no host: edge l3 client add and connector add will refuse until it is")
	}
	return h, nil
}

// l3ListenAddr returns the address l3.listen names (the zero address if it
// names none: every address).
func l3ListenAddr(listen string) netip.Addr {
	host, _, _ := net.SplitHostPort(listen)
	a, _ := netip.ParseAddr(host)
	return a
}

func l3Cmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "l3",
		Short: "manage the L3 on-ramp: WireGuard clients and connectors",
		Long: `Manage the L3 on-ramp's clients (any standard WireGuard app) and connectors
(connector l3 run). The edge config's l3: section turns it on (l3.listen) and
says where peers dial (l3.endpoint) and which pools virtual addresses come from.

With a running edge these talk to it through the admin socket in its data
directory (a new peer is live at once, a removed one is cut at once);
otherwise they open the store directly.`,
	}
	cmd.AddCommand(l3ClientCmd(g), l3ConnectorCmd(g))
	return cmd
}

// withL3 runs online against a running edge or offline on the L3 store.
func withL3(g *globals, online func(*adminClient) error, offline func(*l3ctl) error) error {
	return withEdge(g, online, func(cfg *edgeconfig.Config, st *store.Store) error {
		log, err := g.log.Logger(os.Stderr)
		if err != nil {
			return err
		}
		c, err := newL3ctl(cfg, st, log)
		if err != nil {
			return err
		}
		return offline(c)
	})
}

// writeOut writes a config to path (mode 0600, atomically: it may hold a
// private key) or to standard output.
func writeOut(path string, data []byte) error {
	if path == "" {
		_, err := os.Stdout.Write(data)
		return err
	}
	return cli.WriteFile(path, data, 0o600)
}

func l3ClientCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "client", Short: "add, list and remove WireGuard clients"}

	var groups []string
	var pubKey, out string
	var qr bool
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "add a client and print its wg-quick config",
		Long: `Add a client: allocate its virtual IPv4 and IPv6 addresses from the pools and
print a standard wg-quick config for it (to --out FILE, else standard output),
which any WireGuard app imports. The config holds the client's private key,
generated here and never given to the edge; with --public-key the user keeps
their own key and the config has a placeholder for it. AllowedIPs are the pools
and the subnets of the connectors known now (edge l3 client config NAME prints
it again later). --qr also draws the config as a QR code on standard error for
the mobile apps. NAME is 1-63 characters of a-z, 0-9, -.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var cc l3config.Client
			err := withL3(g, func(c *adminClient) error {
				var err error
				data, cc, err = addL3Client(postClient(c), args[0], groups, pubKey)
				return err
			}, func(c *l3ctl) error {
				var err error
				data, cc, err = addL3Client(c.addClient, args[0], groups, pubKey)
				return err
			})
			if err != nil {
				return err
			}
			if err := writeOut(out, data); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "client %s added: %s\n", cc.Name, joinPrefixes(cc.Addresses))
			if qr {
				return printQR(os.Stderr, data)
			}
			return nil
		},
	}
	add.Flags().StringArrayVar(&groups, "group", nil, "ACL group of the client (repeat for several)")
	add.Flags().StringVar(&pubKey, "public-key", "", "the client's own WireGuard public key (base64); the config then has no private key")
	add.Flags().BoolVar(&qr, "qr", false, "also draw the config as a QR code (on standard error)")
	add.Flags().StringVar(&out, "out", "", "write the config to this file (mode 0600) instead of standard output")
	cmd.AddCommand(add)

	cmd.AddCommand(l3ConfigCmd[l3config.Client](g, l3router.KindClient,
		"print a client's wg-quick config again, with the current AllowedIPs",
		`Print a client's wg-quick config with the connectors' subnets as they are now.
The edge never had the client's private key: the config has a placeholder for it.`))

	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "list clients: addresses, groups, key, and on a running edge last handshake and traffic",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return l3List(g, l3router.KindClient)
		},
	})
	cmd.AddCommand(l3RemoveCmd(g, l3router.KindClient))
	return cmd
}

// postClient adds a client through a running edge's admin API (POST
// /v1/l3/clients); without an edge, l3ctl.addClient does it on the store.
func postClient(c *adminClient) func(l3AddClient) (l3config.Client, error) {
	return func(req l3AddClient) (l3config.Client, error) {
		var cc l3config.Client
		return cc, c.call(http.MethodPost, "/v1/l3/clients", req, &cc)
	}
}

// addL3Client adds the client name and returns its wg-quick config: with
// a private key made here (never given to the edge), or, with pubKey, the
// user's own public key and a placeholder for the private one. `edge l3
// client add` and the console's add both run it.
func addL3Client(add func(l3AddClient) (l3config.Client, error), name string, groups []string, pubKey string) ([]byte, l3config.Client, error) {
	req := l3AddClient{Name: name, Groups: groups}
	var priv l3config.Key
	if pubKey != "" {
		k, err := l3config.ParseKey(strings.TrimSpace(pubKey))
		if err != nil {
			return nil, l3config.Client{}, fmt.Errorf("--public-key: %w", err)
		}
		req.PublicKey = k
	} else {
		var err error
		if priv, err = l3config.GeneratePrivateKey(); err != nil {
			return nil, l3config.Client{}, err
		}
		req.PublicKey = priv.PublicKey()
	}
	cc, err := add(req)
	if err != nil {
		return nil, l3config.Client{}, err
	}
	cc.PrivateKey = priv
	data, err := cc.Marshal()
	return data, cc, err
}

func l3ConnectorCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "connector", Short: "add, list and remove L3 connectors"}

	var subnets []string
	var out, pubKey, keyFile string
	add := &cobra.Command{
		Use:   "add NAME --subnet PREFIX [--subnet PREFIX]... --public-key KEY",
		Short: "register a connector and print its l3.yml",
		Long: `Register a connector advertising the given private subnets and print its
configuration for connector l3 run --config (to --out FILE, else standard
output). The connector makes its own key: on its host, connector l3 init
--key FILE writes the private key to FILE and prints the public key, which
--public-key gives here. The edge never has the private key: the l3.yml
names the file that holds it (--key-file, default ` + l3config.DefaultKeyFile + `)
and holds no secret; edge l3 connector config NAME prints it again.

The connector's routes are the client pools and the subnets of the other
connectors known now. Site to site: after adding a connector, print the
others' configs again (edge l3 connector config NAME), copy them to their
hosts and send each connector SIGHUP (it applies the new routes live), and
allow connector-to-connector traffic with an ACL rule (the built-in policy
denies it). Clients added before need the new subnets in AllowedIPs too
(edge l3 client config NAME).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := l3AddConnector{Name: args[0], KeyFile: keyFile}
			if len(subnets) == 0 {
				return fmt.Errorf("--subnet: a connector advertises at least one subnet")
			}
			if pubKey == "" {
				return fmt.Errorf("--public-key: missing: run connector l3 init --key %s on the connector's host and give the public key it prints", keyFile)
			}
			k, err := l3config.ParseKey(strings.TrimSpace(pubKey))
			if err != nil {
				return fmt.Errorf("--public-key: %w", err)
			}
			req.PublicKey = k
			for i, s := range subnets {
				p, err := netip.ParsePrefix(strings.TrimSpace(s))
				if err != nil {
					return fmt.Errorf("--subnet %d (%q): %w", i+1, s, err)
				}
				req.Subnets = append(req.Subnets, p)
			}
			var cc l3config.Connector
			var others []l3PeerInfo
			err = withL3(g, func(c *adminClient) error {
				if err := c.call(http.MethodPost, "/v1/l3/connectors", req, &cc); err != nil {
					return err
				}
				return c.call(http.MethodGet, "/v1/l3/connectors", nil, &others)
			}, func(c *l3ctl) error {
				var err error
				if cc, err = c.addConnector(req); err != nil {
					return err
				}
				others, err = c.list(l3router.KindConnector)
				return err
			})
			if err != nil {
				return err
			}
			data, err := cc.Marshal()
			if err != nil {
				return err
			}
			if err := writeOut(out, data); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "connector %s added: %s, subnets %s\n", cc.Name, joinPrefixes(cc.Addresses), joinPrefixes(cc.Subnets))
			var stale []string
			for _, o := range others {
				if o.Name != cc.Name {
					stale = append(stale, o.Name)
				}
			}
			if len(stale) > 0 {
				fmt.Fprintf(os.Stderr, "site to site: connectors %s do not route %s yet: print their configs again with edge l3 connector config NAME and send them SIGHUP\n",
					strings.Join(stale, ", "), joinPrefixes(cc.Subnets))
			}
			return nil
		},
	}
	add.Flags().StringArrayVar(&subnets, "subnet", nil, "private subnet the connector advertises, e.g. 10.1.0.0/16 (repeat for several)")
	add.Flags().StringVar(&pubKey, "public-key", "", "the connector's WireGuard public key (base64), as connector l3 init printed it")
	add.Flags().StringVar(&keyFile, "key-file", l3config.DefaultKeyFile, "where the connector keeps its private key (connector l3 init --key): the l3.yml names it")
	add.Flags().StringVar(&out, "out", "", "write the config to this file (mode 0600) instead of standard output")
	cmd.AddCommand(add)

	cmd.AddCommand(l3ConfigCmd[l3config.Connector](g, l3router.KindConnector,
		"print a connector's l3.yml again, with the other connectors' subnets as they are now",
		`Print a connector's l3.yml with the other connectors' subnets as they are now.
It names the connector's key file (--key-file at add) and holds no key: the
edge never had the connector's private key.`))

	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "list connectors: addresses, subnets, key, and on a running edge last handshake and traffic",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return l3List(g, l3router.KindConnector)
		},
	})
	cmd.AddCommand(l3RemoveCmd(g, l3router.KindConnector))
	return cmd
}

func l3RemoveCmd(g *globals, kind l3router.PeerKind) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "remove a " + kind.String() + "; on a running edge it is cut at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var info l3PeerInfo
			live := false
			err := withL3(g, func(c *adminClient) error {
				live = true
				return c.call(http.MethodDelete, "/v1/l3/"+kind.String()+"s/"+args[0], nil, &info)
			}, func(c *l3ctl) error {
				var err error
				info, err = c.remove(kind, args[0])
				return err
			})
			if err != nil {
				return err
			}
			how := "(the edge is not running)"
			if live {
				how = "and cut on the running edge"
			}
			fmt.Fprintf(os.Stderr, "%s %s removed %s; its addresses %v, %v go to no new peer before l3.address_reuse_delay has passed\n",
				kind, info.Name, how, info.Address4, info.Address6)
			return nil
		},
	}
}

// l3List prints the peers of kind as a table.
func l3List(g *globals, kind l3router.PeerKind) error {
	var infos []l3PeerInfo
	live := false
	err := withL3(g, func(c *adminClient) error {
		live = true
		return c.call(http.MethodGet, "/v1/l3/"+kind.String()+"s", nil, &infos)
	}, func(c *l3ctl) error {
		var err error
		infos, err = c.list(kind)
		return err
	})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	extra := "GROUPS"
	if kind == l3router.KindConnector {
		extra = "SUBNETS"
	}
	fmt.Fprintf(w, "NAME\tADDRESSES\t%s\tPUBLIC KEY\tHANDSHAKE\tENDPOINT\tLOOP\tRX BYTES\tTX BYTES\tDROPS\n", extra)
	now := time.Now()
	for _, p := range infos {
		col := strings.Join(p.Groups, ",")
		if kind == l3router.KindConnector {
			sn := make([]string, len(p.Subnets))
			for i, s := range p.Subnets {
				sn[i] = subnetRole(s, &p)
			}
			col = strings.Join(sn, ",")
		}
		if col == "" {
			col = "-"
		}
		hs, ep, loop, rx, tx, drops := "-", "-", "-", "-", "-", "-"
		if p.Endpoint != "" {
			ep = p.Endpoint
		}
		if p.Loop > 0 {
			loop = fmt.Sprint(p.Loop)
		}
		if p.Live {
			hs = "never"
			if !p.LastHandshake.IsZero() {
				hs = now.Sub(p.LastHandshake).Round(time.Second).String() + " ago"
			}
			rx, tx, drops = fmt.Sprint(p.RxBytes), fmt.Sprint(p.TxBytes), fmt.Sprint(p.Drops)
		}
		fmt.Fprintf(w, "%s\t%v,%v\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Address4, p.Address6, col, p.PublicKey, hs, ep, loop, rx, tx, drops)
	}
	if !live {
		fmt.Fprintln(w, "(the edge is not running: handshakes and traffic unknown)")
	} else if len(infos) > 0 && !infos[0].Live {
		fmt.Fprintln(w, "(the L3 on-ramp is off on the running edge: l3.listen is not set)")
	}
	return w.Flush()
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// printQR draws the config as a QR code with Unicode half blocks, two rows
// of modules per line, light modules drawn: it reads right on a dark
// terminal, where phone scanners expect dark modules on a light ground.
func printQR(w io.Writer, conf []byte) error {
	q, err := qrcode.New(l3config.QRText(conf), qrcode.Low)
	if err != nil {
		return fmt.Errorf("qr code: %w", err)
	}
	_, err = io.WriteString(w, q.ToSmallString(false))
	return err
}

// l3ConfigCmd is `edge l3 client|connector config NAME`: the peer's file
// (a wg-quick config or an l3.yml, T) printed again as it is now.
func l3ConfigCmd[T any, PT interface {
	*T
	Marshal() ([]byte, error)
}](g *globals, kind l3router.PeerKind, short, long string) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "config NAME",
		Short: short,
		Long:  long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var cc T
			err := withL3(g, func(c *adminClient) error {
				return c.call(http.MethodGet, "/v1/l3/"+kind.String()+"s/"+args[0]+"/config", nil, &cc)
			}, func(c *l3ctl) error {
				v, err := c.config(kind, args[0])
				if err == nil {
					cc = v.(T)
				}
				return err
			})
			if err != nil {
				return err
			}
			data, err := PT(&cc).Marshal()
			if err != nil {
				return err
			}
			return writeOut(out, data)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the file to this path (mode 0600) instead of standard output")
	return cmd
}
