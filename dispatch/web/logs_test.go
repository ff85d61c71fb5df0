package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestLogsQuietAndSummed: single requests and WebSocket commands are
// logged at DEBUG only; one INFO line per interval counts them, and none
// is written for an idle interval.
func TestLogsQuietAndSummed(t *testing.T) {
	e := newEnv(t)
	for range 10 {
		e.doJSON("GET", "/api/superheroes", "")              // 200
		e.doJSON("POST", "/api/superheroes", `{"name":"A"}`) // 201
		e.doJSON("GET", "/api/superheroes/nope", "")         // 400
		e.doJSON("GET", "/nope", "")                         // 404
	}
	e.do("GET", "/api/cluster", nil, http.Header{"Host": {"evil.example"}}) // 421
	ctx := t.Context()
	c := e.dial(ctx, nil) // 101
	nextFrame(t, c, "snapshot")
	for range 30 {
		roundTrip(t, c, `{"op":"create","name":"B"}`)
	}
	roundTrip(t, c, `{"op":"fly"}`)
	c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, 5*time.Second, "the WebSocket closed", func() bool { return e.srv.active.Load() == 0 })

	for _, msg := range []string{"msg=http ", `msg="websocket command"`, `msg="websocket open"`, `msg="websocket closed"`} {
		if lines := e.logs.lines("level=INFO", msg); len(lines) != 0 {
			t.Errorf("%s at INFO: %q", msg, lines)
		}
		if lines := e.logs.lines("level=DEBUG", msg); len(lines) == 0 {
			t.Errorf("%s not at DEBUG either", msg)
		}
	}
	if n := len(e.logs.lines("level=DEBUG", "msg=http ", "status=201")); n != 10 {
		t.Errorf("%d DEBUG lines for the creates, want 10", n)
	}

	e.srv.logSummary()
	lines := e.logs.lines("level=INFO", `msg="http summary"`)
	if len(lines) != 1 {
		t.Fatalf("summary lines %q", lines)
	}
	for _, want := range []string{
		"requests=42", "2xx=20", "3xx=0", "4xx=21", "5xx=0", "1xx=1",
		"ws_commands=31", "ws_command_errors=1", "ws_opened=1", "websockets=0", "refused_conns=0",
	} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("summary lacks %s: %s", want, lines[0])
		}
	}
	e.srv.logSummary() // nothing happened since
	if n := len(e.logs.lines(`msg="http summary"`)); n != 1 {
		t.Errorf("an idle interval logged a summary: %d lines", n)
	}
}

// TestSummaryEveryInterval: Serve logs the summary on its own.
func TestSummaryEveryInterval(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) { c.LogSummaryInterval = 20 * time.Millisecond })
	e.doJSON("GET", "/healthz", "")
	waitFor(t, 5*time.Second, "a summary line", func() bool {
		return len(e.logs.lines("level=INFO", `msg="http summary"`, "requests=1 ", "2xx=1")) == 1
	})
}
