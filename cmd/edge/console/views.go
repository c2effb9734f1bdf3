package console

// The pages that show the edge (overview, tunnels, L3) and the JSON the
// page script polls to keep them live (/api/...). The actions are in
// actions.go.

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
)

// funcs are the templates' helpers. The page script (static/console.js)
// formats the live values the same way.
var funcs = template.FuncMap{
	"bytes":    humanBytes,
	"rate":     humanRate,
	"ago":      ago,
	"uptime":   uptime,
	"path":     url.PathEscape,
	"join":     strings.Join,
	"prefixes": joinPrefixes,
	"addrs":    addrs,
	"short":    short,
	"section":  section,
	"plural":   plural,
	"total":    total,
	"list":     func(v ...any) []any { return v },
	"recent":   func(now, t time.Time) bool { return !t.IsZero() && now.Sub(t) < recentHandshake },
}

// recentHandshake is how recent a WireGuard handshake makes a peer count
// as connected: sessions last at most that long unrenewed.
const recentHandshake = 3 * time.Minute

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /tunnels", s.tunnels)
	mux.HandleFunc("GET /l3", s.l3)
	mux.HandleFunc("GET /l3/clients/{name}/config", s.l3Config("client"))
	mux.HandleFunc("GET /l3/connectors/{name}/config", s.l3Config("connector"))
	mux.HandleFunc("GET /api/status", s.apiStatus)
	mux.HandleFunc("GET /api/history", s.apiHistory)
	mux.HandleFunc("GET /api/l3", s.apiL3)
	s.actionRoutes(mux)
}

// Counter is a row of the overview's limits or drops table: a history
// series' total and its rate in the last step.
type Counter struct {
	Key   string
	Total float64
	Rate  float64
	Unit  string
}

// overviewData is what the overview shows.
type overviewData struct {
	St          *edgeapi.Status
	Conns       int
	Limits      []Counter
	Drops       []Counter
	HistoryErr  string
	L3Connected int
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	st, err := s.opts.Backend.Status()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := overviewData{St: st}
	for _, t := range st.Tunnels {
		d.Conns += len(t.Connections)
	}
	for _, c := range st.L3.Connectors {
		if !c.LastHandshake.IsZero() && st.Edge.Now.Sub(c.LastHandshake) < recentHandshake {
			d.L3Connected++
		}
	}
	if h, err := s.opts.Backend.History("limit/", "drop/", "xdp/"); err != nil {
		d.HistoryErr = err.Error()
	} else {
		d.Limits, d.Drops = counters(h)
	}
	s.render(w, r, http.StatusOK, "overview", "Overview", d)
}

// counters are the history's limit/... series and its drop/... and
// xdp/... series that counted something, in key order. The edge keeps a
// series for every reason it knows; those still at zero are left out.
func counters(h *edgeapi.History) (limits, drops []Counter) {
	for _, sr := range h.Series {
		c := Counter{Key: sr.Key, Total: sr.Total, Unit: sr.Unit}
		if n := len(sr.Points); n > 0 {
			c.Rate = sr.Points[n-1]
		}
		if c.Total == 0 && c.Rate == 0 {
			continue
		}
		switch {
		case strings.HasPrefix(sr.Key, "limit/"):
			limits = append(limits, c)
		case strings.HasPrefix(sr.Key, "drop/"), strings.HasPrefix(sr.Key, "xdp/"):
			drops = append(drops, c)
		}
	}
	return limits, drops
}

// selfName is the name of the edge that answered: as the registry's
// heartbeats have it, else the first address it advertises ("" if none).
func selfName(st *edgeapi.Status) string {
	for _, m := range st.Edges {
		if m.Self {
			return m.Name
		}
	}
	if len(st.Edge.Advertise) > 0 {
		return st.Edge.Advertise[0]
	}
	return ""
}

// tunnelsData is what the tunnels page shows.
type tunnelsData struct {
	St   *edgeapi.Status
	Self string
	// Err is the error of the action that led here (with the page's
	// status); Done what it did.
	Err, Done string
}

func (s *Server) tunnels(w http.ResponseWriter, r *http.Request) {
	d := tunnelsData{}
	if n := r.URL.Query().Get("deleted"); n != "" {
		d.Done = "Tunnel " + n + " deleted: its token no longer works and its connections were cut."
	}
	s.tunnelsPage(w, r, http.StatusOK, d)
}

// tunnelsPage renders the tunnels page with d's message, answering with
// status.
func (s *Server) tunnelsPage(w http.ResponseWriter, r *http.Request, status int, d tunnelsData) {
	st, err := s.opts.Backend.Status()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.St, d.Self = st, selfName(st)
	s.render(w, r, status, "tunnels", "Tunnels", d)
}

// l3Data is what the L3 page shows.
type l3Data struct {
	St         *edgeapi.Status
	Clients    []edgeapi.L3Peer
	Connectors []edgeapi.L3Peer
	Err, Done  string
}

func (s *Server) l3(w http.ResponseWriter, r *http.Request) {
	d := l3Data{}
	if n := r.URL.Query().Get("removed"); n != "" {
		d.Done = n + " removed: its key no longer works and its sessions were cut."
	}
	s.l3Page(w, r, http.StatusOK, d)
}

// l3Page renders the L3 page with d's message, answering with status.
func (s *Server) l3Page(w http.ResponseWriter, r *http.Request, status int, d l3Data) {
	st, err := s.opts.Backend.Status()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.St = st
	if d.Clients, err = s.opts.Backend.L3Peers("client"); err != nil {
		s.fail(w, r, err)
		return
	}
	if d.Connectors, err = s.opts.Backend.L3Peers("connector"); err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, status, "l3", "L3 on-ramp", d)
}

// configData is a peer's file as the config page shows it.
type configData struct {
	Kind, Name, Text string
}

// l3Config is GET /l3/KINDs/NAME/config: the peer's file again.
func (s *Server) l3Config(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		data, err := s.opts.Backend.L3Config(kind, name)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.render(w, r, http.StatusOK, "config", "L3 "+kind+" "+name, configData{Kind: kind, Name: name, Text: string(data)})
	}
}

// errorData is the error page's.
type errorData struct {
	Status int
	Text   string
	Msg    string
}

// fail answers err as a page with the status the admin API gave it.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	st := statusOf(err)
	s.render(w, r, st, "error", "Error", errorData{Status: st, Text: http.StatusText(st), Msg: err.Error()})
}

// statusOf is the HTTP status of a Backend error: the admin API's (the
// error has an HTTPStatus method when it came from there), else 500.
func statusOf(err error) int {
	var se interface{ HTTPStatus() int }
	if errors.As(err, &se) {
		if st := se.HTTPStatus(); st >= 400 && st <= 599 {
			return st
		}
	}
	return http.StatusInternalServerError
}

// l3Lists is GET /api/l3.
type l3Lists struct {
	Clients    []edgeapi.L3Peer `json:"clients"`
	Connectors []edgeapi.L3Peer `json:"connectors"`
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.opts.Backend.Status()
	s.answerJSON(w, st, err)
}

// apiHistory is GET /api/history[?key=PREFIX...]: the history, or only
// its series whose keys start with one of the prefixes (a page asks for
// what it draws: the per-peer L3 series alone can be hundreds).
func (s *Server) apiHistory(w http.ResponseWriter, r *http.Request) {
	prefixes := r.URL.Query()["key"]
	prefixes = slices.DeleteFunc(prefixes[:min(len(prefixes), maxHistoryKeys)], func(p string) bool { return p == "" })
	if len(prefixes) == 0 && len(r.URL.Query()["key"]) > 0 {
		s.answerJSON(w, &edgeapi.History{Series: []edgeapi.Series{}}, nil) // only empty prefixes: nothing
		return
	}
	h, err := s.opts.Backend.History(prefixes...)
	s.answerJSON(w, h, err)
}

// maxHistoryKeys bounds the prefixes of one /api/history request.
const maxHistoryKeys = 64

func (s *Server) apiL3(w http.ResponseWriter, r *http.Request) {
	var out l3Lists
	var err error
	if out.Clients, err = s.opts.Backend.L3Peers("client"); err == nil {
		out.Connectors, err = s.opts.Backend.L3Peers("connector")
	}
	// Lists, never null: the script ranges over them.
	out.Clients, out.Connectors = nonNil(out.Clients), nonNil(out.Connectors)
	s.answerJSON(w, out, err)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// answerJSON writes v, or err as edgeapi.Error with its status.
func (s *Server) answerJSON(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	status := http.StatusOK
	if err != nil {
		status, v = statusOf(err), edgeapi.Error{Error: err.Error()}
	}
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Debug("console: json", "err", err)
	}
}

// section is the menu entry a page belongs to.
func section(page string) string {
	switch page {
	case "tunnels", "token":
		return "tunnels"
	case "l3", "client", "config":
		return "l3"
	case "overview":
		return "overview"
	}
	return ""
}

// humanBytes is a byte count with a binary unit: 512 B, 1.5 KiB, 3.2 GiB.
// It takes the integer and float types the API's fields have.
func humanBytes(v any) string {
	return scaled(number(v), "B")
}

// humanRate is a rate in its unit: bytes/s scaled (12.5 KiB/s), events/s
// as they are (0.2/s).
func humanRate(v any, unit string) string {
	f := number(v)
	if unit == "1/s" {
		return trimFloat(f) + "/s"
	}
	return scaled(f, "B") + "/s"
}

// total is a counter's total: bytes scaled for a B/s series, else a count.
func total(v float64, unit string) string {
	if unit == "B/s" {
		return humanBytes(v)
	}
	return trimFloat(v)
}

func scaled(f float64, unit string) string {
	const units = "KMGTPE"
	if math.Abs(f) < 1024 {
		return trimFloat(f) + " " + unit
	}
	i := -1
	for math.Abs(f) >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return trimFloat(f) + " " + units[i:i+1] + "i" + unit
}

// trimFloat prints f with at most one decimal (none from 100 up).
func trimFloat(f float64) string {
	if f == math.Trunc(f) || math.Abs(f) >= 100 {
		return strconv.FormatFloat(math.Round(f), 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}

func number(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case uint64:
		return float64(n)
	case int:
		return float64(n)
	case int64:
		return float64(n)
	}
	return math.NaN()
}

// ago is how long before now t was, roughly: "12s ago", "3m ago",
// "2h ago", "4d ago"; "never" for the zero time.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	return roughly(d) + " ago"
}

// uptime is how long the edge has run since started: "3h 12m".
func uptime(now, started time.Time) string {
	if started.IsZero() {
		return "unknown"
	}
	d := now.Sub(started)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func roughly(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours())/24)
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// addrs is a peer's addresses, the valid ones.
func addrs(as ...netip.Addr) string {
	var s []string
	for _, a := range as {
		if a.IsValid() {
			s = append(s, a.String())
		}
	}
	return strings.Join(s, ", ")
}

// short is the start of a long hex id, as the CLI shows connectors.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// plural is "1 connection", "2 connections".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
