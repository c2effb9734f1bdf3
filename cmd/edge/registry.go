package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/dataplane/registry"
	"github.com/onramp-net/onramp/l4proxy/store"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// The edge's registry spaces (see package registry): the tunnel store's,
// the L3 store's, and the edge's own (its tunnel certificate, which every
// edge on one etcd shares so that one token's pin fits them all).
var registrySpaces = []string{"meta", "tunnels", "tunnel_names", "l3_meta", "l3_peers", "l3_released", "edge"}

const (
	keyEdgeCert = "edge/certificate" // PEM
	keyEdgeKey  = "edge/key"         // PEM
)

// openStore opens the edge's registry as edge.yml says (the bbolt file at
// dbPath, or etcd) and the tunnel store in it; close closes both.
func openStore(ctx context.Context, cfg *edgeconfig.Config, dbPath string) (st *store.Store, close func() error, err error) {
	if cfg.Registry.Etcd == nil {
		st, err := store.Open(dbPath)
		if err != nil {
			return nil, nil, err
		}
		return st, st.Close, nil
	}
	ec, err := cfg.Registry.Etcd.EtcdConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("edge config: %w", err)
	}
	reg, err := registry.OpenEtcd(ctx, ec)
	if err != nil {
		return nil, nil, err
	}
	st, err = store.New(reg)
	if err != nil {
		reg.Close()
		return nil, nil, err
	}
	return st, reg.Close, nil
}

// edgeCert returns the certificate of the tunnel listener and its pin.
// With one edge (bbolt) it is the one in the data directory, made on first
// use. With etcd every edge serves the one in the registry: the first edge
// puts its own there (from its data directory, or a new one), so that a
// token's pin fits every edge.
func edgeCert(ctx context.Context, cfg *edgeconfig.Config, reg registry.Store, certPath, keyPath string) (tls.Certificate, [32]byte, error) {
	if cfg.Registry.Etcd == nil {
		return loadOrCreateCert(cfg, certPath, keyPath)
	}
	var certPEM, keyPEM []byte
	_, err := reg.Update(ctx, func(tx registry.Txn) error {
		var err error
		if certPEM, err = tx.Get(keyEdgeCert); err != nil {
			return err
		}
		if keyPEM, err = tx.Get(keyEdgeKey); err != nil {
			return err
		}
		if certPEM != nil && keyPEM != nil {
			return nil
		}
		certPEM, keyPEM, err = localCert(cfg, certPath, keyPath)
		if err != nil {
			return err
		}
		if err := tx.Put(keyEdgeCert, certPEM); err != nil {
			return err
		}
		return tx.Put(keyEdgeKey, keyPEM)
	})
	if err != nil {
		return tls.Certificate{}, [32]byte{}, fmt.Errorf("edge certificate in the registry: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return cert, [32]byte{}, fmt.Errorf("edge certificate in the registry (%s): %w", keyEdgeCert, err)
	}
	pin, err := tunnel.CertificatePin(&cert)
	return cert, pin, err
}

// localCert returns the PEM of the certificate in the data directory, or
// of a new one if there is none.
func localCert(cfg *edgeconfig.Config, certPath, keyPath string) (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(certPath)
	if err == nil {
		keyPEM, err = os.ReadFile(keyPath)
	}
	if err == nil {
		return certPEM, keyPEM, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	var hosts []string
	for _, a := range advertised(cfg) {
		if h, _, err := net.SplitHostPort(a); err == nil {
			hosts = append(hosts, h)
		}
	}
	_, certPEM, keyPEM, err = tunnel.GenerateEdgeCertificate(hosts...)
	return certPEM, keyPEM, err
}

// exportFile is what edge registry export writes.
type exportFile struct {
	Format   string       `json:"format"` // exportFormat
	Version  int          `json:"version"`
	Exported time.Time    `json:"exported"`
	From     string       `json:"from"`
	Pairs    []exportPair `json:"pairs"`
}

// exportPair is a key and value; both are bytes (tunnel IDs and addresses
// are binary), base64 in JSON.
type exportPair struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
}

const exportFormat = "onramp-edge-registry"

// importChunk is how many keys one import transaction writes: under
// etcd's limit of 128 operations.
const importChunk = 100

func registryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "export the edge's state, or import it into another registry (bbolt to etcd)",
		Long: `The registry is where the edge keeps its state: tunnels and their secrets, L3
clients and connectors, address allocations, the hub's WireGuard key and the
tunnel certificate. One edge keeps it in the bbolt file edge.db in its data
directory; several edges share it in etcd (registry.etcd in edge.yml).

To move a single edge to etcd: stop it, run "edge registry export --out
state.json" with its config, then "edge registry import state.json" with the
config that names etcd, and start the edges with that config. The tokens,
client and connector configs stay valid: the tunnel certificate and the hub's
key move with the state.`,
	}
	var out string
	export := &cobra.Command{
		Use:   "export",
		Short: "write every record of the registry edge.yml names, as JSON (it holds secrets: mode 0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			dbPath, certPath, keyPath, _ := g.paths(cfg)
			st, closeStore, err := openStore(cmd.Context(), cfg, dbPath)
			if err != nil {
				return err
			}
			defer closeStore()
			f := exportFile{Format: exportFormat, Version: 1, Exported: time.Now().UTC(), From: st.Registry().String()}
			err = st.Registry().View(cmd.Context(), func(tx registry.Txn) error {
				for _, sp := range registrySpaces {
					ps, err := tx.List(sp + "/")
					if err != nil {
						return err
					}
					for _, p := range ps {
						f.Pairs = append(f.Pairs, exportPair{Key: []byte(p.Key), Value: p.Value})
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if cfg.Registry.Etcd == nil {
				// A single edge keeps its certificate in files: it moves
				// with the state, so tokens keep their pin.
				if certPEM, err := os.ReadFile(certPath); err == nil {
					if keyPEM, err := os.ReadFile(keyPath); err == nil {
						f.Pairs = append(f.Pairs, exportPair{Key: []byte(keyEdgeCert), Value: certPEM}, exportPair{Key: []byte(keyEdgeKey), Value: keyPEM})
					}
				}
			}
			data, err := json.MarshalIndent(f, "", " ")
			if err != nil {
				return err
			}
			data = append(data, '\n')
			if err := writeOut(out, data); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "exported %d records from %s\n", len(f.Pairs), f.From)
			return nil
		},
	}
	export.Flags().StringVar(&out, "out", "", "write to this file (mode 0600) instead of standard output")
	cmd.AddCommand(export)

	var force bool
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "write the records of an export into the registry edge.yml names (it must be empty)",
		Long: `Write the records of an export (edge registry export) into the registry the
config names: etcd (registry.etcd), or a new edge.db. The registry must hold
no edge state yet (--force writes over what is there). Writes go in
transactions of ` + fmt.Sprint(importChunk) + ` records; "-" reads standard input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(os.Stdin)
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			var f exportFile
			if err := json.Unmarshal(data, &f); err != nil {
				return fmt.Errorf("%s: not an export: %w", args[0], err)
			}
			if f.Format != exportFormat || f.Version != 1 {
				return fmt.Errorf("%s: format %q version %d: want %q version 1 (edge registry export)", args[0], f.Format, f.Version, exportFormat)
			}
			for _, p := range f.Pairs {
				sp, _, ok := strings.Cut(string(p.Key), "/")
				if !ok || !isRegistrySpace(sp) || p.Value == nil {
					return fmt.Errorf("%s: record %q is not edge state", args[0], p.Key)
				}
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			dbPath, certPath, keyPath, _ := g.paths(cfg)
			if cfg.Registry.Etcd == nil {
				if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
					return err
				}
				// A single edge keeps its certificate in files.
				var rest []exportPair
				for _, p := range f.Pairs {
					path := map[string]string{keyEdgeCert: certPath, keyEdgeKey: keyPath}[string(p.Key)]
					if path == "" {
						rest = append(rest, p)
						continue
					}
					if _, err := os.Stat(path); err == nil && !force {
						return fmt.Errorf("%s exists: import into a new data directory, or --force to replace the edge's certificate", path)
					}
					if err := cli.WriteFile(path, p.Value, 0o600); err != nil {
						return err
					}
				}
				f.Pairs = rest
			}
			st, closeStore, err := openStore(cmd.Context(), cfg, dbPath)
			if err != nil {
				return err
			}
			defer closeStore()
			reg := st.Registry()
			if !force {
				var there int
				err := reg.View(cmd.Context(), func(tx registry.Txn) error {
					for _, sp := range registrySpaces {
						if sp == "meta" {
							continue // the store's schema, written at open
						}
						ps, err := tx.List(sp + "/")
						if err != nil {
							return err
						}
						there += len(ps)
					}
					return nil
				})
				if err != nil {
					return err
				}
				if there > 0 {
					return fmt.Errorf("%s already holds %d records of edge state: import into an empty registry, or --force to write over them", reg, there)
				}
			}
			for i := 0; i < len(f.Pairs); i += importChunk {
				chunk := f.Pairs[i:min(i+importChunk, len(f.Pairs))]
				if _, err := reg.Update(cmd.Context(), func(tx registry.Txn) error {
					for _, p := range chunk {
						if err := tx.Put(string(p.Key), p.Value); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					return fmt.Errorf("import: %d of %d records written: %w", i, len(f.Pairs), err)
				}
			}
			fmt.Fprintf(os.Stderr, "imported %d records from %s (exported %s) into %s\n", len(f.Pairs), f.From, f.Exported.Format(time.RFC3339), reg)
			return nil
		},
	}
	imp.Flags().BoolVar(&force, "force", false, "write over the records already there")
	cmd.AddCommand(imp)
	return cmd
}

func isRegistrySpace(sp string) bool { return slices.Contains(registrySpaces, sp) }
