// Package metrics holds what dispatch and the cities share to expose
// Prometheus metrics: a per-process registry whose metrics all carry the
// node's name, the /metrics handler and a small server for it, and
// collectors that read counters the nodes already keep (the replication
// Totals, the supervisors' restart counts) at scrape time, so no hot path
// counts anything for the metrics alone. Dispatch's own metrics (city
// status, requests to cities, HTTP, WebSocket subscribers) live beside the
// code they measure, in dispatch/backend and dispatch/web.
//
// Every metric is named superhero_*, counters end in _total and durations
// are in seconds. The metrics an operator should watch are listed in the
// README's Metrics section.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is one node's metrics. Everything registered in it carries the
// label node with the node's name. It is not Prometheus's global default
// registry, so tests can run several nodes in one process.
type Registry struct {
	reg *prometheus.Registry
	// labelled registers into reg with the node label added.
	labelled prometheus.Registerer
}

// NewRegistry returns a registry for the named node, holding the Go
// runtime's and the process's metrics (go_*, process_*).
func NewRegistry(node string) *Registry {
	reg := prometheus.NewRegistry()
	r := &Registry{reg: reg, labelled: prometheus.WrapRegistererWith(prometheus.Labels{"node": node}, reg)}
	r.labelled.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return r
}

// Register adds collectors; it fails if one collides with a metric already
// registered.
func (r *Registry) Register(cs ...prometheus.Collector) error {
	var errs []error
	for _, c := range cs {
		if err := r.labelled.Register(c); err != nil {
			errs = append(errs, fmt.Errorf("metrics: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Handler serves the registry's metrics in the Prometheus text format (or
// OpenMetrics, or protobuf, when the scraper asks). A collector that fails
// is logged to log and left out; the rest are served.
func (r *Registry) Handler(log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{log},
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       10 * time.Second,
	})
}

// promLogger hands promhttp's error lines to slog.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn("metrics: " + fmt.Sprint(v...)) }

// Endpoint is a small HTTP server answering GET /metrics (and nothing
// else, 404), for a node without a web server of its own: the cities.
type Endpoint struct {
	srv  *http.Server
	ln   net.Listener
	log  *slog.Logger
	done chan struct{}
}

// Listen opens addr (host:port; port 0 picks a free one) and serves r's
// metrics on it at /metrics until Close. It fails at once when addr cannot
// be listened on, so a node started with a taken port says so before it
// joins the cluster.
func Listen(addr string, r *Registry, log *slog.Logger) (*Endpoint, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.Handler(log))
	return serve(addr, mux, "/metrics", log)
}

// ListenProfiles opens addr and serves Go's runtime profiles (net/http/pprof)
// on it at /debug/pprof/ until Close: what a node spends its CPU and memory
// on, for `go tool pprof`. Profiles show the program's inner workings, so
// the flags that turn it on say to keep it on loopback.
func ListenProfiles(addr string, log *slog.Logger) (*Endpoint, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return serve(addr, mux, "/debug/pprof/", log)
}

func serve(addr string, h http.Handler, path string, log *slog.Logger) (*Endpoint, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen: %w", err)
	}
	e := &Endpoint{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       10 * time.Second,
			// A CPU profile or trace takes as long as it was asked to.
			WriteTimeout: 5 * time.Minute,
			IdleTimeout:  2 * time.Minute,
			ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		ln:   ln,
		log:  log,
		done: make(chan struct{}),
	}
	go func() {
		defer close(e.done)
		if err := e.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("listening", "url", "http://"+ln.Addr().String()+path)
	return e, nil
}

// Addr returns the address listened on.
func (e *Endpoint) Addr() string { return e.ln.Addr().String() }

// Close stops the server, letting scrapes in flight finish within 2 s.
func (e *Endpoint) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.log.Warn("metrics server shutdown", "err", err)
	}
	<-e.done
}

// Restarts returns a counter, superhero_supervisor_restarts_total, read
// from n at scrape time: how often the named supervisor restarted a
// crashed child (see supervise.Config.Restarts).
func Restarts(supervisor string, n *atomic.Uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "superhero_supervisor_restarts_total",
		Help:        "Restarts of a crashed actor by its supervisor, since the process started. A city's state actor restarts empty after a bomb; dispatch's replica actor only after a bug.",
		ConstLabels: prometheus.Labels{"supervisor": supervisor},
	}, func() float64 { return float64(n.Load()) })
}
