package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
	"github.com/onramp-net/onramp/dataplane/prefilter"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/wg"
	"github.com/onramp-net/onramp/l4proxy/edge"
)

// The edge's history: the last 15 minutes (edgeapi.Window) of its
// counters as rates, one point per step, kept in memory by a sampler
// goroutine of the running edge (no Prometheus needed) and served as GET
// /v1/history (edgeapi.History). The series and their keys are listed at
// edgeapi.Series; where each comes from:
//
//   - edge/to_origin, edge/to_user: onramp_edge_bytes_total (all streams,
//     direct routes included);
//   - tunnel/NAME/...: the Server's per-tunnel counts (edge.Server.TunnelBytes:
//     streams and UDP payloads), for each tunnel of the registry;
//   - l3/rx, l3/tx, l3/client/NAME/..., l3/connector/NAME/...: the L3 hub's
//     router counters (bytes of the IP packets from and to the peers);
//   - drop/l4/datagrams: onramp_edge_datagrams_dropped_total; drop/l3/REASON:
//     the L3 router's drops (onramp_edge_l3_drops_total and the unattributed
//     ones summed by reason), drop/l3/wireguard_REASON the WireGuard device's
//     (onramp_edge_l3_datagram_drops_total), drop/l3/staged_REASON the packets
//     held for a peer without a session and dropped;
//   - limit/user_connections/LIMIT, limit/udp_flows/REASON,
//     limit/handshakes/LIMIT, limit/auth_failures/REASON and
//     limit/streams/maxStreamsPerTunnel: the edge's refusal counters of the
//     same names (onramp_edge_*_total, read by gathering the Server's
//     metrics: one source of truth); limit/l3_handshakes/RESULT the L3
//     handshakes over its budget (over_budget, source_limit, table_full);
//   - xdp/REASON: the XDP pre-filter's drop verdicts, when it runs.
//
// Bounds: each series is a ring of Window/step float32 points. A series
// whose thing is gone (a tunnel deleted, a peer removed) is dropped once
// its window is all zeros. The per-peer L3 series are capped at
// historyPeerCap per kind (the busiest over the window keep theirs; the
// others' traffic is in l3/rx and l3/tx), so that 10,000 clients cannot
// grow the history without bound. A counter that goes back (an edge reload
// re-registering it, a peer or tunnel removed and added again) is taken
// as restarted from zero: rates are never negative.

// historyStep is the history's step (450 points in 15 minutes); a
// variable for the tests.
var historyStep = 2 * time.Second

// historyPeerCap is how many peers of each kind (client, connector) keep
// their L3 series (rx, tx) at most: the busiest over the window.
const historyPeerCap = 256

// Units of the series.
const (
	unitBytes  = "B/s"
	unitEvents = "1/s"
)

// reading is a counter's value at a sample.
type reading struct {
	key, unit string
	value     float64
}

// history is the sampled series. Its methods are safe for concurrent use.
type history struct {
	step    time.Duration
	size    int // points per series: Window/step
	peerCap int

	mu     sync.Mutex
	now    time.Time // the last sample's time; zero before the first
	series map[string]*hseries
	// prev holds the last sample's values of the keys without a series
	// (the peers over the cap), so that one that earns a series starts
	// with its rate, not its total.
	prev  map[string]float64
	conns map[uint64]connSample // live connections by edge.ConnInfo.ID
}

// hseries is one series: a ring of rates and the counter's last value.
type hseries struct {
	unit  string
	ring  []float32
	head  int // where the next point goes
	n     int // points held, at most len(ring)
	quiet int // points since the last one that was not zero
	total float64
	seen  bool // read at the current sample
}

func (s *hseries) push(v float64) {
	s.ring[s.head] = float32(v)
	s.head = (s.head + 1) % len(s.ring)
	s.n = min(s.n+1, len(s.ring))
	if v == 0 {
		s.quiet++
	} else {
		s.quiet = 0
	}
}

// allZero reports whether every point of the window is zero.
func (s *hseries) allZero() bool { return s.quiet >= s.n }

// sum is the sum of the window's rates: how busy the series was.
func (s *hseries) sum() float64 {
	var t float64
	for _, v := range s.ring {
		t += float64(v)
	}
	return t
}

// connSample is a live connection's bytes at the last sample (both ways)
// and its rate over the step before it.
type connSample struct {
	bytes uint64
	rate  float64
}

func newHistory(step time.Duration) *history {
	return &history{
		step: step, size: max(1, int(edgeapi.Window/step)), peerCap: historyPeerCap,
		series: map[string]*hseries{}, prev: map[string]float64{}, conns: map[uint64]connSample{},
	}
}

// run samples read at once and then every step until ctx is done.
func (h *history) run(ctx context.Context, read func() ([]reading, []edge.ConnInfo)) {
	t := time.NewTicker(h.step)
	defer t.Stop()
	for {
		rs, conns := read()
		h.sample(time.Now(), rs, conns)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cappedGroup returns the group of a key whose series are capped, per
// peer (l3/client/, l3/connector/), or "".
func cappedGroup(key string) string {
	for _, g := range []string{"l3/client/", "l3/connector/"} {
		if strings.HasPrefix(key, g) {
			return g
		}
	}
	return ""
}

// sample adds the point of the step ending at now: each counter's rate
// since the last sample.
func (h *history) sample(now time.Time, rs []reading, conns []edge.ConnInfo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := h.now.IsZero()
	dt := now.Sub(h.now).Seconds()
	if !first && dt <= 0 {
		return // the clock went back: wait for the next step
	}
	rate := func(v, last float64, known bool) float64 {
		if first {
			return 0
		}
		if known && v >= last {
			v -= last
		} // else: new since the last sample, or the counter restarted from 0
		return v / dt
	}
	for _, s := range h.series {
		s.seen = false
	}
	type candidate struct {
		reading
		rate float64
	}
	var cands []candidate
	prev := map[string]float64{}
	for _, r := range rs {
		if s := h.series[r.key]; s != nil {
			if !first {
				s.push(rate(r.value, s.total, true))
			}
			s.total, s.seen = r.value, true
			continue
		}
		last, known := h.prev[r.key]
		c := candidate{r, rate(r.value, last, known)}
		if cappedGroup(r.key) != "" {
			prev[r.key] = r.value
			cands = append(cands, c) // a series if it makes the cap
			continue
		}
		h.add(c.reading, c.rate, first)
	}
	// The things gone: zeros, until the window is all zeros.
	for k, s := range h.series {
		if s.seen {
			continue
		}
		s.push(0)
		if s.allZero() {
			delete(h.series, k)
		}
	}
	// The cap: the busiest peers of each kind, by their series' window
	// sums (a new series' is its one point); a peer's series (rx, tx)
	// stay or go together.
	type peer struct {
		name   string // "l3/client/NAME"
		score  float64
		series []string
		cands  []*candidate
	}
	groups := map[string]map[string]*peer{}
	member := func(key string) *peer {
		g := cappedGroup(key)
		name := key[:len(g)+strings.IndexByte(key[len(g):]+"/", '/')]
		if groups[g] == nil {
			groups[g] = map[string]*peer{}
		}
		p := groups[g][name]
		if p == nil {
			p = &peer{name: name}
			groups[g][name] = p
		}
		return p
	}
	for i := range cands {
		p := member(cands[i].key)
		p.score += cands[i].rate
		p.cands = append(p.cands, &cands[i])
	}
	for k, s := range h.series {
		// Only the groups with candidates can be over the cap.
		if g := cappedGroup(k); g != "" && groups[g] != nil {
			p := member(k)
			p.score += s.sum()
			p.series = append(p.series, k)
		}
	}
	for _, peers := range groups {
		ps := make([]*peer, 0, len(peers))
		for _, p := range peers {
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool {
			if ps[i].score != ps[j].score {
				return ps[i].score > ps[j].score
			}
			return ps[i].name < ps[j].name
		})
		for i, p := range ps {
			if i < h.peerCap {
				for _, c := range p.cands {
					h.add(c.reading, c.rate, first)
				}
				continue
			}
			for _, k := range p.series {
				if s := h.series[k]; s.seen {
					prev[k] = s.total
				}
				delete(h.series, k)
			}
		}
	}
	h.prev = prev

	live := make(map[uint64]connSample, len(conns))
	for _, c := range conns {
		b := c.BytesToOrigin + c.BytesToUser
		old, known := h.conns[c.ID]
		live[c.ID] = connSample{bytes: b, rate: rate(float64(b), float64(old.bytes), known)}
	}
	h.conns = live
	h.now = now
}

// add makes the series of r with its first point (none at the first
// sample).
func (h *history) add(r reading, rate float64, first bool) {
	s := &hseries{unit: r.unit, ring: make([]float32, h.size), total: r.value, seen: true}
	if !first {
		s.push(rate)
	}
	h.series[r.key] = s
}

// connRate is the rate of the live connection id over the last step (0
// if unknown, or without a history).
func (h *history) connRate(id uint64) float64 {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return round3(h.conns[id].rate)
}

// round3 rounds to three decimals: a float32 point shows as 0.1, not
// 0.10000000149011612.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// query is the history of the series whose key starts with one of
// prefixes (all without), with at most the last points of each (all if
// 0).
func (h *history) query(prefixes []string, last int) edgeapi.History {
	out := edgeapi.History{Step: historyStep, Now: time.Now(), Series: []edgeapi.Series{}}
	if h == nil {
		return out
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out.Step = h.step
	if !h.now.IsZero() {
		out.Now = h.now
	}
	keys := make([]string, 0, len(h.series))
	for k := range h.series {
		if len(prefixes) == 0 || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		s := h.series[k]
		n := s.n
		if last > 0 {
			n = min(n, last)
		}
		pts := make([]float64, n)
		for i := range pts {
			pts[i] = round3(float64(s.ring[(s.head-n+i+len(s.ring))%len(s.ring)]))
		}
		out.Series = append(out.Series, edgeapi.Series{Key: k, Unit: s.unit, Total: s.total, Points: pts})
	}
	return out
}

// serveHistory serves GET /v1/history (edgeapi.History): every series
// with its whole window, or, with the query parameters, those whose key
// starts with a key= value (repeatable: key=edge/&key=tunnel/web/) and
// the last points=N points of each (a page that has the window already
// asks for the newest point only).
func (a *app) serveHistory(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/history", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		last := 0
		if p := q.Get("points"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 {
				writeJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf("history: points=%q: want a number of points, 1 or more", p)})
				return
			}
			last = n
		}
		writeJSON(w, http.StatusOK, a.hist.query(q["key"], last))
	})
}

// startHistory starts the sampler of the running edge's history, which
// stops with ctx; m gathers the Server's metrics (historyReadings).
func (a *app) startHistory(ctx context.Context, m prometheus.Gatherer) {
	a.hist = newHistory(historyStep)
	go a.hist.run(ctx, func() ([]reading, []edge.ConnInfo) {
		return a.historyReadings(m), a.srv.Connections()
	})
}

// l4Counter maps a counter of the Server to history keys: by a label (the
// key is prefix + its value), or to a fixed key: of the family without a
// label, or of its series whose label is only.
type l4Counter struct {
	family, label, only, prefix, key, unit string
}

// keyOf is the history key of the counter's series with labels, or "".
func (c l4Counter) keyOf(labels []*dto.LabelPair) string {
	for _, lp := range labels {
		if lp.GetName() != c.label {
			continue
		}
		switch {
		case c.only == "":
			return c.prefix + lp.GetValue()
		case lp.GetValue() == c.only:
			return c.key
		}
		return ""
	}
	if c.only != "" {
		return ""
	}
	return c.key
}

// l4Counters are the Server's counters the history reads.
var l4Counters = []l4Counter{
	{family: "onramp_edge_bytes_total", label: "direction", prefix: "edge/", unit: unitBytes},
	{family: "onramp_edge_datagrams_dropped_total", key: "drop/l4/datagrams", unit: unitEvents},
	{family: "onramp_edge_user_connections_refused_total", label: "limit", prefix: "limit/user_connections/", unit: unitEvents},
	{family: "onramp_edge_udp_flows_refused_total", label: "reason", prefix: "limit/udp_flows/", unit: unitEvents},
	{family: "onramp_edge_handshakes_refused_total", label: "limit", prefix: "limit/handshakes/", unit: unitEvents},
	{family: "onramp_edge_auth_failures_total", label: "reason", prefix: "limit/auth_failures/", unit: unitEvents},
	{family: "onramp_edge_errors_total", label: "kind", only: "limit", key: "limit/streams/maxStreamsPerTunnel", unit: unitEvents},
}

// historyReadings reads every counter of the history once: m (the
// Server's metrics), the tunnels' traffic, the L3 hub and the XDP
// pre-filter. A source that fails is left out of this sample (its series
// get a zero point).
func (a *app) historyReadings(m prometheus.Gatherer) []reading {
	var rs []reading
	add := func(key, unit string, v float64) { rs = append(rs, reading{key, unit, v}) }
	if mfs, err := m.Gather(); err == nil {
		for _, mf := range mfs {
			for _, c := range l4Counters {
				if mf.GetName() != c.family {
					continue
				}
				for _, mt := range mf.GetMetric() {
					if key := c.keyOf(mt.GetLabel()); key != "" {
						add(key, c.unit, mt.GetCounter().GetValue())
					}
				}
			}
		}
	}
	if t := a.tunnels.Load(); t != nil {
		bytes := a.srv.TunnelBytes()
		for name, id := range t.Names() {
			b := bytes[id]
			add("tunnel/"+name+"/to_origin", unitBytes, float64(b.ToOrigin))
			add("tunnel/"+name+"/to_user", unitBytes, float64(b.ToUser))
		}
	}
	if a.l3 != nil && a.l3.hub != nil {
		if st, err := a.l3.hub.Stats(); err == nil {
			var rx, tx float64
			var drops [l3router.NumDropReasons]uint64
			for _, k := range st.Kinds {
				rx += float64(k.RxBytes)
				tx += float64(k.TxBytes)
				for r, v := range k.Drops {
					drops[r] += v
				}
			}
			add("l3/rx", unitBytes, rx)
			add("l3/tx", unitBytes, tx)
			for _, p := range st.Peers {
				add("l3/"+p.Kind.String()+"/"+p.Name+"/rx", unitBytes, float64(p.Router.RxBytes))
				add("l3/"+p.Kind.String()+"/"+p.Name+"/tx", unitBytes, float64(p.Router.TxBytes))
			}
			for r, v := range drops {
				add("drop/l3/"+l3router.DropReason(r).String(), unitEvents, float64(v+st.Unattributed[r]))
			}
			for r, v := range st.Drops {
				add("drop/l3/wireguard_"+wg.DatagramDrop(r).String(), unitEvents, float64(v))
			}
			sg := st.Staging
			add("drop/l3/staged_peer_full", unitEvents, float64(sg.PeerFull))
			add("drop/l3/staged_device_full", unitEvents, float64(sg.DeviceFull))
			add("drop/l3/staged_expired", unitEvents, float64(sg.Expired))
			hs := st.Handshakes
			add("limit/l3_handshakes/over_budget", unitEvents, float64(hs.OverBudget))
			add("limit/l3_handshakes/source_limit", unitEvents, float64(hs.SourceLimited))
			add("limit/l3_handshakes/table_full", unitEvents, float64(hs.TableFull))
		}
	}
	if f := a.xdp.Load(); f != nil {
		if counts, err := f.Counts(); err == nil {
			for r, n := range counts {
				if prefilter.Reason(r).Drop() {
					add("xdp/"+prefilter.Reason(r).String(), unitEvents, float64(n))
				}
			}
		}
	}
	return rs
}

// teeRegisterer registers each collector with both registries: the edge's
// (scraped) and the history's own, which gathers the Server's metrics
// only (not the hub's per-peer ones, nor the process's).
type teeRegisterer struct{ a, b prometheus.Registerer }

func (t teeRegisterer) Register(c prometheus.Collector) error {
	if err := t.a.Register(c); err != nil {
		return err
	}
	if err := t.b.Register(c); err != nil {
		t.a.Unregister(c)
		return err
	}
	return nil
}

func (t teeRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

func (t teeRegisterer) Unregister(c prometheus.Collector) bool {
	a, b := t.a.Unregister(c), t.b.Unregister(c)
	return a || b
}
