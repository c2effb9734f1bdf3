package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// l3InitCmd is `connector l3 init`: the connector makes its own WireGuard
// key, so that the edge only ever learns the public one.
func l3InitCmd() *cobra.Command {
	var keyPath, from string
	var force bool
	cmd := &cobra.Command{
		Use:   "init [--key FILE]",
		Short: "make this connector's WireGuard key and print its public key",
		Long: `Make the connector's WireGuard private key, write it to --key FILE (default
` + l3config.DefaultKeyFile + `; mode 0600, written whole or not at all) and print the
public key on standard output. Register the connector on the edge with it:

  edge l3 connector add NAME --subnet PREFIX --public-key PUBLIC_KEY --key-file FILE

The l3.yml the edge prints names FILE; the edge never has the private key.

An existing key file is kept and its public key printed again (init is
safe to re-run); --force replaces it with a new key, which the edge must
then be given (edge l3 connector remove NAME and add it again).

--from-config OLD_L3_YML moves the key of an l3.yml an earlier edge printed
(with the key inline) into FILE, so the l3.yml the edge prints now works
with the same registration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyPath == "" {
				return errors.New("--key: the key file's path is required")
			}
			var priv l3config.Key
			if from != "" {
				data, err := os.ReadFile(from)
				if err != nil {
					return fmt.Errorf("--from-config: %w", err)
				}
				c, err := l3config.ParseConnector(data)
				if err != nil {
					return fmt.Errorf("--from-config %s: %w", from, err)
				}
				if c.PrivateKey.IsZero() {
					return fmt.Errorf("--from-config %s: it holds no key inline (privateKeyFile: %s)", from, c.PrivateKeyFile)
				}
				priv = c.PrivateKey
			}
			old, err := l3config.ReadKeyFile(keyPath)
			switch {
			case err == nil && (force || !priv.IsZero() && priv == old):
			case err == nil && priv.IsZero():
				fmt.Fprintf(os.Stderr, "%s exists: kept (--force makes a new key). Its public key:\n", keyPath)
				fmt.Fprintln(cmd.OutOrStdout(), old.PublicKey())
				return nil
			case err == nil:
				return fmt.Errorf("--key %s holds another key: --force replaces it", keyPath)
			case !errors.Is(err, fs.ErrNotExist) && !force:
				return fmt.Errorf("--key: %w (--force replaces the file)", err)
			}
			if priv.IsZero() {
				if priv, err = l3config.GeneratePrivateKey(); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			if err := cli.WriteFile(keyPath, priv.KeyFileData(), 0o600); err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			fmt.Fprintf(os.Stderr, "private key written to %s (mode 0600). Register this connector on the edge with its public key:\n"+
				"  edge l3 connector add NAME --subnet PREFIX --public-key %s --key-file %s\n", keyPath, priv.PublicKey(), keyPath)
			fmt.Fprintln(cmd.OutOrStdout(), priv.PublicKey())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyPath, "key", l3config.DefaultKeyFile, "write the private key to this file (mode 0600)")
	f.BoolVar(&force, "force", false, "replace an existing key file with a new key")
	f.StringVar(&from, "from-config", "", "take the key from an l3.yml that holds it inline (an earlier edge printed it)")
	return cmd
}

// warnKeyModes warns when the private key of the l3.yml at config is in a
// file other users may read.
func warnKeyModes(log *slog.Logger, cfg *l3config.Connector, config string) {
	path, what := cfg.KeyPath(config), "privateKeyFile"
	if path == "" {
		path, what = config, "l3.yml (its privateKey)"
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return
	}
	log.Warn(fmt.Sprintf("%s %s is mode %#o: other users may read the connector's private key; chmod 600 it", what, path, fi.Mode().Perm()),
		"path", path, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()))
}
