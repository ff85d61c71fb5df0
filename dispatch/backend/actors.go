package backend

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/superhero-cluster/superhero/internal/supervise"
	"github.com/superhero-cluster/superhero/messages"
)

// Dispatch's supervision limits, as in the original: 3 restarts in 1 s.
const (
	MaxRestarts   = 3
	RestartWindow = time.Second
)

// SupervisorName is the actor name of dispatch's supervisor; the replica
// actor is its child messages.DispatchReplicaChild.
const SupervisorName = messages.DispatchSupervisor

// SpawnReplica starts dispatch's replica actor under dispatch's supervisor
// (one_for_one, 3 restarts in 1 s). The group's Down channel closes if the
// supervisor gives up; Stop the group to stop the actor.
func SpawnReplica(system *actor.ActorSystem, cfg ReplicaConfig) (*Replica, *supervise.Group, error) {
	cfg = cfg.withDefaults()
	if err := checkReplicaConfig(cfg); err != nil {
		return nil, nil, err
	}
	ready := &atomic.Bool{}
	g, err := supervise.Spawn(system, supervise.Config{
		Name:        SupervisorName,
		MaxRestarts: MaxRestarts,
		Window:      RestartWindow,
		Logger:      cfg.Logger,
		Restarts:    &cfg.Stats.Restarts,
	}, supervise.Child{Name: messages.DispatchReplicaChild, Props: replicaProps(cfg, ready)})
	if err != nil {
		return nil, nil, fmt.Errorf("backend: %w", err)
	}
	return &Replica{root: system.Root, pid: g.Child(messages.DispatchReplicaChild), timeout: cfg.Timeout, ready: ready}, g, nil
}
