package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

func TestWSSnapshotFirst(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) { c.SnapshotPartHeroes = 2 })
	e.backend.seed(t, "Zed")
	e.backend.seedDead(t, "Ghost")
	e.backend.seed(t, "Alpha")
	e.backend.seed(t, "Mia")
	e.backend.setUp(crdt.Capitol, false)
	ctx := t.Context()

	c := e.dial(ctx, nil)
	_, raw, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var shape map[string]json.RawMessage
	if err := json.Unmarshal(raw, &shape); err != nil {
		t.Fatal(err)
	}
	if len(shape) != 5 || string(shape["type"]) != `"snapshot"` || shape["cluster"] == nil ||
		string(shape["tombstone_ttl_ms"]) != "600000" || string(shape["parts"]) != "2" || string(shape["count"]) != "3" {
		t.Fatalf("first frame %s", raw)
	}
	var f frame
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	// The heroes follow in two parts of at most two, sorted, nothing in
	// between.
	_, raw, err = c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shape = nil
	if err := json.Unmarshal(raw, &shape); err != nil {
		t.Fatal(err)
	}
	if len(shape) != 4 || string(shape["type"]) != `"snapshot_part"` || string(shape["part"]) != "1" || string(shape["parts"]) != "2" || shape["heroes"] == nil {
		t.Fatalf("second frame %s", raw)
	}
	var p1 frame
	if err := json.Unmarshal(raw, &p1); err != nil {
		t.Fatal(err)
	}
	p2, err := readFrame(ctx, c)
	if err != nil || p2.Type != "snapshot_part" || p2.Part != 2 || p2.Parts != 2 {
		t.Fatalf("third frame %+v, %v", p2, err)
	}
	heroes := append(p1.Heroes, p2.Heroes...)
	if len(heroes) != 3 || heroes[0].Name != "Alpha" || heroes[1].Name != "Mia" || heroes[2].Name != "Zed" {
		t.Errorf("snapshot heroes %+v, want the live ones sorted", heroes)
	}
	cl := f.Cluster
	if len(cl.Cities) != 3 || cl.Cities[2].Name != "capitol" || cl.Cities[2].Up || !cl.Cities[0].Up || cl.InSync {
		t.Errorf("snapshot cluster %+v", cl)
	}

	// Then events, in the documented shapes.
	id := uuid.New()
	e.hub.Publish(delta(crdt.Hero{ID: id, Name: "Nova", Location: crdt.Gotham, Health: 40, Patrolling: true, Stamp: stamp(time.Now().UnixNano())}))
	e.hub.Publish(service.ClusterEvent(service.ClusterStatus{Cities: []service.CityStatus{{Name: crdt.Gotham, Up: true, Heroes: 1, Digest: 0xabc}}, InSync: true, Ready: true}))
	e.hub.Publish(service.FlashEvent("hello"))
	want := []string{
		`{"type":"delta","heroes":[{"id":"` + id.String() + `","name":"Nova","location":"gotham","is_patrolling":true,"health":40,"dead":false,"updated_at":"`,
		`{"type":"cluster","cluster":{"cities":[{"name":"gotham","up":true,"heroes":1,"digest":"0000000000000abc","state":"up","incarnation":0,"lag_ms":0}],"in_sync":true,"ready":true}}`,
		`{"type":"flash","message":"hello"}`,
	}
	for _, w := range want {
		_, raw, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(raw), w) {
			t.Errorf("frame\n%s\nwant prefix\n%s", raw, w)
		}
	}
}

func TestWSCommands(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	dead := e.backend.seedDead(t, "Ghost")
	a, b := e.dial(ctx, nil), e.dial(ctx, nil)
	nextFrame(t, a, "snapshot")
	nextFrame(t, b, "snapshot")

	r := roundTrip(t, a, `{"op":"create","name":"  Nova ","ref":"c1"}`)
	if r.Type != "ok" || string(r.Ref) != `"c1"` || r.Hero == nil || r.Hero.Name != "Nova" || r.Hero.Location != "home" {
		t.Fatalf("create reply %+v", r)
	}
	id := r.Hero.ID
	if d := nextFrame(t, b, "delta"); len(d.Heroes) != 1 || d.Heroes[0].ID != id {
		t.Errorf("observer delta %+v", d)
	}

	r = roundTrip(t, a, `{"op":"create","ref":7}`)
	if r.Type != "ok" || string(r.Ref) != `7` || r.Hero.Name != "Captain Test" {
		t.Errorf("create without name %+v", r)
	}

	r = roundTrip(t, a, `{"op":"assign","id":"`+id+`","location":"gotham","ref":{"k":[1]}}`)
	if r.Type != "ok" || string(r.Ref) != `{"k":[1]}` || r.Hero.Location != "gotham" || r.Hero.ID != id {
		t.Errorf("assign reply %+v", r)
	}
	if d := e.backend.lastDeadline(); d <= 0 || d > time.Second {
		t.Errorf("assign deadline %v", d)
	}

	e.backend.setUp(crdt.Metropolis, false)
	for _, tc := range []struct {
		cmd    string
		status int
	}{
		{`{"op":"assign","id":"` + id + `","location":"metropolis","ref":"down"}`, 503},
		{`{"op":"assign","id":"` + dead.ID.String() + `","location":"home","ref":"dead"}`, 409},
		{`{"op":"assign","id":"` + uuid.NewString() + `","location":"home","ref":"unknown"}`, 404},
		{`{"op":"delete","id":"` + uuid.NewString() + `","ref":"unknown"}`, 404},
		{`{"op":"bomb","city":"atlantis","ref":"atlantis"}`, 400},
		{`{"op":"bomb","city":"metropolis","ref":"down"}`, 503},
	} {
		r := roundTrip(t, a, tc.cmd)
		var ref string
		if err := json.Unmarshal(r.Ref, &ref); err != nil {
			t.Fatalf("%s: ref %s: %v", tc.cmd, r.Ref, err)
		}
		if r.Type != "error" || r.Status != tc.status || r.Error == "" || !strings.Contains(tc.cmd, `"`+ref+`"`) {
			t.Errorf("%s: reply %+v, want error %d", tc.cmd, r, tc.status)
		}
	}

	r = roundTrip(t, a, `{"op":"delete","id":"`+id+`","ref":"d"}`)
	if r.Type != "ok" || r.ID != id {
		t.Errorf("delete reply %+v", r)
	}
	for {
		d := nextFrame(t, b, "delta")
		if i := slices.IndexFunc(d.Heroes, func(h heroJSON) bool { return h.ID == id && h.Dead }); i >= 0 {
			break
		}
	}
	if r := roundTrip(t, a, `{"op":"delete","id":"`+id+`"}`); r.Type != "ok" || r.Ref != nil {
		t.Errorf("delete again %+v", r)
	}

	// The flash may reach the sender before or after the reply.
	if err := a.Write(ctx, websocket.MessageText, []byte(`{"op":"bomb","city":"capitol","ref":"b"}`)); err != nil {
		t.Fatal(err)
	}
	var gotOK, gotFlash bool
	for !gotOK || !gotFlash {
		f, err := readFrame(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case "ok":
			gotOK = true
			if f.City != "capitol" || string(f.Ref) != `"b"` {
				t.Errorf("bomb reply %+v", f)
			}
		case "flash":
			gotFlash = true
			if f.Message != "capitol has been destroyed" {
				t.Errorf("flash %q", f.Message)
			}
		}
	}
	if f := nextFrame(t, b, "flash"); f.Message != "capitol has been destroyed" {
		t.Errorf("observer flash %q", f.Message)
	}
	r = roundTrip(t, a, `{"op":"bomb"}`)
	if r.Type != "ok" || (r.City != "gotham" && r.City != "capitol") {
		t.Errorf("random bomb with metropolis down: %+v", r)
	}
}

// TestWSRepliesInOrder sends commands without waiting; the replies come
// back in order.
func TestWSRepliesInOrder(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.dial(ctx, nil)
	nextFrame(t, c, "snapshot")
	const n = 40
	for i := range n {
		cmd := fmt.Sprintf(`{"op":"create","ref":%d}`, i)
		if i%3 == 0 {
			cmd = fmt.Sprintf(`{"op":"nope","ref":%d}`, i)
		}
		if err := c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; {
		f, err := readFrame(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != "ok" && f.Type != "error" {
			continue
		}
		if string(f.Ref) != fmt.Sprint(i) {
			t.Fatalf("reply %d has ref %s", i, f.Ref)
		}
		i++
	}
}

func TestWSBadFramesKeepConnection(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	live := e.backend.seed(t, "Alpha").ID.String()
	c := e.dial(ctx, nil)
	nextFrame(t, c, "snapshot")

	// pad makes a create command of exactly n bytes.
	pad := func(n int) string {
		head, tail := `{"op":"create","ref":"`, `"}`
		return head + strings.Repeat("r", n-len(head)-len(tail)) + tail
	}
	for _, tc := range []struct {
		name   string
		typ    websocket.MessageType
		data   string
		status int    // 0: ok
		ref    string // expected ref JSON; "" for none
	}{
		{"not JSON", websocket.MessageText, `hello`, 400, ""},
		{"truncated JSON", websocket.MessageText, `{"op":"create"`, 400, ""},
		{"array", websocket.MessageText, `[1,2]`, 400, ""},
		{"unknown op", websocket.MessageText, `{"op":"fly","ref":1}`, 400, "1"},
		{"missing op", websocket.MessageText, `{"ref":2}`, 400, "2"},
		{"unknown field", websocket.MessageText, `{"op":"create","power":1,"ref":3}`, 400, "3"},
		{"wrong field type", websocket.MessageText, `{"op":"create","name":5,"ref":4}`, 400, "4"},
		{"trailing data", websocket.MessageText, `{"op":"create","ref":5} {}`, 400, "5"},
		{"bad id", websocket.MessageText, `{"op":"delete","id":"nope","ref":6}`, 400, "6"},
		{"missing id", websocket.MessageText, `{"op":"delete","ref":7}`, 400, "7"},
		{"missing location", websocket.MessageText, `{"op":"assign","id":"` + live + `","ref":8}`, 400, "8"},
		{"unknown location", websocket.MessageText, `{"op":"assign","id":"` + live + `","location":"atlantis","ref":9}`, 400, "9"},
		{"long name", websocket.MessageText, `{"op":"create","name":"` + strings.Repeat("n", 65) + `","ref":10}`, 400, "10"},
		{"binary frame", websocket.MessageBinary, `{"op":"create","ref":11}`, 400, ""},
		{"frame over 64 KiB", websocket.MessageText, pad(64<<10 + 1), 413, ""},
		{"frame of 64 KiB", websocket.MessageText, pad(64 << 10), 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Write(ctx, tc.typ, []byte(tc.data)); err != nil {
				t.Fatal(err)
			}
			var r frame
			for r.Type != "ok" && r.Type != "error" {
				var err error
				if r, err = readFrame(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			switch {
			case tc.status == 0 && r.Type != "ok":
				t.Fatalf("reply %+v, want ok", r)
			case tc.status != 0 && (r.Type != "error" || r.Status != tc.status || r.Error == ""):
				t.Fatalf("reply %+v, want error %d", r, tc.status)
			case tc.status != 0 && string(r.Ref) != tc.ref:
				t.Errorf("ref %s, want %q", r.Ref, tc.ref)
			}
			t.Logf("reply: %s (%d)", r.Error, r.Status)
			// The connection still works.
			if after := roundTrip(t, c, `{"op":"create","ref":"after"}`); after.Type != "ok" || string(after.Ref) != `"after"` {
				t.Fatalf("after a bad frame: %+v", after)
			}
		})
	}
}

// TestWSHugeFrameCloses: beyond 16 times the frame limit the connection is
// closed with status 1009 rather than read to the end.
func TestWSHugeFrameCloses(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.dial(ctx, nil)
	nextFrame(t, c, "snapshot")
	if err := c.Write(ctx, websocket.MessageText, []byte(bigBody(16<<16))); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := readFrame(ctx, c)
		if err == nil {
			continue
		}
		if s := websocket.CloseStatus(err); s != websocket.StatusMessageTooBig {
			t.Fatalf("read error %v (status %v), want close 1009", err, s)
		}
		break
	}
	waitFor(t, 5*time.Second, "the server to unsubscribe", func() bool { return e.hub.Subscribers() == 0 })
}

func TestWSFanOutTo16Clients(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const n = 16
	clients := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range clients {
		clients[i] = e.dial(ctx, nil)
	}
	for _, c := range clients {
		nextFrame(t, c, "snapshot")
	}
	id := uuid.New()
	for _, c := range clients {
		wg.Go(func() {
			for {
				f, err := readFrame(ctx, c)
				if err != nil {
					errs <- err
					return
				}
				if f.Type == "delta" && len(f.Heroes) == 1 && f.Heroes[0].ID == id.String() {
					return
				}
			}
		})
	}
	e.hub.Publish(delta(entry(id, time.Now().UnixNano(), 100, false)))
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWSSlowClientDropped: a client that never reads is dropped and its
// connection closed, the others keep receiving, and Publish never waits.
// A Publish that waited for the stuck writer would take up to the 2 s
// write timeout; it is held to 1 s, which is hundreds of times what it
// needs even on a loaded machine.
func TestWSSlowClientDropped(t *testing.T) {
	const writeTimeout = 2 * time.Second
	e := newEnv(t, func(c *Config, h *HubConfig) {
		c.WriteTimeout = writeTimeout
		h.MaxPendingHeroes = 1000
	})
	ctx := t.Context()

	// The slow client's socket buffer is tiny, so the server's writes
	// block soon.
	tinyBuffer := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if tc, ok := conn.(*net.TCPConn); ok {
			err = errors.Join(err, tc.SetReadBuffer(4096))
		}
		return conn, err
	}}
	t.Cleanup(tinyBuffer.CloseIdleConnections)
	e.dial(ctx, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tinyBuffer}})

	const fastClients = 3
	var seen [fastClients]atomic.Int64 // latest round each fast client saw
	var wg sync.WaitGroup
	fastCtx, stopFast := context.WithCancel(ctx)
	for i := range fastClients {
		c := e.dial(ctx, nil)
		wg.Go(func() {
			for {
				typ, b, err := c.Read(fastCtx)
				if err != nil {
					return
				}
				var f frame
				if typ != websocket.MessageText || json.Unmarshal(b, &f) != nil {
					continue
				}
				for _, h := range f.Heroes {
					var round int64
					if _, err := fmt.Sscanf(h.Name, "round %d", &round); err == nil && round > seen[i].Load() {
						seen[i].Store(round)
					}
				}
			}
		})
	}
	defer func() {
		stopFast()
		wg.Wait()
	}()
	waitFor(t, 5*time.Second, "4 subscribers", func() bool { return e.hub.Subscribers() == fastClients+1 })

	padding := strings.Repeat("p", 50)
	var slowest time.Duration
	publishRound := func(round int) {
		hs := make([]crdt.Hero, 0, 201)
		for range 200 {
			hs = append(hs, crdt.Hero{ID: uuid.New(), Name: padding, Location: crdt.Home, Health: 100, Stamp: stamp(int64(round))})
		}
		hs = append(hs, crdt.Hero{ID: uuid.New(), Name: fmt.Sprintf("round %d", round), Location: crdt.Home, Stamp: stamp(int64(round))})
		published := make(chan time.Duration, 1)
		go func() {
			start := time.Now()
			e.hub.Publish(delta(hs...))
			published <- time.Since(start)
		}()
		select {
		case d := <-published:
			slowest = max(slowest, d)
		case <-time.After(writeTimeout / 2):
			t.Fatal("Publish blocked")
		}
		waitFor(t, 5*time.Second, fmt.Sprintf("fast clients to see round %d", round), func() bool {
			for i := range seen {
				if seen[i].Load() < int64(round) {
					return false
				}
			}
			return true
		})
	}
	round := 1
	for ; e.hub.Subscribers() > fastClients; round++ {
		if round > 1000 {
			t.Fatal("the slow client was never dropped")
		}
		publishRound(round)
	}
	t.Logf("slow client dropped after %d rounds of ~30 KB; slowest Publish %v", round-1, slowest)
	publishRound(round)
	if e.hub.Subscribers() != fastClients {
		t.Errorf("%d subscribers, want the %d fast ones", e.hub.Subscribers(), fastClients)
	}
	// The server closes the slow connection within the write timeout.
	waitFor(t, 2*writeTimeout, "the slow connection to close", func() bool { return e.srv.active.Load() == fastClients })
}

// TestWSDroppedClientTryAgainLater: a subscriber the hub drops while its
// connection is healthy is closed with status 1013.
func TestWSDroppedClientTryAgainLater(t *testing.T) {
	e := newEnv(t, func(_ *Config, h *HubConfig) { h.MaxPendingFrames = 1 })
	ctx := t.Context()
	c := e.dial(ctx, nil)
	nextFrame(t, c, "snapshot")

	// Drop it as Publish would, without racing the writer.
	e.hub.mu.Lock()
	var subs []*Subscription
	for s := range e.hub.subs {
		subs = append(subs, s)
		delete(e.hub.subs, s)
	}
	e.hub.mu.Unlock()
	for _, s := range subs {
		s.end(ErrSlowSubscriber)
	}
	for {
		_, err := readFrame(ctx, c)
		if err == nil {
			continue
		}
		if s := websocket.CloseStatus(err); s != websocket.StatusTryAgainLater {
			t.Fatalf("read error %v, want close status 1013", err)
		}
		break
	}
}

func TestWSOrigin(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) {
		c.AllowedOrigins = []string{"*.friend.example", "https://exact.example"}
	})
	ctx := t.Context()
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{e.url, true},
		{"http://evil.example", false},
		{"null", false},
		{"http://a.friend.example", true},
		{"https://exact.example", true},
		{"http://exact.example", false},
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		c, res, err := websocket.Dial(ctx, e.wsURL(), &websocket.DialOptions{HTTPHeader: h})
		if tc.ok {
			if err != nil {
				t.Errorf("origin %q: %v", tc.origin, err)
				continue
			}
			c.CloseNow()
			continue
		}
		if err == nil {
			c.CloseNow()
			t.Errorf("origin %q accepted", tc.origin)
			continue
		}
		if res == nil || res.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: %v, want 403", tc.origin, err)
		}
	}
}

// TestWSNoLeak: after Shutdown every connection is closed with 1001 and
// every goroutine the server started is gone.
func TestWSNoLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	log := testLogger(t)
	hub := NewHub(HubConfig{}, log)
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Addr: ln.Addr().String()}, newFakeBackend(hub), hub, log)
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stopServe := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, ln) }()
	client := &http.Client{Transport: &http.Transport{}}
	e := &env{t: t, srv: srv, hub: hub, url: "http://" + ln.Addr().String(), client: client}
	ctx := t.Context()

	const n = 8
	var wg sync.WaitGroup
	statuses := make(chan websocket.StatusCode, n)
	for i := range n {
		c, _, err := websocket.Dial(ctx, e.wsURL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if r := roundTrip(t, c, `{"op":"create","ref":1}`); r.Type != "ok" {
				t.Fatalf("reply %+v", r)
			}
		}
		wg.Go(func() {
			defer c.CloseNow()
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					statuses <- websocket.CloseStatus(err)
					return
				}
			}
		})
	}
	if r := e.doJSON("GET", "/api/superheroes", ""); r.status != 200 {
		t.Fatalf("list: %d", r.status)
	}
	waitFor(t, 5*time.Second, "all subscribers", func() bool { return hub.Subscribers() == n })

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != websocket.StatusGoingAway {
			t.Errorf("close status %v, want 1001", s)
		}
	}
	if hub.Subscribers() != 0 {
		t.Errorf("%d subscribers after shutdown", hub.Subscribers())
	}
	stopServe()
	if err := <-served; err != nil {
		t.Error(err)
	}
	client.CloseIdleConnections()
	hub.Close()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWSClientCloseUnsubscribes: a client that goes away is unsubscribed.
func TestWSClientCloseUnsubscribes(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.dial(ctx, nil)
	nextFrame(t, c, "snapshot")
	if e.hub.Subscribers() != 1 {
		t.Fatalf("%d subscribers", e.hub.Subscribers())
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the server to unsubscribe", func() bool { return e.hub.Subscribers() == 0 })
}

// TestWSRefusedDuringShutdown: after Shutdown, /ws answers 503.
func TestWSRefusedDuringShutdown(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, res, err := websocket.Dial(t.Context(), e.wsURL(), nil)
	if err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v", err)
	}
}

// TestWSHubCloseEndsConnections: closing the hub closes every connection
// with 1001.
func TestWSHubCloseEndsConnections(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.dial(ctx, nil)
	nextFrame(t, c, "snapshot")
	e.hub.Close()
	for {
		_, err := readFrame(ctx, c)
		if err == nil {
			continue
		}
		if s := websocket.CloseStatus(err); s != websocket.StatusGoingAway {
			t.Fatalf("read error %v, want close status 1001", err)
		}
		break
	}
	waitFor(t, 5*time.Second, "the connection to end", func() bool { return e.srv.active.Load() == 0 })
}

// A page that connects while dispatch's replica does not answer gets no
// snapshot (an empty one would show an empty table as true) but a close
// asking it to try again; the list answers 503 for the same reason.
func TestWSNoSnapshotWithoutAView(t *testing.T) {
	e := newEnv(t)
	e.backend.mu.Lock()
	e.backend.heroErr = fmt.Errorf("%w: dispatch's replica is not answering", service.ErrUnavailable)
	e.backend.mu.Unlock()
	if r := e.doJSON("GET", "/api/superheroes", ""); r.status != 503 {
		t.Fatalf("list without a view: %d %s, want 503", r.status, r.body)
	}
	ctx := t.Context()
	c := e.dial(ctx, nil)
	_, err := readFrame(ctx, c)
	if s := websocket.CloseStatus(err); s != websocket.StatusTryAgainLater {
		t.Fatalf("first read: %v (status %v), want close 1013", err, s)
	}
	waitFor(t, 5*time.Second, "the server to unsubscribe", func() bool { return e.hub.Subscribers() == 0 })
}

// TestWSSnapshotInPiecesThenDeltas: a snapshot's parts come one after the
// other with nothing in between, even while changes are published, and
// every change published meanwhile follows them.
func TestWSSnapshotInPiecesThenDeltas(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) { c.SnapshotPartHeroes = 1 })
	for i := range 60 {
		e.backend.seed(t, fmt.Sprintf("Hero %02d", i))
	}
	ctx := t.Context()
	c := e.dial(ctx, nil)
	const changes = 20
	var wg sync.WaitGroup
	ids := make([]string, changes)
	wg.Go(func() {
		for i := range changes {
			h, err := e.backend.Create(ctx, fmt.Sprintf("New %02d", i))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = h.ID.String()
		}
	})
	snap := nextFrame(t, c, "snapshot") // checks the parts' order and that nothing comes between them
	wg.Wait()
	seen := map[string]bool{}
	for _, h := range snap.Heroes {
		seen[h.ID] = true
	}
	if len(snap.Heroes) < 60 {
		t.Fatalf("snapshot of %d heroes, want at least the 60 seeded", len(snap.Heroes))
	}
	for _, id := range ids {
		for !seen[id] {
			f, err := readFrame(ctx, c)
			if err != nil {
				t.Fatalf("waiting for %s: %v", id, err)
			}
			if f.Type != "delta" {
				t.Fatalf("frame %+v after the snapshot, want deltas", f)
			}
			for _, h := range f.Heroes {
				seen[h.ID] = true
			}
		}
	}
}

// TestWSCrowdSharesOneRead: pages connecting together cost dispatch's
// replica one read, not one each, and all get the whole snapshot.
func TestWSCrowdSharesOneRead(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) { c.SnapshotPartHeroes = 7 })
	for i := range 50 {
		e.backend.seed(t, fmt.Sprintf("Hero %02d", i))
	}
	ctx := t.Context()
	const pages = 16
	var wg sync.WaitGroup
	for range pages {
		wg.Go(func() {
			c, _, err := websocket.Dial(ctx, e.wsURL(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.CloseNow()
			f, err := readFrame(ctx, c)
			if err != nil || f.Type != "snapshot" || f.Parts != 8 || f.Count != 50 {
				t.Errorf("first frame %+v, %v", f, err)
				return
			}
			n := 0
			for i := range f.Parts {
				p, err := readFrame(ctx, c)
				if err != nil || p.Type != "snapshot_part" || p.Part != i+1 {
					t.Errorf("part %d: %+v, %v", i+1, p, err)
					return
				}
				n += len(p.Heroes)
			}
			if n != 50 {
				t.Errorf("%d heroes in the parts", n)
			}
		})
	}
	wg.Wait()
	e.backend.mu.Lock()
	reads := e.backend.reads
	e.backend.mu.Unlock()
	// Nothing changed meanwhile: one read serves them all.
	if reads != 1 {
		t.Errorf("%d pages made %d reads of the replica, want 1", pages, reads)
	}
}

// A page that goes away while it waits in line for a snapshot turn gives
// up its place at once: its WebSocket slot and its subscription are free
// before any turn is.
func TestPageLeavingWhileWaitingForATurn(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) { c.SnapshotWriters, c.SnapshotPartHeroes = 1, 10 })
	for i := range 50 {
		e.backend.seed(t, fmt.Sprintf("Hero %02d", i))
	}
	e.srv.partTurns <- struct{}{} // the only turn, held by another page
	released := false
	release := func() {
		if !released {
			released = true
			<-e.srv.partTurns
		}
	}
	defer release()

	c := e.dial(context.Background(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := readFrame(ctx, c)
	if err != nil || f.Type != "snapshot" {
		t.Fatalf("first frame %q: %v", f.Type, err)
	}
	waitFor(t, 5*time.Second, "the page subscribed", func() bool { return e.hub.Subscribers() == 1 })
	c.CloseNow()
	waitFor(t, 5*time.Second, "the page's slot and subscription freed while the turn is still held", func() bool {
		return e.hub.Subscribers() == 0 && e.srv.active.Load() == 0
	})
	release()

	// The next page gets the whole snapshot.
	c2 := e.dial(context.Background(), nil)
	if got := nextFrame(t, c2, "snapshot"); len(got.Heroes) != 50 {
		t.Fatalf("snapshot with %d heroes, want 50", len(got.Heroes))
	}
}
