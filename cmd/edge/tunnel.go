package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l4proxy/store"
)

func tunnelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "create, list, rotate and delete tunnels",
		Long: `Manage tunnels. With a running edge these talk to it through the admin socket in
its data directory (the connections of a deleted tunnel or a rotated token drop
at once); otherwise they open the registry directly (with etcd, every running
edge applies the change within a second).`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "create NAME",
		Short: "record a tunnel and print the token its connectors need",
		Long: `Record a tunnel and print its token on standard output. The token holds the
tunnel ID, its secret, the edge addresses (advertise: in the edge config) and
the pin of the edge's key: keep it secret, give it to the connector with
--token-file or TUNNEL_TOKEN (not --token: other local users can read a
process's arguments). NAME is 1-63 characters of a-z, 0-9, -.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var info tunnelInfo
			err := withEdge(g, func(c *adminClient) error {
				return c.do(http.MethodPost, "/v1/tunnels/"+args[0], &info)
			}, func(cfg *edgeconfig.Config, st *store.Store) error {
				_, certPath, keyPath, _ := g.paths(cfg)
				_, pin, err := edgeCert(context.Background(), cfg, st.Registry(), certPath, keyPath)
				if err != nil {
					return err
				}
				info, _, err = createTunnel(cfg, st, pin, args[0])
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "tunnel %s created (id %s); its token:\n", info.Name, info.ID)
			fmt.Println(info.Token)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "list tunnels and their live connections",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var infos []tunnelInfo
			live := false
			err := withEdge(g, func(c *adminClient) error {
				live = true
				return c.do(http.MethodGet, "/v1/tunnels", &infos)
			}, func(_ *edgeconfig.Config, st *store.Store) error {
				ts, err := st.ListTunnels()
				for _, t := range ts {
					infos = append(infos, infoOf(t))
				}
				return err
			})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tID\tCREATED\tCONNECTIONS")
			for _, t := range infos {
				conns := "-"
				if live {
					conns = fmt.Sprint(len(t.Connections))
					for _, c := range t.Connections {
						conns += fmt.Sprintf(" [%s %s %d streams]", c.Protocol, c.Remote, c.Streams)
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.Name, t.ID, t.Created.Local().Format(time.DateTime), conns)
			}
			if !live {
				fmt.Fprintln(w, "(the edge is not running: connections unknown)")
			}
			return w.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate NAME",
		Short: "give a tunnel a new token; the old one stops working and its connections drop",
		Long: `Give the tunnel a new secret and print its new token on standard output, once.
The tunnel keeps its ID and name, so its routes and bindings are unchanged.
The old token is refused from now on, and a running edge drops the
connections made with it at once: their connectors stop, saying the token
was rotated. Give the new token to the connectors and start them again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var info tunnelInfo
			err := withEdge(g, func(c *adminClient) error {
				return c.do(http.MethodPost, "/v1/tunnels/"+args[0]+"/rotate", &info)
			}, func(cfg *edgeconfig.Config, st *store.Store) error {
				_, certPath, keyPath, _ := g.paths(cfg)
				_, pin, err := edgeCert(context.Background(), cfg, st.Registry(), certPath, keyPath)
				if err != nil {
					return err
				}
				info, _, _, err = rotateTunnel(cfg, st, pin, args[0])
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "tunnel %s rotated (id %s); the old token no longer works; the new token:\n", info.Name, info.ID)
			fmt.Println(info.Token)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "delete NAME",
		Short: "delete a tunnel; its live connections are dropped and its token stops working",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var info tunnelInfo
			err := withEdge(g, func(c *adminClient) error {
				return c.do(http.MethodDelete, "/v1/tunnels/"+args[0], &info)
			}, func(_ *edgeconfig.Config, st *store.Store) error {
				t, err := st.DeleteTunnel(args[0])
				info = infoOf(t)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "tunnel %s deleted (id %s)\n", info.Name, info.ID)
			return nil
		},
	})
	return cmd
}

// withEdge runs online against a running edge's admin socket, so that the
// edge acts at once (a deleted tunnel's connections drop); without a running
// edge it runs offline on the tunnel store.
func withEdge(g *globals, online func(*adminClient) error, offline func(*edgeconfig.Config, *store.Store) error) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	dbPath, _, _, adminPath := g.paths(cfg)
	if c := dialAdmin(adminPath); c != nil {
		return online(c)
	}
	log, err := g.log.Logger(os.Stderr)
	if err != nil {
		return err
	}
	if err := secureData(cfg.Data, log); err != nil {
		return err
	}
	st, closeStore, err := openStore(context.Background(), cfg, dbPath)
	if err != nil {
		return err
	}
	defer closeStore()
	return offline(cfg, st)
}
