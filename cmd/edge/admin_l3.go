package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/dataplane/registry"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/hub"
	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l4proxy/store"
)

// The L3 admin API: the l3 subcommands act through it on a running edge,
// so that a new peer is live at once and a removed one is cut at once.
// Without a running edge they use an l3ctl on the store directly.

// l3ctl performs the L3 operations on the store and, in a running edge with
// L3 on, on the hub.
type l3ctl struct {
	cfg   *edgeconfig.Config
	store *hub.Store
	hub   *hub.Hub // nil offline or with L3 off; set once, under hubMu
	// onHandshake is the hub's OnHandshake: the XDP pre-filter's Prove,
	// or nil.
	onHandshake func(netip.Addr)
	log         *slog.Logger
	// edges is the registry of several edges (etcd), whose live members'
	// L3 endpoints connectors' l3.yml lists; nil with one edge.
	edges registry.Store

	mu sync.Mutex // one change at a time: store and hub stay in step

	// hubMu orders the mirror's changes (follow) with the hub's start;
	// refused holds the error of a peer the hub refused, for the add
	// that recorded it.
	hubMu   sync.Mutex
	refused map[string]error
}

// newL3ctl opens the L3 store. Private keys of connectors that a store of
// an earlier edge kept are dropped, each with a warning: the connector's
// l3.yml still holds its key and goes on working.
func newL3ctl(cfg *edgeconfig.Config, st *store.Store, log *slog.Logger) (*l3ctl, error) {
	s, err := hub.OpenStore(st.Registry(), poolsOf(cfg), cfg.L3.ReuseDelay())
	if err != nil {
		return nil, err
	}
	dropped, err := s.DropPrivateKeys()
	if err != nil {
		return nil, err
	}
	for _, name := range dropped {
		log.Warn("l3 store: deleted the private key an earlier edge made and kept for connector "+name+
			": the edge keeps no connector's private key now. The connector goes on with the key in its l3.yml; "+
			"an l3.yml printed again names "+l3config.DefaultKeyFile+" instead (connector l3 init --from-config OLD_L3_YML "+
			"moves the key there). As the edge held the key, better make a new one on the connector's host "+
			"(connector l3 init) and register it (edge l3 connector remove, then add --public-key)", "connector", name)
	}
	c := &l3ctl{cfg: cfg, store: s, log: log, refused: map[string]error{}}
	if cfg.Registry.Etcd != nil {
		c.edges = st.Registry()
	}
	return c, nil
}

// follow applies a change of the registry's clients and connectors to the
// hub, made on this edge or on another sharing the registry: a new peer is
// live, a removed one is cut. The store's mirror calls it in order.
func (c *l3ctl) follow(old, new *hub.Peer) {
	c.hubMu.Lock()
	defer c.hubMu.Unlock()
	h := c.hub
	if h == nil {
		return // not started yet: the hub starts with the mirror's peers
	}
	if old != nil && new != nil && samePeer(old, new) {
		return
	}
	if old != nil {
		if _, err := h.RemovePeer(old.Name); err == nil {
			c.log.Info("l3 peer removed", "kind", old.Kind, "name", old.Name)
		}
		delete(c.refused, old.Name)
	}
	if new == nil {
		return
	}
	err := h.AddPeer(*new)
	if errors.Is(err, hub.ErrExists) {
		for _, p := range h.Peers() {
			if p.Name == new.Name && samePeer(&p, new) {
				return // the hub started with it
			}
		}
	}
	if err != nil {
		c.refused[new.Name] = err
		c.log.Warn("l3 peer in the registry refused by the hub", "kind", new.Kind, "name", new.Name, "err", err)
		return
	}
	c.log.Info("l3 peer added", "kind", new.Kind, "name", new.Name, "address4", new.Address4, "address6", new.Address6)
}

// samePeer reports whether two records of a peer make the same hub peer.
func samePeer(a, b *hub.Peer) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.PublicKey == b.PublicKey && a.Address4 == b.Address4 &&
		a.Address6 == b.Address6 && slices.Equal(a.Groups, b.Groups) && slices.Equal(a.Subnets, b.Subnets)
}

func poolsOf(cfg *edgeconfig.Config) hub.Pools {
	return hub.Pools{IPv4: cfg.L3.Pools.IPv4, IPv6: cfg.L3.Pools.IPv6}
}

func peerInfo(p *hub.Peer) l3PeerInfo {
	return l3PeerInfo{
		Name: p.Name, Kind: p.Kind.String(), PublicKey: p.PublicKey.String(),
		Address4: p.Address4, Address6: p.Address6, Groups: p.Groups, Subnets: p.Subnets, Created: p.Created,
	}
}

// l3AddClient is the body of POST /v1/l3/clients. The client's private key
// stays with the CLI.
type l3AddClient struct {
	Name      string       `json:"name"`
	Groups    []string     `json:"groups"`
	PublicKey l3config.Key `json:"public_key"`
}

// l3AddConnector is the body of POST /v1/l3/connectors. The connector
// made its key pair (connector l3 init): the edge gets the public key and
// where the private one is kept on the connector's host (KeyFile, default
// l3config.DefaultKeyFile), which it writes into the l3.yml.
type l3AddConnector struct {
	Name      string         `json:"name"`
	Subnets   []netip.Prefix `json:"subnets"`
	PublicKey l3config.Key   `json:"public_key"`
	KeyFile   string         `json:"key_file,omitempty"`
}

// configErr marks an error of the edge configuration (400).
type configErr struct{ error }

func (e configErr) Unwrap() error { return e.error }

// endpoint returns where clients and connectors dial, or why there is none.
func (c *l3ctl) endpoint() (string, error) {
	if !c.cfg.L3.Enabled() {
		return "", configErr{errors.New(`edge config: l3.listen is not set, the L3 on-ramp is off: set it (e.g. l3: {listen: "[::]:51820"}) first`)}
	}
	if c.cfg.L3.Endpoint == "" {
		return "", configErr{errors.New("edge config: l3.endpoint is not set and there is no advertise host to derive it from: set l3.endpoint: HOST:PORT that clients and connectors can reach")}
	}
	return c.cfg.L3.Endpoint, nil
}

// add records p and, on a running edge, makes it live; a peer the hub
// refuses is not kept.
func (c *l3ctl) add(p hub.Peer) (hub.Peer, []hub.Peer, error) {
	if _, err := c.endpoint(); err != nil {
		return hub.Peer{}, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// On a running edge the store returns once the mirror applied the
	// change (follow): the peer is live, or refused.
	p, err := c.store.Add(p)
	if err != nil {
		return hub.Peer{}, nil, err
	}
	if c.hub != nil {
		c.hubMu.Lock()
		err := c.refused[p.Name]
		delete(c.refused, p.Name)
		c.hubMu.Unlock()
		if err != nil {
			if _, rerr := c.store.Discard(p.Kind, p.Name); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return hub.Peer{}, nil, err
		}
	}
	peers, err := c.store.List()
	return p, peers, err
}

func (c *l3ctl) addClient(req l3AddClient) (l3config.Client, error) {
	p, peers, err := c.add(hub.Peer{Name: req.Name, Kind: l3router.KindClient, PublicKey: req.PublicKey, Groups: req.Groups})
	if err != nil {
		return l3config.Client{}, err
	}
	return c.clientConfig(&p, peers)
}

// clientConfig is p's wg-quick config without its private key. Its
// endpoint is l3.client_endpoint if set (with several edges: a name or an
// address that moves between them), else l3.endpoint.
func (c *l3ctl) clientConfig(p *hub.Peer, peers []hub.Peer) (l3config.Client, error) {
	ep, err := c.endpoint()
	if err != nil {
		return l3config.Client{}, err
	}
	if c.cfg.L3.ClientEndpoint != "" {
		ep = c.cfg.L3.ClientEndpoint
	}
	key, err := c.store.EdgeKey()
	if err != nil {
		return l3config.Client{}, err
	}
	return l3config.Client{
		Name:          p.Name,
		PublicKey:     p.PublicKey,
		Addresses:     p.Addresses(),
		DNS:           c.cfg.L3.DNS,
		MTU:           c.cfg.L3.MTU,
		EdgePublicKey: key.PublicKey(),
		Endpoint:      ep,
		AllowedIPs:    append(poolsOf(c.cfg).Prefixes(), hub.Subnets(peers, "")...),
		Keepalive:     l3config.DefaultClientKeepalive,
	}, nil
}

// errNoConnectorKey is the refusal of a connector without a public key.
var errNoConnectorKey = fmt.Errorf("public key: missing: run connector l3 init on the connector's host and register the public key it prints (--public-key): %w", hub.ErrInvalid)

func (c *l3ctl) addConnector(req l3AddConnector) (l3config.Connector, error) {
	if req.PublicKey.IsZero() {
		return l3config.Connector{}, errNoConnectorKey
	}
	if req.KeyFile == "" {
		req.KeyFile = l3config.DefaultKeyFile
	}
	p, peers, err := c.add(hub.Peer{Name: req.Name, Kind: l3router.KindConnector, PublicKey: req.PublicKey, KeyFile: req.KeyFile, Subnets: req.Subnets})
	if err != nil {
		return l3config.Connector{}, err
	}
	return c.connectorConfig(&p, peers)
}

// connectorConfig is p's l3.yml: its routes are the pools and the other
// connectors' subnets as they are now, and it names the connector's key
// file, never a key. With several edges (etcd) it lists every live edge's
// L3 endpoint, this edge's first: the connector keeps a session with each.
func (c *l3ctl) connectorConfig(p *hub.Peer, peers []hub.Peer) (l3config.Connector, error) {
	ep, err := c.endpoint()
	if err != nil {
		return l3config.Connector{}, err
	}
	var others []string
	if c.edges != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		others, err = l3Endpoints(ctx, c.edges, memberID(c.cfg.Data))
		cancel()
		if err != nil {
			c.log.Warn("l3 connector config: the other edges' endpoints not read: the config names this edge only", "err", err)
		}
		others = slices.DeleteFunc(others, func(o string) bool { return o == ep })
		others = others[:min(len(others), l3config.MaxEdgeEndpoints-1)]
	}
	key, err := c.store.EdgeKey()
	if err != nil {
		return l3config.Connector{}, err
	}
	keyFile := p.KeyFile
	if keyFile == "" { // registered by an edge that made its key
		keyFile = l3config.DefaultKeyFile
	}
	fwd := true
	cc := l3config.Connector{
		Name:           p.Name,
		PrivateKeyFile: keyFile,
		Addresses:      p.Addresses(),
		Interface:      l3config.DefaultInterface,
		MTU:            c.cfg.L3.MTU,
		Edge:           l3config.EdgePeer{PublicKey: key.PublicKey(), Endpoint: ep, Keepalive: l3config.Duration(hub.ConnectorKeepalive)},
		Subnets:        p.Subnets,
		Routes:         append(poolsOf(c.cfg).Prefixes(), hub.Subnets(peers, p.Name)...),
		Forwarding:     &fwd,
	}
	if len(others) > 0 {
		cc.Edge.Endpoint, cc.Edge.Endpoints = "", append([]string{ep}, others...)
	}
	if err := cc.Validate(); err != nil {
		return l3config.Connector{}, fmt.Errorf("connector %q: config: %w", p.Name, err)
	}
	return cc, nil
}

// config returns the config of the peer named name of the given kind.
func (c *l3ctl) config(kind l3router.PeerKind, name string) (any, error) {
	peers, err := c.store.List()
	if err != nil {
		return nil, err
	}
	for i := range peers {
		p := &peers[i]
		if p.Name != name {
			continue
		}
		if p.Kind != kind {
			return nil, fmt.Errorf("%q is a %v, not a %v: %w", name, p.Kind, kind, hub.ErrNotFound)
		}
		if kind == l3router.KindClient {
			return c.clientConfig(p, peers)
		}
		return c.connectorConfig(p, peers)
	}
	return nil, fmt.Errorf("no %v is named %q: %w", kind, name, hub.ErrNotFound)
}

// remove deletes the peer from the store and cuts it on a running edge.
func (c *l3ctl) remove(kind l3router.PeerKind, name string) (l3PeerInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// On a running edge the store returns once the mirror applied the
	// removal (follow): the peer is cut.
	p, err := c.store.Remove(kind, name)
	if err != nil {
		return l3PeerInfo{}, err
	}
	return peerInfo(&p), nil
}

// list returns the peers of the given kind with what the hub knows of them.
func (c *l3ctl) list(kind l3router.PeerKind) ([]l3PeerInfo, error) {
	peers, err := c.store.List()
	if err != nil {
		return nil, err
	}
	stats := map[string]hub.PeerStats{}
	var active, standby map[string][]netip.Prefix
	if c.hub != nil {
		st, err := c.hub.Stats()
		if err != nil {
			return nil, err
		}
		for _, s := range st.Peers {
			stats[s.Name] = s
		}
		active, standby = sharedRoles(c.hub)
	}
	out := []l3PeerInfo{}
	for i := range peers {
		if peers[i].Kind != kind {
			continue
		}
		info := peerInfo(&peers[i])
		if s, ok := stats[info.Name]; ok {
			info.Live = true
			info.LastHandshake, info.Endpoint, info.Loop = s.LastHandshake, s.Endpoint, s.Loop
			info.RxBytes, info.TxBytes = s.Router.RxBytes, s.Router.TxBytes
			for _, d := range s.Router.Drops {
				info.Drops += d
			}
			info.Active, info.Standby = active[info.Name], standby[info.Name]
		}
		out = append(out, info)
	}
	return out, nil
}

// l3Status is the HTTP status that fits an L3 error.
func l3Status(err error) int {
	var ce configErr
	switch {
	case errors.Is(err, hub.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, hub.ErrExists):
		return http.StatusConflict
	case errors.Is(err, hub.ErrInvalid), errors.Is(err, hub.ErrOverlap), errors.Is(err, hub.ErrPoolExhausted), errors.As(err, &ce):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func kindOf(s string) l3router.PeerKind {
	if s == "connectors" {
		return l3router.KindConnector
	}
	return l3router.KindClient
}

// serveL3 adds the L3 endpoints to the admin API.
func (a *app) serveL3(mux *http.ServeMux) {
	c := a.l3
	fail := func(w http.ResponseWriter, err error) { writeJSON(w, l3Status(err), apiError{Error: err.Error()}) }
	for _, kinds := range []string{"clients", "connectors"} {
		kind := kindOf(kinds)
		mux.HandleFunc("GET /v1/l3/"+kinds, func(w http.ResponseWriter, r *http.Request) {
			out, err := c.list(kind)
			if err != nil {
				fail(w, err)
				return
			}
			writeJSON(w, http.StatusOK, out)
		})
		mux.HandleFunc("GET /v1/l3/"+kinds+"/{name}/config", func(w http.ResponseWriter, r *http.Request) {
			out, err := c.config(kind, r.PathValue("name"))
			if err != nil {
				fail(w, err)
				return
			}
			writeJSON(w, http.StatusOK, out)
		})
		mux.HandleFunc("DELETE /v1/l3/"+kinds+"/{name}", func(w http.ResponseWriter, r *http.Request) {
			info, err := c.remove(kind, r.PathValue("name"))
			if err != nil {
				fail(w, err)
				return
			}
			a.log.Info("l3 "+kind.String()+" removed; cut at once", "name", info.Name)
			writeJSON(w, http.StatusOK, info)
		})
	}
	mux.HandleFunc("POST /v1/l3/clients", func(w http.ResponseWriter, r *http.Request) {
		var req l3AddClient
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "request: " + err.Error()})
			return
		}
		out, err := c.addClient(req)
		if err != nil {
			fail(w, err)
			return
		}
		a.log.Info("l3 client added", "name", out.Name, "addresses", out.Addresses)
		writeJSON(w, http.StatusCreated, out)
	})
	mux.HandleFunc("POST /v1/l3/connectors", func(w http.ResponseWriter, r *http.Request) {
		var req l3AddConnector
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "request: " + err.Error()})
			return
		}
		out, err := c.addConnector(req)
		if err != nil {
			fail(w, err)
			return
		}
		a.log.Info("l3 connector added", "name", out.Name, "addresses", out.Addresses, "subnets", out.Subnets)
		writeJSON(w, http.StatusCreated, out)
	})
}

// call sends a request with a JSON body (if in is not nil) and decodes the
// answer into out, or returns the API's error message.
func (c *adminClient) call(method, path string, in, out any) error {
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			return err
		}
	}
	req, err := http.NewRequest(method, "http://edge"+path, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e apiError
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return &adminError{status: resp.StatusCode, msg: e.Error}
		}
		return &adminError{status: resp.StatusCode, msg: "admin socket: " + resp.Status}
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
