package node

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// noisyLibraryErrors are library messages logged at Error level for
// conditions that are normal operation in this cluster (a city is down or
// restarting): the automanaged provider logs them for every unreachable peer
// on every poll and the remote endpoint writer for every dial attempt. They
// are lowered to Warn before de-duplication.
var noisyLibraryErrors = map[string]bool{
	"Failure reaching nodes":                                true,
	"Bad connection to the node health status":              true,
	"Bad response from the node health status":              true,
	"Bad data from the node health status":                  true,
	"EndpointWriter failed to connect":                      true,
	"EndpointWriter failed to create receive stream":        true,
	"EndpointWriter failed to send connect request":         true,
	"EndpointWriter failed to receive connect response":     true,
	"EndpointWriter lost connection":                        true,
	"EndpointReader failed to send ConnectResponse message": true,
	"Automanaged server stopping..!":                        true,
	"cluster.RequestFuture failed":                          true,
}

// volatileAttrKeys are attribute keys whose values differ between otherwise
// identical repeated log lines; they are ignored when deciding whether a line
// repeats a previous one.
var volatileAttrKeys = map[string]bool{
	"error": true, "err": true, "retry": true, "cost": true, "duration": true,
	"pid": true, "sender": true, "message": true, "id": true,
}

// filterHandler is the slog.Handler given to the library. It drops records
// below a minimum level, lowers known-noisy errors to Warn, and logs a
// Warn/Error record at most once per window per (level, message, stable
// attributes); repeats within the window go to Debug (if enabled) and are
// counted, and the first record after the window reports the count.
type filterHandler struct {
	next  slog.Handler
	min   slog.Leveler
	state *repeatState
}

type repeatState struct {
	mu      sync.Mutex
	window  time.Duration
	now     func() time.Time
	entries map[string]*repeatEntry
}

type repeatEntry struct {
	since      time.Time
	suppressed int
}

func newFilterHandler(next slog.Handler, min slog.Leveler, window time.Duration) *filterHandler {
	return &filterHandler{
		next: next,
		min:  min,
		state: &repeatState{
			window:  window,
			now:     time.Now,
			entries: make(map[string]*repeatEntry),
		},
	}
}

// Enabled reports whether a record of this level can produce output.
func (h *filterHandler) Enabled(ctx context.Context, level slog.Level) bool {
	if level < h.min.Level() {
		return false
	}
	return h.next.Enabled(ctx, level)
}

func (h *filterHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && noisyLibraryErrors[r.Message] {
		r.Level = slog.LevelWarn
	}
	if r.Message == "Automanaged server stopping..!" && attrContains(r, "error", "Server closed") {
		// Logged at Error by the library on every normal shutdown.
		r.Level = slog.LevelInfo
	}
	if r.Message == "EndpointWriter error when closing the client conn" && attrContains(r, "error", "the client connection is closing") {
		// Already closed when its handshake failed (see conns.go).
		r.Level = slog.LevelDebug
	}
	if r.Message == "EndpointReader failed to send disconnection message" && attrContains(r, "error", "transport is closing") {
		// The library tells its readers' peers it is going while its own
		// server is already closing the transport: part of every stop.
		r.Level = slog.LevelDebug
	}
	if r.Message == "EndpointWriter lost connection" {
		switch {
		case attrContains(r, "error", "the client connection is closing"):
			// This node closed the connection itself: it is stopping, or
			// the peer left the cluster.
			r.Level = slog.LevelDebug
		case attrContains(r, "error", "graceful_stop"):
			// The peer is stopping cleanly (Ctrl-C on the cluster).
			r.Level = slog.LevelInfo
		}
	}
	if r.Level < h.min.Level() {
		return nil
	}
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	repeat, suppressed := h.state.observe(repeatKey(r))
	if repeat {
		if !h.next.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r = r.Clone()
		r.Level = slog.LevelDebug
		r.AddAttrs(slog.Bool("repeated", true))
		return h.next.Handle(ctx, r)
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed_repeats", suppressed))
	}
	return h.next.Handle(ctx, r)
}

func (h *filterHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &filterHandler{next: h.next.WithAttrs(attrs), min: h.min, state: h.state}
}

func (h *filterHandler) WithGroup(name string) slog.Handler {
	return &filterHandler{next: h.next.WithGroup(name), min: h.min, state: h.state}
}

// observe records one occurrence of key. It returns repeat=true when the key
// was already logged within the window, otherwise the number of repeats
// suppressed since the previous logged occurrence.
func (s *repeatState) observe(key string) (repeat bool, suppressed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if e, ok := s.entries[key]; ok {
		if now.Sub(e.since) < s.window {
			e.suppressed++
			return true, 0
		}
		suppressed = e.suppressed
	}
	if len(s.entries) >= 1024 {
		for k, e := range s.entries {
			if now.Sub(e.since) >= s.window {
				delete(s.entries, k)
			}
		}
	}
	s.entries[key] = &repeatEntry{since: now}
	return false, suppressed
}

func attrContains(r slog.Record, key, substr string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key && strings.Contains(a.Value.String(), substr) {
			found = true
			return false
		}
		return true
	})
	return found
}

func repeatKey(r slog.Record) string {
	var b strings.Builder
	b.WriteString(r.Level.String())
	b.WriteByte('|')
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if volatileAttrKeys[a.Key] {
			return true
		}
		fmt.Fprintf(&b, "|%s=%s", a.Key, a.Value.String())
		return true
	})
	return b.String()
}
