package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/cmd/internal/diag"
	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// diagOptions are the flags of connector diag.
type diagOptions struct {
	tf       tokenFlags
	config   string // ingress rules
	l3Config string
	metrics  string
	bundle   string
	name     string
	logFile  string
	host     diag.Host
}

func diagCmd() *cobra.Command {
	var o diagOptions
	cmd := &cobra.Command{
		Use:   "diag",
		Short: "check what tunnels most often get stuck on and say what is wrong and how to fix it",
		Long: `Check this host and its way to the edge as the connector needs them, and
print one line per check: OK, WARN or FAIL, what was found, and the fix.
The exit status is 1 when any check fails.

For an L4 tunnel connector (the token from --token-file or TUNNEL_TOKEN, as
connector tunnel run takes it; the ingress rules from --config):
  - DNS of each edge address in the token, and the MTU of the route to it;
  - QUIC to each edge (a handshake over UDP, nothing more: diag does not
    join the tunnel) and the HTTP/2 fallback (TLS over TCP), and which of
    them the connector would use;
  - the clock against the edge's (which it sends in the HTTP/2 handshake);
  - the UDP buffer limits (net.core.rmem_max, wmem_max) against the 7 MiB
    QUIC asks for, with the sysctl line that raises them;
  - each ingress rule's origin: a TCP or Unix socket connect, and a HEAD /
    for http and https origins.
For an L3 connector (--l3-config l3.yml): the TUN device, IP forwarding,
its interface, and DNS and the route MTU of the edge endpoints.
--metrics ADDR (the --metrics of a running connector) adds its status.
--name NAME alone checks the connector connector service install set up:
/etc/onramp/NAME.token and NAME.ingress.yml, or NAME.yml for L3.

The edge logs each probe as a connector authentication that failed (the
probe sends no proof), and counts it in its authentication failures.

--bundle FILE writes a .tar.gz for a bug report: the version, this report,
the configuration with secrets removed (the token's secret, private keys),
the running connector's /metrics and /status (with --metrics), recent logs
(journalctl -u onramp-connector@NAME, or --log-file) and the host's kernel
and sysctls.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDiag(cmd.Context(), cmd.OutOrStdout(), &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.tf.file, "token-file", "", "the tunnel token's file, as for tunnel run (or set "+tokenEnv+")")
	f.StringVar(&o.tf.token, "token", "", "the tunnel token (avoid: other local users can read a process's arguments)")
	f.StringVarP(&o.config, "config", "c", "", "the ingress rules file, as for tunnel run: each rule's origin is checked")
	f.StringVar(&o.l3Config, "l3-config", "", "an L3 connector's l3.yml: check the TUN, forwarding and the edge endpoints")
	f.StringVar(&o.metrics, "metrics", "", "the --metrics address of a running connector, to include its status")
	f.StringVar(&o.bundle, "bundle", "", "also write a .tar.gz for a bug report to this file (secrets removed)")
	f.StringVar(&o.name, "name", "", "the connector's service name (onramp-connector@NAME): alone, checks /etc/onramp/NAME.token and NAME.ingress.yml, or NAME.yml; the bundle's logs are its journal")
	f.StringVar(&o.logFile, "log-file", "", "a log file of the connector to put in the bundle instead of the journal")
	// Test hooks: the host's global sysctls and its clock cannot be
	// changed by a test, so it points diag at a fake /proc and shifts
	// the clock diag compares with the edge's. Hidden from users.
	f.StringVar(&o.host.ProcRoot, "proc-root", "", "read sysctls below this directory instead of /proc (tests)")
	f.DurationVar(&o.host.ClockOffset, "clock-offset", 0, "pretend the local clock is off by this much (tests)")
	_ = f.MarkHidden("proc-root")
	_ = f.MarkHidden("clock-offset")
	return cmd
}

// haveToken reports whether a token is given, by flag or environment.
func (o *diagOptions) haveToken() bool {
	return o.tf.file != "" || o.tf.token != "" || os.Getenv(tokenEnv) != "" || os.Getenv(tokenEnvAlias) != ""
}

// configDir is where connector service install puts a connector's
// files: NAME.token and NAME.ingress.yml, or NAME.yml for L3.
var configDir = "/etc/onramp"

// fromName fills in the files of the service NAME (--name alone) that
// exist in configDir.
func (o *diagOptions) fromName() {
	if o.name == "" || o.haveToken() || o.l3Config != "" || o.config != "" {
		return
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	base := filepath.Join(configDir, o.name)
	if exists(base + ".token") {
		o.tf.file = base + ".token"
		if exists(base + ".ingress.yml") {
			o.config = base + ".ingress.yml"
		}
	} else if exists(base + ".yml") {
		o.l3Config = base + ".yml"
	}
}

func runDiag(ctx context.Context, out io.Writer, o *diagOptions) error {
	o.fromName()
	if !o.haveToken() && o.l3Config == "" {
		return errors.New("nothing to check: give the tunnel's --token-file (or " + tokenEnv + ") and --config, --l3-config for an L3 connector, or --name NAME of a connector installed in " + configDir)
	}
	rep := &diag.Report{}
	b := &diag.Bundle{Prefix: "onramp-connector-diag/"}

	var st *connectorStatus
	if o.metrics != "" {
		var res diag.Result
		st, res = runningConnector(o.metrics)
		rep.Add(res)
	}
	if o.haveToken() {
		tok, _, err := o.tf.load()
		if err != nil {
			rep.Add(diag.Result{Status: diag.Fail, Check: "token", Detail: err.Error() + ".",
				Fix: "give the token edge tunnel create (or rotate) printed, whole, in the file."})
		} else {
			b.Secrets = append(b.Secrets, tokenSecrets(tok)...)
			b.Add("config/token.txt", fmt.Appendf(nil, "tunnel   %s\nedges    %s\nedge pin %s\nsecret   %s\n",
				tok.TunnelIDString(), strings.Join(tok.Edges, ", "), hex.EncodeToString(tok.EdgePin[:]), diag.Redacted))
			rep.Add(edgeChecks(ctx, o.host, tok)...)
		}
		rep.Add(diag.UDPBuffers(o.host)...)
	}
	if o.config != "" {
		b.AddFile("config/"+filepath.Base(o.config), o.config)
		rules, err := ingress.Load(o.config)
		if err != nil {
			rep.Add(diag.Result{Status: diag.Fail, Check: "ingress " + o.config, Detail: err.Error() + ".",
				Fix: "fix the file: connector tunnel run refuses it."})
		} else {
			rep.Add(diag.Origins(ctx, rules)...)
		}
	} else if o.haveToken() {
		rep.Add(diag.Result{Status: diag.Warn, Check: "ingress", Detail: "no --config given: the origins were not checked.",
			Fix: "give the ingress file connector tunnel run uses (--config)."})
	}
	if o.l3Config != "" {
		b.AddFile("config/"+filepath.Base(o.l3Config), o.l3Config)
		cfg, err := l3config.LoadConnector(o.l3Config)
		if err != nil {
			rep.Add(diag.Result{Status: diag.Fail, Check: "l3 config " + o.l3Config, Detail: err.Error() + ".",
				Fix: "fix the file: connector l3 run refuses it (connector l3 check says more)."})
		} else {
			if !cfg.PrivateKey.IsZero() {
				b.Secrets = append(b.Secrets, cfg.PrivateKey.String(), cfg.PrivateKey.Hex())
			}
			rep.Add(diag.L3(ctx, o.host, net.DefaultResolver, cfg, st != nil && st.L3 != nil)...)
		}
	}

	var report strings.Builder
	_ = rep.Write(&report)
	if _, err := io.WriteString(out, report.String()); err != nil {
		return err
	}
	if o.bundle != "" {
		if err := o.writeBundle(ctx, b, report.String()); err != nil {
			return err
		}
		fmt.Fprintf(out, "bundle written to %s: %s\n", o.bundle, strings.Join(b.Names(), ", "))
	}
	if rep.Failed() {
		return errors.New("diag: some checks failed (the FAIL lines above)")
	}
	return nil
}

// runningConnector asks the connector at --metrics ADDR for its status.
func runningConnector(addr string) (*connectorStatus, diag.Result) {
	res := diag.Result{Check: "connector at " + addr}
	st, err := fetchStatus(addr)
	if err != nil {
		res.Status, res.Detail = diag.Fail, err.Error()+"."
		res.Fix = "give the --metrics address the running connector was started with."
		return nil, res
	}
	switch {
	case st.Tunnel != nil:
		t := st.Tunnel
		protos := map[string]int{}
		for _, c := range t.Connections {
			protos[c.Protocol]++
		}
		var over []string
		for _, p := range []string{tunnel.ProtoQUIC, tunnel.ProtoHTTP2} {
			if protos[p] > 0 {
				over = append(over, fmt.Sprintf("%d over %s", protos[p], p))
			}
		}
		res.Detail = fmt.Sprintf("version %s, tunnel %s, %d of %d connections live", st.Version, t.TunnelID, len(t.Connections), t.Want)
		if len(over) > 0 {
			res.Detail += " (" + strings.Join(over, ", ") + ")"
		}
		res.Detail += "."
		if !st.Ready {
			res.Status = diag.Warn
			var why []string
			for _, e := range t.Edges {
				if e.LastError != "" {
					why = append(why, e.Edge+": "+e.LastError)
				}
			}
			res.Detail += " Not ready: no connection to the edge. " + strings.Join(why, "; ")
			res.Fix = "see the checks of the edges below; connector status --metrics " + addr + " shows each edge's errors."
		}
	case st.L3 != nil:
		res.Detail = fmt.Sprintf("version %s, l3 connector %s on %s, edge %s.", st.Version, st.L3.Name, st.L3.Interface, st.L3.Endpoint)
		if !st.Ready {
			res.Status = diag.Warn
			res.Detail += " Not ready: no handshake with the edge in the last 3 minutes."
			res.Fix = "see the checks of the edge endpoint below; the edge must know this connector's key (edge l3 connector add)."
		}
	}
	return st, res
}

// edgeChecks are the checks of each edge address of the token: DNS, the
// route's MTU, QUIC and HTTP/2, and the clock (from the first edge that
// sent it).
func edgeChecks(ctx context.Context, h diag.Host, tok tunnel.Token) []diag.Result {
	var out []diag.Result
	clocked := false
	for _, addr := range tok.Edges {
		res, ips := diag.DNS(ctx, net.DefaultResolver, "edge", addr)
		out = append(out, res)
		if res.Status == diag.Fail {
			continue
		}
		for _, ip := range dedupe(ips) {
			out = append(out, diag.MTU("edge", ip))
		}
		q, h2, probe, perr := diag.Transports(ctx, addr, tok.EdgePin)
		out = append(out, q, h2)
		if !clocked && perr == nil {
			out = append(out, diag.Clock(h, addr, probe, perr))
			clocked = true
		}
	}
	if !clocked {
		out = append(out, diag.Clock(h, strings.Join(tok.Edges, ","), tunnel.Probe{}, errors.New("no edge answered")))
	}
	return out
}

func dedupe(ips []netip.Addr) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, ip := range ips {
		if !seen[ip] {
			seen[ip] = true
			out = append(out, ip)
		}
	}
	return out
}

// tokenSecrets are the encodings of the token's secret that must not
// reach a bundle: the token itself and the secret in hex and base64.
func tokenSecrets(tok tunnel.Token) []string {
	return []string{tunnel.EncodeToken(tok), hex.EncodeToString(tok.Secret[:]),
		base64.StdEncoding.EncodeToString(tok.Secret[:]), base64.RawURLEncoding.EncodeToString(tok.Secret[:])}
}

// serviceName is NAME of onramp-connector@NAME: --name, or the base name
// of a token or l3.yml in /etc/onramp.
func (o *diagOptions) serviceName() string {
	if o.name != "" {
		return o.name
	}
	for _, p := range []struct{ path, suffix string }{{o.tf.file, ".token"}, {o.l3Config, ".yml"}} {
		if p.path != "" && filepath.Dir(p.path) == "/etc/onramp" && strings.HasSuffix(p.path, p.suffix) {
			return strings.TrimSuffix(filepath.Base(p.path), p.suffix)
		}
	}
	return ""
}

func (o *diagOptions) writeBundle(ctx context.Context, b *diag.Bundle, report string) error {
	b.Add("version.txt", fmt.Appendf(nil, "connector %s\n%s %s/%s\ncollected %s\n", cli.Version(), runtime.Version(),
		runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format(time.RFC3339)))
	b.Add("diag.txt", []byte(report))
	b.Add("host.txt", []byte(o.host.Facts()))
	if o.metrics != "" {
		base := "http://" + o.metrics
		if strings.Contains(o.metrics, "://") {
			base = strings.TrimSuffix(o.metrics, "/")
		}
		b.Add("metrics.txt", diag.HTTPGet(nil, base+"/metrics"))
		if st, err := fetchStatus(o.metrics); err == nil {
			js, _ := json.MarshalIndent(st, "", "  ")
			b.Add("status.json", js)
		} else {
			b.Add("status.json", []byte(err.Error()+"\n"))
		}
	} else {
		b.Add("metrics.txt", []byte("not included: no --metrics address given.\n"))
	}
	switch name := o.serviceName(); {
	case o.logFile != "":
		b.Add("logs.txt", diag.Tail(o.logFile, 2000))
	default:
		unit := ""
		if name != "" {
			unit = "onramp-connector@" + name + ".service"
		}
		b.Add("logs.txt", diag.Journal(ctx, unit, 2000))
	}
	return b.Write(o.bundle)
}
