package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/l3router/connector"
	"github.com/onramp-net/onramp/l3router/l3config"
	l4 "github.com/onramp-net/onramp/l4proxy/connector"
)

// connectorStatus is what GET /status on the --metrics address answers
// and `connector status --json` prints. Its fields are only ever added to.
type connectorStatus struct {
	Mode    string    `json:"mode"` // "tunnel" or "l3"
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Now is the connector's clock when it answered: the ages shown are
	// counted from it.
	Now    time.Time     `json:"now"`
	Ready  bool          `json:"ready"` // what /ready answers
	Tunnel *tunnelStatus `json:"tunnel,omitempty"`
	L3     *l3Status     `json:"l3,omitempty"`
}

// tunnelStatus is the L4 tunnel connector.
type tunnelStatus struct {
	TunnelID string `json:"tunnel_id"`
	// Protocol is the --protocol setting: quic, http2 or auto; each
	// connection says which transport it uses.
	Protocol    string       `json:"protocol"`
	Want        int          `json:"connections_wanted"`
	Connections []connStatus `json:"connections"`
	Edges       []edgeStatus `json:"edges"`
}

type connStatus struct {
	Edge     string    `json:"edge"`
	Protocol string    `json:"protocol"` // the transport: quic or http2
	Since    time.Time `json:"since"`
	Streams  int       `json:"streams"`
	// RTTMs is the smoothed round-trip time in milliseconds (0 until
	// measured). Sent and Lost are packets (QUIC: sent, declared lost) or
	// TCP segments (HTTP/2: sent, retransmitted) since it was made.
	RTTMs float64 `json:"rtt_ms"`
	Sent  uint64  `json:"sent"`
	Lost  uint64  `json:"lost"`
}

// edgeStatus is one edge address: its live connections, and its dial
// errors and lost connections with the last error.
type edgeStatus struct {
	Edge        string `json:"edge"`
	Connections int    `json:"connections"`
	DialErrors  uint64 `json:"dial_errors"`
	Lost        uint64 `json:"lost"`
	// Failing counts the failed dials since the last that worked.
	Failing       int       `json:"failing"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at"`
	LastConnected time.Time `json:"last_connected"`
}

// l3Status is the L3 connector.
type l3Status struct {
	Name      string         `json:"name"`
	Interface string         `json:"interface"`
	Addresses []netip.Prefix `json:"addresses"`
	Subnets   []netip.Prefix `json:"subnets"`
	// Endpoint is the edge's endpoint in l3.yml, EdgeAddr where the
	// device sends now.
	Endpoint      string    `json:"endpoint"`
	EdgeAddr      string    `json:"edge_addr"`
	LastHandshake time.Time `json:"last_handshake"`
	LinkUp        bool      `json:"link_up"`
	// WireGuard bytes (UDP payload) sent to and received from the edge.
	TxBytes uint64 `json:"tx_bytes"`
	RxBytes uint64 `json:"rx_bytes"`
	// IP packets and bytes through the TUN: to the edge, from the edge.
	ToEdgePackets   uint64 `json:"to_edge_packets"`
	ToEdgeBytes     uint64 `json:"to_edge_bytes"`
	FromEdgePackets uint64 `json:"from_edge_packets"`
	FromEdgeBytes   uint64 `json:"from_edge_bytes"`
	Error           string `json:"error,omitempty"` // reading the device's status failed
}

// tunnelStatusOf is the status of a tunnel connector.
func tunnelStatusOf(c *l4.Connector, started time.Time) *connectorStatus {
	st := &connectorStatus{Mode: "tunnel", Version: cli.Version(), Started: started, Now: time.Now(), Ready: c.Ready()}
	t := &tunnelStatus{TunnelID: c.TunnelID(), Protocol: c.Protocol(), Want: c.WantConnections(),
		Connections: []connStatus{}, Edges: []edgeStatus{}}
	conns := c.Connections()
	slices.SortFunc(conns, func(x, y l4.ConnInfo) int { return x.Since.Compare(y.Since) })
	n := map[string]int{}
	for _, ci := range conns {
		t.Connections = append(t.Connections, connStatus{Edge: ci.Edge, Protocol: ci.Protocol, Since: ci.Since, Streams: ci.Streams,
			RTTMs: float64(ci.Transport.RTT.Microseconds()) / 1e3, Sent: ci.Transport.Sent, Lost: ci.Transport.Lost})
		n[ci.Edge]++
	}
	for _, e := range c.Edges() {
		t.Edges = append(t.Edges, edgeStatus{Edge: e.Edge, Connections: n[e.Edge], DialErrors: e.DialErrors, Lost: e.Lost,
			Failing: e.Failing, LastError: e.LastError, LastErrorAt: e.LastErrorAt, LastConnected: e.LastConnected})
	}
	st.Tunnel = t
	return st
}

// l3StatusOf is the status of an L3 connector running cfg.
func l3StatusOf(c *connector.Connector, cfg *l3config.Connector, started time.Time) *connectorStatus {
	now := time.Now()
	st := &connectorStatus{Mode: "l3", Version: cli.Version(), Started: started, Now: now}
	info := c.Info()
	l3 := &l3Status{Name: cfg.Name, Interface: info.Interface, Addresses: cfg.Addresses, Subnets: cfg.Subnets,
		Endpoint: cfg.Edge.Endpoint}
	s, err := c.Stats()
	if err != nil {
		l3.Error = err.Error()
	} else {
		st.Ready = s.Ready(now)
		l3.EdgeAddr, l3.LastHandshake, l3.LinkUp = s.Endpoint, s.LastHandshake, s.LinkUp
		l3.TxBytes, l3.RxBytes = s.WireGuardTxBytes, s.WireGuardRxBytes
		l3.ToEdgePackets, l3.ToEdgeBytes, l3.FromEdgePackets, l3.FromEdgeBytes = s.ToEdgePackets, s.ToEdgeBytes, s.FromEdgePackets, s.FromEdgeBytes
	}
	st.L3 = l3
	return st
}

// statusHandler serves GET /status.
func statusHandler(status func() *connectorStatus) map[string]http.Handler {
	return map[string]http.Handler{"GET /status": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(status())
	})}
}

func statusCmd() *cobra.Command {
	var addr string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status --metrics ADDR",
		Short: "show a running connector's connections, edges and errors (from its --metrics address)",
		Long: `Show what a running connector is doing. It asks the connector's --metrics
address (GET /status there), so the connector must run with --metrics, and
this is given the same address.

For connector tunnel run: the tunnel, the --protocol setting, each live
connection (edge address, transport: quic or http2, since when, streams
open, round-trip time, and the share of packets lost (QUIC) or TCP
segments retransmitted (HTTP/2) since it was made), and each edge address with its dial errors, lost connections and the
last error and when: an edge it cannot reach shows "failing" with why.
For connector l3 run: the edge endpoint, the last handshake, and the bytes
and packets each way.

--json prints the same as JSON (the body of GET /status).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				return errors.New("--metrics: the connector's metrics address is required (the --metrics of connector tunnel run or l3 run, e.g. 127.0.0.1:9200)")
			}
			st, err := fetchStatus(addr)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return writeStatus(cmd.OutOrStdout(), st)
		},
	}
	cmd.Flags().StringVar(&addr, "metrics", "", "the running connector's --metrics address (host:port)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (a stable structure) instead of the report")
	return cmd
}

// fetchStatus asks the connector at addr for its status.
func fetchStatus(addr string) (*connectorStatus, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	url := "http://" + addr + "/status"
	if strings.Contains(addr, "://") {
		url = strings.TrimSuffix(addr, "/") + "/status"
	}
	resp, err := client.Get(url)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op
		}
		return nil, fmt.Errorf("no connector answers on %s (%v): is connector tunnel run or l3 run running with --metrics %s?", addr, err, addr)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answers %s to /status: not the --metrics address of a connector of this version", addr, resp.Status)
	}
	var st connectorStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("%s/status: %w", addr, err)
	}
	return &st, nil
}

// ago is d rounded for a report: to the second, to the millisecond below one.
func ago(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// fmtRTT prints a round-trip time in milliseconds; "-" before the first.
func fmtRTT(ms float64) string {
	if ms <= 0 {
		return "-"
	}
	if ms < 10 {
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// fmtLost prints the share of packets lost (QUIC) or TCP segments
// retransmitted (HTTP/2) with what it is of; "-" without a count.
func fmtLost(protocol string, sent, lost uint64) string {
	if sent == 0 {
		return "-"
	}
	unit := "packets"
	if protocol == "http2" {
		unit = "segments"
	}
	return fmt.Sprintf("%.2f%% of %d %s", float64(lost)*100/float64(sent), sent, unit)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeStatus prints the status report.
func writeStatus(out io.Writer, st *connectorStatus) error {
	now := st.Now
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	switch {
	case st.Tunnel != nil:
		fmt.Fprintf(w, "connector\ttunnel %s\n", st.Tunnel.TunnelID)
	case st.L3 != nil:
		fmt.Fprintf(w, "connector\tl3 %s\n", st.L3.Name)
	}
	fmt.Fprintf(w, "version\t%s\n", st.Version)
	if !st.Started.IsZero() {
		fmt.Fprintf(w, "up\t%s (since %s)\n", ago(now.Sub(st.Started)), st.Started.Local().Format(time.DateTime))
	}
	fmt.Fprintf(w, "ready\t%s\n", yesNo(st.Ready))
	if t := st.Tunnel; t != nil {
		fmt.Fprintf(w, "protocol\t%s\n", t.Protocol)
		fmt.Fprintf(w, "connections\t%d live of %d\n", len(t.Connections), t.Want)
		if err := w.Flush(); err != nil {
			return err
		}
		if len(t.Connections) > 0 {
			fmt.Fprintln(out)
			w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "EDGE\tTRANSPORT\tSINCE\tFOR\tSTREAMS\tRTT\tLOST")
			for _, c := range t.Connections {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", c.Edge, c.Protocol, c.Since.Local().Format(time.DateTime), ago(now.Sub(c.Since)), c.Streams,
					fmtRTT(c.RTTMs), fmtLost(c.Protocol, c.Sent, c.Lost))
			}
			if err := w.Flush(); err != nil {
				return err
			}
		}
		fmt.Fprintln(out)
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "EDGE\tSTATE\tCONNECTIONS\tDIAL ERRORS\tLOST\tLAST ERROR")
		for _, e := range t.Edges {
			state := "connecting"
			switch {
			case e.Connections > 0:
				state = "connected"
			case e.Failing > 0:
				state = fmt.Sprintf("failing (%d dials)", e.Failing)
				if e.Failing == 1 {
					state = "failing (1 dial)"
				}
			}
			last := "-"
			if e.LastError != "" {
				last = ago(now.Sub(e.LastErrorAt)) + " ago: " + strings.ReplaceAll(e.LastError, "\n", "; ")
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\n", e.Edge, state, e.Connections, e.DialErrors, e.Lost, last)
		}
		return w.Flush()
	}
	if l := st.L3; l != nil {
		fmt.Fprintf(w, "interface\t%s, addresses %s\n", cmp.Or(l.Interface, "-"), joinPrefixes(l.Addresses))
		fmt.Fprintf(w, "subnets\t%s\n", cmp.Or(joinPrefixes(l.Subnets), "-"))
		ep := l.Endpoint
		if l.EdgeAddr != "" && l.EdgeAddr != l.Endpoint {
			ep += " (now " + l.EdgeAddr + ")"
		}
		fmt.Fprintf(w, "edge\t%s\n", ep)
		hs := "never"
		if !l.LastHandshake.IsZero() {
			hs = ago(now.Sub(l.LastHandshake)) + " ago (" + l.LastHandshake.Local().Format(time.DateTime) + ")"
		}
		fmt.Fprintf(w, "handshake\t%s\n", hs)
		fmt.Fprintf(w, "link up\t%s\n", yesNo(l.LinkUp))
		fmt.Fprintf(w, "wireguard\t%d bytes sent to the edge, %d received\n", l.TxBytes, l.RxBytes)
		fmt.Fprintf(w, "to edge\t%d packets, %d bytes\n", l.ToEdgePackets, l.ToEdgeBytes)
		fmt.Fprintf(w, "from edge\t%d packets, %d bytes\n", l.FromEdgePackets, l.FromEdgeBytes)
		if l.Error != "" {
			fmt.Fprintf(w, "error\t%s\n", l.Error)
		}
	}
	return w.Flush()
}
