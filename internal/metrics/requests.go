package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Requests times the requests a node sends to the cities and waits for
// (dispatch's status probe, assignments, bombs, replica reads), as the
// histogram superhero_city_request_duration_seconds{kind,city,outcome}.
// Register it, then call Observe after each request. It is safe for
// concurrent use.
type Requests struct {
	hist *prometheus.HistogramVec
}

// LatencyBuckets are the histogram buckets of request durations, in
// seconds: from a loopback round trip (about 0.2 ms) past the 1 s a
// request to a city or a command may take by default.
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// NewRequests returns the request histogram.
func NewRequests() *Requests {
	return &Requests{hist: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "superhero_city_request_duration_seconds",
		Help:    "Requests to a city and the wait for its answer, by message kind (GetDigest is the status probe; AssignHero, Bomb, GetState), city and outcome (ok, timeout: no answer in time, error: refused, unreachable or down).",
		Buckets: LatencyBuckets,
	}, []string{"kind", "city", "outcome"})}
}

// Observe records one request of kind to city that took took and ended
// with err.
func (r *Requests) Observe(kind, city string, took time.Duration, err error) {
	r.hist.WithLabelValues(kind, city, Outcome(err)).Observe(took.Seconds())
}

// Outcome names how a request ended: ok, timeout or error.
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "error"
	}
}

// Describe implements prometheus.Collector.
func (r *Requests) Describe(ch chan<- *prometheus.Desc) { r.hist.Describe(ch) }

// Collect implements prometheus.Collector.
func (r *Requests) Collect(ch chan<- prometheus.Metric) { r.hist.Collect(ch) }
