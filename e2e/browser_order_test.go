package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/dispatch/web"
)

// TestBrowserIgnoresStaleEntries serves the real page from the web package
// against a fake backend, publishes through the Hub entries out of stamp
// order, one frame at a time, and checks that the page applies them by the
// merge rule: a tombstone followed by a stale live entry leaves the hero
// gone, a live entry one nanosecond older than what the page holds is
// ignored, a reconnect's snapshot does not bring back a hero the page holds
// a tombstone for, and a delta older than the snapshot does not override it.
// A hero created after each stale frame must appear, which shows the stale
// frame was applied before the check. It needs no node processes, so it
// runs with -short too.
func TestBrowserIgnoresStaleEntries(t *testing.T) {
	browser := startBrowser(t)
	st := startPageServer(t)
	p := openPage(t, browser, "order", st.url, 1280, 900, nil)

	// W and W+1 are the same JavaScript number: W is a multiple of 1024
	// near 1.8e18, where a float64 has a step of 256.
	w := time.Now().UnixNano() &^ 1023
	at := func(wall int64, node string) crdt.Timestamp { return crdt.Timestamp{Wall: wall, Node: node} }
	newHero := func(name string, stamp crdt.Timestamp) crdt.Hero {
		return crdt.Hero{ID: uuid.New(), Name: name, Location: crdt.Home, Health: crdt.MaxHealth, Stamp: stamp}
	}
	created := 0
	// barrier publishes a new hero and waits for its row: every frame
	// published before it has been applied.
	barrier := func() {
		t.Helper()
		created++
		h := newHero("Barrier "+strconv.Itoa(created), at(w+int64(created), "dispatch"))
		st.send(t, p, "a fresh hero", h)
		p.wait(5*time.Second, "the fresh hero's row", `!!document.querySelector('`+row(h.ID.String())+`')`)
	}
	gone := func(id uuid.UUID) string { return `!document.querySelector('` + row(id.String()) + `')` }

	// 1. Live, then its tombstone, then a stale live entry: the one a city
	// wrote just before the delete, published after it.
	laz := newHero("Lazarus", at(w, "dispatch"))
	st.send(t, p, "Lazarus live", laz)
	p.wait(5*time.Second, "Lazarus's row", `!!document.querySelector('`+row(laz.ID.String())+`')`)
	p.eval(watchBack(laz.ID.String()), nil)
	tomb := laz
	tomb.Dead, tomb.Health, tomb.Stamp = true, 0, at(w+2000, "dispatch")
	st.send(t, p, "Lazarus's tombstone", tomb)
	p.wait(5*time.Second, "Lazarus's row gone", gone(laz.ID))
	stale := laz
	stale.Location, stale.Patrolling, stale.Health, stale.Stamp = crdt.Gotham, true, 90, at(w+1000, "gotham")
	st.send(t, p, "Lazarus stale", stale)
	barrier()
	if !p.truth(gone(laz.ID)) || p.truth(`window.__back`) {
		t.Error("a stale live entry published after the tombstone brought Lazarus back")
	}
	var lazEvents []string
	p.eval(`[...document.querySelectorAll('#log li')].filter((li) => li.textContent.includes('Lazarus')).map((li) => li.dataset.event).reverse()`, &lazEvents)
	if !slices.Equal(lazEvents, []string{"created", "terminated"}) {
		t.Errorf("feed events about Lazarus %v, want [created terminated]: the stale entry must make none", lazEvents)
	}

	// 2. A live entry one nanosecond older than the one the page holds,
	// with content that would win were the stamps equal (more health):
	// ignored, so the wall is compared exactly, not as a rounded number.
	ada := newHero("Ada", at(w+1, "gotham"))
	ada.Health = 50
	st.send(t, p, "Ada", ada)
	older := ada
	older.Health, older.Stamp = 90, at(w, "gotham")
	st.send(t, p, "Ada one nanosecond older", older)
	barrier()
	if h := p.data(row(ada.ID.String()), "health"); h != "50" {
		t.Errorf("Ada's health %q after an older entry, want 50", h)
	}

	// 3. Reconnect to a dispatch whose snapshot still lists Lazarus alive
	// (and lists Bo): the page holds Lazarus's tombstone, so he stays gone.
	bo := newHero("Bo", at(w+5000, "metropolis"))
	bo.Health = 40
	st.backend.set(stale, ada, bo)
	st.restart(t)
	p.wait(10*time.Second, "the second snapshot", `window.__perf.snapshots === 2 && document.querySelector('#conn').dataset.state === 'open'`)
	p.wait(5*time.Second, "Bo's row", `!!document.querySelector('`+row(bo.ID.String())+`')`)
	if !p.truth(gone(laz.ID)) || p.truth(`window.__back`) {
		t.Error("a snapshot listing Lazarus alive brought him back after his tombstone")
	}
	// A delta older than the snapshot's entry for Bo does not override it.
	boOld := bo
	boOld.Health, boOld.Stamp = 100, at(w+4000, "metropolis")
	st.send(t, p, "Bo older than the snapshot", boOld)
	barrier()
	if h := p.data(row(bo.ID.String()), "health"); h != "40" {
		t.Errorf("Bo's health %q after a delta older than the snapshot, want 40", h)
	}
	p.checkClean()
}

// watchBack sets window.__back if the row of id is ever added again.
func watchBack(id string) string {
	return `(() => {
		window.__back = false;
		new MutationObserver((records) => {
			for (const r of records) for (const n of r.addedNodes) if (n.dataset && n.dataset.heroId === ` + jsString(id) + `) window.__back = true;
		}).observe(document.querySelector('#heroes tbody'), { childList: true });
		return true;
	})()`
}

// data returns a data attribute of the element sel, or "" if there is none.
func (p *page) data(sel, name string) string {
	p.t.Helper()
	var v string
	p.eval(`(`+attr(sel, name)+`) || ''`, &v)
	return v
}

// pageServer serves the real page from the web package against a fake
// backend on one URL. restart replaces the server and its hub, which
// closes the page's WebSocket; the page reconnects to the new one.
type pageServer struct {
	url     string
	addr    string // host:port listened on
	backend *pageBackend
	cur     atomic.Pointer[pageServing]
}

type pageServing struct {
	srv *web.Server
	hub *web.Hub
}

func startPageServer(t *testing.T) *pageServer {
	t.Helper()
	st := &pageServer{backend: &pageBackend{}}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st.cur.Load().srv.Handler().ServeHTTP(w, r)
	}))
	// The server answers for the Host of its own address.
	st.addr = ts.Listener.Addr().String()
	st.serve(t)
	ts.Start()
	st.url = ts.URL + "/"
	t.Cleanup(func() {
		st.cur.Load().stop(t)
		ts.Close()
	})
	return st
}

// serve starts a new server and hub and routes requests to them.
func (st *pageServer) serve(t *testing.T) *pageServing {
	t.Helper()
	hub := web.NewHub(web.HubConfig{}, nil)
	srv, err := web.New(web.Config{Addr: st.addr}, st.backend, hub, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.cur.Swap(&pageServing{srv: srv, hub: hub})
}

func (st *pageServer) restart(t *testing.T) {
	t.Helper()
	st.serve(t).stop(t)
}

func (ps *pageServing) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ps.srv.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	ps.hub.Close()
}

// send publishes one delta and waits until the page has applied it as a
// frame of its own, so that it is not coalesced with the next one.
func (st *pageServer) send(t *testing.T, p *page, what string, heroes ...crdt.Hero) {
	t.Helper()
	var before int
	p.eval(`window.__perf.frames`, &before)
	st.cur.Load().hub.Publish(service.DeltaEvent(crdt.Delta{Heroes: heroes}))
	p.wait(5*time.Second, "the page to apply "+what, `window.__perf.frames > `+strconv.Itoa(before))
}

// pageBackend is a service.Backend whose snapshot lists the heroes set by the
// test; commands fail.
type pageBackend struct {
	mu     sync.Mutex
	heroes []crdt.Hero
}

var _ service.Backend = (*pageBackend)(nil)

var errFake = errors.New("e2e: the fake backend takes no commands")

func (b *pageBackend) set(hs ...crdt.Hero) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.heroes = slices.Clone(hs)
}

func (b *pageBackend) Heroes() ([]crdt.Hero, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.heroes), nil
}

func (b *pageBackend) Hero(uuid.UUID) (crdt.Hero, error) { return crdt.Hero{}, crdt.ErrUnknown }
func (b *pageBackend) Create(context.Context, string) (crdt.Hero, error) {
	return crdt.Hero{}, errFake
}
func (b *pageBackend) Delete(context.Context, uuid.UUID) error { return errFake }
func (b *pageBackend) Assign(context.Context, uuid.UUID, crdt.Location) (crdt.Hero, error) {
	return crdt.Hero{}, errFake
}
func (b *pageBackend) Bomb(context.Context, crdt.Location) (crdt.Location, error) {
	return "", errFake
}
func (b *pageBackend) CityHeroes(context.Context, crdt.Location) ([]crdt.Hero, error) {
	return nil, errFake
}

func (b *pageBackend) Cluster(context.Context) service.ClusterStatus {
	return service.ClusterStatus{Cities: []service.CityStatus{{Name: crdt.Gotham, Up: true, Incarnation: 1}}, InSync: true, Ready: true}
}

func (b *pageBackend) Ready() bool { return true }
