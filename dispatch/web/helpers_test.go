package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
	"github.com/superhero-cluster/superhero/locations/city"
)

// fakeBackend is an in-memory service.Backend over a real crdt.Replica.
// Cities are only names with an up flag.
type fakeBackend struct {
	pub service.Publisher

	mu       sync.Mutex
	rep      *crdt.Replica
	cities   []crdt.Location
	up       map[crdt.Location]bool
	rng      *rand.Rand
	bombed   []crdt.Location
	fail     error         // returned by every call that takes a context
	block    bool          // Assign waits for its context to end
	deadline time.Duration // time left on the context of the latest call
	panics   bool          // Heroes panics
	catching bool          // not Ready: catching up after a restart
	heroErr  error         // returned by Heroes: the replica is not answering
	reads    int           // calls of Heroes
}

func (f *fakeBackend) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.catching
}

var _ service.Backend = (*fakeBackend)(nil)

func newFakeBackend(pub service.Publisher) *fakeBackend {
	clock := crdt.NewClock("dispatch", func() int64 { return time.Now().UnixNano() })
	f := &fakeBackend{
		pub:    pub,
		rep:    crdt.NewReplica(clock),
		cities: append([]crdt.Location(nil), crdt.DefaultCities...),
		up:     make(map[crdt.Location]bool),
		rng:    rand.New(rand.NewPCG(1, 2)),
	}
	for _, c := range f.cities {
		f.up[c] = true
	}
	return f
}

func (f *fakeBackend) publish(d crdt.Delta) {
	if f.pub != nil {
		f.pub.Publish(service.DeltaEvent(d))
	}
}

// note records the context's deadline and returns the configured failure.
func (f *fakeBackend) note(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline = -1
	if d, ok := ctx.Deadline(); ok {
		f.deadline = time.Until(d)
	}
	return f.fail
}

func (f *fakeBackend) setUp(city crdt.Location, up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up[city] = up
}

func (f *fakeBackend) lastDeadline() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deadline
}

func (f *fakeBackend) cityErr(city crdt.Location) error {
	up, known := f.up[city]
	switch {
	case !known:
		return fmt.Errorf("%w: %s", service.ErrUnknownCity, city)
	case !up:
		return fmt.Errorf("%w: %s", service.ErrCityDown, city)
	}
	return nil
}

func (f *fakeBackend) Heroes() ([]crdt.Hero, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.panics {
		panic("fake: Heroes panics")
	}
	if f.heroErr != nil {
		return nil, f.heroErr
	}
	return f.rep.Heroes(), nil
}

func (f *fakeBackend) Hero(id uuid.UUID) (crdt.Hero, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rep.Lookup(id)
}

func (f *fakeBackend) Create(ctx context.Context, name string) (crdt.Hero, error) {
	if err := f.note(ctx); err != nil {
		return crdt.Hero{}, err
	}
	f.mu.Lock()
	h, d, err := f.rep.Create(uuid.New(), name)
	f.mu.Unlock()
	f.publish(d)
	return h, err
}

func (f *fakeBackend) Delete(ctx context.Context, id uuid.UUID) error {
	if err := f.note(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	d, err := f.rep.Delete(id)
	f.mu.Unlock()
	f.publish(d)
	return err
}

func (f *fakeBackend) Assign(ctx context.Context, id uuid.UUID, to crdt.Location) (crdt.Hero, error) {
	if err := f.note(ctx); err != nil {
		return crdt.Hero{}, err
	}
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return crdt.Hero{}, ctx.Err()
	}
	f.mu.Lock()
	if to.IsCity() {
		if err := f.cityErr(to); err != nil {
			f.mu.Unlock()
			return crdt.Hero{}, err
		}
	}
	h, d, err := assign(f.rep, id, to)
	f.mu.Unlock()
	f.publish(d)
	return h, err
}

// assign applies the city package's rule, as the real cities and dispatch
// do: the hero goes to the city, or Home, idle and healed.
func assign(r *crdt.Replica, id uuid.UUID, to crdt.Location) (crdt.Hero, crdt.Delta, error) {
	if !to.IsCity() {
		return city.AssignHome(r, id, city.Config{})
	}
	c, err := city.New(to, r, nil, city.Config{})
	if err != nil {
		return crdt.Hero{}, crdt.Delta{}, err
	}
	return c.Assign(id)
}

func (f *fakeBackend) Bomb(ctx context.Context, city crdt.Location) (crdt.Location, error) {
	if err := f.note(ctx); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if city == "" {
		var up []crdt.Location
		for _, c := range f.cities {
			if f.up[c] {
				up = append(up, c)
			}
		}
		if len(up) == 0 {
			return "", fmt.Errorf("%w: every city is down", service.ErrCityDown)
		}
		city = up[f.rng.IntN(len(up))]
	}
	if err := f.cityErr(city); err != nil {
		return "", err
	}
	f.bombed = append(f.bombed, city)
	return city, nil
}

func (f *fakeBackend) Cluster(ctx context.Context) service.ClusterStatus {
	_ = f.note(ctx) // Cluster cannot fail
	f.mu.Lock()
	defer f.mu.Unlock()
	cs := service.ClusterStatus{InSync: true, Ready: !f.catching}
	for _, c := range f.cities {
		st := service.CityStatus{Name: c, Up: f.up[c]}
		if st.Up {
			st.Heroes, st.Digest = f.rep.Len(), f.rep.Fingerprint()
		} else {
			cs.InSync = false
		}
		cs.Cities = append(cs.Cities, st)
	}
	return cs
}

func (f *fakeBackend) CityHeroes(ctx context.Context, city crdt.Location) ([]crdt.Hero, error) {
	if err := f.note(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.cityErr(city); err != nil {
		return nil, err
	}
	var out []crdt.Hero
	for _, h := range f.rep.Heroes() {
		if h.Location == city {
			out = append(out, h)
		}
	}
	return out, nil
}

// seed adds a live hero without publishing.
func (f *fakeBackend) seed(t *testing.T, name string) crdt.Hero {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	h, _, err := f.rep.Create(uuid.New(), name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// seedDead adds a tombstone without publishing.
func (f *fakeBackend) seedDead(t *testing.T, name string) crdt.Hero {
	t.Helper()
	h := f.seed(t, name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.rep.Delete(h.ID); err != nil {
		t.Fatal(err)
	}
	return h
}

// testLogger sends logs to t.Log until the test ends.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return w
}

// logBuffer keeps log lines for a test to look at.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the lines holding every one of substrings.
func (l *logBuffer) lines(substrings ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range strings.Split(l.b.String(), "\n") {
		for _, s := range substrings {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

// env is a server over a fake backend, served by Serve on a real
// loopback listener.
type env struct {
	t       *testing.T
	srv     *Server
	hub     *Hub
	backend *fakeBackend
	logs    *logBuffer // everything the server and hub logged
	url     string     // http://127.0.0.1:PORT
	addr    string     // 127.0.0.1:PORT
	client  *http.Client
	token   string // sent as a bearer token by do, when set
}

type envOption func(*Config, *HubConfig)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Addr: ln.Addr().String(), NewName: func() string { return "Captain Test" }}
	var hcfg HubConfig
	for _, o := range opts {
		o(&cfg, &hcfg)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(newTestWriter(t), logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	hub := NewHub(hcfg, log)
	fb := newFakeBackend(hub)
	srv, err := New(cfg, fb, hub, log)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
		client.CloseIdleConnections()
		hub.Close()
	})
	addr := ln.Addr().String()
	return &env{t: t, srv: srv, hub: hub, backend: fb, logs: logs, url: "http://" + addr, addr: addr, client: client}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d %q: %v", r.status, r.body, err)
	}
}

// errorText returns the "error" of a JSON error body.
func (r response) errorText(t *testing.T) string {
	t.Helper()
	var body struct {
		Error string `json:"error"`
	}
	r.json(t, &body)
	return body.Error
}

// do sends a request; a body of nil sends none. It sends e.token as a
// bearer token unless header has an Authorization.
func (e *env) do(method, path string, body io.Reader, header http.Header) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	if e.token != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// doJSON sends body (none if "") as application/json, as a client of the
// API does.
func (e *env) doJSON(method, path, body string) response {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	var h http.Header
	if method == http.MethodPost || method == http.MethodPut || body != "" {
		h = http.Header{"Content-Type": {"application/json"}}
	}
	return e.do(method, path, r, h)
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; !cond(); delay = min(2*delay, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(delay)
	}
}

// frame is any server-to-client WebSocket frame.
type frame struct {
	Type    string          `json:"type"`
	Ref     json.RawMessage `json:"ref"`
	Heroes  []heroJSON      `json:"heroes"`
	Cluster *clusterJSON    `json:"cluster"`
	Message string          `json:"message"`
	Hero    *heroJSON       `json:"hero"`
	ID      string          `json:"id"`
	City    string          `json:"city"`
	Error   string          `json:"error"`
	Status  int             `json:"status"`
	Part    int             `json:"part"`  // snapshot_part
	Parts   int             `json:"parts"` // snapshot, snapshot_part
	Count   int             `json:"count"` // snapshot
}

func (e *env) wsURL() string { return "ws" + strings.TrimPrefix(e.url, "http") + "/ws" }

// dial opens a WebSocket client; it is closed when the test ends.
func (e *env) dial(ctx context.Context, opts *websocket.DialOptions) *websocket.Conn {
	e.t.Helper()
	c, res, err := websocket.Dial(ctx, e.wsURL(), opts)
	if res != nil && res.Body != nil {
		res.Body.Close()
	}
	if err != nil {
		e.t.Fatal(err)
	}
	c.SetReadLimit(-1)
	e.t.Cleanup(func() { c.CloseNow() })
	return c
}

// readFrame reads one frame within 5 s.
func readFrame(ctx context.Context, c *websocket.Conn) (frame, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	if typ != websocket.MessageText {
		return frame{}, fmt.Errorf("frame type %v", typ)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return frame{}, fmt.Errorf("frame %q: %w", b, err)
	}
	return f, nil
}

// nextFrame reads frames until one of the given type, within 5 s in all.
func nextFrame(t *testing.T, c *websocket.Conn, typ string) frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		f, err := readFrame(ctx, c)
		if err != nil {
			t.Fatalf("waiting for a %s frame: %v", typ, err)
		}
		if f.Type != typ {
			continue
		}
		if typ == "snapshot" {
			f.Heroes = readParts(t, ctx, c, f)
		}
		return f
	}
}

// readParts reads the snapshot_part frames that follow the snapshot frame
// head, checking they come in order with nothing in between, and returns
// their heroes.
func readParts(t *testing.T, ctx context.Context, c *websocket.Conn, head frame) []heroJSON {
	t.Helper()
	heroes := []heroJSON{}
	for i := range head.Parts {
		p, err := readFrame(ctx, c)
		if err != nil {
			t.Fatalf("snapshot part %d of %d: %v", i+1, head.Parts, err)
		}
		if p.Type != "snapshot_part" || p.Part != i+1 || p.Parts != head.Parts {
			t.Fatalf("frame %d after the snapshot frame is %+v, want snapshot_part %d of %d", i+1, p, i+1, head.Parts)
		}
		heroes = append(heroes, p.Heroes...)
	}
	if len(heroes) != head.Count {
		t.Fatalf("snapshot parts hold %d heroes, the snapshot frame says %d", len(heroes), head.Count)
	}
	return heroes
}

// roundTrip sends a command and returns its reply, skipping event frames.
func roundTrip(t *testing.T, c *websocket.Conn, cmd string) frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := readFrame(ctx, c)
		if err != nil {
			t.Fatalf("waiting for the reply to %s: %v", cmd, err)
		}
		if f.Type == "ok" || f.Type == "error" {
			return f
		}
	}
}

// bigBody returns a JSON object of more than n bytes.
func bigBody(n int) string {
	return `{"name":"` + strings.Repeat("x", n) + `"}`
}

// chunked hides the length of r, so the request is sent chunked.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func isJSONError(b []byte) bool {
	var e map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&e); err != nil {
		return false
	}
	msg, ok := e["error"].(string)
	// A 410 also carries the tombstone.
	_, tombstone := e["superhero"]
	return ok && msg != "" && (len(e) == 1 || len(e) == 2 && tombstone)
}

var errBoom = errors.New("boom")

// testContext returns a context cancelled when the test ends.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// mustHeroes returns the fake's heroes for test setup.
func (f *fakeBackend) mustHeroes() []crdt.Hero {
	hs, err := f.Heroes()
	if err != nil {
		panic(err)
	}
	return hs
}
