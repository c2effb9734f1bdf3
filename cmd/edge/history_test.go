package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
	"github.com/onramp-net/onramp/dataplane/prefilter"
	"github.com/onramp-net/onramp/l4proxy/edge"
)

// histClock drives a history with a fake clock, one step per tick.
type histClock struct {
	h   *history
	now time.Time
}

func newHistClock() *histClock {
	return &histClock{h: newHistory(2 * time.Second), now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// tick samples rs (and conns) at the next step.
func (c *histClock) tick(rs []reading, conns ...edge.ConnInfo) {
	c.now = c.now.Add(c.h.step)
	c.h.sample(c.now, rs, conns)
}

// series returns the series of key in the snapshot, or nil.
func series(h *history, key string) *edgeapi.Series {
	for _, s := range h.snapshot().Series {
		if s.Key == key {
			return &s
		}
	}
	return nil
}

func bytesOf(key string, v float64) reading { return reading{key, unitBytes, v} }

// TestHistoryRates: each point is the counter's increase over the step
// per second, the last for the step ending at Now; the first sample
// gives none; Total is the counter now; the snapshot is in key order.
func TestHistoryRates(t *testing.T) {
	c := newHistClock()
	c.tick([]reading{bytesOf("edge/to_origin", 1000), {"drop/l4/datagrams", unitEvents, 3}})
	if s := series(c.h, "edge/to_origin"); s == nil || len(s.Points) != 0 || s.Total != 1000 {
		t.Fatalf("after the first sample: %+v, want the series with no point", s)
	}
	c.tick([]reading{bytesOf("edge/to_origin", 1000+2*500), {"drop/l4/datagrams", unitEvents, 4}})
	c.tick([]reading{bytesOf("edge/to_origin", 2000+2*0.1), {"drop/l4/datagrams", unitEvents, 4}})
	snap := c.h.snapshot()
	if !snap.Now.Equal(c.now) || snap.Step != 2*time.Second {
		t.Errorf("now %v step %v, want %v and 2s", snap.Now, snap.Step, c.now)
	}
	want := []edgeapi.Series{
		{Key: "drop/l4/datagrams", Unit: "1/s", Total: 4, Points: []float64{0.5, 0}},
		{Key: "edge/to_origin", Unit: "B/s", Total: 2000.2, Points: []float64{500, 0.1}},
	}
	if !reflect.DeepEqual(snap.Series, want) {
		t.Errorf("series:\n got %+v\nwant %+v", snap.Series, want)
	}
	if q := c.h.query([]string{"edge/"}, 1); len(q.Series) != 1 || !slices.Equal(q.Series[0].Points, []float64{0.1}) {
		t.Errorf("the newest point of edge/: %+v", q.Series)
	}

	// A key new since the last sample counted from zero: its thing
	// (a tunnel, a peer) started since.
	c.tick([]reading{bytesOf("edge/to_origin", 2000.2), bytesOf("tunnel/new/to_user", 300)})
	if s := series(c.h, "tunnel/new/to_user"); s == nil || !slices.Equal(s.Points, []float64{150}) {
		t.Errorf("a new tunnel's series: %+v, want one point of 150", s)
	}
	// A late step: the rate is over the time that passed.
	c.now = c.now.Add(2 * time.Second)
	c.tick([]reading{bytesOf("edge/to_origin", 2000.2+4000)})
	if s := series(c.h, "edge/to_origin"); s.Points[len(s.Points)-1] != 1000 {
		t.Errorf("after a 4 s step: %v, want the last point 1000", s.Points)
	}
}

// TestHistoryWindow: a series holds 15 minutes of points at most, the
// newest last.
func TestHistoryWindow(t *testing.T) {
	c := newHistClock()
	size := int(edgeapi.Window / c.h.step)
	if size != 450 {
		t.Fatalf("%d points in the window, want 450", size)
	}
	for i := range size + 50 {
		c.tick([]reading{bytesOf("edge/to_user", float64(i*(i+1)))})
	}
	s := series(c.h, "edge/to_user")
	if len(s.Points) != size {
		t.Fatalf("%d points, want %d", len(s.Points), size)
	}
	// Sample i (i ≥ 1) adds 2i bytes over 2 s: a point of i.
	last := size + 50 - 1
	if s.Points[size-1] != float64(last) || s.Points[0] != float64(last-size+1) {
		t.Errorf("points from %v to %v, want from %d to %d", s.Points[0], s.Points[size-1], last-size+1, last)
	}
}

// TestHistoryExpiry: the series of a thing gone (a tunnel deleted) stays
// while its window shows traffic and goes once it is all zeros; one
// whose thing is still there stays, idle or not.
func TestHistoryExpiry(t *testing.T) {
	c := newHistClock()
	c.tick([]reading{bytesOf("tunnel/a/to_user", 0), bytesOf("tunnel/idle/to_user", 0), bytesOf("tunnel/quiet/to_user", 0)})
	c.tick([]reading{bytesOf("tunnel/a/to_user", 100), bytesOf("tunnel/idle/to_user", 0), bytesOf("tunnel/quiet/to_user", 0)})
	// a and quiet deleted: quiet's window is all zeros, it goes at once.
	c.tick([]reading{bytesOf("tunnel/idle/to_user", 0)})
	if series(c.h, "tunnel/quiet/to_user") != nil {
		t.Error("a deleted tunnel without traffic in the window kept its series")
	}
	for range c.h.size - 2 {
		c.tick([]reading{bytesOf("tunnel/idle/to_user", 0)})
	}
	if s := series(c.h, "tunnel/a/to_user"); s == nil || s.Points[0] != 50 || s.Total != 100 {
		t.Fatalf("a deleted tunnel's series with its traffic still in the window: %+v", s)
	}
	c.tick([]reading{bytesOf("tunnel/idle/to_user", 0)})
	if s := series(c.h, "tunnel/a/to_user"); s != nil {
		t.Errorf("a deleted tunnel's series kept after its window is all zeros: %v", s.Points)
	}
	if s := series(c.h, "tunnel/idle/to_user"); s == nil || len(s.Points) != c.h.size {
		t.Errorf("an idle tunnel's series: %+v", s)
	}
}

// TestHistoryResets: a counter that goes back (an edge reload
// re-registering it, a peer removed and added again) restarted from
// zero: its rate is what it counted since, never negative.
func TestHistoryResets(t *testing.T) {
	c := newHistClock()
	for _, v := range []float64{1000, 5000, 200, 200, 600} {
		c.tick([]reading{bytesOf("l3/client/ann/rx", v), bytesOf("l3/rx", v)})
	}
	for _, key := range []string{"l3/client/ann/rx", "l3/rx"} {
		if s := series(c.h, key); s == nil || !slices.Equal(s.Points, []float64{2000, 100, 0, 200}) {
			t.Errorf("%s: %+v, want points 2000, 100, 0, 200", key, s)
		}
	}
	// A clock that goes back adds no point.
	c.now = c.now.Add(-time.Minute)
	c.tick([]reading{bytesOf("l3/rx", 0)})
	if s := series(c.h, "l3/rx"); len(s.Points) != 4 {
		t.Errorf("a sample back in time added a point: %v", s.Points)
	}
}

// TestHistoryPeerCap: the per-peer L3 series of a kind are capped: the
// busiest peers over the window keep theirs; thousands of idle clients
// add none over the cap; the totals and other kinds are not capped.
func TestHistoryPeerCap(t *testing.T) {
	c := newHistClock()
	c.h.peerCap = 3
	const many = 10000
	read := func(step int, busy map[string]float64) []reading {
		rs := []reading{bytesOf("l3/rx", float64(step)), bytesOf("l3/connector/site/rx", 0), bytesOf("tunnel/t/to_user", 0)}
		for i := range many {
			name := fmt.Sprintf("c%05d", i)
			rs = append(rs, bytesOf("l3/client/"+name+"/rx", float64(step)*busy[name]), bytesOf("l3/client/"+name+"/tx", 0))
		}
		return rs
	}
	clients := func() []string {
		var out []string
		for _, s := range c.h.snapshot().Series {
			if name, ok := strings.CutPrefix(s.Key, "l3/client/"); ok {
				if name, ok := strings.CutSuffix(name, "/rx"); ok {
					out = append(out, name)
				} else if series(c.h, "l3/client/"+strings.TrimSuffix(name, "/tx")+"/rx") == nil {
					t.Errorf("%s without its rx", s.Key)
				}
			}
		}
		return out
	}
	busy := map[string]float64{"c00007": 10, "c00500": 20, "c09999": 30, "c00001": 5}
	for step := range 5 {
		c.tick(read(step, busy))
		if n := len(c.h.series); n > 2*3+3 {
			t.Fatalf("step %d: %d series, want at most the rx and tx of the cap of 3 clients, and 3 others", step, n)
		}
	}
	if got, want := clients(), []string{"c00007", "c00500", "c09999"}; !slices.Equal(got, want) {
		t.Errorf("client series %v, want the 3 busiest %v", got, want)
	}
	for _, key := range []string{"l3/rx", "l3/connector/site/rx", "tunnel/t/to_user"} {
		if series(c.h, key) == nil {
			t.Errorf("no series %s", key)
		}
	}
	// A client that turns busier than one of them over the window takes
	// the place of the least busy.
	busy = map[string]float64{"c00007": 10, "c00500": 20, "c09999": 30, "c00002": 1000}
	base := map[string]float64{"c00007": 40, "c00500": 80, "c09999": 120}
	for step := 5; step < 7; step++ {
		rs := read(step, nil)
		for i, r := range rs {
			name, rx := strings.CutSuffix(strings.TrimPrefix(r.key, "l3/client/"), "/rx")
			if b, ok := busy[name]; ok && rx {
				rs[i].value = base[name] + float64(step-4)*b
			}
		}
		c.tick(rs)
	}
	if got, want := clients(), []string{"c00002", "c00500", "c09999"}; !slices.Equal(got, want) {
		t.Errorf("client series %v, want %v", got, want)
	}
	if n := len(c.h.series); n != 2*3+3 {
		t.Errorf("%d series, want the rx and tx of 3 clients, and 3 others", n)
	}
	// Its first point is its rate, not its total.
	if s := series(c.h, "l3/client/c00002/rx"); s == nil || s.Points[len(s.Points)-1] != 500 {
		t.Errorf("the newcomer's series: %+v, want its last point 500", s)
	}
}

// TestHistoryConnRate: a live connection's rate is its bytes both ways
// over the last step.
func TestHistoryConnRate(t *testing.T) {
	c := newHistClock()
	if (*history)(nil).connRate(1) != 0 {
		t.Error("a nil history has a rate")
	}
	c.tick(nil, edge.ConnInfo{ID: 1, BytesToOrigin: 100, BytesToUser: 100})
	c.tick(nil, edge.ConnInfo{ID: 1, BytesToOrigin: 300, BytesToUser: 900}, edge.ConnInfo{ID: 2, BytesToUser: 50})
	if r1, r2 := c.h.connRate(1), c.h.connRate(2); r1 != 500 || r2 != 25 {
		t.Errorf("rates %v and %v, want 500 and 25", r1, r2)
	}
	c.tick(nil)
	if r := c.h.connRate(1); r != 0 || len(c.h.conns) != 0 {
		t.Errorf("a connection gone: rate %v, %d kept", r, len(c.h.conns))
	}
}

// TestHistoryEndpoint: GET /v1/history of a running edge's serving part
// answers the history as JSON: the edge's traffic after a user's
// connection, a tunnel's and an L3 client's series, the drops and limits.
func TestHistoryEndpoint(t *testing.T) {
	defer func(s time.Duration) { historyStep = s }(historyStep)
	historyStep = 50 * time.Millisecond
	origin := namedOrigin(t, "A")
	p, wgPort := freeAddr(t), freePort(t, "udp")
	e := startReloadEnv(t, fmt.Sprintf(`bindings:
  - {listen: "tcp://%s", service: "tcp://%s"}
l3:
  listen: "127.0.0.1:%d"
  endpoint: "198.18.0.1:%d"
  pools: {ipv4: 198.18.96.0/20}
`, p, origin, wgPort, wgPort))
	if _, err := e.a.store.CreateTunnel("demo"); err != nil {
		t.Fatal(err)
	}
	tunnels, err := e.a.store.Mirror(e.a.ctx, e.a.onTunnel)
	if err != nil {
		t.Fatal(err)
	}
	e.a.tunnels.Store(tunnels)
	h := e.a.adminHandler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/l3/clients",
		strings.NewReader(fmt.Sprintf(`{"name":"ann","public_key":%q}`, mustKey(t).PublicKey().String()))))
	if rec.Code/100 != 2 {
		t.Fatalf("add an L3 client: %d %s", rec.Code, rec.Body)
	}
	e.a.startHistory(e.a.ctx, e.reg)

	// A user's connection through the binding: the origin says "A\n",
	// then echoes.
	c, err := net.DialTimeout("tcp", p, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := strings.Repeat("x", 10000)
	fmt.Fprint(c, msg)
	if _, err := io.ReadFull(c, make([]byte, 2+len(msg))); err != nil {
		t.Fatal(err)
	}

	var hist edgeapi.History
	var body string
	peak := func(key string) float64 {
		for _, s := range hist.Series {
			if s.Key == key {
				return slices.Max(append(s.Points, 0))
			}
		}
		return -1
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/history", nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("GET /v1/history: %d %s", rec.Code, rec.Body)
		}
		body = rec.Body.String()
		hist = edgeapi.History{}
		if err := json.Unmarshal(rec.Body.Bytes(), &hist); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		if peak("edge/to_origin") > 0 && peak("edge/to_user") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no traffic in the history after 5 s: %s", body)
		}
	}
	if hist.Step != 50*time.Millisecond || time.Since(hist.Now) > 5*time.Second {
		t.Errorf("step %v now %v", hist.Step, hist.Now)
	}
	for _, s := range hist.Series {
		if s.Key == "edge/to_origin" && (s.Total != float64(len(msg)) || s.Unit != "B/s") {
			t.Errorf("edge/to_origin: total %v unit %q, want %d B/s", s.Total, s.Unit, len(msg))
		}
	}
	for _, key := range []string{"tunnel/demo/to_origin", "tunnel/demo/to_user", "l3/rx", "l3/tx", "l3/client/ann/rx", "l3/client/ann/tx",
		"drop/l4/datagrams", "drop/l3/no_route", "drop/l3/wireguard_decrypt", "limit/user_connections/maxConnsPerSource",
		"limit/udp_flows/flow_limit", "limit/handshakes/maxHandshakes", "limit/auth_failures/bad_secret",
		"limit/streams/maxStreamsPerTunnel", "limit/l3_handshakes/over_budget"} {
		if peak(key) < 0 {
			t.Errorf("no series %s", key)
		}
	}
	// Some series, their newest points.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/history?key=edge/&key=l3/client/&points=2", nil))
	var some edgeapi.History
	if err := json.Unmarshal(rec.Body.Bytes(), &some); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/history?key=...: %d %s", rec.Code, rec.Body)
	}
	var keys []string
	for _, s := range some.Series {
		keys = append(keys, s.Key)
		if len(s.Points) > 2 {
			t.Errorf("%s: %d points, want at most 2", s.Key, len(s.Points))
		}
	}
	if want := []string{"edge/to_origin", "edge/to_user", "l3/client/ann/rx", "l3/client/ann/tx"}; !slices.Equal(keys, want) {
		t.Errorf("series of key=edge/&key=l3/client/: %v, want %v", keys, want)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/history?points=0", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "points") {
		t.Errorf("points=0: %d %s, want 400 naming points", rec.Code, rec.Body)
	}

	// The JSON keys are the stable interface.
	for _, key := range []string{`"step":50000000`, `"now":`, `"series":`, `"key":"edge/to_user"`, `"unit":"B/s"`, `"total":`, `"points":[`} {
		if !strings.Contains(body, key) {
			t.Errorf("history JSON lacks %s", key)
		}
	}
}

// TestHistoryXDP: with the pre-filter running, the history reads its
// drop verdicts (xdp/REASON), not its passes.
func TestHistoryXDP(t *testing.T) {
	f := loadPrefilter(t)
	a := &app{}
	if rs := a.historyReadings(prometheus.NewRegistry()); len(rs) != 0 {
		t.Fatalf("readings without a source: %v", rs)
	}
	a.xdp.Store(f)
	keys := map[string]bool{}
	for _, r := range a.historyReadings(prometheus.NewRegistry()) {
		keys[r.key] = true
		if r.unit != unitEvents {
			t.Errorf("%s in %s", r.key, r.unit)
		}
	}
	for r := range prefilter.NumReasons {
		key := "xdp/" + r.String()
		if keys[key] != r.Drop() {
			t.Errorf("%s read: %v, want %v", key, keys[key], r.Drop())
		}
	}
}

// snapshot is the whole history, as GET /v1/history answers it.
func (h *history) snapshot() edgeapi.History { return h.query(nil, 0) }
