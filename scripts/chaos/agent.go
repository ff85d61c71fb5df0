package main

// The member agent: in -net mode the runner cannot join the cluster
// itself, as the cluster lives in the lab's network namespaces. It starts
// this same binary again, as "chaos agent ...", inside the lab's client
// namespace (ip netns exec), where the agent joins the cluster as a member
// like any node (etcd discovery, mutual TLS with its own certificate) and
// answers the runner on the namespace's own loopback, which no lab fault
// touches:
//
//	GET  /kinds            the kinds in the member's topology, JSON strings
//	GET  /digest?city=C    the city's replica digest (GetDigest)
//	GET  /state?city=C     the city's whole replica, tombstones and stamps
//	                       included (GetState), as JSON chaos.Hero values
//	POST /bomb?city=C      crash the city's actor once (Bomb)
//
// Errors answer 502 with the error as text. A member the cluster dropped
// (Node.Excluded) joins again under a fresh member id.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/chaos"
	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/messages"
)

// agentCommand is the first argument that makes the binary the agent.
const agentCommand = "agent"

// runAgent is the agent's main: it joins, serves until ctx ends, leaves.
func runAgent(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("chaos agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	member := layout.DefaultMember()
	member.Register(fs)
	name := fs.String("name", "chaos", "member name")
	listen := fs.String("listen", agentListen, "address of the runner's HTTP interface (the namespace's loopback)")
	level := fs.String("log-level", "info", "log level")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	log, err := logx.New(stderr, *level)
	if err != nil {
		return usageError{err}
	}
	log = log.With("node", *name)
	cfg, err := member.Config(*name, 0)
	if err != nil {
		return usageError{err}
	}
	cfg.RefreshInterval = 100 * time.Millisecond
	cfg.StopTimeout = 5 * time.Second
	cfg.LibraryLogLevel = slog.LevelError

	a := &agent{log: log}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("agent server", "err", err)
		}
	})
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		wg.Wait()
	}()
	// One membership per pass; a dropped member joins again.
	for ctx.Err() == nil {
		n, err := node.Start(ctx, cfg, log)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Warn("join failed; trying again", "err", err)
			if sleepFor(ctx, time.Second) != nil {
				break
			}
			continue
		}
		a.n.Store(n)
		log.Info("agent joined", "member_id", n.MemberID(), "listen", ln.Addr().String())
		select {
		case <-ctx.Done():
		case <-n.Excluded():
			log.Warn("dropped by the cluster; joining again", "reason", n.ExcludedReason())
		case <-n.Done():
		}
		a.n.Store(nil)
		if ctx.Err() != nil {
			_ = n.Stop()
		} else {
			_ = n.Leave()
		}
	}
	return nil
}

// agentListen is where the agent answers inside its namespace.
const agentListen = "127.0.0.1:7700"

// agent is the member and its HTTP interface.
type agent struct {
	log *slog.Logger
	n   atomic.Pointer[node.Node]
}

var errNotJoined = errors.New("agent: not a member (yet)")

func (a *agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kinds", func(w http.ResponseWriter, r *http.Request) {
		n := a.n.Load()
		if n == nil {
			http.Error(w, errNotJoined.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, n.Kinds())
	})
	mux.HandleFunc("GET /digest", a.city(func(ctx context.Context, n *node.Node, city string) (any, error) {
		r, err := node.RequestAs[*messages.DigestReply](ctx, n, city, messages.CityKind(city), &messages.GetDigest{}, 300*time.Millisecond)
		if err != nil {
			return nil, err
		}
		return map[string]any{"heroes": r.GetHeroes(), "incarnation": r.GetIncarnation()}, nil
	}))
	mux.HandleFunc("GET /state", a.city(func(ctx context.Context, n *node.Node, city string) (any, error) {
		st, err := node.RequestAs[*messages.State](ctx, n, city, messages.CityKind(city), &messages.GetState{}, 2*time.Second)
		if err != nil {
			return nil, err
		}
		var d crdt.Delta
		if err := d.UnmarshalBinary(st.GetDelta()); err != nil {
			return nil, fmt.Errorf("state of %s: %w", city, err)
		}
		out := make([]chaos.Hero, len(d.Heroes))
		for i, h := range d.Heroes {
			out[i] = fromCRDT(h)
		}
		return out, nil
	}))
	mux.HandleFunc("POST /bomb", a.city(func(ctx context.Context, n *node.Node, city string) (any, error) {
		_, err := node.RequestAs[*messages.BombAck](ctx, n, city, messages.CityKind(city), &messages.Bomb{}, time.Second)
		return struct{}{}, err
	}))
	return mux
}

// city wraps a request to one city: ?city= names it.
func (a *agent) city(fn func(ctx context.Context, n *node.Node, city string) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := a.n.Load()
		city := r.URL.Query().Get("city")
		switch {
		case city == "":
			http.Error(w, "no ?city=", http.StatusBadRequest)
			return
		case n == nil:
			http.Error(w, errNotJoined.Error(), http.StatusBadGateway)
			return
		}
		out, err := fn(r.Context(), n, city)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, out)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// agentClient is the runner's side: requests to the agent, dialled into
// its namespace by dial.
type agentClient struct {
	base string
	http *http.Client
}

func newAgentClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *agentClient {
	return &agentClient{base: "http://" + agentListen, http: &http.Client{Transport: &http.Transport{
		DialContext: dial, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second,
	}}}
}

func (c *agentClient) call(ctx context.Context, method, path string, timeout time.Duration, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent %s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// kinds returns the kinds the agent's member sees.
func (c *agentClient) kinds(ctx context.Context) ([]string, error) {
	var ks []string
	return ks, c.call(ctx, http.MethodGet, "/kinds", time.Second, &ks)
}

func (c *agentClient) hasKind(ctx context.Context, kind string) bool {
	ks, err := c.kinds(ctx)
	if err != nil {
		return false
	}
	for _, k := range ks {
		if k == kind {
			return true
		}
	}
	return false
}

func (c *agentClient) digest(ctx context.Context, city string) error {
	return c.call(ctx, http.MethodGet, "/digest?city="+city, time.Second, nil)
}

// state reads a city's whole replica.
func (c *agentClient) state(ctx context.Context, city string) ([]chaos.Hero, error) {
	var hs []chaos.Hero
	return hs, c.call(ctx, http.MethodGet, "/state?city="+city, 3*time.Second, &hs)
}

func (c *agentClient) bomb(ctx context.Context, city string) error {
	return c.call(ctx, http.MethodPost, "/bomb?city="+city, 2*time.Second, nil)
}

func (c *agentClient) close() { c.http.CloseIdleConnections() }
