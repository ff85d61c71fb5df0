package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/superhero-cluster/superhero/internal/localcluster"
)

// feed reads dispatch's WebSocket and, while recording, the latency of
// every entry a city wrote: receive time minus the write's updated_at
// (same machine, same clock).
type feed struct {
	conn   *websocket.Conn
	cancel context.CancelFunc
	done   chan struct{}
	cities map[string]bool

	mu        sync.Mutex
	recording bool
	prev      map[string]localcluster.APIHero
	lat       []time.Duration
	frames    int
	err       error
}

func dialFeed(ctx context.Context, c *cluster) (*feed, error) {
	conn, _, err := websocket.Dial(ctx, "ws://"+c.HTTPAddr()+"/ws", nil)
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	conn.SetReadLimit(64 << 20)
	rctx, cancel := context.WithCancel(ctx)
	f := &feed{conn: conn, cancel: cancel, done: make(chan struct{}), cities: map[string]bool{}, prev: map[string]localcluster.APIHero{}}
	for _, city := range c.spec.Cities {
		f.cities[city] = true
	}
	go f.read(rctx)
	return f, nil
}

func (f *feed) read(ctx context.Context) {
	defer close(f.done)
	for {
		_, b, err := f.conn.Read(ctx)
		recv := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				f.fail(err)
			}
			return
		}
		var fr struct {
			Type   string                 `json:"type"`
			Heroes []localcluster.APIHero `json:"heroes"`
		}
		if err := json.Unmarshal(b, &fr); err != nil {
			f.fail(fmt.Errorf("bad frame: %w", err))
			return
		}
		if err := f.take(fr.Type, fr.Heroes, recv); err != nil {
			f.fail(err)
			return
		}
	}
}

// take folds one frame's heroes into the view and records city writes.
func (f *feed) take(kind string, heroes []localcluster.APIHero, recv time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	record := f.recording && kind == "delta"
	if record {
		f.frames++
	}
	for _, h := range heroes {
		prev, seen := f.prev[h.ID]
		f.prev[h.ID] = h
		if !record || !f.cityWrite(h, prev, seen) {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, h.UpdatedAt)
		if err != nil {
			return fmt.Errorf("hero %s: updated_at: %w", h.ID, err)
		}
		f.lat = append(f.lat, recv.Sub(at))
	}
	return nil
}

// cityWrite reports whether h is a new write by a city: updated_by names
// a city or, on a wire without updated_by, h is in a city and differs from
// the previous entry seen.
func (f *feed) cityWrite(h, prev localcluster.APIHero, seen bool) bool {
	if seen && h == prev {
		return false
	}
	if h.UpdatedBy != "" {
		return f.cities[h.UpdatedBy]
	}
	return h.Location != "" && h.Location != "home"
}

func (f *feed) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

// record starts or stops recording.
func (f *feed) record(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recording = on
}

// results returns the recorded latencies, the delta frames seen while
// recording and the error that ended reading, if any.
func (f *feed) results() ([]time.Duration, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.lat...), f.frames, f.err
}

func (f *feed) close() {
	f.cancel()
	_ = f.conn.CloseNow()
	<-f.done
}
