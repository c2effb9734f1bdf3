package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/packaging/systemd"
)

// Where a connector service's files go, on the system (under --root).
const (
	etcDir       = "/etc/onramp"
	unitDir      = "/usr/lib/systemd/system"
	unitTemplate = "onramp-connector@.service"
	wantsDir     = "/etc/systemd/system/multi-user.target.wants"
)

// instanceName is what NAME may be: a file name in /etc/onramp and a
// systemd instance name, with no dot (NAME.ingress.yml must not be
// another instance's NAME.yml).
var instanceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

func checkName(name string) error {
	if !instanceName.MatchString(name) {
		return fmt.Errorf("name %q: want letters, digits, '-' and '_' (at most 63, no dot)", name)
	}
	if name == "edge" {
		return errors.New(`name "edge": /etc/onramp/edge.yml is the edge's configuration; choose another --name`)
	}
	return nil
}

// instance names the files of connector service NAME.
type instance struct {
	name, etc string
}

func (i instance) token() string   { return filepath.Join(i.etc, i.name+".token") }
func (i instance) ingress() string { return filepath.Join(i.etc, i.name+".ingress.yml") }
func (i instance) l3() string      { return filepath.Join(i.etc, i.name+".yml") }

// env is the unit's EnvironmentFile: ONRAMP_CONNECTOR_FLAGS, the flags
// service run gets (install --metrics writes it).
func (i instance) env() string  { return filepath.Join(i.etc, i.name+".env") }
func (i instance) unit() string { return "onramp-connector@" + i.name + ".service" }

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// serviceCmd is `connector service`: the connector as a systemd service.
func serviceCmd(logFlags *cli.LogFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "run the connector as a systemd service (onramp-connector@NAME)",
		Long: `Install, remove and run the connector as the systemd service
onramp-connector@NAME: an L4 tunnel (/etc/onramp/NAME.token and its ingress
rules /etc/onramp/NAME.ingress.yml) or an L3 connector (/etc/onramp/NAME.yml).
Several connectors run side by side under different names.`,
	}
	cmd.AddCommand(serviceInstallCmd(), serviceUninstallCmd(), serviceRunCmd(logFlags))
	return cmd
}

type installFlags struct {
	tokenFile, ingressFile, l3File string
	name, root                     string
	metrics                        string // --metrics of the service, in NAME.env
	force                          bool
	// viaSystemctl enables and starts the unit with systemctl rather than
	// by its link under root: without --root (and in tests).
	viaSystemctl bool
}

func serviceInstallCmd() *cobra.Command {
	var f installFlags
	cmd := &cobra.Command{
		Use:   "install --token-file FILE [--ingress FILE] | --l3-config FILE",
		Short: "install the connector as a systemd service and start it",
		Long: `Install a connector as the systemd service onramp-connector@NAME, enable it
(it starts at boot) and start it. Needs root.

  connector service install --token-file demo.token --ingress ingress.yml
  connector service install --l3-config l3.yml

With --metrics ADDR the service serves /metrics, /ready and /status there
(for Prometheus and connector status; /etc/onramp/NAME.env).

The token (checked as tunnel run would) is copied to /etc/onramp/NAME.token
and the ingress rules (checked too) to /etc/onramp/NAME.ingress.yml; without
--ingress, an /etc/onramp/NAME.ingress.yml already there is used. An l3.yml
(checked as l3 run would, its key file read) is copied to /etc/onramp/NAME.yml.
The copies have mode 0600; relative paths in them (privateKeyFile, caPool)
are then relative to /etc/onramp. Nothing is written if a check fails.

NAME defaults to the token file's name without its extension (demo.token:
demo), or tunnel-ID8 if that is no good name, and for L3 to the name in
l3.yml, or its interface. An existing NAME is refused unless --force.

The unit /usr/lib/systemd/system/onramp-connector@.service (the one the
package installs) is written if missing or different, then
"systemctl daemon-reload" and "systemctl enable --now onramp-connector@NAME"
run. With --root DIR everything is written under DIR and the unit is enabled
by its symbolic link in multi-user.target.wants, without systemctl (an image
being built, a container).

Then: systemctl status onramp-connector@NAME, journalctl -u onramp-connector@NAME;
systemctl reload onramp-connector@NAME after editing the ingress rules or l3.yml.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.viaSystemctl = f.root == ""
			return install(cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.tokenFile, "token-file", "", "the tunnel token's file (edge tunnel create NAME prints the token)")
	fl.StringVar(&f.ingressFile, "ingress", "", "the tunnel's ingress rules file (YAML)")
	fl.StringVar(&f.l3File, "l3-config", "", "an L3 connector's l3.yml (edge l3 connector add prints it)")
	fl.StringVar(&f.name, "name", "", "the service's name, onramp-connector@NAME (default: from the token file's name or l3.yml)")
	fl.StringVar(&f.root, "root", "", "install under this directory, enabling the unit without systemctl")
	fl.StringVar(&f.metrics, "metrics", "", "the service serves /metrics, /ready and /status on this address (e.g. 127.0.0.1:9200; written to /etc/onramp/NAME.env)")
	fl.BoolVar(&f.force, "force", false, "replace the files of an installed connector of the same name")
	return cmd
}

// install is `connector service install`.
func install(out io.Writer, f installFlags) error {
	type file struct {
		path string
		data []byte
	}
	var files []file
	var name string
	switch {
	case f.tokenFile != "" && f.l3File != "":
		return errors.New("give --token-file (an L4 tunnel) or --l3-config (an L3 connector), not both")
	case f.tokenFile != "":
		tf := tokenFlags{file: f.tokenFile}
		tok, _, err := tf.load()
		if err != nil {
			return err
		}
		if name = f.name; name == "" {
			name = strings.TrimSuffix(filepath.Base(f.tokenFile), filepath.Ext(f.tokenFile))
			if checkName(name) != nil || name == "token" {
				name = "tunnel-" + tok.TunnelIDString()[:8]
			}
		}
		raw, _ := os.ReadFile(f.tokenFile) // load read it
		files = append(files, file{instance{name, filepath.Join(f.root, etcDir)}.token(), []byte(strings.TrimSpace(string(raw)) + "\n")})
		if f.ingressFile != "" {
			if _, err := ingress.Load(f.ingressFile); err != nil {
				return fmt.Errorf("--ingress: %w", err)
			}
			data, err := os.ReadFile(f.ingressFile)
			if err != nil {
				return fmt.Errorf("--ingress: %w", err)
			}
			files = append(files, file{instance{name, filepath.Join(f.root, etcDir)}.ingress(), data})
		}
	case f.l3File != "":
		if f.ingressFile != "" {
			return errors.New("--ingress: ingress rules are for an L4 tunnel (--token-file), not an L3 connector")
		}
		cfg, err := l3config.LoadConnector(f.l3File)
		if err != nil {
			return fmt.Errorf("--l3-config: %w", err)
		}
		if err := checkKeyFile(cfg, f.l3File); err != nil {
			return fmt.Errorf("--l3-config %s: %w", f.l3File, err)
		}
		if name = f.name; name == "" {
			if name = cfg.Name; checkName(name) != nil {
				name = cfg.Interface
			}
		}
		data, err := os.ReadFile(f.l3File)
		if err != nil {
			return fmt.Errorf("--l3-config: %w", err)
		}
		files = append(files, file{instance{name, filepath.Join(f.root, etcDir)}.l3(), data})
	default:
		return errors.New("give --token-file FILE (an L4 tunnel) or --l3-config FILE (an L3 connector)")
	}
	if err := checkName(name); err != nil {
		return fmt.Errorf("%w (give --name)", err)
	}
	in := instance{name, filepath.Join(f.root, etcDir)}
	if f.metrics != "" {
		if _, _, err := net.SplitHostPort(f.metrics); err != nil {
			return fmt.Errorf("--metrics %q: want HOST:PORT: %w", f.metrics, err)
		}
		files = append(files, file{in.env(), []byte("# the flags of connector service run " + name + " (connector service install)\nONRAMP_CONNECTOR_FLAGS=--metrics " + f.metrics + "\n")})
	}

	// Refuse before writing anything.
	l4 := f.tokenFile != ""
	if l4 && exists(in.l3()) {
		return fmt.Errorf("%s exists: %s is an L3 connector; connector service uninstall --name %s first, or choose another --name", in.l3(), name, name)
	}
	if !l4 && exists(in.token()) {
		return fmt.Errorf("%s exists: %s is an L4 tunnel connector; connector service uninstall --name %s first, or choose another --name", in.token(), name, name)
	}
	if l4 && f.ingressFile == "" {
		if _, err := ingress.Load(in.ingress()); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("--ingress: the tunnel needs ingress rules: give --ingress FILE (or write %s first)", in.ingress())
			}
			return err
		}
	}
	replacing := false
	for _, fl := range files {
		if exists(fl.path) {
			if !f.force {
				return fmt.Errorf("%s exists: a connector named %s is installed; --force replaces its files (or give another --name)", fl.path, name)
			}
			replacing = true
		}
	}

	if err := os.MkdirAll(in.etc, 0o755); err != nil {
		return err
	}
	for _, fl := range files {
		if err := cli.WriteFile(fl.path, fl.data, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(out, "wrote %s (mode 0600)\n", fl.path)
	}
	unit, wrote, err := writeUnit(f.root)
	if err != nil {
		return err
	}
	if wrote {
		fmt.Fprintf(out, "wrote %s\n", unit)
	}
	if !f.viaSystemctl {
		link := filepath.Join(f.root, wantsDir, in.unit())
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		target := filepath.Join(unitDir, unitTemplate) // as the system will see it
		if cur, err := os.Readlink(link); err != nil || cur != target {
			_ = os.Remove(link)
			if err := os.Symlink(target, link); err != nil {
				return fmt.Errorf("enable %s: %w", in.unit(), err)
			}
		}
		fmt.Fprintf(out, "enabled %s (%s -> %s); it starts when the system under %s boots\n", in.unit(), link, target, f.root)
		return nil
	}
	steps := [][]string{{"daemon-reload"}, {"enable", "--now", in.unit()}}
	if replacing {
		steps = append(steps, []string{"restart", in.unit()}) // the new files
	}
	for _, s := range steps {
		if err := systemctl(s...); err != nil {
			return fmt.Errorf("the files are written, but %w", err)
		}
	}
	fmt.Fprintf(out, "started %s; see systemctl status %s and journalctl -u %s\n", in.unit(), in.unit(), in.unit())
	return nil
}

// checkKeyFile checks that the service will read the same private key as
// l3.yml at src does: a relative privateKeyFile must name the same file
// from /etc/onramp, and the unit's ProtectHome hides /home, /root and
// /run/user.
func checkKeyFile(cfg *l3config.Connector, src string) error {
	key := cfg.KeyPath(src)
	if key == "" {
		return nil // inline, in the 0600 copy
	}
	if !filepath.IsAbs(cfg.PrivateKeyFile) {
		abs, err := filepath.Abs(key)
		if err != nil || abs != filepath.Join(etcDir, cfg.PrivateKeyFile) {
			return fmt.Errorf("privateKeyFile %q is relative to the l3.yml's directory, which /etc/onramp is not: give its absolute path (%s)", cfg.PrivateKeyFile, abs)
		}
	}
	abs, _ := filepath.Abs(key)
	for _, hidden := range []string{"/home/", "/root/", "/run/user/"} {
		if strings.HasPrefix(abs, hidden) {
			return fmt.Errorf("privateKeyFile %s: the service cannot read it (ProtectHome=yes hides %s): move it to /etc/onramp (connector l3 init --key /etc/onramp/l3.key --from-config ...)", abs, strings.TrimSuffix(hidden, "/"))
		}
	}
	return nil
}

// writeUnit writes the connector's unit template under root unless it is
// there with the same bytes; wrote says it was written.
func writeUnit(root string) (path string, wrote bool, err error) {
	data, err := systemd.Units.ReadFile(unitTemplate)
	if err != nil {
		return "", false, err
	}
	path = filepath.Join(root, unitDir, unitTemplate)
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return path, false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", false, err
	}
	if err := cli.WriteFile(path, data, 0o644); err != nil {
		return "", false, err
	}
	return path, true, nil
}

// systemctl runs systemctl with args, its output going to ours. A
// variable for tests.
var systemctl = func(args ...string) error {
	cmd := exec.Command("systemctl", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func serviceUninstallCmd() *cobra.Command {
	var name, root string
	cmd := &cobra.Command{
		Use:   "uninstall [--name NAME]",
		Short: "stop and disable a connector service and remove its files",
		Long: `Stop and disable onramp-connector@NAME ("systemctl disable --now") and remove
/etc/onramp/NAME.token, NAME.ingress.yml and NAME.yml. The unit template is
removed too when no other connector service is enabled, unless a package
installed it. An L3 key file (privateKeyFile) is kept. Without --name, the
one connector service enabled is uninstalled. --root DIR works under DIR
without systemctl, as install --root does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return uninstall(cmd.OutOrStdout(), name, root, root == "")
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the service's name, onramp-connector@NAME (default: the only one enabled)")
	cmd.Flags().StringVar(&root, "root", "", "uninstall under this directory, without systemctl")
	return cmd
}

// enabled lists the names of the connector services enabled under root.
func enabled(root string) []string {
	ents, _ := os.ReadDir(filepath.Join(root, wantsDir))
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), "onramp-connector@"); ok {
			if n, ok = strings.CutSuffix(n, ".service"); ok && n != "" {
				names = append(names, n)
			}
		}
	}
	return names
}

// uninstall is `connector service uninstall`; viaSystemctl as for install.
func uninstall(out io.Writer, name, root string, viaSystemctl bool) error {
	if name == "" {
		names := enabled(root)
		if len(names) != 1 {
			return fmt.Errorf("--name: which connector service? enabled: %q", names)
		}
		name = names[0]
	}
	if err := checkName(name); err != nil {
		return err
	}
	in := instance{name, filepath.Join(root, etcDir)}
	link := filepath.Join(root, wantsDir, in.unit())
	files := []string{in.token(), in.ingress(), in.l3(), in.env()}
	if !slices.ContainsFunc(append(files, link), exists) {
		return fmt.Errorf("no connector service %s: none of %s, %s, %s", name, in.token(), in.l3(), link)
	}
	if viaSystemctl {
		if err := systemctl("disable", "--now", in.unit()); err != nil {
			return err
		}
	} else if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	fmt.Fprintf(out, "disabled %s\n", in.unit())
	for _, p := range files {
		if err := os.Remove(p); err == nil {
			fmt.Fprintf(out, "removed %s\n", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	unit := filepath.Join(root, unitDir, unitTemplate)
	if len(enabled(root)) == 0 && exists(unit) && !packaged(root, filepath.Join(unitDir, unitTemplate)) {
		if err := os.Remove(unit); err != nil {
			return err
		}
		fmt.Fprintf(out, "removed %s (no other connector service)\n", unit)
		if viaSystemctl {
			return systemctl("daemon-reload")
		}
	}
	return nil
}

// packaged reports whether a dpkg or rpm package under root owns path:
// the package's file, not uninstall's to remove.
func packaged(root, path string) bool {
	lists, _ := filepath.Glob(filepath.Join(root, "/var/lib/dpkg/info/*.list"))
	for _, l := range lists {
		f, err := os.Open(l)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if sc.Text() == path {
				f.Close()
				return true
			}
		}
		f.Close()
	}
	if root == "" || root == "/" {
		if _, err := exec.LookPath("rpm"); err == nil {
			return exec.Command("rpm", "-qf", "--quiet", path).Run() == nil
		}
	}
	return false
}

func serviceRunCmd(logFlags *cli.LogFlags) *cobra.Command {
	var (
		etc         string
		protocol    string
		connections int
		grace       time.Duration
		metrics     string
	)
	cmd := &cobra.Command{
		Use:   "run NAME",
		Short: "run connector service NAME: what onramp-connector@NAME runs",
		Long: `Run the connector whose files service install wrote: with /etc/onramp/NAME.token,
the L4 tunnel as "tunnel run --token-file NAME.token --config NAME.ingress.yml"
does; with /etc/onramp/NAME.yml, the L3 connector as "l3 run --config NAME.yml"
does. Signals are theirs: SIGHUP reloads the ingress rules or l3.yml, SIGTERM
drains and stops. It tells systemd READY=1 once the first tunnel connection
or WireGuard handshake with the edge is up.

The flags below are tunnel run's and l3 run's; the unit passes it those in
ONRAMP_CONNECTOR_FLAGS of /etc/onramp/NAME.env (service install --metrics
ADDR writes --metrics there; edit it for others, then systemctl restart).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName(name); err != nil {
				return err
			}
			in := instance{name, etc}
			l4, l3 := exists(in.token()), exists(in.l3())
			switch {
			case l4 && l3:
				return fmt.Errorf("connector %s: both %s and %s exist: a connector is an L4 tunnel or an L3 connector; remove one", name, in.token(), in.l3())
			case !l4 && !l3:
				return fmt.Errorf("connector %s: neither %s (L4 tunnel) nor %s (L3) exists (connector service install writes them)", name, in.token(), in.l3())
			}
			log, err := logFlags.Logger(os.Stderr)
			if err != nil {
				return err
			}
			if l3 {
				cfg, err := l3config.LoadConnector(in.l3())
				if err != nil {
					return err
				}
				warnKeyModes(log, cfg, in.l3())
				return runL3(cmd.Context(), log, cfg, in.l3(), metrics)
			}
			tf := tokenFlags{file: in.token()}
			tok, _, err := tf.load()
			if err != nil {
				return err
			}
			rules, err := ingress.Load(in.ingress())
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("connector %s: no ingress rules: %s does not exist (connector service install --ingress FILE writes it)", name, in.ingress())
			} else if err != nil {
				return err
			}
			switch protocol {
			case "quic", "http2", "auto":
			default:
				return fmt.Errorf("--protocol %q: want quic, http2 or auto", protocol)
			}
			return run(cmd.Context(), log, tok, in.ingress(), rules, protocol, connections, grace, metrics)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&etc, "etc", etcDir, "the directory holding NAME.token, NAME.ingress.yml or NAME.yml")
	fl.StringVar(&protocol, "protocol", "auto", "L4: transport: quic, http2, or auto (QUIC, falling back to HTTP/2)")
	fl.IntVar(&connections, "connections", 4, "L4: connections to keep to the edges")
	fl.DurationVar(&grace, "grace-period", 30*time.Second, "L4: on SIGTERM, how long live streams may take to finish")
	fl.StringVar(&metrics, "metrics", "", "serve /metrics, /ready and /status (connector status) on this address")
	return cmd
}
