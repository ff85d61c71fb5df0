package supervise

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Ticker sends a message to an actor at a fixed interval. An actor starts
// its tickers on Started and stops them on Stopping and Restarting, so a
// restarted actor never receives ticks meant for its previous incarnation
// twice. (protoactor's scheduler package reads its state without
// synchronisation and trips the race detector; this one does not.)
type Ticker struct {
	stop chan struct{}
	done chan struct{}
}

// Every starts a Ticker sending msg to pid through root every interval.
func Every(root *actor.RootContext, pid *actor.PID, interval time.Duration, msg any) *Ticker {
	t := &Ticker{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tk.C:
				root.Send(pid, msg)
			}
		}
	}()
	return t
}

// Stop stops the ticker and waits for its goroutine to end.
func (t *Ticker) Stop() {
	close(t.stop)
	<-t.done
}

// StopAll stops every ticker in ts.
func StopAll(ts []*Ticker) {
	for _, t := range ts {
		t.Stop()
	}
}
