package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/chaos"
	"github.com/superhero-cluster/superhero/internal/localcluster"
)

// observer reads whole replicas: each city's through a cluster member
// (messages.GetState: every entry, tombstones included, with its stamp):
// this process's own on loopback, the agent's in the lab (-net); and
// dispatch's through its API, which has no read of the whole replica: the
// live heroes come from GET /api/superheroes, the others from GET
// /api/superheroes/{id} for every id the run has seen (410: a tombstone,
// carried in the answer; 404: absent).
type observer struct {
	state func(ctx context.Context, city string) ([]chaos.Hero, error)
	base  string // dispatch's URL
	token string // dispatch's API token, "" for none
	http  *http.Client
}

// newLocalObserver reads the loopback cluster.
func newLocalObserver(c *localcluster.Cluster) *observer {
	state := func(ctx context.Context, city string) ([]chaos.Hero, error) {
		hs, err := c.State(ctx, city, 2*time.Second)
		if err != nil {
			return nil, err
		}
		out := make([]chaos.Hero, len(hs))
		for i, h := range hs {
			out[i] = fromCRDT(h)
		}
		return out, nil
	}
	return &observer{state: state, base: "http://" + c.HTTPAddr(), http: &http.Client{Timeout: 2 * time.Second}}
}

// cityState reads a city's whole replica.
func (o *observer) cityState(ctx context.Context, city string) ([]chaos.Hero, error) {
	return o.state(ctx, city)
}

func fromCRDT(h crdt.Hero) chaos.Hero {
	return chaos.Hero{
		ID: h.ID.String(), Name: h.Name, Location: string(h.Location), Patrolling: h.Patrolling,
		Health: h.Health, Dead: h.Dead,
		Stamp: chaos.Stamp{Wall: h.Stamp.Wall, Logical: h.Stamp.Logical, Node: h.Stamp.Node},
	}
}

// get reads a JSON answer; it returns the status.
func (o *observer) get(ctx context.Context, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.base+path, nil)
	if err != nil {
		return 0, err
	}
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := o.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusGone) || out == nil {
		return resp.StatusCode, err
	}
	return resp.StatusCode, json.Unmarshal(b, out)
}

// dispatchLive reads dispatch's live heroes.
func (o *observer) dispatchLive(ctx context.Context) ([]chaos.Hero, error) {
	var body struct {
		Superheroes []chaos.Hero `json:"superheroes"`
	}
	status, err := o.get(ctx, "/api/superheroes", &body)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("GET /api/superheroes: %d", status)
	}
	return body.Superheroes, err
}

// dispatchState reads dispatch's replica as far as the API shows it: the
// live heroes, and the tombstone, stamp and all, of every id of ids that
// answers 410.
func (o *observer) dispatchState(ctx context.Context, ids []string) ([]chaos.Hero, error) {
	live, err := o.dispatchLive(ctx)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(live))
	for _, h := range live {
		seen[h.ID] = true
	}
	var rest []string
	for _, id := range ids {
		if !seen[id] {
			rest = append(rest, id)
		}
	}
	// A few requests at a time: thousands of ids on loopback take a second.
	var (
		mu    sync.Mutex
		out   = live
		first error
		wg    sync.WaitGroup
		next  = make(chan string)
	)
	for range 4 {
		wg.Go(func() {
			for id := range next {
				// 200: the hero; 410: {"error", "superhero": the tombstone}.
				var raw json.RawMessage
				status, err := o.get(ctx, "/api/superheroes/"+id, &raw)
				var h chaos.Hero
				if err == nil && status == http.StatusOK {
					err = json.Unmarshal(raw, &h)
				}
				if err == nil && status == http.StatusGone {
					var gone struct {
						Superhero chaos.Hero `json:"superhero"`
					}
					err = json.Unmarshal(raw, &gone)
					h = gone.Superhero
				}
				mu.Lock()
				switch {
				case err != nil:
					first = cmpErr(first, err)
				case status == http.StatusOK:
					out = append(out, h)
				case status == http.StatusGone:
					out = append(out, h)
				case status == http.StatusNotFound:
				default:
					first = cmpErr(first, fmt.Errorf("GET /api/superheroes/%s: %d", id, status))
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range rest {
		next <- id
	}
	close(next)
	wg.Wait()
	return out, first
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// snapshot reads every replica at about the same time: the cities' whole
// replicas in parallel, and dispatch's live heroes.
func (o *observer) snapshot(ctx context.Context, cities []string) (map[string][]chaos.Hero, error) {
	out := map[string][]chaos.Hero{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, city := range cities {
		wg.Go(func() {
			hs, err := o.cityState(ctx, city)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", city, err))
				return
			}
			out[city] = hs
		})
	}
	live, err := o.dispatchLive(ctx)
	wg.Wait()
	if err != nil {
		errs = append(errs, fmt.Errorf("dispatch: %w", err))
	}
	out[dispatchName] = live
	if len(errs) > 0 {
		return out, errs[0]
	}
	return out, nil
}

// differences lists how the replicas differ: every city's whole replica
// against the first city's, and dispatch's against the first city's as
// far as dispatch shows it: its live heroes with their stamps, and, when
// withTombstones (the final read), its tombstones without stamps; the
// live list alone shows none. Empty means equal.
func differences(replicas map[string][]chaos.Hero, cities []string, withTombstones bool) []string {
	if len(cities) == 0 {
		return nil
	}
	ref := index(replicas[cities[0]])
	var out []string
	for _, city := range cities[1:] {
		other := index(replicas[city])
		for _, id := range union(ref, other) {
			if a, b := ref[id], other[id]; a != b {
				out = append(out, fmt.Sprintf("%s: %s %s, %s %s", id, cities[0], describe(a), city, describe(b)))
			}
		}
	}
	d, ok := replicas[dispatchName]
	if !ok {
		return out
	}
	disp := index(d)
	for _, id := range union(ref, disp) {
		a, b := ref[id], disp[id]
		var same bool
		switch {
		case a.Dead && withTombstones:
			same = b.Dead && (b.Stamp.IsZero() || a == b)
		case a.Dead:
			same = b.ID == ""
		default:
			same = a == b
		}
		if !same {
			out = append(out, fmt.Sprintf("%s: %s %s, dispatch %s", id, cities[0], describe(a), describe(b)))
		}
	}
	return out
}

func index(hs []chaos.Hero) map[string]chaos.Hero {
	m := make(map[string]chaos.Hero, len(hs))
	for _, h := range hs {
		m[h.ID] = h
	}
	return m
}

func union(a, b map[string]chaos.Hero) []string {
	ids := make([]string, 0, len(a)+len(b))
	for id := range a {
		ids = append(ids, id)
	}
	for id := range b {
		if _, ok := a[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func describe(h chaos.Hero) string {
	switch {
	case h.ID == "":
		return "absent"
	case h.Dead:
		return fmt.Sprintf("dead@%d.%d.%s", h.Stamp.Wall, h.Stamp.Logical, h.Stamp.Node)
	}
	return fmt.Sprintf("%s/%d/patrol=%v@%d.%d.%s", h.Location, h.Health, h.Patrolling, h.Stamp.Wall, h.Stamp.Logical, h.Stamp.Node)
}

// equalNow reads every replica and returns how they differ (empty:
// equal). Dispatch must also say every city is up, in sync and itself
// ready.
func (o *observer) equalNow(ctx context.Context, cities []string) []string {
	var st localcluster.Status
	if _, err := o.get(ctx, "/api/cluster", &st); err != nil {
		return []string{"dispatch: " + err.Error()}
	}
	for _, city := range cities {
		if !st.Up(city) {
			return []string{"dispatch shows " + city + " down"}
		}
	}
	if !st.InSync || !st.Ready {
		return []string{fmt.Sprintf("dispatch: in_sync=%v ready=%v", st.InSync, st.Ready)}
	}
	reps, err := o.snapshot(ctx, cities)
	if err != nil {
		return []string{err.Error()}
	}
	return differences(reps, cities, false)
}

// convergence compares every replica all through the run, so that the
// time they were first equal after the last heal is known even when the
// heal itself is known only later (a thawed node must keep answering for
// a while to count as healed).
type convergence struct {
	mu    sync.Mutex
	equal []time.Duration // when the replicas were seen equal
	last  []string        // the differences of the latest comparison
}

// watch compares the replicas every interval until ctx ends.
func (cv *convergence) watch(ctx context.Context, o *observer, cities []string, now func() time.Duration, every time.Duration) {
	_ = localcluster.Poll(ctx, every, func() (bool, error) {
		diffs := o.equalNow(ctx, cities)
		at := now()
		cv.mu.Lock()
		defer cv.mu.Unlock()
		if ctx.Err() != nil {
			return true, nil
		}
		cv.last = diffs
		if len(diffs) == 0 {
			cv.equal = append(cv.equal, at)
		}
		return false, nil
	})
}

// since returns the first time at or after t the replicas were seen
// equal, and the latest differences when they have not been.
func (cv *convergence) since(t time.Duration) (time.Duration, []string, bool) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	for _, at := range cv.equal {
		if at >= t {
			return at, nil, true
		}
	}
	return 0, cv.last, false
}

// finals reads every replica whole, once the workload has stopped: up to
// a few times until they are equal (a city's patrol or fight may land
// between two reads), keeping the last reading.
func (o *observer) finals(ctx context.Context, cities, ids []string, now func() time.Duration) ([]chaos.Final, []string, error) {
	var (
		finals []chaos.Final
		diffs  []string
		err    error
	)
	for attempt := range 5 {
		if attempt > 0 {
			if err := sleepFor(ctx, 300*time.Millisecond); err != nil {
				return finals, diffs, err
			}
		}
		finals, err = o.readFinals(ctx, cities, ids, now)
		if err != nil {
			continue
		}
		reps := map[string][]chaos.Hero{}
		for _, f := range finals {
			reps[f.Replica] = f.Heroes
		}
		if diffs = differences(reps, cities, true); len(diffs) == 0 {
			return finals, nil, nil
		}
	}
	return finals, diffs, err
}

func (o *observer) readFinals(ctx context.Context, cities, ids []string, now func() time.Duration) ([]chaos.Final, error) {
	var finals []chaos.Final
	ids = slices.Clone(ids)
	for _, city := range cities {
		hs, err := o.cityState(ctx, city)
		if err != nil {
			return nil, fmt.Errorf("final read of %s: %w", city, err)
		}
		finals = append(finals, chaos.Final{Replica: city, At: now(), Heroes: sortByID(hs)})
		// Heroes whose create timed out were never learnt by a client.
		for _, h := range hs {
			ids = append(ids, h.ID)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	hs, err := o.dispatchState(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("final read of dispatch: %w", err)
	}
	return append(finals, chaos.Final{Replica: dispatchName, At: now(), Heroes: sortByID(hs)}), nil
}

func sortByID(hs []chaos.Hero) []chaos.Hero {
	slices.SortFunc(hs, func(a, b chaos.Hero) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return hs
}
