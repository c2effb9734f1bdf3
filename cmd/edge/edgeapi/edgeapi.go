// Package edgeapi holds the types of the edge's admin API (the unix socket
// the CLI talks to) as JSON: what GET /v1/status, /v1/tunnels, /v1/l3/...
// and /v1/history answer. The console reads the same types through the
// same handlers. Fields are only ever added to.
package edgeapi

import (
	"net/netip"
	"time"
)

// Error is the body of an admin API answer with an error status.
type Error struct {
	Error string `json:"error"`
}

// Status is what GET /v1/status answers and `edge status --json` prints.
type Status struct {
	Edge Self `json:"edge"`
	// Edges are the edges sharing the registry (etcd), from their
	// heartbeats: counts as of their last one, at most 10 s old.
	Edges   []Member  `json:"edges,omitempty"`
	Tunnels []Tunnel  `json:"tunnels"`
	L3      L3Summary `json:"l3"`
}

// Self is the edge itself.
type Self struct {
	Version   string    `json:"version"`
	Registry  string    `json:"registry"` // "bbolt PATH" or "etcd ENDPOINTS prefix P"
	Advertise []string  `json:"advertise"`
	Listen    string    `json:"listen_tunnels"`
	Started   time.Time `json:"started"`
	// Now is the edge's clock when it answered: the ages shown are
	// counted from it.
	Now time.Time `json:"now"`
	// Connections counts this edge's live connector connections, Quiet
	// and Draining those of them quiet or draining. Edges sharing a
	// registry each know only their own connections.
	Connections int `json:"connections"`
	Quiet       int `json:"quiet"`
	Draining    int `json:"draining"`
}

// Member is an edge of the registry as its heartbeats tell.
type Member struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"` // host:data directory
	Advertise   []string  `json:"advertise"`
	Started     time.Time `json:"started,omitzero"`
	Seen        time.Time `json:"seen"` // its last heartbeat
	Live        bool      `json:"live"` // heard from within 35 s
	Self        bool      `json:"self"` // the edge that answered
	Connections int       `json:"connections"`
	Tunnels     int       `json:"tunnels"`
}

// Tunnel is a tunnel as the admin API returns it.
type Tunnel struct {
	Name        string    `json:"name"`
	ID          string    `json:"id"`
	Created     time.Time `json:"created"`
	Token       string    `json:"token,omitempty"`
	Connections []Conn    `json:"connections,omitempty"`
}

// Conn is a live connector connection of a tunnel on this edge.
type Conn struct {
	Connector string    `json:"connector"`
	Protocol  string    `json:"protocol"`
	Remote    string    `json:"remote"`
	Since     time.Time `json:"since"`
	Streams   int       `json:"streams"`
	Draining  bool      `json:"draining"`
	// Quiet: the connector has been silent for 1.5 s; new streams go
	// to the tunnel's other connections.
	Quiet bool `json:"quiet"`
	// BytesToOrigin and BytesToUser are the bytes the connection carried
	// since it was made, each way: its streams' and its UDP datagrams'
	// payloads.
	BytesToOrigin uint64 `json:"bytes_to_origin"`
	BytesToUser   uint64 `json:"bytes_to_user"`
	// Rate is the connection's bytes per second, both ways together, over
	// the last step of the history (History.Step); 0 until it has been up
	// for one.
	Rate float64 `json:"rate"`
}

// L3Summary is the L3 on-ramp as the running edge's hub has it.
type L3Summary struct {
	// Enabled: l3.listen is set and the hub runs; the rest is only
	// filled then.
	Enabled  bool   `json:"enabled"`
	Listen   string `json:"listen,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Clients  int    `json:"clients"`
	// ClientsRecent counts the clients with a handshake in the last 3
	// minutes (WireGuard sessions last at most that long unrenewed).
	ClientsRecent int                 `json:"clients_recent"`
	Connectors    []L3ConnectorStatus `json:"connectors"`
	// Subnets are the connectors' subnets with who the edge routes
	// each to (Active) and who would take it over (Standby: the other
	// connectors advertising it, in preference order).
	Subnets []SubnetStatus `json:"subnets"`
}

// L3ConnectorStatus is an L3 connector in the status.
type L3ConnectorStatus struct {
	Name          string         `json:"name"`
	Address4      netip.Addr     `json:"address4"`
	Address6      netip.Addr     `json:"address6"`
	Endpoint      string         `json:"endpoint,omitempty"`
	LastHandshake time.Time      `json:"last_handshake"`
	RxBytes       uint64         `json:"rx_bytes"`
	TxBytes       uint64         `json:"tx_bytes"`
	Subnets       []netip.Prefix `json:"subnets"`
}

// SubnetStatus is a connectors' subnet and who the edge routes it to.
type SubnetStatus struct {
	Prefix  netip.Prefix `json:"prefix"`
	Active  string       `json:"active"` // "": no connector is active for it
	Standby []string     `json:"standby,omitempty"`
}

// L3Peer is a client or connector as the admin API lists it. It never
// carries a private key.
type L3Peer struct {
	Name      string         `json:"name"`
	Kind      string         `json:"kind"`
	PublicKey string         `json:"public_key"`
	Address4  netip.Addr     `json:"address4"`
	Address6  netip.Addr     `json:"address6"`
	Groups    []string       `json:"groups,omitempty"`
	Subnets   []netip.Prefix `json:"subnets,omitempty"`
	Created   time.Time      `json:"created"`
	// Live is set when the running edge's hub has the peer; the rest
	// is only known then.
	Live          bool      `json:"live"`
	LastHandshake time.Time `json:"last_handshake"`
	Endpoint      string    `json:"endpoint,omitempty"`
	RxBytes       uint64    `json:"rx_bytes"`
	TxBytes       uint64    `json:"tx_bytes"`
	Drops         uint64    `json:"drops"`
	// Loop is the edge's receive loop that steering keeps the peer on (0:
	// not steered).
	Loop int `json:"loop,omitempty"`
	// Active and Standby are the connector's subnets that other
	// connectors advertise too (subnet failover): those the edge routes
	// to it, and those it routes to another.
	Active  []netip.Prefix `json:"active,omitempty"`
	Standby []netip.Prefix `json:"standby,omitempty"`
}

// History is what GET /v1/history answers: the edge's last 15 minutes,
// kept in its memory (no Prometheus needed), one point every Step.
type History struct {
	Step time.Duration `json:"step"` // nanoseconds, as time.Duration marshals
	Now  time.Time     `json:"now"`
	// Series are in Key order. A series' last point is for the step
	// ending at Now; it has at most Window/Step points, fewer while the
	// edge is younger or the thing it counts newer.
	Series []Series `json:"series"`
}

// Window is how far back History goes.
const Window = 15 * time.Minute

// Series is one curve of the history. Keys (with NAME a tunnel's or L3
// peer's name, REASON a counter's label):
//
//	edge/to_origin, edge/to_user             bytes/s proxied by all tunnels
//	tunnel/NAME/to_origin, tunnel/NAME/to_user  bytes/s of one tunnel
//	l3/rx, l3/tx                             bytes/s of the L3 hub
//	l3/client/NAME/rx, .../tx                bytes/s of one client
//	l3/connector/NAME/rx, .../tx             bytes/s of one L3 connector
//	drop/l4/REASON, drop/l3/REASON           dropped packets or datagrams /s
//	limit/KIND/REASON                        refusals by a limit /s
//	xdp/REASON                               the XDP pre-filter's drops /s
//
// The drops and limits the edge keeps (history.go in cmd/edge has their
// sources): drop/l4/datagrams (UDP datagrams dropped); drop/l3/REASON with
// the L3 router's reasons (malformed, spoofed, no_route, acl, ttl,
// too_big), wireguard_REASON the WireGuard device's (wireguard_malformed,
// wireguard_no_session, wireguard_decrypt, wireguard_replay, ...) and
// staged_REASON (staged_peer_full, staged_device_full, staged_expired);
// limit/user_connections/{maxConns,maxConnsPerSource},
// limit/udp_flows/{flow_limit,source_rate,tunnel_rate},
// limit/handshakes/{maxHandshakes,maxHandshakesPerSource},
// limit/auth_failures/REASON (unknown_tunnel, bad_secret, ...),
// limit/streams/maxStreamsPerTunnel,
// limit/l3_handshakes/{over_budget,source_limit,table_full}; xdp/REASON
// only while the pre-filter runs, with its drop verdicts (quic_source_rate,
// wireguard_global_rate, ...). The per-peer L3 series are those of the 256
// busiest peers of each kind over the window; a series of a thing gone (a
// tunnel deleted, a peer removed) stays until its window is all zeros.
type Series struct {
	Key    string    `json:"key"`
	Unit   string    `json:"unit"`   // "B/s" or "1/s"
	Total  float64   `json:"total"`  // the counter's value now (bytes or events since the edge started)
	Points []float64 `json:"points"` // oldest first, Step apart, the last for the step ending at History.Now
}
