// Package cli holds what the edge and connector binaries share: logging
// set-up, the metrics and readiness endpoint, signal handling, and writing
// files that hold keys ([WriteFile]).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/onramp-net/onramp/internal/connlimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LogFlags are the --log-format and --log-level flags.
type LogFlags struct {
	Format string // text or json
	Level  string // debug, info, warn, error
}

// Logger builds the process logger writing to w.
func (f LogFlags) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.Level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(f.Format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", f.Format)
}

// NewRegistry returns a Prometheus registry with the Go and process
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Bounds of the metrics address (ServeMetrics). Prometheus keeps one
// connection per target, and a few servers (an HA pair, a curl) scrape
// one process: 16 per source and 64 in all leave room for them and keep
// a stranger's idle sockets to a few MiB. Each connection also has 5 s to
// send its request head and is closed after 2 minutes idle.
const (
	MetricsMaxConns          = 64
	MetricsMaxConnsPerSource = 16
)

// ServeMetrics serves /metrics and, if ready is not nil, /ready (200 with
// "ready: " while ready() is true, else 503 with "not ready: ", each
// followed by what detail() says of the state, if detail is not nil) on addr until
// ctx is done. It returns once the listener is bound, so a bad address is
// reported at start-up. With ONRAMP_PPROF=1 in the environment it also
// serves Go's profiler under /debug/pprof/ (for profiling a live edge or
// connector; the metrics address should then not be public).
func ServeMetrics(ctx context.Context, log *slog.Logger, addr string, reg *prometheus.Registry, ready func() bool, detail func() string) error {
	return ServeMetricsWith(ctx, log, addr, reg, ready, detail, nil)
}

// ServeMetricsWith is [ServeMetrics] with more handlers on the same
// listener, by pattern (e.g. "GET /status").
func ServeMetricsWith(ctx context.Context, log *slog.Logger, addr string, reg *prometheus.Registry, ready func() bool, detail func() string,
	handlers map[string]http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	refused := connlimit.NewRefused("onramp_metrics_connections_refused_total",
		"Connections to the metrics address closed at accept, by the limit that refused them (maxConns, maxConnsPerSource).")
	if err := reg.Register(refused); err != nil {
		_ = ln.Close()
		return fmt.Errorf("metrics listener: %w", err)
	}
	ln = connlimit.New(ln, connlimit.Config{Max: MetricsMaxConns, PerSource: MetricsMaxConnsPerSource, Refused: refused, Log: log, Name: "metrics"})
	mux := http.NewServeMux()
	// No cap on the gathers in flight: it would be held while an answer
	// is written, so a few clients that never read would keep Prometheus
	// out. The connection counts bound them instead.
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if ready != nil {
		mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
			ok := ready()
			var d string
			if detail != nil {
				d = detail()
			}
			if ok {
				fmt.Fprintln(w, strings.TrimSuffix("ready: "+d, ": "))
				return
			}
			http.Error(w, strings.TrimSuffix("not ready: "+d, ": "), http.StatusServiceUnavailable)
		})
	}
	for pattern, h := range handlers {
		mux.Handle(pattern, h)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	if os.Getenv("ONRAMP_PPROF") == "1" {
		srv.WriteTimeout = 0 // a CPU profile or trace takes as long as its ?seconds=
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		log.Warn("profiler on: /debug/pprof/ on the metrics address (ONRAMP_PPROF=1)", "addr", ln.Addr())
	}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return nil
}

// Fatal prints err the way both binaries end on a fatal error.
func Fatal(prog string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
	os.Exit(1)
}
