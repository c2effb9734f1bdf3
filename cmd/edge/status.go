package main

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l4proxy/edge"
)

// The admin API's types (package edgeapi) by their names here.
type (
	edgeStatus        = edgeapi.Status
	edgeSelf          = edgeapi.Self
	edgeMember        = edgeapi.Member
	tunnelInfo        = edgeapi.Tunnel
	connInfo          = edgeapi.Conn
	apiError          = edgeapi.Error
	l3Summary         = edgeapi.L3Summary
	l3ConnectorStatus = edgeapi.L3ConnectorStatus
	subnetStatus      = edgeapi.SubnetStatus
	l3PeerInfo        = edgeapi.L3Peer
)

// l3Recent is how recent a handshake makes a client count as connected.
const l3Recent = 3 * time.Minute

// tunnelInfos lists the tunnels with this edge's live connections to
// each, the connections by age.
func (a *app) tunnelInfos() ([]tunnelInfo, error) {
	ts, err := a.store.ListTunnels()
	if err != nil {
		return nil, err
	}
	conns := a.srv.Connections()
	slices.SortFunc(conns, func(x, y edge.ConnInfo) int { return x.Since.Compare(y.Since) })
	out := make([]tunnelInfo, 0, len(ts))
	for _, t := range ts {
		info := infoOf(t)
		for _, c := range conns {
			if c.Tunnel == t.ID {
				info.Connections = append(info.Connections, connInfo{
					Connector: hex.EncodeToString(c.Connector[:]), Protocol: c.Protocol,
					Remote: fmt.Sprint(c.Remote), Since: c.Since, Streams: c.Streams, Draining: c.Draining, Quiet: c.Quiet,
					BytesToOrigin: c.BytesToOrigin, BytesToUser: c.BytesToUser, Rate: a.hist.connRate(c.ID),
				})
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// status is GET /v1/status.
func (a *app) status() (*edgeStatus, error) {
	tunnels, err := a.tunnelInfos()
	if err != nil {
		return nil, err
	}
	st := &edgeStatus{
		Edge: edgeSelf{
			Version: cli.Version(), Registry: a.store.Registry().String(), Advertise: advertised(a.cfg),
			Listen: a.cfg.Listen.Tunnels, Started: a.started, Now: time.Now(),
		},
		Tunnels: tunnels,
	}
	st.Edges = a.members(st.Edge.Now)
	for _, t := range tunnels {
		for _, c := range t.Connections {
			st.Edge.Connections++
			if c.Quiet {
				st.Edge.Quiet++
			}
			if c.Draining {
				st.Edge.Draining++
			}
		}
	}
	if a.l3 != nil && a.l3.hub != nil {
		if st.L3, err = a.l3.summary(st.Edge.Now); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// summary is the L3 part of the status.
func (c *l3ctl) summary(now time.Time) (l3Summary, error) {
	s := l3Summary{Enabled: true, Listen: c.cfg.L3.Listen, Endpoint: c.cfg.L3.Endpoint}
	clients, err := c.list(l3router.KindClient)
	if err != nil {
		return s, err
	}
	s.Clients = len(clients)
	for _, p := range clients {
		if !p.LastHandshake.IsZero() && now.Sub(p.LastHandshake) < l3Recent {
			s.ClientsRecent++
		}
	}
	conns, err := c.list(l3router.KindConnector)
	if err != nil {
		return s, err
	}
	s.Connectors = []l3ConnectorStatus{}
	s.Subnets = []subnetStatus{}
	for _, p := range conns {
		s.Connectors = append(s.Connectors, l3ConnectorStatus{
			Name: p.Name, Address4: p.Address4, Address6: p.Address6, Endpoint: p.Endpoint,
			LastHandshake: p.LastHandshake, RxBytes: p.RxBytes, TxBytes: p.TxBytes, Subnets: p.Subnets,
		})
	}
	s.Subnets = subnetOwners(conns)
	return s, nil
}

// subnetOwners returns each subnet of the connectors with its active
// connector and standbys: a subnet one connector advertises is its; one
// several advertise (subnet failover) is the active one's, as the hub
// has it (l3PeerInfo.Active, Standby).
func subnetOwners(conns []l3PeerInfo) []subnetStatus {
	by := map[netip.Prefix]*subnetStatus{}
	var order []netip.Prefix
	for _, p := range conns { // in name order: the preference order
		for _, sn := range p.Subnets {
			s := by[sn]
			if s == nil {
				s = &subnetStatus{Prefix: sn}
				by[sn] = s
				order = append(order, sn)
			}
			switch {
			case slices.Contains(p.Active, sn):
				s.Active = p.Name
			case slices.Contains(p.Standby, sn):
				s.Standby = append(s.Standby, p.Name)
			case s.Active == "":
				s.Active = p.Name // not shared (or the hub does not have it yet)
			default:
				s.Standby = append(s.Standby, p.Name)
			}
		}
	}
	slices.SortFunc(order, func(x, y netip.Prefix) int {
		return cmp.Or(x.Addr().Compare(y.Addr()), cmp.Compare(x.Bits(), y.Bits()))
	})
	out := make([]subnetStatus, 0, len(order))
	for _, p := range order {
		out = append(out, *by[p])
	}
	return out
}

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "show the running edge: its tunnels' connections, and the L3 peers and who owns each subnet",
		Long: `Show what the running edge is doing, asked over the admin socket in its data
directory (the edge must be running; without it this fails):

  - the edge: version, registry (bbolt or etcd), advertised addresses, uptime;
  - each tunnel with this edge's live connections to it: the connector (its
    ID, short), transport (quic or http2), the connector's address, since
    when and for how long, the streams open, and its state: live, quiet (the
    connector has been silent for 1.5 s: new streams go to the tunnel's
    other connections) or draining, and its traffic both ways over the
    last 2 s (RATE; the bytes so far are in --json). Edges sharing a registry (etcd) each
    see only the connections made to them;
  - L3: the clients (and how many had a handshake in the last 3 minutes),
    the connectors with their last handshake, and each subnet with the
    connector the edge routes it to (active) and those that would take it
    over (standby).

--json prints the same as JSON (the admin API's GET /v1/status).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			_, _, _, adminPath := g.paths(cfg)
			c, err := connectAdmin(adminPath)
			if err != nil {
				return err
			}
			var st edgeStatus
			if err := c.do(http.MethodGet, "/v1/status", &st); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(&st)
			}
			return writeStatus(cmd.OutOrStdout(), &st)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (a stable structure) instead of the report")
	return cmd
}

// connectAdmin returns a client of the running edge's admin socket, or
// an error saying that no edge answers there and why.
func connectAdmin(path string) (*adminClient, error) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		why := err.Error()
		if opErr, ok := err.(*net.OpError); ok && opErr.Err != nil {
			why = opErr.Err.Error()
		}
		return nil, fmt.Errorf("no running edge answers on its admin socket %s (%s): is edge serve running with this --config/--data, and are you root or its user?", path, why)
	}
	c.Close()
	return dialAdmin(path), nil
}

// ago is d rounded for a report: to the second, to the millisecond below one.
func ago(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// byteRate formats bytes per second for a report: "0 B/s", "950 B/s",
// "12.3 kB/s", "1.5 MB/s" (powers of 1000).
func byteRate(v float64) string {
	units := []string{"B/s", "kB/s", "MB/s", "GB/s"}
	i := 0
	for v >= 999.95 && i < len(units)-1 {
		v /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// writeStatus prints the status report.
func writeStatus(out io.Writer, st *edgeStatus) error {
	now := st.Edge.Now
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	e := &st.Edge
	fmt.Fprintf(w, "edge\t%s\n", e.Version)
	fmt.Fprintf(w, "registry\t%s\n", e.Registry)
	adv := strings.Join(e.Advertise, ", ")
	if adv == "" {
		adv = "- (set advertise: in the edge config)"
	}
	fmt.Fprintf(w, "advertise\t%s\n", adv)
	if e.Listen != "" {
		fmt.Fprintf(w, "connectors on\t%s (QUIC on udp, HTTP/2 on tcp)\n", e.Listen)
	}
	if !e.Started.IsZero() {
		fmt.Fprintf(w, "up\t%s (since %s)\n", ago(now.Sub(e.Started)), e.Started.Local().Format(time.DateTime))
	}
	connected := 0
	for _, t := range st.Tunnels {
		if len(t.Connections) > 0 {
			connected++
		}
	}
	fmt.Fprintf(w, "tunnels\t%d, %d connected here; %d connector connections (%d quiet, %d draining)\n",
		len(st.Tunnels), connected, e.Connections, e.Quiet, e.Draining)
	if err := w.Flush(); err != nil {
		return err
	}

	if len(st.Edges) > 0 {
		fmt.Fprintln(out)
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "EDGE	ADVERTISE	UP	CONNECTIONS	TUNNELS	HEARTBEAT")
		for _, m := range st.Edges {
			name := m.Name
			if m.Self {
				name += " (this edge)"
			}
			up := "-"
			if !m.Started.IsZero() {
				up = ago(now.Sub(m.Started))
			}
			beat := ago(now.Sub(m.Seen)) + " ago"
			if !m.Live {
				beat += " (gone: not advertised)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\n", name, strings.Join(m.Advertise, ", "), up, m.Connections, m.Tunnels, beat)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}

	if len(st.Tunnels) > 0 {
		fmt.Fprintln(out)
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "TUNNEL\tCONNECTOR\tTRANSPORT\tREMOTE\tSINCE\tFOR\tSTREAMS\tRATE\tSTATE")
		for _, t := range st.Tunnels {
			if len(t.Connections) == 0 {
				fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\t-\t-\toffline (no connection to this edge)\n", t.Name)
				continue
			}
			for _, c := range t.Connections {
				state := "live"
				switch {
				case c.Draining:
					state = "draining"
				case c.Quiet:
					state = "quiet"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", t.Name, c.Connector[:min(8, len(c.Connector))], c.Protocol,
					c.Remote, c.Since.Local().Format(time.DateTime), ago(now.Sub(c.Since)), c.Streams, byteRate(c.Rate), state)
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(out)
	l3 := &st.L3
	if !l3.Enabled {
		fmt.Fprintln(out, "l3: off (l3.listen is not set in the edge config)")
		return nil
	}
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "l3\tlisten %s, endpoint %s\n", l3.Listen, cmp.Or(l3.Endpoint, "- (not set)"))
	fmt.Fprintf(w, "clients\t%d (%d with a handshake in the last 3 minutes)\n", l3.Clients, l3.ClientsRecent)
	fmt.Fprintf(w, "connectors\t%d\n", len(l3.Connectors))
	if err := w.Flush(); err != nil {
		return err
	}
	if len(l3.Connectors) > 0 {
		fmt.Fprintln(out)
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "CONNECTOR\tADDRESSES\tENDPOINT\tLAST HANDSHAKE\tRX BYTES\tTX BYTES")
		for _, c := range l3.Connectors {
			hs := "never"
			if !c.LastHandshake.IsZero() {
				hs = ago(now.Sub(c.LastHandshake)) + " ago"
			}
			fmt.Fprintf(w, "%s\t%v,%v\t%s\t%s\t%d\t%d\n", c.Name, c.Address4, c.Address6, cmp.Or(c.Endpoint, "-"), hs, c.RxBytes, c.TxBytes)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if len(l3.Subnets) > 0 {
		fmt.Fprintln(out)
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "SUBNET\tACTIVE\tSTANDBY")
		for _, s := range l3.Subnets {
			fmt.Fprintf(w, "%s\t%s\t%s\n", s.Prefix, cmp.Or(s.Active, "- (none)"), cmp.Or(strings.Join(s.Standby, ","), "-"))
		}
		return w.Flush()
	}
	return nil
}

// statusCollector exports at each scrape what `edge status` shows and the
// connection metrics do not: the quiet and draining connector
// connections, the tunnels connected to this edge and not, and the build.
type statusCollector struct {
	a                              *app
	quiet, draining, tunnels, info *prometheus.Desc
	version, backend               string
}

func newStatusCollector(a *app) *statusCollector {
	backend, _, _ := strings.Cut(a.store.Registry().String(), " ")
	return &statusCollector{
		a: a,
		quiet: prometheus.NewDesc("onramp_edge_connector_connections_quiet",
			"Live connector connections whose connector has been silent for 1.5 s: new streams go to the tunnel's other connections.", nil, nil),
		draining: prometheus.NewDesc("onramp_edge_connector_connections_draining",
			"Live connector connections draining: they take no new streams.", nil, nil),
		tunnels: prometheus.NewDesc("onramp_edge_tunnels",
			"Tunnels of the registry by state: connected (at least one connector connection to this edge) or offline (none to this edge).",
			[]string{"state"}, nil),
		info: prometheus.NewDesc("onramp_edge_info",
			"1, labeled with the edge's version and registry back end (bbolt or etcd).", []string{"version", "registry"}, nil),
		version: cli.Version(),
		backend: backend,
	}
}

// Describe implements prometheus.Collector.
func (m *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.quiet, m.draining, m.tunnels, m.info} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *statusCollector) Collect(ch chan<- prometheus.Metric) {
	quiet, draining := 0, 0
	live := map[[16]byte]bool{}
	for _, c := range m.a.srv.Connections() {
		if c.Quiet {
			quiet++
		}
		if c.Draining {
			draining++
		}
		live[c.Tunnel] = true
	}
	connected, offline := 0, 0
	if t := m.a.tunnels.Load(); t != nil {
		for _, id := range t.Names() {
			if live[id] {
				connected++
			} else {
				offline++
			}
		}
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(m.quiet, quiet)
	gauge(m.draining, draining)
	gauge(m.tunnels, connected, "connected")
	gauge(m.tunnels, offline, "offline")
	gauge(m.info, 1, m.version, m.backend)
}
