package messages

import "strings"

// The names the nodes use to find each other in the cluster. Like the
// messages in messages.proto they are part of the wire contract: every
// node must agree on them, so they are spelled out here and nowhere else.
//
// A city grain has the city's name as its identity and CityKind(name) as its
// kind, and only that city's node registers the kind, so the grain can live
// nowhere else. Dispatch's inbox grain is addressed the same way, with
// DispatchName as its identity and DispatchKind as its kind.
const (
	// DispatchName is the dispatch node's member name, the node id of
	// the writes it stamps, and the From of the messages it sends.
	DispatchName = "dispatch"
	// DispatchKind is the kind dispatch registers to receive the deltas
	// cities push to it.
	DispatchKind = "dispatch"
)

// The actors that run the replication engines. Replication messages
// (messages.Replicate) go to them directly, by these fixed names on the
// member that hosts the node's kind, rather than through the node's grain:
// a push and its acknowledgement are the hottest messages in the cluster,
// and the grain's extra mailbox hop cost every one of them a goroutine
// switch. Each actor keeps its PID across supervisor restarts.
const (
	// DispatchSupervisor is dispatch's supervisor; its child
	// DispatchReplicaChild, named DispatchReplicaActor, holds dispatch's
	// replica.
	DispatchSupervisor   = "dispatch-supervisor"
	DispatchReplicaChild = "replica"
	DispatchReplicaActor = DispatchSupervisor + "/" + DispatchReplicaChild
	// CityStateChild is the child of a city's supervisor that holds the
	// city's replica (CityStateActor).
	CityStateChild = "state"
)

// CitySupervisor returns the actor name of the named city's supervisor.
func CitySupervisor(city string) string { return CityKind(city) + "-supervisor" }

// CityStateActor returns the actor name of the named city's state actor,
// the child of its supervisor that holds the city's replica.
func CityStateActor(city string) string { return CitySupervisor(city) + "/" + CityStateChild }

// cityKindPrefix starts the kind of every city grain.
const cityKindPrefix = "city-"

// CityKind returns the cluster kind that hosts the named city.
func CityKind(city string) string { return cityKindPrefix + city }

// CityFromKind is the inverse of CityKind: it returns the city a kind
// hosts, and false when kind is not a city kind.
func CityFromKind(kind string) (city string, ok bool) {
	return strings.CutPrefix(kind, cityKindPrefix)
}
