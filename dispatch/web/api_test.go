package web

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

func TestAPI(t *testing.T) {
	unknown := uuid.New().String()
	// ids are filled per case from the seeded heroes.
	type ids struct{ live, dead string }
	type tc struct {
		name   string
		method string
		path   string // "{live}" and "{dead}" are replaced
		body   string
		send   func(e *env, path string) response // overrides method/body
		setup  func(e *env)
		want   int
		check  func(t *testing.T, e *env, r response, id ids)
	}
	hero := func(t *testing.T, r response) heroJSON {
		t.Helper()
		var h heroJSON
		r.json(t, &h)
		return h
	}
	// wantError checks the JSON error names what happened.
	wantError := func(part string) func(t *testing.T, e *env, r response, id ids) {
		return func(t *testing.T, e *env, r response, id ids) {
			t.Helper()
			var body struct {
				Error string `json:"error"`
			}
			r.json(t, &body)
			if !strings.Contains(body.Error, part) {
				t.Errorf("error %q does not say %q", body.Error, part)
			}
		}
	}
	cases := []tc{
		{name: "healthz", method: "GET", path: "/healthz", want: 200},
		{name: "readyz", method: "GET", path: "/readyz", want: 200},
		{name: "readyz catching up", method: "GET", path: "/readyz", want: 503, setup: catchingUp,
			check: wantError("dispatch is catching up")},
		{name: "healthz while catching up", method: "GET", path: "/healthz", want: 200, setup: catchingUp},
		{name: "list catching up", method: "GET", path: "/api/superheroes", want: 503, setup: catchingUp,
			check: wantError("dispatch is catching up")},
		{name: "create not confirmed", method: "POST", path: "/api/superheroes", body: `{"name":"X"}`, want: 503,
			setup: func(e *env) {
				e.backend.mu.Lock()
				e.backend.fail = fmt.Errorf("%w: no city confirmed the write in time; it may still spread", service.ErrOutcomeUnknown)
				e.backend.mu.Unlock()
			},
			check: wantError("outcome unknown")},

		// list
		{name: "list", method: "GET", path: "/api/superheroes", want: 200, check: func(t *testing.T, e *env, r response, id ids) {
			var body heroesJSON
			r.json(t, &body)
			if len(body.Superheroes) != 2 {
				t.Fatalf("got %d heroes, want the 2 live ones: %s", len(body.Superheroes), r.body)
			}
			names := []string{body.Superheroes[0].Name, body.Superheroes[1].Name}
			if !slices.Equal(names, []string{"Alpha", "Zed"}) {
				t.Errorf("names %v, want sorted [Alpha Zed]", names)
			}
		}},
		{name: "list empty is []", method: "GET", path: "/api/superheroes", want: 200,
			setup: func(e *env) {
				e.backend.mu.Lock()
				e.backend.rep = crdt.NewReplica(crdt.NewClock("x", func() int64 { return 1 }))
				e.backend.mu.Unlock()
			},
			check: func(t *testing.T, e *env, r response, id ids) {
				if got := strings.TrimSpace(string(r.body)); got != `{"superheroes":[]}` {
					t.Errorf("body %s", got)
				}
			}},

		// create
		{name: "create no body", method: "POST", path: "/api/superheroes", want: 201, check: func(t *testing.T, e *env, r response, id ids) {
			h := hero(t, r)
			if h.Name != "Captain Test" || h.Location != "home" || h.Health != 100 || h.IsPatrolling || h.Dead {
				t.Errorf("hero %+v", h)
			}
			if r.header.Get("Location") != "/api/superheroes/"+h.ID {
				t.Errorf("Location %q", r.header.Get("Location"))
			}
		}},
		{name: "create empty object", method: "POST", path: "/api/superheroes", body: `{}`, want: 201},
		{name: "create blank name", method: "POST", path: "/api/superheroes", body: `{"name":"   "}`, want: 201, check: func(t *testing.T, e *env, r response, id ids) {
			if h := hero(t, r); h.Name != "Captain Test" {
				t.Errorf("name %q, want the made-up one", h.Name)
			}
		}},
		{name: "create trims name", method: "POST", path: "/api/superheroes", body: `{"name":"  Bob  "}`, want: 201, check: func(t *testing.T, e *env, r response, id ids) {
			if h := hero(t, r); h.Name != "Bob" {
				t.Errorf("name %q", h.Name)
			}
		}},
		{name: "create 64 characters", method: "POST", path: "/api/superheroes", body: `{"name":"` + strings.Repeat("é", 64) + `"}`, want: 201},
		{name: "create 65 characters", method: "POST", path: "/api/superheroes", body: `{"name":"` + strings.Repeat("a", 65) + `"}`, want: 400},
		{name: "create control character", method: "POST", path: "/api/superheroes", body: `{"name":"a\u0007b"}`, want: 400},
		{name: "create malformed", method: "POST", path: "/api/superheroes", body: `{"name":`, want: 400},
		{name: "create wrong type", method: "POST", path: "/api/superheroes", body: `{"name":5}`, want: 400},
		{name: "create unknown field", method: "POST", path: "/api/superheroes", body: `{"name":"x","power":9000}`, want: 400},
		{name: "create trailing data", method: "POST", path: "/api/superheroes", body: `{"name":"x"} {}`, want: 400},
		{name: "create not an object", method: "POST", path: "/api/superheroes", body: `["x"]`, want: 400},
		{name: "create oversize", method: "POST", path: "/api/superheroes", body: bigBody(64 << 10), want: 413},
		{name: "create oversize chunked", path: "/api/superheroes", want: 413, send: func(e *env, path string) response {
			return e.do("POST", path, chunked{strings.NewReader(bigBody(64 << 10))}, http.Header{"Content-Type": {"application/json"}})
		}},
		{name: "create backend failure", method: "POST", path: "/api/superheroes", want: 500,
			setup: func(e *env) { e.backend.fail = errBoom },
			check: func(t *testing.T, e *env, r response, id ids) {
				if strings.Contains(string(r.body), "boom") {
					t.Errorf("internal error leaked: %s", r.body)
				}
			}},
		{name: "create from another origin", path: "/api/superheroes", want: 403, send: func(e *env, path string) response {
			return e.do("POST", path, nil, http.Header{"Origin": {"http://evil.example"}, "Content-Type": {"application/json"}})
		}},
		{name: "create from own origin", path: "/api/superheroes", want: 201, send: func(e *env, path string) response {
			return e.do("POST", path, nil, http.Header{"Origin": {e.url}, "Content-Type": {"application/json"}})
		}},

		// get
		{name: "get live", method: "GET", path: "/api/superheroes/{live}", want: 200, check: func(t *testing.T, e *env, r response, id ids) {
			var m map[string]any
			r.json(t, &m)
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if want := []string{"dead", "health", "id", "is_patrolling", "location", "name", "stamp", "updated_at", "updated_by"}; !slices.Equal(keys, want) {
				t.Errorf("keys %v, want %v", keys, want)
			}
			h := hero(t, r)
			if h.ID != id.live || h.Name != "Alpha" {
				t.Errorf("hero %+v", h)
			}
			ts, err := time.Parse(time.RFC3339Nano, h.UpdatedAt)
			if err != nil || time.Since(ts) > time.Minute || time.Since(ts) < 0 {
				t.Errorf("updated_at %q: %v", h.UpdatedAt, err)
			}
		}},
		{name: "get dead", method: "GET", path: "/api/superheroes/{dead}", want: 410, check: func(t *testing.T, e *env, r response, id ids) {
			var gone struct {
				Error     string   `json:"error"`
				Superhero heroJSON `json:"superhero"`
			}
			if err := json.Unmarshal(r.body, &gone); err != nil {
				t.Fatalf("410 body %q: %v", r.body, err)
			}
			if gone.Error == "" || gone.Superhero.ID != id.dead || !gone.Superhero.Dead || gone.Superhero.Stamp.Node == "" {
				t.Errorf("410 body %q: want the error and the tombstone with its stamp", r.body)
			}
		}},
		{name: "get unknown", method: "GET", path: "/api/superheroes/" + unknown, want: 404},
		{name: "get bad uuid", method: "GET", path: "/api/superheroes/not-a-uuid", want: 400},
		{name: "get uuid without dashes", method: "GET", path: "/api/superheroes/" + strings.ReplaceAll(unknown, "-", ""), want: 400},

		// delete
		{name: "delete live", method: "DELETE", path: "/api/superheroes/{live}", want: 204, check: func(t *testing.T, e *env, r response, id ids) {
			if len(r.body) != 0 {
				t.Errorf("body %q", r.body)
			}
			if got := e.doJSON("GET", "/api/superheroes/"+id.live, "").status; got != 410 {
				t.Errorf("after delete, get = %d, want 410", got)
			}
		}},
		{name: "delete dead", method: "DELETE", path: "/api/superheroes/{dead}", want: 204},
		{name: "delete unknown", method: "DELETE", path: "/api/superheroes/" + unknown, want: 404},
		{name: "delete bad uuid", method: "DELETE", path: "/api/superheroes/123", want: 400},

		// assign
		{name: "assign city", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":"gotham"}`, want: 200, check: func(t *testing.T, e *env, r response, id ids) {
			if h := hero(t, r); h.Location != "gotham" || h.IsPatrolling || h.ID != id.live {
				t.Errorf("hero %+v", h)
			}
			if d := e.backend.lastDeadline(); d <= 0 || d > time.Second {
				t.Errorf("backend call deadline %v, want within 1s", d)
			}
		}},
		{name: "assign home", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":"home"}`, want: 200, check: func(t *testing.T, e *env, r response, id ids) {
			if h := hero(t, r); h.Location != "home" {
				t.Errorf("hero %+v", h)
			}
		}},
		{name: "assign unknown city", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":"atlantis"}`, want: 400},
		{name: "assign invalid location", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":"Gotham City!"}`, want: 400},
		{name: "assign empty location", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":""}`, want: 400},
		{name: "assign missing location", method: "PUT", path: "/api/superheroes/{live}/location", body: `{}`, want: 400},
		{name: "assign null location", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":null}`, want: 400},
		{name: "assign no body", method: "PUT", path: "/api/superheroes/{live}/location", want: 400},
		{name: "assign malformed", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":"gotham"`, want: 400},
		{name: "assign unknown field", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":"gotham","speed":1}`, want: 400},
		{name: "assign oversize", method: "PUT", path: "/api/superheroes/{live}/location", body: bigBody(70 << 10), want: 413},
		{name: "assign unknown hero", method: "PUT", path: "/api/superheroes/" + unknown + "/location", body: `{"location":"gotham"}`, want: 404},
		{name: "assign dead hero", method: "PUT", path: "/api/superheroes/{dead}/location", body: `{"location":"gotham"}`, want: 409},
		{name: "assign bad uuid", method: "PUT", path: "/api/superheroes/nope/location", body: `{"location":"gotham"}`, want: 400},
		{name: "assign city down", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":"gotham"}`, want: 503,
			setup: func(e *env) { e.backend.setUp(crdt.Gotham, false) }},
		{name: "assign home while city down", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":"home"}`, want: 200,
			setup: func(e *env) { e.backend.setUp(crdt.Gotham, false) }},
		{name: "assign times out", method: "PUT", path: "/api/superheroes/{live}/location", body: `{"location":"gotham"}`, want: 503,
			setup: func(e *env) {
				e.srv.cfg.CommandTimeout = 20 * time.Millisecond
				e.backend.block = true
			}},

		// bomb
		{name: "bomb city", method: "POST", path: "/api/bomb", body: `{"city":"gotham"}`, want: 202, check: func(t *testing.T, e *env, r response, id ids) {
			if got := strings.TrimSpace(string(r.body)); got != `{"city":"gotham"}` {
				t.Errorf("body %s", got)
			}
		}},
		{name: "bomb random", method: "POST", path: "/api/bomb", want: 202, check: func(t *testing.T, e *env, r response, id ids) {
			var body cityRefJSON
			r.json(t, &body)
			if !slices.Contains(crdt.DefaultCities, crdt.Location(body.City)) {
				t.Errorf("city %q", body.City)
			}
		}},
		{name: "bomb random skips down cities", method: "POST", path: "/api/bomb", body: `{}`, want: 202,
			setup: func(e *env) {
				e.backend.setUp(crdt.Gotham, false)
				e.backend.setUp(crdt.Capitol, false)
			},
			check: func(t *testing.T, e *env, r response, id ids) {
				if got := strings.TrimSpace(string(r.body)); got != `{"city":"metropolis"}` {
					t.Errorf("body %s", got)
				}
			}},
		{name: "bomb unknown city", method: "POST", path: "/api/bomb", body: `{"city":"atlantis"}`, want: 400},
		{name: "bomb home", method: "POST", path: "/api/bomb", body: `{"city":"home"}`, want: 400},
		{name: "bomb invalid city", method: "POST", path: "/api/bomb", body: `{"city":"../etc"}`, want: 400},
		{name: "bomb city down", method: "POST", path: "/api/bomb", body: `{"city":"capitol"}`, want: 503,
			setup: func(e *env) { e.backend.setUp(crdt.Capitol, false) }},
		{name: "bomb every city down", method: "POST", path: "/api/bomb", want: 503,
			setup: func(e *env) {
				for _, c := range crdt.DefaultCities {
					e.backend.setUp(c, false)
				}
			}},
		{name: "bomb malformed", method: "POST", path: "/api/bomb", body: `{"city":`, want: 400},
		{name: "bomb unknown field", method: "POST", path: "/api/bomb", body: `{"town":"gotham"}`, want: 400},
		{name: "bomb oversize", method: "POST", path: "/api/bomb", body: bigBody(100 << 10), want: 413},
		{name: "bomb from another origin", path: "/api/bomb", want: 403, send: func(e *env, path string) response {
			return e.do("POST", path, strings.NewReader(`{"city":"gotham"}`), http.Header{"Origin": {"https://evil.example"}, "Content-Type": {"application/json"}})
		}},

		// cluster
		{name: "cluster", method: "GET", path: "/api/cluster", want: 200, check: func(t *testing.T, e *env, r response, id ids) {
			var c clusterJSON
			r.json(t, &c)
			if len(c.Cities) != 3 || c.Cities[0].Name != "gotham" || !c.Cities[0].Up || c.Cities[0].Heroes != 2 || len(c.Cities[0].Digest) != 16 || !c.InSync {
				t.Errorf("cluster %s", r.body)
			}
		}},
		{name: "cluster city down", method: "GET", path: "/api/cluster", want: 200,
			setup: func(e *env) { e.backend.setUp(crdt.Metropolis, false) },
			check: func(t *testing.T, e *env, r response, id ids) {
				var c clusterJSON
				r.json(t, &c)
				if c.InSync || c.Cities[1].Up || c.Cities[1].Digest != "" || c.Cities[1].Heroes != 0 {
					t.Errorf("cluster %s", r.body)
				}
			}},

		// city heroes
		{name: "city heroes", method: "GET", path: "/api/cities/gotham/superheroes", want: 200,
			setup: func(e *env) {
				r := e.doJSON("PUT", "/api/superheroes/"+e.backend.mustHeroes()[0].ID.String()+"/location", `{"location":"gotham"}`)
				if r.status != 200 {
					e.t.Fatalf("assign: %d %s", r.status, r.body)
				}
			},
			check: func(t *testing.T, e *env, r response, id ids) {
				var body heroesJSON
				r.json(t, &body)
				if len(body.Superheroes) != 1 || body.Superheroes[0].Location != "gotham" {
					t.Errorf("body %s", r.body)
				}
			}},
		{name: "city heroes empty", method: "GET", path: "/api/cities/capitol/superheroes", want: 200, check: func(t *testing.T, e *env, r response, id ids) {
			if got := strings.TrimSpace(string(r.body)); got != `{"superheroes":[]}` {
				t.Errorf("body %s", got)
			}
		}},
		{name: "city heroes unknown city", method: "GET", path: "/api/cities/atlantis/superheroes", want: 400},
		{name: "city heroes home", method: "GET", path: "/api/cities/home/superheroes", want: 400},
		{name: "city heroes invalid city", method: "GET", path: "/api/cities/GOTHAM/superheroes", want: 400},
		{name: "city heroes down", method: "GET", path: "/api/cities/gotham/superheroes", want: 503,
			setup: func(e *env) { e.backend.setUp(crdt.Gotham, false) }},

		// routing and the page
		{name: "unknown api route", method: "GET", path: "/api/nope", want: 404},
		{name: "unknown route", method: "GET", path: "/nope", want: 404},
		{name: "trailing slash", method: "GET", path: "/api/superheroes/", want: 404},
		{name: "method not allowed", method: "PATCH", path: "/api/superheroes", want: 405},
		{name: "method not allowed on hero", method: "POST", path: "/api/superheroes/{live}", want: 405},
		{name: "ws without upgrade", method: "GET", path: "/ws", want: 426},
		{name: "panic", method: "GET", path: "/api/superheroes", want: 500,
			setup: func(e *env) { e.backend.panics = true }},
		{name: "page", method: "GET", path: "/", want: 200, check: func(t *testing.T, e *env, r response, id ids) {
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type %q", ct)
			}
			for _, s := range []string{`id="create"`, `id="bomb"`, `id="flash"`, `id="cities"`, `id="heroes"`, `id="log"`, `/static/app.js`} {
				if !strings.Contains(string(r.body), s) {
					t.Errorf("page lacks %s", s)
				}
			}
			if r.header.Get("Content-Security-Policy") == "" {
				t.Error("no Content-Security-Policy")
			}
		}},
		{name: "script", method: "GET", path: "/static/app.js", want: 200, check: func(t *testing.T, e *env, r response, id ids) {
			if ct := r.header.Get("Content-Type"); !strings.Contains(ct, "javascript") {
				t.Errorf("Content-Type %q", ct)
			}
			// dataset.heroId is the data-hero-id attribute.
			for _, s := range []string{"dataset.heroId", "dataset.city", "dataset.state"} {
				if !strings.Contains(string(r.body), s) {
					t.Errorf("script lacks %s", s)
				}
			}
		}},
		{name: "stylesheet", method: "GET", path: "/static/style.css", want: 200},
		{name: "missing asset", method: "GET", path: "/static/nope.js", want: 404},
		{name: "asset traversal", method: "GET", path: "/static/../server.go", want: 404},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			id := ids{live: e.backend.seed(t, "Alpha").ID.String(), dead: e.backend.seedDead(t, "Ghost").ID.String()}
			e.backend.seed(t, "Zed")
			if c.setup != nil {
				c.setup(e)
			}
			path := strings.NewReplacer("{live}", id.live, "{dead}", id.dead).Replace(c.path)
			var r response
			if c.send != nil {
				r = c.send(e, path)
			} else {
				r = e.doJSON(c.method, path, c.body)
			}
			if r.status != c.want {
				t.Fatalf("%s %s: status %d, want %d; body %s", c.method, path, r.status, c.want, r.body)
			}
			if c.want >= 400 {
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("error Content-Type %q", ct)
				}
				if !isJSONError(r.body) {
					t.Errorf(`error body %q, want {"error":"..."}`, r.body)
				}
			}
			if c.check != nil {
				c.check(t, e, r, id)
			}
		})
	}
}

// TestAPIBombFlashes checks that a bomb through the API reaches every page.
func TestAPIBombFlashes(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t.Context(), nil)
	nextFrame(t, c, "snapshot")
	if r := e.doJSON("POST", "/api/bomb", `{"city":"capitol"}`); r.status != 202 {
		t.Fatalf("bomb: %d %s", r.status, r.body)
	}
	if f := nextFrame(t, c, "flash"); f.Message != "capitol has been destroyed" {
		t.Errorf("flash %q", f.Message)
	}
}

func TestNewRejectsBadOriginPattern(t *testing.T) {
	hub := NewHub(HubConfig{}, nil)
	if _, err := New(Config{AllowedOrigins: []string{"["}}, newFakeBackend(hub), hub, nil); err == nil {
		t.Fatal("New accepted a malformed origin pattern")
	}
}

func TestFakeHeroNames(t *testing.T) {
	names := DefaultConfig().NewName
	seen := map[string]bool{}
	for range 200 {
		n := names()
		clean, err := cleanName(n)
		if err != nil || clean != n || n == "" {
			t.Fatalf("made-up name %q: %v", n, err)
		}
		seen[n] = true
	}
	if len(seen) < 50 {
		t.Errorf("only %d different names in 200", len(seen))
	}
}

func TestDefaultConfig(t *testing.T) {
	c := Config{}.withDefaults()
	if c.Addr != "127.0.0.1:4900" || c.BodyLimit != 64<<10 || c.CommandTimeout != time.Second || c.WriteTimeout <= 0 || c.ShutdownTimeout <= 0 || c.TombstoneTTL != crdt.DefaultTombstoneTTL {
		t.Errorf("defaults %+v", c)
	}
}

// TestRunShutsDown serves on a real port through Run and checks that
// cancelling the context shuts the server down, closing WebSockets.
func TestRunShutsDown(t *testing.T) {
	hub := NewHub(HubConfig{}, testLogger(t))
	defer hub.Close()
	srv, err := New(Config{Addr: "127.0.0.1:0"}, newFakeBackend(hub), hub, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := testContext(t)
	errc := make(chan error, 1)
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	go func() { errc <- srv.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String()
	res, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("healthz %d", res.StatusCode)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// catchingUp makes the fake backend answer as a dispatch that restarted
// and has not read a city yet.
func catchingUp(e *env) {
	e.backend.mu.Lock()
	e.backend.catching = true
	e.backend.fail = fmt.Errorf("%w: dispatch is catching up", service.ErrUnavailable)
	e.backend.mu.Unlock()
}
