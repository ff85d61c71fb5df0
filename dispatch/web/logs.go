package web

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
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
