// Package testkit is a small test-support kit for Proto.Actor. Its names
// follow upstream protoactor-go's testkit (TestProbe, ExpectMessage,
// ExpectNoMessage, AwaitCondition), which is newer than the version the
// module proxy serves, so moving to upstream later is a rename.
package testkit

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// AwaitCondition polls cond every few milliseconds until it holds, and
// fails the test if it does not within timeout.
func AwaitCondition(tb testing.TB, timeout time.Duration, cond func() bool, msgAndArgs ...any) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v %s", timeout, describe(msgAndArgs))
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// AssertNever polls cond for the whole window and fails the test as soon
// as it holds. It shows the absence of something (a member that must never
// be admitted), so it always takes the whole window; keep it short.
func AssertNever(tb testing.TB, window time.Duration, cond func() bool, msgAndArgs ...any) {
	tb.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		if cond() {
			tb.Fatalf("condition met within %v %s", window, describe(msgAndArgs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func describe(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return ""
	}
	if f, ok := msgAndArgs[0].(string); ok {
		return ": " + fmt.Sprintf(f, msgAndArgs[1:]...)
	}
	return fmt.Sprint(msgAndArgs...)
}

// TestProbe is an actor that records every user message it receives, so a
// test can send requests with the probe as sender and assert on replies.
type TestProbe struct {
	system *actor.ActorSystem
	pid    *actor.PID
	msgs   chan any
}

// NewTestProbe spawns a probe on system. It is stopped when the test ends.
func NewTestProbe(tb testing.TB, system *actor.ActorSystem) *TestProbe {
	tb.Helper()
	p := &TestProbe{system: system, msgs: make(chan any, 1024)}
	p.pid = system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case actor.SystemMessage, actor.AutoReceiveMessage:
			return
		}
		select {
		case p.msgs <- ctx.Message():
		default:
			tb.Errorf("testkit: probe mailbox full, dropped %T", ctx.Message())
		}
	}))
	tb.Cleanup(func() { _ = system.Root.StopFuture(p.pid).Wait() })
	return p
}

// PID returns the probe's PID.
func (p *TestProbe) PID() *actor.PID { return p.pid }

// Send sends msg to target with the probe as sender, so replies come back
// to the probe.
func (p *TestProbe) Send(target *actor.PID, msg any) {
	p.system.Root.RequestWithCustomSender(target, msg, p.pid)
}

// ExpectMessage waits for the next message, failing the test if none comes
// within timeout.
func (p *TestProbe) ExpectMessage(tb testing.TB, timeout time.Duration) any {
	tb.Helper()
	select {
	case m := <-p.msgs:
		return m
	case <-time.After(timeout):
		tb.Fatalf("testkit: no message within %v", timeout)
		return nil
	}
}

// ExpectNoMessage fails the test if a message arrives within d. Absence
// can only be shown by waiting, so keep d short.
func (p *TestProbe) ExpectNoMessage(tb testing.TB, d time.Duration) {
	tb.Helper()
	select {
	case m := <-p.msgs:
		tb.Fatalf("testkit: unexpected message %T: %v", m, m)
	case <-time.After(d):
	}
}

// ExpectMessageOf waits for the next message and fails unless it is a T.
func ExpectMessageOf[T any](tb testing.TB, p *TestProbe, timeout time.Duration) T {
	tb.Helper()
	m := p.ExpectMessage(tb, timeout)
	v, ok := m.(T)
	if !ok {
		var zero T
		tb.Fatalf("testkit: got %T, want %T", m, zero)
	}
	return v
}
