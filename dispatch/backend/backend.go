package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/messages"
)

// Cities reaches the city grains of the cluster by request: assignments,
// bombs, status probes and replica reads. Replication does not go through
// it (see Replica).
type Cities interface {
	// Up returns the cities currently in the cluster topology, sorted.
	Up() []crdt.Location
	// Request sends msg to the city's grain and returns its reply. It never
	// waits past ctx's deadline.
	Request(ctx context.Context, city crdt.Location, msg proto.Message) (proto.Message, error)
}

// request sends msg and checks the reply's type.
func request[T proto.Message](ctx context.Context, c Cities, city crdt.Location, msg proto.Message) (T, error) {
	var zero T
	res, err := c.Request(ctx, city, msg)
	if err != nil {
		return zero, err
	}
	v, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("backend: %s answered %T to %T", city, res, msg)
	}
	return v, nil
}

// Config configures the Backend. Zero fields take the documented defaults.
type Config struct {
	// Cities are the cities known from the start. More are learned from
	// the cluster topology. Default crdt.DefaultCities.
	Cities []crdt.Location
	// StatusInterval is how often city status is probed for the pages.
	// Default 200 ms.
	StatusInterval time.Duration
	// StatusTimeout bounds one city's status request while every city
	// answers in time (see StatusPatience). Default 200 ms.
	StatusTimeout time.Duration
	// StatusMisses is how many status requests in a row a city must leave
	// unanswered within their deadline before it is shown down. One late
	// answer from a city starved of CPU for a moment (a crowd of pages
	// loading on the same machine) is not a dead city; a request that
	// fails outright (the node is gone) shows it down at once. A killed
	// city is shown down within StatusMisses × StatusInterval plus the
	// growing deadlines of StatusPatience. Default 2.
	StatusMisses int
	// StatusPatience is how many times longer than StatusTimeout a status
	// request may wait at most. As memberlist's Lifeguard scales its probe
	// timeout by its own health, dispatch treats a city that was up and
	// missed its deadline as a hint that dispatch itself may be the slow
	// one (busy writing snapshots to a crowd of pages on the same cores):
	// the next round waits one StatusTimeout longer, up to StatusPatience
	// × StatusTimeout, and each round in which every city that was up
	// answers takes one back. A dead city still misses every deadline, so it is
	// shown down after StatusMisses rounds, about StatusTimeout later per
	// round than with fixed deadlines. Default 3; 1 keeps deadlines fixed.
	StatusPatience int
	// Seed seeds random choices (which city to bomb).
	Seed uint64
	// Logger receives log lines. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if len(c.Cities) == 0 {
		c.Cities = crdt.DefaultCities
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = 200 * time.Millisecond
	}
	if c.StatusTimeout <= 0 {
		c.StatusTimeout = 200 * time.Millisecond
	}
	if c.StatusMisses <= 0 {
		c.StatusMisses = 2
	}
	if c.StatusPatience <= 0 {
		c.StatusPatience = 3
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Backend implements service.Backend: commands and reads go to dispatch's
// replica actor (Replica), assignments, bombs and city reads to the cities
// by request; a status loop probes the cities for the pages. Each job keeps
// its own state: the replica actor its replica, reach which cities answer,
// status the page's bookkeeping, last the latest status (read without
// locks).
type Backend struct {
	cfg     Config
	replica *Replica
	cities  Cities
	pub     service.Publisher
	log     *slog.Logger

	reach  reachability
	status statusTracker
	// patience is the current status deadline, in StatusTimeouts (1 to
	// StatusPatience).
	patience atomic.Int64
	last     atomic.Pointer[service.ClusterStatus]

	rngMu sync.Mutex
	rng   *rand.Rand

	// reads shares a city's replica read among its concurrent readers.
	reads singleflight.Group
}

// ShowRestart is how long a restarted city is reported as restarting at
// least, so that people watching the page see it happen.
const ShowRestart = 1500 * time.Millisecond

var _ service.Backend = (*Backend)(nil)

// New returns a Backend. Call Run to start its status loop.
func New(cfg Config, replica *Replica, cities Cities, pub service.Publisher) *Backend {
	cfg = cfg.withDefaults()
	b := &Backend{
		cfg:     cfg,
		replica: replica,
		cities:  cities,
		pub:     pub,
		log:     cfg.Logger.With("actor", "backend"),
		reach:   reachability{cities: cities, known: map[crdt.Location]bool{}, unreachable: map[crdt.Location]bool{}, misses: map[crdt.Location]int{}},
		status:  newStatusTracker(cfg.Logger.With("actor", "status")),
		rng:     rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
	}
	b.patience.Store(1)
	for _, c := range cfg.Cities {
		b.reach.known[c] = true
	}
	initial := service.ClusterStatus{}
	for _, c := range b.reach.knownCities() {
		initial.Cities = append(initial.Cities, service.CityStatus{Name: c})
	}
	b.last.Store(&initial)
	return b
}

// Run probes the cities' status for the pages until ctx ends, publishing
// a cluster event when it changes.
func (b *Backend) Run(ctx context.Context) {
	t := time.NewTicker(b.cfg.StatusInterval)
	defer t.Stop()
	for {
		b.refreshStatus(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Heroes implements service.Backend.
func (b *Backend) Heroes() ([]crdt.Hero, error) { return b.replica.Heroes() }

// Ready implements service.Backend.
func (b *Backend) Ready() bool { return b.replica.Ready() }

// Hero implements service.Backend.
func (b *Backend) Hero(id uuid.UUID) (crdt.Hero, error) { return b.replica.Lookup(id) }

// Create implements service.Backend: the hero is acknowledged once it is in
// dispatch's replica; the engine pushes it to the cities at once.
func (b *Backend) Create(_ context.Context, name string) (crdt.Hero, error) {
	return b.replica.Create(name)
}

// Delete implements service.Backend.
func (b *Backend) Delete(_ context.Context, id uuid.UUID) error { return b.replica.Delete(id) }

// Assign implements service.Backend. Home is applied by dispatch; a city
// applies its own assignment and answers with the result, which dispatch
// merges, so an assignment to a city is on two replicas when answered.
func (b *Backend) Assign(ctx context.Context, id uuid.UUID, to crdt.Location) (crdt.Hero, error) {
	if to == crdt.Home {
		return b.replica.AssignHome(id)
	}
	if err := b.checkCity(to); err != nil {
		return crdt.Hero{}, err
	}
	hint, err := b.replica.AssignContext(id)
	if err != nil {
		return crdt.Hero{}, err
	}
	reply, err := request[*messages.AssignReply](ctx, b.cities, to, &messages.AssignHero{HeroId: id.String(), Context: hint})
	b.reach.set(to, err == nil)
	if err != nil {
		return crdt.Hero{}, fmt.Errorf("%w: %s: %w", service.ErrCityDown, to, err)
	}
	h, err := b.replica.AssignReply(string(to), id, reply)
	if errors.Is(err, crdt.ErrClockOffset) {
		// The city's clock is too far ahead: its write stays there and
		// shows as divergence, never merged here.
		b.log.Warn("assign reply refused", "city", to, "err", err)
	}
	return h, err
}

// Bomb implements service.Backend.
func (b *Backend) Bomb(ctx context.Context, c crdt.Location) (crdt.Location, error) {
	if c == "" {
		up := b.reach.reachable()
		if len(up) == 0 {
			return "", fmt.Errorf("%w: no city is up", service.ErrCityDown)
		}
		b.rngMu.Lock()
		c = up[b.rng.IntN(len(up))]
		b.rngMu.Unlock()
	}
	if err := b.checkCity(c); err != nil {
		return "", err
	}
	_, err := request[*messages.BombAck](ctx, b.cities, c, &messages.Bomb{})
	b.reach.set(c, err == nil)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", service.ErrCityDown, c, err)
	}
	b.status.bombed(c, time.Now())
	// The web layer flashes "<city> has been destroyed" to every page.
	b.log.Warn("city bombed", "city", c)
	return c, nil
}

// CityHeroes implements service.Backend. A failed read is the reader's
// error: it never marks the city down (only the status probe decides).
func (b *Backend) CityHeroes(ctx context.Context, c crdt.Location) ([]crdt.Hero, error) {
	if err := b.checkCity(c); err != nil {
		return nil, err
	}
	// Concurrent readers of a city share one read of its replica: sixty
	// page or API readers of a city of 17,000 heroes cost the city one
	// GetState, not sixty of 4 MB each. The shared read has its own
	// deadline, so one reader giving up does not fail the others; a read
	// that fails answers 503 to its readers and never marks the city down
	// (only the status probe does).
	ch := b.reads.DoChan(string(c), func() (any, error) {
		rctx, cancel := context.WithTimeout(context.Background(), CityReadTimeout)
		defer cancel()
		return b.readCity(rctx, c)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		// Shared by every reader of this flight: each gets its own copy.
		return slices.Clone(r.Val.([]crdt.Hero)), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: %w", service.ErrCityDown, c, ctx.Err())
	}
}

// CityReadTimeout bounds one read of a city's replica shared by its
// concurrent readers.
const CityReadTimeout = 2 * time.Second

// readCity reads a city's live heroes from its replica.
func (b *Backend) readCity(ctx context.Context, c crdt.Location) ([]crdt.Hero, error) {
	st, err := request[*messages.State](ctx, b.cities, c, &messages.GetState{})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", service.ErrCityDown, c, err)
	}
	var d crdt.Delta
	if err := d.UnmarshalBinary(st.Delta); err != nil {
		return nil, fmt.Errorf("state of %s: %w", c, err)
	}
	live := d.Heroes[:0]
	for _, h := range d.Heroes {
		if !h.Dead {
			live = append(live, h)
		}
	}
	return live, nil
}

// Cluster implements service.Backend: the status last probed. It sends no
// request and changes no bookkeeping.
func (b *Backend) Cluster(context.Context) service.ClusterStatus { return b.LastStatus() }

// LastStatus returns the most recent city status.
func (b *Backend) LastStatus() service.ClusterStatus {
	cs := *b.last.Load()
	cs.Cities = slices.Clone(cs.Cities)
	return cs
}

// probe asks every known city that is up for its digest, in parallel, each
// within the current status deadline (see Config.StatusPatience), and
// annotates the answers for the pages.
func (b *Backend) probe(ctx context.Context) service.ClusterStatus {
	up := b.reach.up()
	wasReachable := b.reach.reachable()
	names := b.reach.knownCities()
	cs := service.ClusterStatus{Cities: make([]service.CityStatus, len(names))}
	timeout := time.Duration(b.patience.Load()) * b.cfg.StatusTimeout
	var (
		wg sync.WaitGroup
		// Requests to cities that answered the round before: failed,
		// and of those timed out.
		failed, slips atomic.Int64
	)
	for i, c := range names {
		cs.Cities[i].Name = c
		if !slices.Contains(up, c) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			r, err := request[*messages.DigestReply](ctx, b.cities, c, &messages.GetDigest{})
			if err != nil {
				timedOut := errors.Is(err, context.DeadlineExceeded)
				if slices.Contains(wasReachable, c) {
					failed.Add(1)
					if timedOut {
						slips.Add(1)
					}
				}
				if b.reach.missed(c, timedOut, b.cfg.StatusMisses) {
					return // shown down
				}
				cs.Cities[i] = lastSeen(b.last.Load(), c) // one miss: as last seen
				return
			}
			b.reach.set(c, true)
			var d crdt.Digest
			if err := d.UnmarshalBinary(r.Digest); err != nil {
				b.log.Warn("bad digest", "city", c, "err", err)
				return
			}
			cs.Cities[i] = service.CityStatus{Name: c, Up: true, Heroes: int(r.Heroes), Digest: d.Fingerprint(), Incarnation: r.Incarnation}
		}()
	}
	wg.Wait()
	b.adjustPatience(slips.Load() > 0, failed.Load() == 0)
	cs.InSync = inSync(cs.Cities)
	cs.Ready = b.replica.Ready()
	b.status.annotate(cs.Cities, time.Now())
	return cs
}

// adjustPatience lengthens the next round's status deadline by one
// StatusTimeout after a round in which a city that was up missed its
// deadline, and shortens it by one after a round in which every city that
// was up answered (a city already shown down, but still in the topology,
// does not hold the deadline long).
func (b *Backend) adjustPatience(slipped, allAnswered bool) {
	p := b.patience.Load()
	switch {
	case slipped && p < int64(b.cfg.StatusPatience):
		p++
		b.log.Debug("status deadline lengthened", "deadline", time.Duration(p)*b.cfg.StatusTimeout)
	case allAnswered && p > 1:
		p--
	default:
		return
	}
	b.patience.Store(p)
}

// lastSeen returns city c's status in prev, or a status showing it down
// when prev has none.
func lastSeen(prev *service.ClusterStatus, c crdt.Location) service.CityStatus {
	if i := slices.IndexFunc(prev.Cities, func(o service.CityStatus) bool { return o.Name == c }); i >= 0 {
		return prev.Cities[i]
	}
	return service.CityStatus{Name: c}
}

func (b *Backend) refreshStatus(ctx context.Context) {
	cs := b.probe(ctx)
	if ctx.Err() != nil {
		return
	}
	prev := b.last.Load()
	if slices.Equal(cs.Cities, prev.Cities) && cs.InSync == prev.InSync && cs.Ready == prev.Ready {
		return
	}
	for _, c := range cs.Cities {
		if i := slices.IndexFunc(prev.Cities, func(o service.CityStatus) bool { return o.Name == c.Name }); i >= 0 && prev.Cities[i].Up != c.Up {
			b.log.Info("city status changed", "city", c.Name, "up", c.Up)
		}
	}
	b.last.Store(&cs)
	b.pub.Publish(service.ClusterEvent(cs))
}

// checkCity returns ErrUnknownCity or ErrCityDown for a city that cannot
// be asked now. Knowing the topology, dispatch answers 503 at once instead
// of waiting for a request to a dead node to time out.
func (b *Backend) checkCity(c crdt.Location) error {
	if !c.IsCity() || !b.reach.isKnown(c) {
		return fmt.Errorf("%w: %q", service.ErrUnknownCity, c)
	}
	if !slices.Contains(b.reach.reachable(), c) {
		return fmt.Errorf("%w: %s is down", service.ErrCityDown, c)
	}
	return nil
}

// reachability knows which cities exist and which answer.
type reachability struct {
	cities Cities

	mu    sync.Mutex
	known map[crdt.Location]bool
	// unreachable are cities still in the topology that failed their last
	// status request or command: a killed node stays in the topology until
	// the provider's next poll, and requests to it would only time out.
	unreachable map[crdt.Location]bool
	// misses counts the status requests in a row each city left
	// unanswered.
	misses map[crdt.Location]int
}

// up returns the cities up in the topology now, learning new ones.
func (r *reachability) up() []crdt.Location {
	up := r.cities.Up()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range up {
		r.known[c] = true
	}
	return up
}

// reachable returns the cities up in the topology that did not fail their
// latest request.
func (r *reachability) reachable() []crdt.Location {
	up := r.up()
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.DeleteFunc(up, func(c crdt.Location) bool { return r.unreachable[c] })
}

// set records the outcome of a request to c.
func (r *reachability) set(c crdt.Location, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.misses, c)
	if ok {
		delete(r.unreachable, c)
	} else {
		r.unreachable[c] = true
	}
}

// missed counts a failed status request to c and reports whether c is
// now unreachable: at once unless the request only timed out, else after
// limit timeouts in a row.
func (r *reachability) missed(c crdt.Location, timedOut bool, limit int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.misses[c]++
	if !timedOut || r.misses[c] >= limit || r.unreachable[c] {
		r.unreachable[c] = true
		return true
	}
	return false
}

func (r *reachability) isKnown(c crdt.Location) bool {
	r.up()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.known[c]
}

func (r *reachability) knownCities() []crdt.Location {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]crdt.Location, 0, len(r.known))
	for c := range r.known {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// statusTracker keeps, per city, what the pages are shown beyond a probe:
// the incarnation last seen, when it last restarted, since when its digest
// has differed from the others', and whether it has caught up since.
type statusTracker struct {
	log *slog.Logger

	mu          sync.Mutex
	incarnation map[crdt.Location]uint64
	restartedAt map[crdt.Location]time.Time
	divergedAt  map[crdt.Location]time.Time
	recovered   map[crdt.Location]bool
}

func newStatusTracker(log *slog.Logger) statusTracker {
	return statusTracker{
		log:         log,
		incarnation: map[crdt.Location]uint64{},
		restartedAt: map[crdt.Location]time.Time{},
		divergedAt:  map[crdt.Location]time.Time{},
		recovered:   map[crdt.Location]bool{},
	}
}

// bombed records that c was bombed at now.
func (s *statusTracker) bombed(c crdt.Location, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restartedAt[c] = now
	s.recovered[c] = false
}

// annotate fills in Restarting and Lag from what earlier status reads saw.
func (s *statusTracker) annotate(cities []service.CityStatus, now time.Time) {
	common := commonDigest(cities)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range cities {
		c := &cities[i]
		if !c.Up {
			delete(s.divergedAt, c.Name)
			continue
		}
		if prev, ok := s.incarnation[c.Name]; ok && c.Incarnation > prev {
			if s.restartedAt[c.Name].Before(now.Add(-ShowRestart)) {
				s.restartedAt[c.Name] = now
			}
			s.recovered[c.Name] = false
			s.log.Info("city restarted", "city", c.Name, "incarnation", c.Incarnation)
		}
		s.incarnation[c.Name] = c.Incarnation
		synced := c.Digest == common
		if synced {
			delete(s.divergedAt, c.Name)
		} else if _, ok := s.divergedAt[c.Name]; !ok {
			s.divergedAt[c.Name] = now
		}
		if since, ok := s.divergedAt[c.Name]; ok {
			c.Lag = max(now.Sub(since), time.Millisecond)
		}
		// Restarting: shown for ShowRestart at least, then until the city
		// has caught up once; diverging later is lag, not a restart.
		if synced {
			s.recovered[c.Name] = true
		}
		restarted := !s.restartedAt[c.Name].IsZero()
		c.Restarting = restarted && (now.Sub(s.restartedAt[c.Name]) < ShowRestart || !s.recovered[c.Name])
	}
}

// commonDigest returns the digest most up cities share; ties go to the
// city with more heroes, which is the one the others are catching up with.
func commonDigest(cities []service.CityStatus) uint64 {
	votes := map[uint64]int{}
	heroes := map[uint64]int{}
	for _, c := range cities {
		if c.Up {
			votes[c.Digest]++
			heroes[c.Digest] = c.Heroes
		}
	}
	var best uint64
	bestVotes, bestHeroes := -1, -1
	for d, v := range votes {
		if v > bestVotes || (v == bestVotes && (heroes[d] > bestHeroes || heroes[d] == bestHeroes && d < best)) {
			best, bestVotes, bestHeroes = d, v, heroes[d]
		}
	}
	return best
}

// inSync reports whether at least one city is up and every city that is
// up reports the same digest.
func inSync(cities []service.CityStatus) bool {
	var first *service.CityStatus
	for i := range cities {
		c := &cities[i]
		if !c.Up {
			continue
		}
		if first == nil {
			first = c
		} else if c.Digest != first.Digest {
			return false
		}
	}
	return first != nil
}
