// Package logx builds the slog loggers of the node mains and of tests.
package logx

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// New returns a text logger at the named level ("debug", "info", "warn",
// "error"). The node package adds node=<name> to the lines it logs; the
// mains add it to their own with With("node", name).
func New(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// Test returns a logger that writes through t.Log.
func Test(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
