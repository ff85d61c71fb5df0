// Command member is a test tool for the end-to-end tests: it joins a
// cluster as an extra member and either writes one hero with the given
// health straight into a city's replica (as another replica would) and
// prints the hero's id, or, with -await ID, waits until every city in the
// topology holds that hero. Then it leaves. It runs as its own process because protoactor-go
// has data races of its own that would trip the race detector of the test
// binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/messages"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "member:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("member", flag.ContinueOnError)
	lay := layout.Default()
	lay.RegisterFlags(fs)
	slot := fs.Int("slot", layout.FirstExtraSlot, "node slot")
	cookie := fs.String("cookie", "", "cluster secret")
	city := fs.String("city", "gotham", "city to write into")
	health := fs.Int("health", 50, "health of the written hero")
	await := fs.String("await", "", "instead of writing, wait until every city holds this hero id")
	cities := fs.Int("cities", 3, "with -await: how many cities must hold it")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	base, err := logx.New(os.Stderr, "warn")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := node.DefaultConfig(fmt.Sprintf("member-%d", *slot))
	cfg.Host = lay.Host
	cfg.Port, cfg.HealthPort = lay.RemotePort(*slot), lay.HealthPort(*slot)
	cfg.Peers = lay.Peers()
	cfg.Cookie = layout.Cookie(*cookie)
	cfg.RefreshInterval = 200 * time.Millisecond
	n, err := node.Start(ctx, cfg, base)
	if err != nil {
		return err
	}
	defer n.Stop()

	if *await != "" {
		return awaitEverywhere(ctx, n, *await, *cities)
	}
	kind := messages.CityKind(*city)
	for !n.HasKind(kind) {
		select {
		case <-ctx.Done():
			return errors.New("city never appeared in the topology")
		case <-time.After(50 * time.Millisecond):
		}
	}
	r := crdt.NewReplica(crdt.NewClock(n.Name(), func() int64 { return time.Now().UnixNano() }))
	h, _, err := r.Create(uuid.New(), "Injured Hero")
	if err != nil {
		return err
	}
	_, d, err := r.Update(h.ID, func(h *crdt.Hero) { h.Health = *health })
	if err != nil {
		return err
	}
	b, err := d.MarshalBinary()
	if err != nil {
		return err
	}
	if _, err := node.RequestAs[*messages.MergeAck](ctx, n, *city, kind, &messages.MergeDelta{Delta: b, From: n.Name()}, 10*time.Second); err != nil {
		return err
	}
	fmt.Println(h.ID)
	return nil
}

// awaitEverywhere polls every city in the topology with GetHero until at
// least want cities hold id.
func awaitEverywhere(ctx context.Context, n *node.Node, id string, want int) error {
	for {
		held := 0
		for _, k := range n.Kinds() {
			name, ok := messages.CityFromKind(k)
			if !ok {
				continue
			}
			r, err := node.RequestAs[*messages.HeroReply](ctx, n, name, k, &messages.GetHero{HeroId: id}, time.Second)
			if err == nil && len(r.Delta) > 0 {
				held++
			}
		}
		if held >= want {
			fmt.Println(held)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hero %s held by %d of %d cities", id, held, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
