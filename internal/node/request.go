package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"google.golang.org/protobuf/proto"
)

// Retry backoff between attempts that failed without delivering the message.
const (
	minRetryBackoff = 20 * time.Millisecond
	maxRetryBackoff = 400 * time.Millisecond
)

// Request sends msg to the grain identity of kind and waits for its reply.
//
// timeout is the caller-side deadline (Config.RequestTimeout when <= 0); it
// is combined with ctx's own deadline, and Request returns by then at the
// latest, whatever the library does. Errors (test with errors.Is):
//
//   - ErrKindUnavailable at once when no member in the topology hosts kind
//     (the city is down): answer 503 without waiting.
//   - ErrTimeout (also matching context.DeadlineExceeded) when the deadline
//     passes; the grain may have processed the message. It wraps the last
//     transient cause (ErrNotRoutable, ErrDeadLetter) when there was one.
//   - ErrCanceled (also matching context.Canceled) when ctx is canceled.
//   - ErrStopped, ErrInvalidRequest, ErrUnexpectedReply.
//
// While the kind is in the topology, failures that prove the message was not
// delivered (the grain cannot be located/activated yet, a dead letter) are
// retried with a short backoff until the deadline; this covers the first
// call after a city joins, and a grain that moved or restarted. A message is
// never re-sent after it may have been delivered.
func (n *Node) Request(ctx context.Context, identity, kind string, msg proto.Message, timeout time.Duration) (proto.Message, error) {
	if err := n.checkRequest(identity, kind, msg); err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = n.cfg.RequestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	key := kind + "/" + identity
	var last error
	backoff := minRetryBackoff
	for attempt := 1; ; attempt++ {
		pid, err := n.resolve(ctx, identity, kind)
		if err == nil {
			var reply any
			reply, err = n.call(ctx, func(remaining time.Duration) (any, error) {
				return n.system.Root.RequestFuture(pid, msg, remaining).Result()
			})
			if err == nil {
				pm, ok := reply.(proto.Message)
				if !ok {
					return nil, fmt.Errorf("%w: %T from %s %q", ErrUnexpectedReply, reply, kind, identity)
				}
				return pm, nil
			}
			n.topo.forgetPID(key)
			if !errors.Is(err, actor.ErrDeadLetter) {
				// Timed out (possibly delivered) or caller done: no retry.
				return nil, n.finalError(ctx, kind, identity, attempt, err)
			}
			// Not delivered: the cached process is gone. Safe to retry.
			err = fmt.Errorf("%w: %s %q at %s", ErrDeadLetter, kind, identity, pid.Address)
		}
		if !isRetryable(err) || ctx.Err() != nil {
			return nil, n.finalError(ctx, kind, identity, attempt, firstNonNil(lastIfCtx(err), last))
		}
		last = err
		if sleepCtx(ctx, backoff) != nil {
			return nil, n.finalError(ctx, kind, identity, attempt, last)
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// RequestAs is Request with the reply asserted to type T (e.g.
// *messages.State); a reply of another type is ErrUnexpectedReply.
func RequestAs[T proto.Message](ctx context.Context, n *Node, identity, kind string, msg proto.Message, timeout time.Duration) (T, error) {
	var zero T
	reply, err := n.Request(ctx, identity, kind, msg, timeout)
	if err != nil {
		return zero, err
	}
	typed, ok := reply.(T)
	if !ok {
		return zero, fmt.Errorf("%w: got %T, want %T from %s %q", ErrUnexpectedReply, reply, zero, kind, identity)
	}
	return typed, nil
}

// Send delivers msg one-way (fire and forget) to the grain identity of kind.
// It waits, under the same deadline rules and retries as Request, only until
// the grain is located; a nil error means the message was handed to the
// transport, not that it was processed.
func (n *Node) Send(ctx context.Context, identity, kind string, msg proto.Message, timeout time.Duration) error {
	if err := n.checkRequest(identity, kind, msg); err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = n.cfg.RequestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var last error
	backoff := minRetryBackoff
	for attempt := 1; ; attempt++ {
		pid, err := n.resolve(ctx, identity, kind)
		if err == nil {
			_, err = n.call(ctx, func(time.Duration) (any, error) {
				n.system.Root.Send(pid, msg)
				return nil, nil
			})
			if err == nil {
				return nil
			}
			return n.finalError(ctx, kind, identity, attempt, err)
		}
		if !isRetryable(err) || ctx.Err() != nil {
			return n.finalError(ctx, kind, identity, attempt, firstNonNil(lastIfCtx(err), last))
		}
		last = err
		if sleepCtx(ctx, backoff) != nil {
			return n.finalError(ctx, kind, identity, attempt, last)
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// SendToActor delivers msg one-way to the actor named actorName on the
// member that hosts identity of kind, without going through (or
// activating) the grain: for actors with a fixed name that live beside a
// node's grain, such as the replication engines' actors. It returns
// ErrKindUnavailable at once when no member hosts kind, and otherwise once
// the message is handed to the transport (a nil error says no more).
//
// Unlike Send it calls the library on the caller's goroutine, without one
// spawned per message, and never retries. The library does not wait
// either: it queues the message for the member's endpoint writer, which
// connects and sends on goroutines of its own. A message it cannot deliver
// (the member went away, the actor is not running) is dead-lettered there
// and not reported here; replication repairs what such a message carried
// by anti-entropy.
func (n *Node) SendToActor(identity, kind, actorName string, msg proto.Message) (err error) {
	if err := n.checkRequest(identity, kind, msg); err != nil {
		return err
	}
	if actorName == "" {
		return fmt.Errorf("%w: empty actor name", ErrInvalidRequest)
	}
	if !n.topo.hasKind(kind) {
		return fmt.Errorf("%w: %q", ErrKindUnavailable, kind)
	}
	owner := n.topo.owner(identity, kind)
	if owner == "" {
		// The kind left the topology since hasKind: churn, as above.
		return fmt.Errorf("%w: %q", ErrKindUnavailable, kind)
	}
	defer func() {
		if r := recover(); r != nil {
			n.log.Warn("library panicked during send", slog.Any("panic", r))
			err = fmt.Errorf("%w: library panic: %v", ErrStopped, r)
		}
	}()
	n.system.Root.Send(actor.NewPID(owner, actorName), msg)
	return nil
}

func (n *Node) checkRequest(identity, kind string, msg proto.Message) error {
	switch {
	case n.isStopped():
		return ErrStopped
	case identity == "" || kind == "":
		return fmt.Errorf("%w: empty identity or kind", ErrInvalidRequest)
	case msg == nil:
		return fmt.Errorf("%w: nil message", ErrInvalidRequest)
	}
	return nil
}

// resolve returns the PID of the grain, activating it through disthash's
// placement actor on the owning member when it is not cached. Activation is
// idempotent, so failures here are safe to retry.
func (n *Node) resolve(ctx context.Context, identity, kind string) (*actor.PID, error) {
	if n.isStopped() {
		return nil, ErrStopped
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !n.topo.hasKind(kind) {
		return nil, fmt.Errorf("%w: %q", ErrKindUnavailable, kind)
	}
	key := kind + "/" + identity
	if pid := n.topo.cachedPID(key); pid != nil {
		return pid, nil
	}
	owner := n.topo.owner(identity, kind)
	if owner == "" {
		return nil, fmt.Errorf("%w: no owner for %s %q", ErrNotRoutable, kind, identity)
	}
	activator := actor.NewPID(owner, disthash.PartitionActivatorActorName)
	req := &cluster.ActivationRequest{ClusterIdentity: cluster.NewClusterIdentity(identity, kind)}
	res, err := n.call(ctx, func(remaining time.Duration) (any, error) {
		return n.system.Root.RequestFuture(activator, req, remaining).Result()
	})
	if err != nil {
		if errors.Is(err, actor.ErrDeadLetter) {
			return nil, fmt.Errorf("%w: activation of %s %q at %s: %w", ErrNotRoutable, kind, identity, owner, ErrDeadLetter)
		}
		return nil, err
	}
	resp, ok := res.(*cluster.ActivationResponse)
	if !ok || resp.GetPid() == nil || resp.GetFailed() {
		return nil, fmt.Errorf("%w: activation of %s %q at %s failed (%T)", ErrNotRoutable, kind, identity, owner, res)
	}
	n.topo.cachePID(key, resp.GetPid())
	return resp.GetPid(), nil
}

// call runs a blocking library call on its own goroutine and returns when it
// finishes or ctx is done, whichever comes first. The library call gets the
// remaining time as its own timeout, so an abandoned goroutine ends shortly
// after the deadline (library calls with fixed internal waits may take
// longer, but never delay the caller). Library panics become errors.
func (n *Node) call(ctx context.Context, fn func(remaining time.Duration) (any, error)) (any, error) {
	remaining := time.Millisecond
	if dl, ok := ctx.Deadline(); ok {
		remaining = max(time.Until(dl), time.Millisecond)
	}
	type result struct {
		v   any
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				n.log.Warn("library panicked during request", slog.Any("panic", r))
				ch <- result{err: fmt.Errorf("%w: library panic: %v", ErrStopped, r)}
			}
		}()
		v, err := fn(remaining)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// finalError maps the failure that ends a request to the package's
// sentinel errors: ErrCanceled / ErrTimeout when the caller's context is done
// or a library future timed out (wrapping the last transient cause, if any),
// otherwise cause itself.
func (n *Node) finalError(ctx context.Context, kind, identity string, attempts int, cause error) error {
	timedOut := errors.Is(cause, actor.ErrTimeout) || errors.Is(cause, context.DeadlineExceeded)
	if isCtxErr(cause) || errors.Is(cause, actor.ErrTimeout) {
		cause = nil // reported through the sentinel below
	}
	ctxErr := ctx.Err()
	switch {
	case errors.Is(ctxErr, context.Canceled):
		if cause != nil {
			return fmt.Errorf("%w: %s %q after %d attempt(s), last error: %w: %w", ErrCanceled, kind, identity, attempts, cause, ctxErr)
		}
		return fmt.Errorf("%w: %s %q after %d attempt(s): %w", ErrCanceled, kind, identity, attempts, ctxErr)
	case ctxErr != nil || timedOut:
		if cause != nil {
			return fmt.Errorf("%w: %s %q after %d attempt(s), last error: %w: %w", ErrTimeout, kind, identity, attempts, cause, context.DeadlineExceeded)
		}
		return fmt.Errorf("%w: %s %q after %d attempt(s): %w", ErrTimeout, kind, identity, attempts, context.DeadlineExceeded)
	case cause != nil:
		return cause
	}
	return fmt.Errorf("%w: %s %q", ErrTimeout, kind, identity)
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// lastIfCtx drops err when it is only the context's error, so the previous
// transient cause is reported instead.
func lastIfCtx(err error) error {
	if isCtxErr(err) {
		return nil
	}
	return err
}

func firstNonNil(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func isRetryable(err error) bool {
	return errors.Is(err, ErrNotRoutable) || errors.Is(err, ErrDeadLetter)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
