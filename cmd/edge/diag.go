package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/cmd/internal/diag"
)

// diagOptions are the flags of edge diag.
type diagOptions struct {
	bundle string
	host   diag.Host
}

func diagCmd(g *globals) *cobra.Command {
	var o diagOptions
	cmd := &cobra.Command{
		Use:   "diag",
		Short: "check the edge's listeners, registry, BPF programs, buffers and certificate, and say what is wrong",
		Long: `Check the edge as edge.yml (--config) and its data directory describe it, and
print one line per check: OK, WARN or FAIL, what was found, and the fix.
The exit status is 1 when any check fails.

  - the running edge, through its admin socket (version, connections);
  - each listening address of edge.yml (tunnels over QUIC and HTTP/2, tls,
    http, metrics, bindings, l3): bound by the running edge, by another
    process (which), or by none;
  - the registry: the bbolt file readable (when no edge holds it), or each
    etcd member reachable and a quorum with a leader;
  - BPF: the XDP pre-filter attached on each xdp.interfaces interface, and
    the QUIC steering group's sockets;
  - the UDP buffer limits (net.core.rmem_max, wmem_max) against the 7 MiB
    QUIC asks for, with the sysctl line that raises them;
  - the tunnel certificate's expiry.

--bundle FILE writes a .tar.gz for a bug report: the version, this report,
edge.yml with secrets removed, the running edge's status, recent logs
(journalctl -u onramp-edge) and the host's kernel and sysctls. Run it as the
user the edge runs as (or root): the admin socket and data are theirs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEdgeDiag(cmd.Context(), cmd.OutOrStdout(), g, &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.bundle, "bundle", "", "also write a .tar.gz for a bug report to this file (secrets removed)")
	// A test hook: the host's global sysctls cannot be changed by a test.
	f.StringVar(&o.host.ProcRoot, "proc-root", "", "read sysctls below this directory instead of /proc (tests)")
	_ = f.MarkHidden("proc-root")
	return cmd
}

func runEdgeDiag(ctx context.Context, out io.Writer, g *globals, o *diagOptions) error {
	rep := &diag.Report{}
	b := &diag.Bundle{Prefix: "onramp-edge-diag/"}
	if g.config != "" {
		b.AddFile("config/"+filepath.Base(g.config), g.config)
	}
	cfg, err := g.load()
	if err != nil {
		rep.Add(diag.Result{Status: diag.Fail, Check: "config " + g.config, Detail: err.Error() + ".", Fix: "fix edge.yml: the edge refuses to start with it."})
		return finishEdgeDiag(ctx, out, o, rep, b, nil)
	}
	_, certPath, _, adminPath := g.paths(cfg)

	// The running edge, by its admin socket: its pid from the socket's
	// peer credentials, its state from GET /v1/status.
	var st *edgeStatus
	pid := 0
	res := diag.Result{Check: "edge at " + adminPath}
	if c, err := net.DialTimeout("unix", adminPath, time.Second); err == nil {
		pid = int(peerOf(c).pid)
		c.Close()
		var s edgeStatus
		if err := dialAdmin(adminPath).do("GET", "/v1/status", &s); err != nil {
			res.Status, res.Detail = diag.Warn, fmt.Sprintf("an edge runs (pid %d) but its status failed: %v.", pid, err)
		} else {
			st = &s
			res.Detail = fmt.Sprintf("running (pid %d), version %s, up since %s, %d connector connections, %d tunnels, registry %s.",
				pid, s.Edge.Version, s.Edge.Started.Format(time.RFC3339), s.Edge.Connections, len(s.Tunnels), s.Edge.Registry)
		}
	} else if errors.Is(err, os.ErrPermission) {
		res.Status = diag.Warn
		res.Detail = fmt.Sprintf("cannot tell whether it runs: this user may not use its admin socket (%v).", err)
		res.Fix = "run edge diag as root or as the edge's user (sudo -u onramp edge diag ...)."
	} else {
		res.Status = diag.Warn
		res.Detail = fmt.Sprintf("not running: nothing answers on its admin socket (%v).", err)
		res.Fix = "start it (systemctl start onramp-edge; journalctl -u onramp-edge says why it stopped), or give the --config / --data it runs with."
	}
	rep.Add(res)

	rep.Add(diag.Listeners("/proc", edgeListeners(cfg), pid)...)
	rep.Add(storeChecks(ctx, cfg, filepath.Join(cfg.Data, "edge.db"), st != nil)...)
	rep.Add(bpfChecks(cfg, pid)...)
	rep.Add(diag.UDPBuffers(o.host)...)
	rep.Add(certCheck(certPath, cfg))
	return finishEdgeDiag(ctx, out, o, rep, b, st)
}

func finishEdgeDiag(ctx context.Context, out io.Writer, o *diagOptions, rep *diag.Report, b *diag.Bundle, st *edgeStatus) error {
	var report strings.Builder
	_ = rep.Write(&report)
	if _, err := io.WriteString(out, report.String()); err != nil {
		return err
	}
	if o.bundle != "" {
		b.Add("version.txt", fmt.Appendf(nil, "edge %s\n%s %s/%s\ncollected %s\n", cli.Version(), runtime.Version(),
			runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format(time.RFC3339)))
		b.Add("diag.txt", []byte(report.String()))
		b.Add("host.txt", []byte(o.host.Facts()))
		if st != nil {
			js, _ := json.MarshalIndent(st, "", "  ")
			b.Add("status.json", js)
		} else {
			b.Add("status.json", []byte("not included: no edge answered on its admin socket.\n"))
		}
		b.Add("logs.txt", diag.Journal(ctx, "onramp-edge.service", 2000))
		if err := b.Write(o.bundle); err != nil {
			return err
		}
		fmt.Fprintf(out, "bundle written to %s: %s\n", o.bundle, strings.Join(b.Names(), ", "))
	}
	if rep.Failed() {
		return errors.New("diag: some checks failed (the FAIL lines above)")
	}
	return nil
}

// edgeListeners are the addresses edge.yml has the edge listen on.
func edgeListeners(cfg *edgeconfig.Config) []diag.Listener {
	var ls []diag.Listener
	// An empty address or port 0 is a port picked at each start: nothing
	// to look for.
	if _, port, err := net.SplitHostPort(cfg.Listen.Tunnels); err == nil && port != "0" && port != "" {
		ls = append(ls, diag.Listener{Name: "listen.tunnels (QUIC)", Network: "udp", Addr: cfg.Listen.Tunnels},
			diag.Listener{Name: "listen.tunnels (HTTP/2)", Network: "tcp", Addr: cfg.Listen.Tunnels})
	}
	for _, l := range []struct{ name, addr string }{
		{"listen.tls", cfg.Listen.TLS}, {"listen.http", cfg.Listen.HTTP}, {"listen.metrics", cfg.Listen.Metrics},
	} {
		if l.addr != "" {
			ls = append(ls, diag.Listener{Name: l.name, Network: "tcp", Addr: l.addr})
		}
	}
	for i, b := range cfg.Bindings {
		network, addr := b.Network()
		ls = append(ls, diag.Listener{Name: fmt.Sprintf("bindings[%d]", i), Network: network, Addr: addr})
	}
	if cfg.L3.Enabled() {
		ls = append(ls, diag.Listener{Name: "l3.listen (WireGuard)", Network: "udp", Addr: cfg.L3.Listen})
	}
	return ls
}

// storeChecks checks the registry: the bbolt file, or the etcd cluster.
func storeChecks(ctx context.Context, cfg *edgeconfig.Config, dbPath string, running bool) []diag.Result {
	if cfg.Registry.Etcd != nil {
		return []diag.Result{etcdCheck(ctx, cfg.Registry.Etcd)}
	}
	res := diag.Result{Check: "registry bbolt " + dbPath}
	if running {
		// The running edge holds the file's lock; its status answered,
		// so it reads the file.
		res.Detail = "held and served by the running edge."
		return []diag.Result{res}
	}
	fi, err := os.Stat(dbPath)
	if err != nil {
		res.Status, res.Detail = diag.Warn, fmt.Sprintf("cannot stat it: %v.", err)
		if errors.Is(err, os.ErrNotExist) {
			res.Detail = "no such file: the edge makes it at its first start (or edge tunnel create does); check --data if it ran before."
		}
		return []diag.Result{res}
	}
	db, err := bolt.Open(dbPath, 0, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		res.Status, res.Detail = diag.Fail, fmt.Sprintf("cannot open it: %v.", err)
		res.Fix = "if another process holds it (an edge started with another admin socket), stop it; if it is damaged, restore it from a backup."
		if errors.Is(err, os.ErrPermission) {
			res.Fix = "run edge diag as the edge's user (onramp) or root."
		}
		return []diag.Result{res}
	}
	defer db.Close()
	buckets := 0
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func([]byte, *bolt.Bucket) error { buckets++; return nil })
	})
	if err != nil {
		res.Status, res.Detail = diag.Fail, fmt.Sprintf("unreadable: %v.", err)
		res.Fix = "restore it from a backup."
		return []diag.Result{res}
	}
	res.Detail = fmt.Sprintf("readable (%d bytes, %d buckets).", fi.Size(), buckets)
	return []diag.Result{res}
}

// etcdCheck asks each etcd member for its status: reachable members, the
// leader, and whether they are a quorum of the cluster.
func etcdCheck(ctx context.Context, e *edgeconfig.Etcd) diag.Result {
	res := diag.Result{Check: "registry etcd " + strings.Join(e.Endpoints, ",")}
	ec, err := e.EtcdConfig()
	if err != nil {
		res.Status, res.Detail = diag.Fail, err.Error()+"."
		return res
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: ec.Endpoints, TLS: ec.TLS, Username: ec.Username, Password: ec.Password,
		DialTimeout: diag.Timeout, Logger: zap.NewNop()})
	if err != nil {
		res.Status, res.Detail = diag.Fail, fmt.Sprintf("cannot set up the client: %v.", err)
		return res
	}
	defer cli.Close()
	var up, down []string
	var leader uint64
	for _, ep := range ec.Endpoints {
		sctx, cancel := context.WithTimeout(ctx, diag.Timeout)
		s, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			down = append(down, fmt.Sprintf("%s (%v)", ep, err))
			continue
		}
		up = append(up, ep)
		if s.Leader != 0 {
			leader = s.Leader
		}
	}
	members := len(ec.Endpoints)
	mctx, cancel := context.WithTimeout(ctx, diag.Timeout)
	if ml, err := cli.MemberList(mctx); err == nil {
		members = len(ml.Members)
	}
	cancel()
	res.Detail = fmt.Sprintf("%d of %d endpoints answer, %d members", len(up), len(ec.Endpoints), members)
	if len(down) > 0 {
		res.Detail += "; not answering: " + strings.Join(down, ", ")
	}
	switch {
	case len(up) == 0:
		res.Status = diag.Fail
		res.Detail += ": the registry is unreachable; an edge cannot start, and running ones cannot change tunnels."
		res.Fix = "check the endpoints, the TLS files and credentials in registry.etcd, and that the members run (etcdctl endpoint status)."
	case leader == 0 || len(up) <= members/2 && len(up) < len(ec.Endpoints):
		res.Status = diag.Fail
		res.Detail += ": no quorum (no leader, or a minority of the members): writes fail."
		res.Fix = "bring the members back (etcdctl endpoint status --cluster)."
	case len(down) > 0:
		res.Status = diag.Warn
		res.Detail += ": a quorum with a leader, but one more failure may lose it."
		res.Fix = "bring the members that do not answer back."
	default:
		res.Detail += ", a quorum with a leader."
	}
	return res
}

// bpfChecks checks the XDP pre-filter on each configured interface and
// the QUIC steering group.
func bpfChecks(cfg *edgeconfig.Config, pid int) []diag.Result {
	var out []diag.Result
	for _, ifname := range cfg.XDP.Interfaces {
		res := diag.Result{Check: "bpf xdp pre-filter on " + ifname}
		l, err := netlink.LinkByName(ifname)
		switch {
		case err != nil:
			res.Status, res.Detail = diag.Fail, fmt.Sprintf("no such interface: %v.", err)
			res.Fix = "fix xdp.interfaces in edge.yml: it names the interfaces users reach the edge's UDP ports on."
		case l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached:
			id := l.Attrs().Xdp.ProgId
			switch name, err := xdpProgramName(id); {
			case err != nil:
				res.Detail = fmt.Sprintf("an XDP program is attached (program id %d; its name cannot be read here: %v).", id, err)
			case name == prefilterProgram:
				res.Detail = fmt.Sprintf("the edge's pre-filter is attached (program id %d).", id)
			default:
				res.Status = diag.Warn
				res.Detail = fmt.Sprintf("another XDP program is attached (%q, program id %d), not the edge's pre-filter.", name, id)
				res.Fix = "remove the other program (ip link set dev " + ifname + " xdp off) and restart the edge, or drop " + ifname + " from xdp.interfaces."
			}
		case pid != 0:
			res.Status = diag.Warn
			res.Detail = "no XDP program attached although the edge runs: it could not load or attach the pre-filter, and runs without it."
			res.Fix = "the edge's log says why (journalctl -u onramp-edge | grep -i xdp); it needs CAP_NET_ADMIN and CAP_BPF (the onramp-edge unit grants them)."
		default:
			res.Detail = "no XDP program attached: the edge attaches it when it starts."
		}
		out = append(out, res)
	}
	if cfg.Steering() && pid != 0 && len(edgeListeners(cfg)) > 0 && edgeListeners(cfg)[0].Network == "udp" {
		res := diag.Result{Check: "bpf quic steering " + cfg.Listen.Tunnels}
		socks, err := diag.ReadSockets("/proc")
		n := 0
		if err == nil {
			m, _ := diag.Matching(socks, "udp", cfg.Listen.Tunnels)
			n = len(m)
		}
		switch {
		case err != nil:
			res.Status, res.Detail = diag.Warn, fmt.Sprintf("cannot read the socket tables: %v.", err)
		case n > 1:
			res.Detail = fmt.Sprintf("%d QUIC sockets in a SO_REUSEPORT group, steered by connection ID.", n)
		case runtime.NumCPU() > 1:
			res.Status = diag.Warn
			res.Detail = "one QUIC socket: the edge could not load the steering program (or runs on one core), so one core receives every connector's packets."
			res.Fix = "the edge's log says why (\"quic steering off\"); it needs CAP_BPF or root; quic_steering: false says it is meant."
		default:
			res.Detail = "one QUIC socket: one core, nothing to steer."
		}
		out = append(out, res)
	}
	return out
}

// prefilterProgram is the name of the pre-filter's XDP program
// (dataplane/prefilter/prefilter.c).
const prefilterProgram = "prefilter"

// xdpProgramName reads the name of the BPF program with the given id.
func xdpProgramName(id uint32) (string, error) {
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return "", err
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return "", err
	}
	return info.Name, nil
}

// certWarn is how long before expiry the certificate is worth a warning.
const certWarn = 30 * 24 * time.Hour

// certCheck reads the tunnel certificate's expiry (with etcd, the edges
// serve the registry's copy; the local file is what this edge put there).
func certCheck(path string, cfg *edgeconfig.Config) diag.Result {
	res := diag.Result{Check: "certificate " + path}
	data, err := os.ReadFile(path)
	if err != nil {
		res.Status, res.Detail = diag.Warn, fmt.Sprintf("cannot read it: %v.", err)
		if errors.Is(err, os.ErrNotExist) {
			res.Status, res.Detail = diag.OK, "none yet: the edge makes one at its first start."
		}
		return res
	}
	block, _ := pem.Decode(data)
	if block == nil {
		res.Status, res.Detail = diag.Fail, "no PEM certificate in it."
		res.Fix = "restore it from a backup; a new certificate changes the pin, and every token must be made again."
		return res
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		res.Status, res.Detail = diag.Fail, fmt.Sprintf("unreadable: %v.", err)
		return res
	}
	left := time.Until(cert.NotAfter)
	res.Detail = fmt.Sprintf("valid until %s (%d days).", cert.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
	if cfg.Registry.Etcd != nil {
		res.Detail += " With etcd the edges serve the registry's copy."
	}
	switch {
	case left <= 0:
		res.Status = diag.Warn
		res.Detail = fmt.Sprintf("expired on %s. Connectors pin its key, not its dates, so tunnels still work; clients that check dates refuse it.", cert.NotAfter.UTC().Format(time.DateOnly))
		res.Fix = "no action needed for connectors; a new certificate would change the pin and need new tokens."
	case left < certWarn:
		res.Status = diag.Warn
		res.Detail += " Connectors pin its key, not its dates, so tunnels keep working after it expires."
	}
	return res
}
