package node

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestFilterHandlerDeduplicatesAndDemotes(t *testing.T) {
	var sb strings.Builder
	base := slog.NewTextHandler(&sb, &slog.HandlerOptions{Level: slog.LevelInfo})
	h := newFilterHandler(base, slog.LevelWarn, time.Minute)
	now := time.Unix(1_700_000_000, 0)
	h.state.now = func() time.Time { return now }
	log := slog.New(h).With("node", "dispatch")

	for i := range 50 {
		log.Error("Bad connection to the node health status",
			slog.String("autoManMemberUrl", "http://127.0.0.1:6331/_health"),
			slog.Int("retry", i), slog.String("error", "connection refused"))
	}
	log.Info("library info is below the minimum level")
	log.Error("a real error", slog.String("x", "1"))

	out := sb.String()
	if n := strings.Count(out, "Bad connection"); n != 1 {
		t.Fatalf("noisy line logged %d times, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "level=WARN msg=\"Bad connection") {
		t.Fatalf("noisy error not demoted to WARN:\n%s", out)
	}
	if strings.Contains(out, "below the minimum") {
		t.Fatalf("info line passed a WARN minimum:\n%s", out)
	}
	if !strings.Contains(out, "level=ERROR msg=\"a real error\"") || !strings.Contains(out, "node=dispatch") {
		t.Fatalf("real error missing or without node attr:\n%s", out)
	}

	// After the window the next occurrence is logged with the count.
	now = now.Add(2 * time.Minute)
	log.Error("Bad connection to the node health status",
		slog.String("autoManMemberUrl", "http://127.0.0.1:6331/_health"))
	if !strings.Contains(sb.String(), "suppressed_repeats=49") {
		t.Fatalf("missing suppressed count:\n%s", sb.String())
	}
	// A different peer is a different line.
	log.Error("Bad connection to the node health status",
		slog.String("autoManMemberUrl", "http://127.0.0.1:6332/_health"))
	if n := strings.Count(sb.String(), "Bad connection"); n != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", n, sb.String())
	}
	if h.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("Enabled(INFO) with WARN minimum")
	}
}

func TestFilterHandlerQuietNormalShutdown(t *testing.T) {
	var sb strings.Builder
	h := newFilterHandler(slog.NewTextHandler(&sb, nil), slog.LevelWarn, time.Minute)
	slog.New(h).Error("Automanaged server stopping..!", slog.String("error", "http: Server closed"))
	if sb.Len() != 0 {
		t.Fatalf("normal shutdown logged at WARN or above: %s", sb.String())
	}
	slog.New(h).Error("Automanaged server stopping..!", slog.String("error", "listen tcp :6330: bind: address already in use"))
	if !strings.Contains(sb.String(), "level=WARN") {
		t.Fatalf("failed health server not reported: %q", sb.String())
	}
}

func TestFilterHandlerQuietDoubleClose(t *testing.T) {
	var sb strings.Builder
	h := newFilterHandler(slog.NewTextHandler(&sb, nil), slog.LevelWarn, time.Minute)
	// The connection was closed when its handshake failed (conns.go).
	slog.New(h).Error("EndpointWriter error when closing the client conn", slog.String("error", "grpc: the client connection is closing"))
	if sb.Len() != 0 {
		t.Fatalf("second close of a released connection logged: %s", sb.String())
	}
	slog.New(h).Error("EndpointWriter error when closing the client conn", slog.String("error", "something else"))
	if !strings.Contains(sb.String(), "level=ERROR") {
		t.Fatalf("other close error not reported: %q", sb.String())
	}
}

// TestFilterHandlerQuietStop: the connections a stopping node closes, and
// those of a peer stopping cleanly, are not warnings; a peer that vanishes
// still is.
func TestFilterHandlerQuietStop(t *testing.T) {
	var sb strings.Builder
	h := newFilterHandler(slog.NewTextHandler(&sb, &slog.HandlerOptions{Level: slog.LevelDebug}), slog.LevelDebug, time.Minute)
	log := slog.New(h)
	log.Error("EndpointWriter lost connection", slog.String("address", "127.0.0.1:8101"),
		slog.String("error", "rpc error: code = Canceled desc = grpc: the client connection is closing"))
	log.Error("EndpointWriter lost connection", slog.String("address", "127.0.0.1:8102"),
		slog.String("error", `rpc error: code = Unavailable desc = closing transport due to: connection error: desc = "error reading from server: EOF", received prior goaway: code: NO_ERROR, debug data: "graceful_stop"`))
	log.Error("EndpointReader failed to send disconnection message",
		slog.String("error", "rpc error: code = Unavailable desc = transport is closing"))
	if strings.Contains(sb.String(), "level=WARN") || strings.Contains(sb.String(), "level=ERROR") {
		t.Fatalf("a clean stop logged as a warning:\n%s", sb.String())
	}
	if !strings.Contains(sb.String(), "level=DEBUG") || !strings.Contains(sb.String(), "level=INFO") {
		t.Fatalf("lines lost:\n%s", sb.String())
	}
	log.Error("EndpointWriter lost connection", slog.String("address", "127.0.0.1:8103"),
		slog.String("error", `rpc error: code = Unavailable desc = error reading from server: EOF`))
	if !strings.Contains(sb.String(), "level=WARN") {
		t.Fatalf("a vanished peer not reported:\n%s", sb.String())
	}
}
