package backend

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

// TimedCities is Cities that times every request to a city: Observe gets
// the message's kind (its protobuf name: GetDigest for the status probe,
// AssignHero, Bomb, GetState), the city, how long the request took and its
// error. Dispatch hands Observe to metrics.Requests.
type TimedCities struct {
	Cities
	Observe func(kind, city string, took time.Duration, err error)
}

// Request implements Cities.
func (t TimedCities) Request(ctx context.Context, city crdt.Location, msg proto.Message) (proto.Message, error) {
	start := time.Now()
	res, err := t.Cities.Request(ctx, city, msg)
	t.Observe(string(msg.ProtoReflect().Descriptor().Name()), string(city), time.Since(start), err)
	return res, err
}

// StatusMetrics returns a collector of the cluster status as dispatch last
// probed it (every StatusInterval, 200 ms by default), read at scrape time
// from b's Cluster, which sends nothing: per city whether it is up, is
// restarting, how long it has lagged, its heroes and incarnation; whether
// the cities are in sync; whether dispatch is ready.
func StatusMetrics(b interface {
	Cluster(context.Context) service.ClusterStatus
}) prometheus.Collector {
	return statusCollector{b.Cluster}
}

type statusCollector struct {
	status func(context.Context) service.ClusterStatus
}

var (
	cityUpDesc = prometheus.NewDesc("superhero_city_up",
		"1 when the city answered dispatch's latest status probe, else 0.", []string{"city"}, nil)
	cityRestartingDesc = prometheus.NewDesc("superhero_city_restarting",
		"1 while the city restarts after a crash (a bomb) and until its replica is in sync again, else 0.", []string{"city"}, nil)
	cityLagDesc = prometheus.NewDesc("superhero_city_lag_seconds",
		"How long the city's replica has differed from the replica most cities share (0 when in sync), as dispatch's status probe sees it: a lag that keeps rising is a city that does not catch up.", []string{"city"}, nil)
	cityHeroesDesc = prometheus.NewDesc("superhero_city_heroes",
		"Heroes in the city's replica at dispatch's latest status probe (0 when down).", []string{"city"}, nil)
	cityIncarnationDesc = prometheus.NewDesc("superhero_city_incarnation",
		"Starts of the city's state actor (1 for the first); it grows with each restart.", []string{"city"}, nil)
	inSyncDesc = prometheus.NewDesc("superhero_cluster_in_sync",
		"1 when at least one city is up and every city that is up holds the same replica, else 0.", nil, nil)
	readyDesc = prometheus.NewDesc("superhero_dispatch_ready",
		"1 when dispatch has caught up with the cities and answers for them, 0 while it catches up after a start or rejoin (it answers 503).", nil, nil)
)

func (statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cityUpDesc, cityRestartingDesc, cityLagDesc, cityHeroesDesc, cityIncarnationDesc, inSyncDesc, readyDesc} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status(context.Background())
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, city := range st.Cities {
		name := string(city.Name)
		gauge(cityUpDesc, bit(city.Up), name)
		gauge(cityRestartingDesc, bit(city.Restarting), name)
		gauge(cityLagDesc, city.Lag.Seconds(), name)
		gauge(cityHeroesDesc, float64(city.Heroes), name)
		gauge(cityIncarnationDesc, float64(city.Incarnation), name)
	}
	gauge(inSyncDesc, bit(st.InSync))
	gauge(readyDesc, bit(st.Ready))
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
