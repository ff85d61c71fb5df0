package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/internal/localcluster"
	"github.com/superhero-cluster/superhero/messages"
)

// localTarget is the loopback cluster as the nemesis's Target.
type localTarget struct{ c *localcluster.Cluster }

var _ Target = (*localTarget)(nil)

func newLocalTarget(c *localcluster.Cluster) *localTarget {
	return &localTarget{c: c}
}

func (t *localTarget) Cities() []string { return t.c.Spec().Cities }

func (t *localTarget) Kill(node string) error {
	p := t.c.Proc(node)
	if p == nil {
		return fmt.Errorf("no node %s", node)
	}
	p.Kill()
	return nil
}

func (t *localTarget) Start(node string) error { return t.c.Restart(node) }

func (t *localTarget) Freeze(node string) error { return t.signal(node, syscall.SIGSTOP) }

func (t *localTarget) Thaw(node string) error { return t.signal(node, syscall.SIGCONT) }

func (t *localTarget) signal(node string, sig syscall.Signal) error {
	p := t.c.Proc(node)
	if p == nil {
		return fmt.Errorf("no node %s", node)
	}
	return p.Signal(sig)
}

func (t *localTarget) Bomb(ctx context.Context, city string) error {
	_, err := localcluster.Ask[*messages.BombAck](ctx, t.c, city, &messages.Bomb{}, time.Second)
	return err
}

func (t *localTarget) Exited(node string) <-chan struct{} { return t.c.Proc(node).Done() }

// Answering: a city is back when this process's member sees it in the
// topology and gets its digest, and dispatch (if it answers at all) shows
// it up. Dispatch is back when the member sees it in the topology, it is
// ready, its replica actor answers (a lookup of an id never used answers
// 404, not 503) and it shows up every city the member sees. A node
// dropped while frozen is out of the member's topology until it rejoins
// under a fresh member id.
func (t *localTarget) Answering(ctx context.Context, node string) error {
	if node == dispatchName {
		if !t.c.Member().HasKind(messages.DispatchKind) {
			return errors.New("dispatch not in the topology")
		}
		if err := t.get(ctx, "/readyz", nil); err != nil {
			return err
		}
		if status, err := t.c.Call(ctx, http.MethodGet, "/api/superheroes/"+uuid.Nil.String(), nil, nil); status != http.StatusNotFound {
			return fmt.Errorf("dispatch's replica: %d %v", status, err)
		}
		var st localcluster.Status
		if err := t.get(ctx, "/api/cluster", &st); err != nil {
			return err
		}
		for _, city := range t.Cities() {
			if t.c.Member().HasKind(messages.CityKind(city)) && !st.Up(city) {
				return fmt.Errorf("dispatch shows %s down", city)
			}
		}
		return nil
	}
	if !t.c.Member().HasKind(messages.CityKind(node)) {
		return fmt.Errorf("%s not in the topology", node)
	}
	if _, err := t.c.Digest(ctx, node, 300*time.Millisecond); err != nil {
		return err
	}
	var st localcluster.Status
	if err := t.get(ctx, "/api/cluster", &st); err == nil && !st.Up(node) {
		return fmt.Errorf("dispatch shows %s down", node)
	}
	return nil
}

func (t *localTarget) get(ctx context.Context, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := t.c.Call(ctx, http.MethodGet, path, nil, out)
	return err
}
