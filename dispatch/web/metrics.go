package web

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/superhero-cluster/superhero/internal/metrics"
)

// Metrics is the web server's part of dispatch's Prometheus metrics: its
// HTTP requests by route and status, and the WebSocket subscribers of its
// hub. Set it as Config.Metrics to count requests and serve GET /metrics.
type Metrics struct {
	handler   http.Handler
	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
}

// NewMetrics registers the web metrics in reg, reading hub's subscribers
// at scrape time, and returns them for Config.Metrics; /metrics then
// serves everything reg holds. Collection errors are logged to log.
func NewMetrics(reg *metrics.Registry, hub *Hub, log *slog.Logger) (*Metrics, error) {
	m := &Metrics{
		handler: reg.Handler(log),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "superhero_http_requests_total",
			Help: "HTTP requests answered, by method, route (the route's pattern, e.g. /api/superheroes/:id; unmatched when none matched or the request was refused before routing) and status code.",
		}, []string{"method", "route", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "superhero_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by method and route; WebSocket connections are left out.",
			Buckets: metrics.LatencyBuckets,
		}, []string{"method", "route"}),
	}
	err := reg.Register(m.requests, m.durations,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "superhero_websocket_subscribers",
			Help: "Open WebSocket feeds of the live page.",
		}, func() float64 { return float64(hub.Subscribers()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "superhero_websocket_dropped_subscribers_total",
			Help: "WebSocket feeds dropped because the client fell too far behind (it reconnects and starts over from a snapshot).",
		}, func() float64 { return float64(hub.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "superhero_websocket_snapshot_reads_total",
			Help: "Snapshots read from dispatch's replica and encoded for the WebSocket feed; pages connecting together, or while little changed, share one.",
		}, func() float64 { reads, _ := hub.SnapshotStats(); return float64(reads) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "superhero_websocket_snapshots_sent_total",
			Help: "WebSocket feeds started from a snapshot (shared or read for them).",
		}, func() float64 { _, sent := hub.SnapshotStats(); return float64(sent) }),
	)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// instrument makes e count every request, as the first of its
// middleware, and serve GET /metrics. It does nothing when m is nil.
func (m *Metrics) instrument(e *echo.Echo) {
	if m == nil {
		return
	}
	routes := sync.OnceValue(func() map[string]bool {
		// Read at the first request: every route is registered by then.
		set := map[string]bool{}
		for _, r := range e.Routes() {
			set[r.Path] = true
		}
		return set
	})
	e.Pre(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err) // so the status counted is the one sent
			}
			// The router has run: Path is the route's pattern, bounded
			// by the routes registered, unlike the request's path.
			route := c.Path()
			if !routes()[route] {
				route = "unmatched"
			}
			method, status := methodLabel(c.Request().Method), c.Response().Status
			m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
			if status != http.StatusSwitchingProtocols {
				m.durations.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
			}
			return nil
		}
	})
	e.Match([]string{http.MethodGet, http.MethodHead}, "/metrics", echo.WrapHandler(m.handler))
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
