package main

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/l4proxy/edgeconfig"
	"github.com/onramp-net/onramp/l4proxy/store"
)

func tunnelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "create, list and delete tunnels",
		Long: `Manage tunnels. With a running edge these talk to it through the admin socket in
its data directory (a deleted tunnel's connections drop at once); otherwise they
open the tunnel store directly.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "create NAME",
		Short: "record a tunnel and print the token its connectors need",
		Long: `Record a tunnel and print its token on standard output. The token holds the
tunnel ID, its secret, the edge addresses (advertise: in the edge config) and
the pin of the edge's key: keep it secret, give it to the connector with
--token, --token-file or ONRAMP_TOKEN. NAME is 1-63 characters of a-z, 0-9, -.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			_, certPath, keyPath, adminPath := g.paths(cfg)
			var info tunnelInfo
			if c := dialAdmin(adminPath); c != nil {
				if err := c.do(http.MethodPost, "/v1/tunnels/"+args[0], &info); err != nil {
					return err
				}
			} else {
				_, pin, err := loadOrCreateCert(cfg, certPath, keyPath)
				if err != nil {
					return err
				}
				st, err := openStore(g, cfg)
				if err != nil {
					return err
				}
				defer st.Close()
				if info, _, err = createTunnel(cfg, st, pin, args[0]); err != nil {
					return err
				}
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
			cfg, err := g.load()
			if err != nil {
				return err
			}
			_, _, _, adminPath := g.paths(cfg)
			var infos []tunnelInfo
			live := false
			if c := dialAdmin(adminPath); c != nil {
				live = true
				if err := c.do(http.MethodGet, "/v1/tunnels", &infos); err != nil {
					return err
				}
			} else {
				st, err := openStore(g, cfg)
				if err != nil {
					return err
				}
				defer st.Close()
				ts, err := st.ListTunnels()
				if err != nil {
					return err
				}
				for _, t := range ts {
					infos = append(infos, infoOf(t))
				}
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
		Use:   "delete NAME",
		Short: "delete a tunnel; its live connections are dropped and its token stops working",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			_, _, _, adminPath := g.paths(cfg)
			var info tunnelInfo
			if c := dialAdmin(adminPath); c != nil {
				if err := c.do(http.MethodDelete, "/v1/tunnels/"+args[0], &info); err != nil {
					return err
				}
			} else {
				st, err := openStore(g, cfg)
				if err != nil {
					return err
				}
				defer st.Close()
				t, err := st.DeleteTunnel(args[0])
				if err != nil {
					return err
				}
				info = tunnelInfo{Name: t.Name, ID: hex.EncodeToString(t.ID[:])}
			}
			fmt.Fprintf(os.Stderr, "tunnel %s deleted (id %s)\n", info.Name, info.ID)
			return nil
		},
	})
	return cmd
}

func openStore(g *globals, cfg *edgeconfig.Config) (*store.Store, error) {
	dbPath, _, _, _ := g.paths(cfg)
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	return store.Open(dbPath)
}
