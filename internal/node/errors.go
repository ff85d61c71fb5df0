package node

import "errors"

// Sentinel errors. Functions of this package wrap them with %w and add
// detail, so test them with errors.Is.
var (
	// ErrInvalidConfig reports a Config that cannot be started.
	ErrInvalidConfig = errors.New("node: invalid config")
	// ErrPortInUse reports that the remote port or the health port is
	// already bound by another process or listener.
	ErrPortInUse = errors.New("node: port already in use")
	// ErrStart reports that the library failed (or panicked) while starting
	// the member; nothing is left running.
	ErrStart = errors.New("node: start failed")
	// ErrDiscovery reports that the discovery service (etcd) could not be
	// reached, refused this node, or did not let it join in time.
	ErrDiscovery = errors.New("node: discovery service")
	// ErrStopped reports a call on a node that has been stopped.
	ErrStopped = errors.New("node: stopped")
	// ErrStopTimeout reports that a graceful shutdown did not finish within
	// Config.StopTimeout; the node is abandoned (considered stopped).
	ErrStopTimeout = errors.New("node: stop timed out")
	// ErrShutdownPanic reports that the library panicked during shutdown;
	// the panic was recovered and logged.
	ErrShutdownPanic = errors.New("node: library panicked during shutdown")
	// ErrKindUnavailable reports that no member of the current topology
	// hosts the requested kind (e.g. the city is down). Returned at once,
	// without waiting for the deadline.
	ErrKindUnavailable = errors.New("node: kind not available in cluster topology")
	// ErrNotRoutable reports that the kind is in the topology but the grain
	// could not be located/activated yet (transient; retried until the
	// deadline).
	ErrNotRoutable = errors.New("node: grain not routable yet")
	// ErrDeadLetter reports that the message could not be delivered to the
	// grain's process (it is gone or its member is unreachable); it was
	// therefore not processed.
	ErrDeadLetter = errors.New("node: message not delivered (dead letter)")
	// ErrTimeout reports that the caller-side deadline passed before a reply
	// arrived. The message may or may not have been processed.
	ErrTimeout = errors.New("node: request deadline exceeded")
	// ErrCanceled reports that the caller's context was canceled.
	ErrCanceled = errors.New("node: request canceled")
	// ErrInvalidRequest reports a bad argument (empty identity or kind, nil
	// message).
	ErrInvalidRequest = errors.New("node: invalid request")
	// ErrUnexpectedReply reports a reply that is not a protobuf message or
	// not of the type the caller asked for.
	ErrUnexpectedReply = errors.New("node: unexpected reply")
)
