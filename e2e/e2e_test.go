// Package e2e runs the real node binaries as OS processes on loopback and
// drives them through dispatch's JSON API, a WebSocket client and, for
// injecting state and checking the cookie, a cluster member of its own.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/internal/testkit"
)

var cities = []string{"gotham", "metropolis", "capitol"}

// figures collects measurements the test logs at the end.
type figures struct {
	t     *testing.T
	lines []string
}

func (f *figures) add(name string, d time.Duration) {
	f.lines = append(f.lines, name+": "+d.Round(time.Millisecond).String())
}

func (f *figures) log() {
	for _, l := range f.lines {
		f.t.Log("FIGURE " + l)
	}
}

// inject runs the member tool: it joins the cluster on slot and writes a
// hero with the given health straight into city's replica, as another
// replica would. It returns the hero's id.
func (c *cluster) inject(t *testing.T, slot int, city string, health int) string {
	t.Helper()
	return c.member(t, "-slot", strconv.Itoa(slot), "-city", city, "-health", strconv.Itoa(health))
}

// member runs the member tool with args and returns the last word it
// printed.
func (c *cluster) member(t *testing.T, args ...string) string {
	t.Helper()
	args = append(c.layoutArgs(), args...)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "member"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("member: %v\n%s", err, stderr.String())
	}
	// The result is the last word printed.
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		t.Fatalf("member printed nothing")
	}
	return lines[len(lines)-1]
}

func TestCluster(t *testing.T) {
	c := newCluster(t)
	a := c.api()
	fig := &figures{t: t}
	defer fig.log()

	start := time.Now()
	for _, name := range cities {
		c.startCity(name, quiet...)
	}
	c.startDispatch()
	await(t, 30*time.Second, "three cities up", func() bool {
		cs := a.cluster()
		return cs.Ready && cs.city("gotham").Up && cs.city("metropolis").Up && cs.city("capitol").Up
	})
	fig.add("cluster formation (process start to all cities up in /api/cluster)", time.Since(start))

	// A WebSocket client sees the snapshot and then the changes.
	ws := dialWS(t, c)

	// Create heroes; each reaches every city replica.
	var ids []string
	var lat []time.Duration
	for i := range 5 {
		var h hero
		code, took := a.do("POST", "/api/superheroes", map[string]string{"name": "Hero " + strconv.Itoa(i)}, &h)
		if code != http.StatusCreated || h.ID == "" || h.Health != 100 || h.Location != "home" {
			t.Fatalf("create: %d %+v", code, h)
		}
		lat = append(lat, took)
		ids = append(ids, h.ID)
		created := time.Now()
		await(t, 10*time.Second, "hero in all city replicas", func() bool {
			for _, city := range cities {
				hs, ok := a.cityHeroes(city)
				if _, found := has(hs, h.ID); !ok || !found {
					return false
				}
			}
			return true
		})
		fig.add("create to all three replicas #"+strconv.Itoa(i), time.Since(created))
	}
	ws.awaitHero(t, ids[0], func(h hero) bool { return h.Name == "Hero 0" })

	// Assign a damaged hero to gotham: the city heals it by 20.
	damaged := c.inject(t, 5, "gotham", 55)
	if _, err := uuid.Parse(damaged); err != nil {
		t.Fatalf("member printed %q", damaged)
	}
	await(t, 10*time.Second, "injected hero reaches dispatch", func() bool {
		code, _ := a.do("GET", "/api/superheroes/"+damaged, nil, nil)
		return code == 200
	})
	var healed hero
	code, took := a.do("PUT", "/api/superheroes/"+damaged+"/location", map[string]string{"location": "gotham"}, &healed)
	lat = append(lat, took)
	if code != 200 || healed.Location != "gotham" || healed.Health != 75 || healed.Patrolling {
		t.Fatalf("assign to gotham: %d %+v, want gotham, health 55+20, idle", code, healed)
	}
	ws.awaitHero(t, damaged, func(h hero) bool { return h.Location == "gotham" && h.Health == 75 })

	// Delete one: gone from every replica; the API says 410.
	if code, _ := a.do("DELETE", "/api/superheroes/"+ids[1], nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	await(t, 10*time.Second, "deleted hero gone everywhere", func() bool {
		for _, city := range cities {
			hs, ok := a.cityHeroes(city)
			if _, found := has(hs, ids[1]); !ok || found {
				return false
			}
		}
		return true
	})
	if code, _ := a.do("GET", "/api/superheroes/"+ids[1], nil, nil); code != http.StatusGone {
		t.Fatalf("get deleted hero: %d, want 410", code)
	}
	ws.awaitHero(t, ids[1], func(h hero) bool { return h.Dead })

	// Bomb gotham: it restarts empty and gossip refills it.
	await(t, 10*time.Second, "replicas in sync before the bomb", func() bool { return a.cluster().InSync })
	want, _ := a.cityHeroes("metropolis")
	var bombed struct{ City string }
	if code, _ := a.do("POST", "/api/bomb", map[string]string{"city": "gotham"}, &bombed); code != http.StatusAccepted || bombed.City != "gotham" {
		t.Fatalf("bomb: %d %+v", code, bombed)
	}
	ws.awaitFlash(t, "gotham has been destroyed")
	refill := await(t, 15*time.Second, "gotham refilled", func() bool {
		hs, ok := a.cityHeroes("gotham")
		return ok && len(hs) == len(want)
	})
	fig.add("bomb to gotham refilled", refill)

	// SIGKILL metropolis: dispatch reports it down and answers 503 fast.
	metro := c.procs["metropolis"]
	if err := metro.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-metro.Done()
	await(t, 10*time.Second, "metropolis down", func() bool {
		cs := a.cluster()
		return len(cs.Cities) > 0 && !cs.city("metropolis").Up
	})
	fig.add("SIGKILL to up:false", time.Since(killed))
	code, took = a.do("PUT", "/api/superheroes/"+ids[0]+"/location", map[string]string{"location": "metropolis"}, nil)
	if code != http.StatusServiceUnavailable || took > time.Second {
		t.Fatalf("assign to a dead city: %d after %v, want 503 within 1s", code, took)
	}
	fig.add("503 for a down city", took)
	if code, _ := a.do("GET", "/api/cities/metropolis/superheroes", nil, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("replica of a dead city: %d, want 503", code)
	}

	// Restart it: it rejoins and converges.
	restarted := time.Now()
	c.startCity("metropolis", quiet...)
	await(t, 30*time.Second, "metropolis back and in sync", func() bool {
		cs := a.cluster()
		return cs.city("metropolis").Up && cs.InSync && cs.city("metropolis").Heroes == len(want)
	})
	fig.add("restart to converged", time.Since(restarted))

	// Four bombs within 5 s take capitol down for good; the rest carry on.
	capitol := c.procs["capitol"]
	for i := range 4 {
		code, _ := a.do("POST", "/api/bomb", map[string]string{"city": "capitol"}, nil)
		if code != http.StatusAccepted {
			t.Fatalf("bomb %d of capitol: %d", i+1, code)
		}
	}
	select {
	case <-capitol.Done():
		if code := capitol.ExitCode(); code == 0 {
			t.Fatalf("capitol exited 0 after giving up")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("capitol still running after 4 bombs within 5 s")
	}
	await(t, 10*time.Second, "capitol down", func() bool { return !a.cluster().city("capitol").Up })
	var late hero
	if code, _ := a.do("POST", "/api/superheroes", nil, &late); code != http.StatusCreated || late.Name == "" {
		t.Fatalf("create after capitol fell: %d %+v", code, late)
	}
	await(t, 10*time.Second, "late hero in the surviving cities", func() bool {
		for _, city := range []string{"gotham", "metropolis"} {
			hs, ok := a.cityHeroes(city)
			if _, found := has(hs, late.ID); !ok || !found {
				return false
			}
		}
		return true
	})

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fig.add("API write latency p50", lat[len(lat)/2])
	fig.add("API write latency max", lat[len(lat)-1])
}

func TestWrongCookieCannotJoin(t *testing.T) {
	c := newCluster(t)
	a := c.api()
	c.startCity("gotham", quiet...)
	c.startDispatch()
	// capitol, and a second dispatch on its own slot and port, hold
	// another cookie.
	c.startCity("capitol", append([]string{"-cookie", "not-the-cookie"}, quiet...)...)
	badAddr := c.spareAddr
	c.start("bad-dispatch", filepath.Join(binDir, "dispatch"), append([]string{
		"-http", badAddr, "-slot", "4", "-cookie", "not-the-cookie"}, c.layoutArgs()...))
	bad := &api{t: t, base: "http://" + badAddr, http: &http.Client{Timeout: 5 * time.Second}}

	await(t, 30*time.Second, "gotham up with the right cookie", func() bool { return a.cluster().city("gotham").Up })
	await(t, 30*time.Second, "the wrong-cookie dispatch serving", func() bool {
		code, _ := bad.do("GET", "/healthz", nil, nil)
		return code == 200
	})
	// For three provider polls, nobody crosses the cookie line: the
	// wrong-cookie dispatch sees its own capitol but never gotham, and ours
	// never sees capitol.
	testkit.AssertNever(t, 3*time.Second, func() bool {
		return a.cluster().city("capitol").Up || bad.cluster().city("gotham").Up
	}, "a node with the wrong cookie crossed into the cluster")
	// And it cannot send to gotham.
	if code, _ := bad.do("POST", "/api/bomb", map[string]string{"city": "gotham"}, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("wrong-cookie bomb of gotham: %d, want 503", code)
	}
	if code, _ := bad.do("GET", "/api/cities/gotham/superheroes", nil, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("wrong-cookie read of gotham: %d, want 503", code)
	}
}

// wsClient reads dispatch's WebSocket feed and keeps the latest view.
type wsClient struct {
	heroes  chan hero
	flashes chan string
	seen    map[string]hero
}

func dialWS(t *testing.T, c *cluster) *wsClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, _, err := websocket.Dial(ctx, "ws://"+c.httpAddr+"/ws", nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	conn.SetReadLimit(64 << 20)
	w := &wsClient{heroes: make(chan hero, 4096), flashes: make(chan string, 64), seen: map[string]hero{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var f struct {
				Type    string `json:"type"`
				Heroes  []hero `json:"heroes"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(b, &f); err != nil {
				t.Errorf("bad frame %q: %v", b, err)
				return
			}
			for _, h := range f.Heroes {
				w.heroes <- h
			}
			if f.Type == "flash" {
				w.flashes <- f.Message
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = conn.CloseNow()
		<-done
	})
	return w
}

func (w *wsClient) awaitHero(t *testing.T, id string, cond func(hero) bool) {
	t.Helper()
	if h, ok := w.seen[id]; ok && cond(h) {
		return
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case h := <-w.heroes:
			w.seen[h.ID] = h
			if h.ID == id && cond(h) {
				return
			}
		case <-timeout:
			t.Fatalf("websocket: hero %s never reached the wanted state (last %+v)", id, w.seen[id])
		}
	}
}

func (w *wsClient) awaitFlash(t *testing.T, msg string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-w.flashes:
			if m == msg {
				return
			}
		case <-timeout:
			t.Fatalf("websocket: no flash %q", msg)
		}
	}
}

// TestCitiesConvergeWithoutDispatch kills dispatch, then writes into one
// city: the cities spread it among themselves. A new dispatch then starts
// empty and is refilled from them.
func TestCitiesConvergeWithoutDispatch(t *testing.T) {
	c := newCluster(t)
	a := c.api()
	for _, name := range cities {
		c.startCity(name, quiet...)
	}
	d := c.startDispatch()
	await(t, 30*time.Second, "three cities up", func() bool {
		cs := a.cluster()
		return cs.Ready && cs.city("gotham").Up && cs.city("metropolis").Up && cs.city("capitol").Up
	})
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.Done()
	id := c.inject(t, 5, "gotham", 70)
	start := time.Now()
	if held := c.member(t, "-slot", "4", "-await", id, "-cities", "3"); held != "3" {
		t.Fatalf("hero held by %s cities, want 3", held)
	}
	t.Logf("FIGURE converged without dispatch (including the checker joining): %v", time.Since(start).Round(time.Millisecond))

	// A dispatch started again begins empty and is refilled by the cities.
	restarted := time.Now()
	c.startDispatch()
	await(t, 30*time.Second, "restarted dispatch knows the hero", func() bool {
		var h hero
		code, _ := a.do("GET", "/api/superheroes/"+id, nil, &h)
		return code == 200 && h.Health == 70
	})
	t.Logf("FIGURE dispatch restart to refilled: %v", time.Since(restarted).Round(time.Millisecond))
}

// TestFourthCityJoinsAndLeaves starts a city the original never had: it
// takes a free slot, dispatch learns it from the topology, it fills up
// and takes assignments, and when it stops the others see it go.
func TestFourthCityJoinsAndLeaves(t *testing.T) {
	c := newCluster(t)
	a := c.api()
	for _, name := range cities {
		c.startCity(name, quiet...)
	}
	c.startDispatch()
	await(t, 30*time.Second, "three cities up", func() bool { cs := a.cluster(); return cs.Ready && cs.city("capitol").Up })
	var ids []string
	for range 10 {
		var h hero
		if code, _ := a.do("POST", "/api/superheroes", nil, &h); code != http.StatusCreated {
			t.Fatalf("create: %d", code)
		}
		ids = append(ids, h.ID)
	}

	small := c.startCity("smallville", quiet...)
	joined := time.Now()
	await(t, 30*time.Second, "smallville up, filled and in sync", func() bool {
		cs := a.cluster()
		s := cs.city("smallville")
		return s.Up && s.Heroes == len(ids) && cs.InSync
	})
	t.Logf("FIGURE fourth city start to filled and in sync: %v", time.Since(joined).Round(time.Millisecond))
	var h hero
	if code, _ := a.do("PUT", "/api/superheroes/"+ids[0]+"/location", map[string]string{"location": "smallville"}, &h); code != 200 || h.Location != "smallville" {
		t.Fatalf("assign to smallville: %d %+v", code, h)
	}
	await(t, 10*time.Second, "the assignment reaches gotham", func() bool {
		hs, _ := a.cityHeroes("gotham")
		got, ok := has(hs, ids[0])
		return ok && got.Location == "smallville"
	})

	if err := small.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := small.ExitCode(); code != 0 {
		t.Fatalf("smallville exited %d on SIGTERM", code)
	}
	await(t, 10*time.Second, "smallville seen leaving", func() bool {
		cs := a.cluster()
		return !cs.city("smallville").Up && cs.city("gotham").Up && cs.InSync
	})
	if code, _ := a.do("PUT", "/api/superheroes/"+ids[1]+"/location", map[string]string{"location": "smallville"}, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("assign to a city that left: %d, want 503", code)
	}
}
