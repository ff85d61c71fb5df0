package web

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// warnLimiter lets one WARN line through per kind and interval; the rest
// of that kind in the interval go to DEBUG, so a flood of bad requests
// cannot flood the log.
type warnLimiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	last map[string]time.Time
}

func (w *warnLimiter) init(every time.Duration) {
	w.every, w.now, w.last = every, time.Now, map[string]time.Time{}
}

// level returns WARN for the first call of kind in an interval, else DEBUG.
func (w *warnLimiter) level(kind string) slog.Level {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if last, ok := w.last[kind]; ok && now.Sub(last) < w.every {
		return slog.LevelDebug
	}
	w.last[kind] = now
	return slog.LevelWarn
}

// warn logs a refused request: at WARN once per kind and interval, else
// at DEBUG.
func (s *Server) warn(r *http.Request, kind, msg string, attrs ...any) {
	s.warnf(kind, msg, append(attrs, "remote", r.RemoteAddr)...)
}

// warnf logs at WARN once per kind and interval, else at DEBUG.
func (s *Server) warnf(kind, msg string, attrs ...any) {
	s.log.Log(context.Background(), s.warns.level(kind), msg, attrs...)
}

// maxLogged is the most bytes of client input a log line quotes.
const maxLogged = 100

// clip returns s cut to maxLogged bytes, on a character boundary, marked
// with "…" when cut.
func clip(s string) string {
	if len(s) <= maxLogged {
		return s
	}
	return cut(s, maxLogged) + "…"
}

// stats counts what the summary line reports.
type stats struct {
	byClass      [6]atomic.Int64 // requests by status / 100; [0] for the odd ones
	wsCommands   atomic.Int64    // frames received on WebSockets
	wsErrors     atomic.Int64    // of which answered with an error frame
	wsOpened     atomic.Int64
	refusedConns atomic.Int64

	mu    sync.Mutex
	since time.Time // start of the interval
}

func (st *stats) request(status int) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	st.byClass[class].Add(1)
}

// logSummary logs one INFO line with what happened since the last one, if
// anything did: requests by status class, WebSocket commands (and how many
// were answered with an error), WebSockets opened and open, connections
// refused.
func (s *Server) logSummary() {
	st := &s.stats
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	var classes [6]int64
	var requests int64
	for i := range classes {
		classes[i] = st.byClass[i].Swap(0)
		requests += classes[i]
	}
	commands, cmdErrors := st.wsCommands.Swap(0), st.wsErrors.Swap(0)
	opened, refused := st.wsOpened.Swap(0), st.refusedConns.Swap(0)
	interval := now.Sub(st.since).Round(time.Second)
	st.since = now
	if requests == 0 && commands == 0 && opened == 0 && refused == 0 {
		return
	}
	attrs := []any{
		"interval", interval,
		"requests", requests,
		"2xx", classes[2], "3xx", classes[3], "4xx", classes[4], "5xx", classes[5],
	}
	if classes[1] > 0 { // WebSocket upgrades
		attrs = append(attrs, "1xx", classes[1])
	}
	if classes[0] > 0 {
		attrs = append(attrs, "other", classes[0])
	}
	attrs = append(attrs,
		"ws_commands", commands, "ws_command_errors", cmdErrors,
		"ws_opened", opened, "websockets", s.active.Load(),
		"refused_conns", refused,
	)
	s.log.Info("http summary", attrs...)
}
