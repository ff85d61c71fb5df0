package backend

import (
	"context"

	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/messages"
)

// Config configures the Backend. Zero fields take the documented defaults.
type Config struct {
	// Protocol selects how dispatch's writes spread. Default
	// ProtocolDefault: coalesced deltas pushed to every city that is up.
	// ProtocolOriginal sends the whole replica to one random city per
	// write, as the original.
	Protocol Protocol
	// Cities are the cities known from the start. More are learned from
	// the cluster topology. Default crdt.DefaultCities.
	Cities []crdt.Location
	// PushWindow is how long dispatch's writes are coalesced before one
	// push. Default 2 ms.
	PushWindow time.Duration
	// PushTimeout bounds one push request. Default 1 s.
	PushTimeout time.Duration
	// StatusInterval is how often city status is refreshed for the pages.
	// Default 500 ms.
	StatusInterval time.Duration
	// StatusTimeout bounds one city's status request. Default 400 ms.
	StatusTimeout time.Duration
	// TombstoneTTL and GCInterval: see cityactor.Config. Defaults 10 min
	// and 1 min.
	TombstoneTTL, GCInterval time.Duration
	// Seed seeds random choices (which city to bomb or push to).
	Seed uint64
	// Logger receives log lines. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Protocol == "" {
		c.Protocol = ProtocolDefault
	}
	if len(c.Cities) == 0 {
		c.Cities = crdt.DefaultCities
	}
	if c.PushWindow <= 0 {
		c.PushWindow = 2 * time.Millisecond
	}
	if c.PushTimeout <= 0 {
		c.PushTimeout = time.Second
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = 500 * time.Millisecond
	}
	if c.StatusTimeout <= 0 {
		c.StatusTimeout = 400 * time.Millisecond
	}
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = crdt.DefaultTombstoneTTL
	}
	if c.GCInterval <= 0 {
		c.GCInterval = crdt.DefaultCollectPeriod
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Backend implements service.Backend over dispatch's Store and the cities.
type Backend struct {
	cfg    Config
	store  *Store
	cities Cities
	pub    service.Publisher
	log    *slog.Logger

	mu    sync.Mutex
	rng   *rand.Rand
	known map[crdt.Location]bool
	// unreachable are cities still in the topology that failed their last
	// status request: a killed node stays in the topology until the
	// provider's next poll, and requests to it would only time out.
	unreachable map[crdt.Location]bool
	pending     map[uuid.UUID]crdt.Hero
	kick        chan struct{}
	last        service.ClusterStatus
	// Per city, for the pages: the incarnation last seen, when it last
	// restarted, and since when its digest has differed from the others'.
	incarnation map[crdt.Location]uint64
	restartedAt map[crdt.Location]time.Time
	divergedAt  map[crdt.Location]time.Time
	// recovered says a restarted city has been in sync since.
	recovered map[crdt.Location]bool
}

// ShowRestart is how long a restarted city is reported as restarting at
// least, so that people watching the page see it happen.
const ShowRestart = 1500 * time.Millisecond

var _ service.Backend = (*Backend)(nil)

// New returns a Backend. Call Run to start its background work.
func New(cfg Config, store *Store, cities Cities, pub service.Publisher) *Backend {
	cfg = cfg.withDefaults()
	b := &Backend{
		cfg:         cfg,
		store:       store,
		cities:      cities,
		pub:         pub,
		log:         cfg.Logger.With("actor", "backend"),
		rng:         rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		known:       map[crdt.Location]bool{},
		unreachable: map[crdt.Location]bool{},
		pending:     map[uuid.UUID]crdt.Hero{},
		kick:        make(chan struct{}, 1),
		incarnation: map[crdt.Location]uint64{},
		restartedAt: map[crdt.Location]time.Time{},
		divergedAt:  map[crdt.Location]time.Time{},
		recovered:   map[crdt.Location]bool{},
	}
	for _, c := range cfg.Cities {
		b.known[c] = true
	}
	return b
}

// Run pushes dispatch's writes, refreshes city status for the pages and
// collects tombstones until ctx ends.
func (b *Backend) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.pushLoop(ctx) }()
	go func() { defer wg.Done(); b.statusLoop(ctx) }()
	wg.Wait()
}

// Heroes implements service.Backend.
func (b *Backend) Heroes() []crdt.Hero { return b.store.Heroes() }

// Hero implements service.Backend.
func (b *Backend) Hero(id uuid.UUID) (crdt.Hero, error) { return b.store.Lookup(id) }

// Create implements service.Backend: the hero is acknowledged once it is in
// dispatch's replica; the push to the cities follows within PushWindow.
func (b *Backend) Create(_ context.Context, name string) (crdt.Hero, error) {
	h, d, err := b.store.Create(name)
	if err != nil {
		return crdt.Hero{}, err
	}
	b.push(d)
	return h, nil
}

// Delete implements service.Backend.
func (b *Backend) Delete(_ context.Context, id uuid.UUID) error {
	d, err := b.store.Delete(id)
	if err != nil {
		return err
	}
	b.push(d)
	return nil
}

// Assign implements service.Backend. Home is applied by dispatch; a city
// applies its own assignment and answers with the result.
func (b *Backend) Assign(ctx context.Context, id uuid.UUID, to crdt.Location) (crdt.Hero, error) {
	if to == crdt.Home {
		h, d, err := b.store.AssignHome(id)
		if err != nil {
			return crdt.Hero{}, err
		}
		b.push(d)
		return h, nil
	}
	if err := b.checkCity(to); err != nil {
		return crdt.Hero{}, err
	}
	if _, err := b.store.Lookup(id); err != nil {
		return crdt.Hero{}, err
	}
	hint, err := b.store.Entry(id).MarshalBinary()
	if err != nil {
		return crdt.Hero{}, err
	}
	reply, err := request[*messages.AssignReply](ctx, b.cities, to, &messages.AssignHero{HeroId: id.String(), Context: hint})
	b.setReachable(to, err == nil)
	if err != nil {
		return crdt.Hero{}, fmt.Errorf("%w: %s: %w", service.ErrCityDown, to, err)
	}
	var d crdt.Delta
	if len(reply.Delta) > 0 {
		if err := d.UnmarshalBinary(reply.Delta); err != nil {
			return crdt.Hero{}, fmt.Errorf("assign reply from %s: %w", to, err)
		}
		if err := b.store.CheckOffset(d); err != nil {
			// The city's clock is too far ahead: its write stays there
			// and is shown as divergence, never merged here.
			b.log.Warn("assign reply refused", "city", to, "err", err)
			return crdt.Hero{}, fmt.Errorf("%w: %s: %w", service.ErrCityDown, to, err)
		}
		b.store.Merge(d)
	}
	switch reply.Error {
	case messages.AssignError_ASSIGN_OK:
	case messages.AssignError_ASSIGN_DEAD:
		return crdt.Hero{}, fmt.Errorf("%w: %s", crdt.ErrDead, reply.Message)
	case messages.AssignError_ASSIGN_UNKNOWN:
		return crdt.Hero{}, fmt.Errorf("%w: %s", crdt.ErrUnknown, reply.Message)
	default:
		return crdt.Hero{}, fmt.Errorf("assign at %s: %v: %s", to, reply.Error, reply.Message)
	}
	for _, h := range d.Heroes {
		if h.ID == id {
			return h, nil
		}
	}
	return crdt.Hero{}, fmt.Errorf("assign at %s: reply lacks hero %s", to, id)
}

// Bomb implements service.Backend.
func (b *Backend) Bomb(ctx context.Context, c crdt.Location) (crdt.Location, error) {
	if c == "" {
		up := b.reachable()
		if len(up) == 0 {
			return "", fmt.Errorf("%w: no city is up", service.ErrCityDown)
		}
		b.mu.Lock()
		c = up[b.rng.IntN(len(up))]
		b.mu.Unlock()
	}
	if err := b.checkCity(c); err != nil {
		return "", err
	}
	_, err := request[*messages.BombAck](ctx, b.cities, c, &messages.Bomb{})
	b.setReachable(c, err == nil)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", service.ErrCityDown, c, err)
	}
	b.mu.Lock()
	b.restartedAt[c] = time.Now()
	b.recovered[c] = false
	b.mu.Unlock()
	// The web layer flashes "<city> has been destroyed" to every page.
	b.log.Warn("city bombed", "city", c)
	return c, nil
}

// CityHeroes implements service.Backend.
func (b *Backend) CityHeroes(ctx context.Context, c crdt.Location) ([]crdt.Hero, error) {
	if err := b.checkCity(c); err != nil {
		return nil, err
	}
	st, err := request[*messages.State](ctx, b.cities, c, &messages.GetState{})
	b.setReachable(c, err == nil)
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

// Cluster implements service.Backend: it asks every known city for its digest
// in parallel, each within StatusTimeout.
func (b *Backend) Cluster(ctx context.Context) service.ClusterStatus {
	up := b.up()
	isUp := map[crdt.Location]bool{}
	for _, c := range up {
		isUp[c] = true
	}
	names := b.knownCities()
	cs := service.ClusterStatus{Cities: make([]service.CityStatus, len(names))}
	var wg sync.WaitGroup
	for i, c := range names {
		cs.Cities[i].Name = c
		if !isUp[c] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, b.cfg.StatusTimeout)
			defer cancel()
			r, err := request[*messages.DigestReply](ctx, b.cities, c, &messages.GetDigest{})
			b.setReachable(c, err == nil)
			if err != nil {
				return
			}
			var d crdt.Digest
			if err := d.UnmarshalBinary(r.Digest); err != nil {
				b.log.Warn("bad digest", "city", c, "err", err)
				return
			}
			cs.Cities[i] = service.CityStatus{Name: c, Up: true, Heroes: int(r.Heroes), Digest: d.Fingerprint(), Incarnation: r.Incarnation}
		}()
	}
	wg.Wait()
	cs.InSync = inSync(cs.Cities)
	b.annotate(cs.Cities, time.Now())
	return cs
}

// annotate fills in Restarting and Lag from what earlier status reads saw.
func (b *Backend) annotate(cities []service.CityStatus, now time.Time) {
	common := commonDigest(cities)
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range cities {
		c := &cities[i]
		if !c.Up {
			delete(b.divergedAt, c.Name)
			continue
		}
		if prev, ok := b.incarnation[c.Name]; ok && c.Incarnation > prev {
			if b.restartedAt[c.Name].Before(now.Add(-ShowRestart)) {
				b.restartedAt[c.Name] = now
			}
			b.recovered[c.Name] = false
			b.log.Info("city restarted", "city", c.Name, "incarnation", c.Incarnation)
		}
		b.incarnation[c.Name] = c.Incarnation
		synced := c.Digest == common
		if synced {
			delete(b.divergedAt, c.Name)
		} else if _, ok := b.divergedAt[c.Name]; !ok {
			b.divergedAt[c.Name] = now
		}
		if since, ok := b.divergedAt[c.Name]; ok {
			c.Lag = max(now.Sub(since), time.Millisecond)
		}
		// Restarting: shown for ShowRestart at least, then until the city
		// has caught up once; diverging later is lag, not a restart.
		if synced {
			b.recovered[c.Name] = true
		}
		restarted := !b.restartedAt[c.Name].IsZero()
		c.Restarting = restarted && (now.Sub(b.restartedAt[c.Name]) < ShowRestart || !b.recovered[c.Name])
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

// checkCity returns ErrUnknownCity or ErrCityDown for a city that cannot
// be asked now. Knowing the topology, dispatch answers 503 at once instead
// of waiting for a request to a dead node to time out.
func (b *Backend) checkCity(c crdt.Location) error {
	if !c.IsCity() || !b.isKnown(c) {
		return fmt.Errorf("%w: %q", service.ErrUnknownCity, c)
	}
	if !slices.Contains(b.reachable(), c) {
		return fmt.Errorf("%w: %s is down", service.ErrCityDown, c)
	}
	return nil
}

// reachable returns the cities up in the topology that did not fail their
// latest status request.
func (b *Backend) reachable() []crdt.Location {
	up := b.up()
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.DeleteFunc(up, func(c crdt.Location) bool { return b.unreachable[c] })
}

// setReachable records the outcome of a request to c.
func (b *Backend) setReachable(c crdt.Location, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		delete(b.unreachable, c)
	} else {
		b.unreachable[c] = true
	}
}

// up returns the cities up now, learning new ones.
func (b *Backend) up() []crdt.Location {
	up := b.cities.Up()
	b.mu.Lock()
	for _, c := range up {
		b.known[c] = true
	}
	b.mu.Unlock()
	return up
}

func (b *Backend) isKnown(c crdt.Location) bool {
	b.up()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.known[c]
}

func (b *Backend) knownCities() []crdt.Location {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]crdt.Location, 0, len(b.known))
	for c := range b.known {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// push queues dispatch's write for the next coalesced push.
func (b *Backend) push(d crdt.Delta) {
	b.mu.Lock()
	for _, h := range d.Heroes {
		b.pending[h.ID] = h
	}
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *Backend) pushLoop(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		// A write after a quiet spell goes out at once; a burst that
		// follows gathers into one push at the end of the window.
		if wait := b.cfg.PushWindow - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		b.flush(ctx)
	}
}

// flush sends the pending writes: as one delta to every city that is up,
// or, in the original protocol, the whole replica to one random city.
func (b *Backend) flush(ctx context.Context) {
	b.mu.Lock()
	if len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	d := crdt.Delta{Heroes: make([]crdt.Hero, 0, len(b.pending))}
	for _, h := range b.pending {
		d.Heroes = append(d.Heroes, h)
	}
	clear(b.pending)
	b.mu.Unlock()

	up := b.up()
	if len(up) == 0 {
		b.log.Debug("push skipped: no city up; anti-entropy will deliver", "entries", d.Len())
		return
	}
	targets := up
	if b.cfg.Protocol == ProtocolOriginal {
		d = b.store.State()
		b.mu.Lock()
		targets = []crdt.Location{up[b.rng.IntN(len(up))]}
		b.mu.Unlock()
	}
	payload, err := d.MarshalBinary()
	if err != nil {
		b.log.Error("cannot encode push", "err", err)
		return
	}
	var wg sync.WaitGroup
	for _, c := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, b.cfg.PushTimeout)
			defer cancel()
			if _, err := request[*messages.MergeAck](ctx, b.cities, c, &messages.MergeDelta{Delta: payload, From: messages.DispatchName}); err != nil {
				// Not lost: dispatch's replica still holds the write, and
				// the gossip actor's anti-entropy with the cities delivers it.
				b.log.Debug("push failed", "city", c, "entries", d.Len(), "err", err)
			}
		}()
	}
	wg.Wait()
}

// statusLoop refreshes city status for the pages, publishing a cluster
// event when it changes, and collects tombstones.
func (b *Backend) statusLoop(ctx context.Context) {
	status := time.NewTicker(b.cfg.StatusInterval)
	defer status.Stop()
	gc := time.NewTicker(b.cfg.GCInterval)
	defer gc.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-status.C:
			b.refreshStatus(ctx)
		case <-gc.C:
			h := crdt.Horizon(time.Now().UnixNano(), int64(b.cfg.TombstoneTTL), int64(b.cfg.GCInterval))
			if n := b.store.Collect(h); n > 0 {
				b.log.Info("collected tombstones", "dropped", n)
			}
		}
	}
}

func (b *Backend) refreshStatus(ctx context.Context) {
	cs := b.Cluster(ctx)
	b.mu.Lock()
	changed := !slices.Equal(cs.Cities, b.last.Cities) || cs.InSync != b.last.InSync
	if changed {
		for _, c := range cs.Cities {
			if i := slices.IndexFunc(b.last.Cities, func(o service.CityStatus) bool { return o.Name == c.Name }); i >= 0 && b.last.Cities[i].Up != c.Up {
				b.log.Info("city status changed", "city", c.Name, "up", c.Up)
			}
		}
		b.last = cs
	}
	b.mu.Unlock()
	if changed {
		b.pub.Publish(service.ClusterEvent(cs))
	}
}

// LastStatus returns the most recent city status, for new pages.
func (b *Backend) LastStatus() service.ClusterStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}
