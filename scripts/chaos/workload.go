package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/superhero-cluster/superhero/internal/chaos"
)

// workloadConfig shapes the clients' load.
type workloadConfig struct {
	// Base is dispatch's URL, "http://127.0.0.1:4900".
	Base string
	// Clients is how many clients run; the first WSClients of them send
	// their writes over the WebSocket, the rest over HTTP.
	Clients, WSClients int
	// Rate is the target of operations per second, all clients together.
	Rate float64
	// Timeout bounds every request.
	Timeout time.Duration
	// Heroes is the live heroes the workload aims to keep: below it,
	// creates are likelier; above it, terminates.
	Heroes int
	// Cities are the cities to assign to and read.
	Cities []string
	// Seed seeds every client's choices.
	Seed uint64
	// Token is dispatch's API token, sent as "Authorization: Bearer"
	// on every request and WebSocket; "" for none (loopback).
	Token string
	// Dial connects the clients; nil dials from this process's network.
	// In the lab (-net) it dials from the clients' namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// workload runs the clients and records every operation.
type workload struct {
	cfg  workloadConfig
	rec  *chaos.Recorder
	pool *pool
}

func newWorkload(cfg workloadConfig, rec *chaos.Recorder) *workload {
	return &workload{cfg: cfg, rec: rec, pool: newPool()}
}

// run runs every client until ctx ends and waits for them.
func (w *workload) run(ctx context.Context) {
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(w.cfg.Clients) / w.cfg.Rate)
	for i := range w.cfg.Clients {
		c := &client{
			id:  i,
			w:   w,
			rng: rand.New(rand.NewPCG(w.cfg.Seed, uint64(i)+1)),
			http: &http.Client{Timeout: w.cfg.Timeout, Transport: &http.Transport{
				MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second, DialContext: w.cfg.Dial,
			}},
		}
		if i < w.cfg.WSClients {
			c.ws = &wsClient{url: "ws" + strings.TrimPrefix(w.cfg.Base, "http") + "/ws", timeout: w.cfg.Timeout}
			if w.cfg.Dial != nil || w.cfg.Token != "" {
				c.ws.opts = &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: w.cfg.Dial}}}
				if w.cfg.Token != "" {
					c.ws.opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + w.cfg.Token}}
				}
			}
		}
		wg.Go(func() { c.run(ctx, interval) })
	}
	wg.Wait()
}

// pool is the heroes the clients know: live ones, by the last answer
// about them, and dead ones.
type pool struct {
	mu   sync.Mutex
	live []string
	at   map[string]int // index in live
	dead []string
}

func newPool() *pool { return &pool{at: map[string]int{}} }

func (p *pool) add(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.at[id]; ok {
		return
	}
	p.at[id] = len(p.live)
	p.live = append(p.live, id)
}

// kill moves id to the dead heroes.
func (p *pool) kill(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, ok := p.at[id]
	if !ok {
		return
	}
	last := p.live[len(p.live)-1]
	p.live[i], p.at[last] = last, i
	p.live = p.live[:len(p.live)-1]
	delete(p.at, id)
	p.dead = append(p.dead, id)
}

func (p *pool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.live)
}

// pick returns a known hero: a dead one with probability deadShare, else a
// live one; "" when there is none.
func (p *pool) pick(rng *rand.Rand, deadShare float64) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.dead) > 0 && (len(p.live) == 0 || rng.Float64() < deadShare) {
		return p.dead[rng.IntN(len(p.dead))]
	}
	if len(p.live) == 0 {
		return ""
	}
	return p.live[rng.IntN(len(p.live))]
}

// ids returns every hero id the pool has seen.
func (p *pool) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append(append([]string(nil), p.live...), p.dead...)
}

// client is one workload client: one operation at a time, like a user.
type client struct {
	id   int
	w    *workload
	rng  *rand.Rand
	http *http.Client
	ws   *wsClient // nil: writes over HTTP
	n    int
}

// run does one operation every interval (from a random phase) until ctx
// ends. A client that falls behind skips the ticks it missed instead of
// bursting.
func (c *client) run(ctx context.Context, interval time.Duration) {
	defer c.http.CloseIdleConnections()
	defer c.ws.close()
	next := time.Now().Add(time.Duration(c.rng.Int64N(int64(interval))))
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.step(ctx)
		next = next.Add(interval)
		if now := time.Now(); next.Before(now) {
			next = now
		}
		t.Reset(time.Until(next))
	}
}

// step picks and does one operation.
func (c *client) step(ctx context.Context) {
	live, target := c.w.pool.size(), c.w.cfg.Heroes
	createW, termW := 5, 8
	if live < target {
		createW, termW = 30, 2
	}
	if live == 0 {
		c.create(ctx)
		return
	}
	choice := c.rng.IntN(createW + termW + 40 + 14 + 2 + 6)
	switch {
	case choice < createW:
		c.create(ctx)
	case choice < createW+termW:
		c.terminate(ctx, c.w.pool.pick(c.rng, 0.05))
	case choice < createW+termW+40:
		to := "home"
		if i := c.rng.IntN(len(c.w.cfg.Cities) + 1); i < len(c.w.cfg.Cities) {
			to = c.w.cfg.Cities[i]
		}
		c.assign(ctx, c.w.pool.pick(c.rng, 0.1), to)
	case choice < createW+termW+40+14:
		c.read(ctx, c.w.pool.pick(c.rng, 0.2))
	case choice < createW+termW+40+14+2:
		c.list(ctx)
	default:
		c.cityRead(ctx, c.w.cfg.Cities[c.rng.IntN(len(c.w.cfg.Cities))])
	}
}

func (c *client) via() string {
	if c.ws != nil {
		return "ws"
	}
	return "http"
}

func (c *client) invoke(via string, kind chaos.Kind, hero, to, replica string) int {
	return c.w.rec.Invoke(chaos.Event{Client: c.id, Via: via, Kind: kind, Hero: hero, To: to, Replica: replica})
}

func (c *client) create(ctx context.Context) {
	c.n++
	name := fmt.Sprintf("Chaos %d-%d", c.id, c.n)
	op := c.invoke(c.via(), chaos.KindCreate, "", "", "")
	var a answer
	if c.ws != nil {
		a = c.ws.do(ctx, map[string]any{"op": "create", "name": name})
	} else {
		a = c.do(ctx, http.MethodPost, "/api/superheroes", map[string]string{"name": name})
	}
	out := a.outcome(chaos.KindCreate)
	var heroes []chaos.Hero
	id := ""
	if out == chaos.OK {
		h, err := a.hero()
		if err != nil {
			c.w.rec.Complete(op, chaos.Unknown, a.status, "answer not understood: "+err.Error(), "", nil)
			return
		}
		heroes, id = []chaos.Hero{h}, h.ID
		c.w.pool.add(id)
	}
	c.w.rec.Complete(op, out, a.status, a.msg, id, heroes)
}

func (c *client) terminate(ctx context.Context, id string) {
	op := c.invoke(c.via(), chaos.KindTerminate, id, "", "")
	var a answer
	if c.ws != nil {
		a = c.ws.do(ctx, map[string]any{"op": "delete", "id": id})
	} else {
		a = c.do(ctx, http.MethodDelete, "/api/superheroes/"+id, nil)
	}
	out := a.outcome(chaos.KindTerminate)
	if out == chaos.OK {
		c.w.pool.kill(id)
	}
	c.w.rec.Complete(op, out, a.status, a.msg, "", nil)
}

func (c *client) assign(ctx context.Context, id, to string) {
	op := c.invoke(c.via(), chaos.KindAssign, id, to, "")
	var a answer
	if c.ws != nil {
		a = c.ws.do(ctx, map[string]any{"op": "assign", "id": id, "location": to})
	} else {
		a = c.do(ctx, http.MethodPut, "/api/superheroes/"+id+"/location", map[string]string{"location": to})
	}
	out := a.outcome(chaos.KindAssign)
	var heroes []chaos.Hero
	if out == chaos.OK {
		h, err := a.hero()
		if err != nil {
			c.w.rec.Complete(op, chaos.Unknown, a.status, "answer not understood: "+err.Error(), "", nil)
			return
		}
		heroes = []chaos.Hero{h}
	}
	if a.status == http.StatusConflict {
		c.w.pool.kill(id) // dead: died in a fight, or terminated
	}
	c.w.rec.Complete(op, out, a.status, a.msg, "", heroes)
}

// read reads one hero through dispatch; a 410 is its tombstone, a 404
// an answer that dispatch does not know it.
func (c *client) read(ctx context.Context, id string) {
	op := c.invoke("http", chaos.KindRead, id, "", "dispatch")
	a := c.do(ctx, http.MethodGet, "/api/superheroes/"+id, nil)
	out := a.outcome(chaos.KindRead)
	var heroes []chaos.Hero
	switch {
	case out != chaos.OK:
	case a.status == http.StatusGone:
		h, err := a.tombstone()
		if err != nil {
			c.w.rec.Complete(op, chaos.Unknown, a.status, "answer not understood: "+err.Error(), "", nil)
			return
		}
		heroes = []chaos.Hero{h}
	case a.status == http.StatusOK:
		h, err := a.hero()
		if err != nil {
			c.w.rec.Complete(op, chaos.Unknown, a.status, "answer not understood: "+err.Error(), "", nil)
			return
		}
		heroes = []chaos.Hero{h}
	}
	c.w.rec.Complete(op, out, a.status, a.msg, "", heroes)
}

func (c *client) list(ctx context.Context) {
	c.readAll(ctx, chaos.KindList, "/api/superheroes", "dispatch")
}

func (c *client) cityRead(ctx context.Context, city string) {
	c.readAll(ctx, chaos.KindCityRead, "/api/cities/"+city+"/superheroes", city)
}

func (c *client) readAll(ctx context.Context, kind chaos.Kind, path, replica string) {
	op := c.invoke("http", kind, "", "", replica)
	a := c.do(ctx, http.MethodGet, path, nil)
	out := a.outcome(kind)
	var heroes []chaos.Hero
	if out == chaos.OK {
		var body struct {
			Superheroes []chaos.Hero `json:"superheroes"`
		}
		if err := json.Unmarshal(a.body, &body); err != nil {
			c.w.rec.Complete(op, chaos.Unknown, a.status, "answer not understood: "+err.Error(), "", nil)
			return
		}
		heroes = body.Superheroes
		if heroes == nil {
			heroes = []chaos.Hero{}
		}
	}
	c.w.rec.Complete(op, out, a.status, a.msg, "", heroes)
}

// answer is what an operation got back: a status and body, or the error
// that kept it from getting one (status 0).
type answer struct {
	status int
	msg    string // the node's error message, or the transport error
	body   []byte // JSON: the HTTP body, or the WebSocket ok frame's hero
	err    error  // no answer
	unsent bool   // the request was certainly not sent (a WebSocket that could not be opened)
}

func (a answer) outcome(kind chaos.Kind) chaos.Outcome {
	if a.unsent {
		return chaos.Fail
	}
	if a.err != nil {
		return classifyTransport(a.err)
	}
	return classify(kind, a.status, a.msg)
}

func (a answer) hero() (chaos.Hero, error) {
	var h chaos.Hero
	if err := json.Unmarshal(a.body, &h); err != nil {
		return h, err
	}
	if h.ID == "" {
		return h, fmt.Errorf("no hero in %q", a.body)
	}
	return h, nil
}

// tombstone reads the dead hero a 410 answer carries.
func (a answer) tombstone() (chaos.Hero, error) {
	var body struct {
		Superhero chaos.Hero `json:"superhero"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil {
		return body.Superhero, err
	}
	if body.Superhero.ID == "" || !body.Superhero.Dead {
		return body.Superhero, fmt.Errorf("no tombstone in %q", a.body)
	}
	return body.Superhero, nil
}

// do sends one API request within the client's timeout.
func (c *client) do(ctx context.Context, method, path string, body any) answer {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{err: err, msg: err.Error()}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.w.cfg.Base+path, rd)
	if err != nil {
		return answer{err: err, msg: err.Error()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.w.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.w.cfg.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{err: err, msg: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		// The status came, the body broke off: for a write the status
		// alone says what happened; an ok read without its body is unknown.
		if resp.StatusCode >= 300 || method == http.MethodDelete {
			return answer{status: resp.StatusCode, msg: err.Error()}
		}
		return answer{err: err, msg: err.Error()}
	}
	a := answer{status: resp.StatusCode, body: b}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			a.msg = e.Error
		} else {
			a.msg = strings.TrimSpace(string(b))
		}
	}
	return a
}
