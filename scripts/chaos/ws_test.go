package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/superhero-cluster/superhero/internal/chaos"
)

// fakeWS answers commands like dispatch's WebSocket: a snapshot first,
// then for each command the reply answer returns (nil: no reply).
func fakeWS(t *testing.T, answer func(cmd map[string]any) any) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"snapshot","heroes":[]}`))
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var cmd map[string]any
			if json.Unmarshal(b, &cmd) != nil {
				return
			}
			reply := answer(cmd)
			if reply == nil {
				continue
			}
			// A delta frame before every reply, as the hub sends them.
			_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"delta","heroes":[]}`))
			out, _ := json.Marshal(reply)
			if conn.Write(ctx, websocket.MessageText, out) != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

func TestWSClient(t *testing.T) {
	srv := fakeWS(t, func(cmd map[string]any) any {
		switch cmd["op"] {
		case "create":
			return map[string]any{"type": "ok", "ref": cmd["ref"], "hero": map[string]any{
				"id": "h1", "location": "home", "health": 100, "stamp": map[string]any{"wall": "17", "logical": 1, "node": "dispatch"}}}
		case "delete":
			return map[string]any{"type": "error", "ref": cmd["ref"], "error": "dispatch: outcome unknown: no city confirmed", "status": 503}
		case "assign":
			return map[string]any{"type": "error", "ref": cmd["ref"], "error": "dispatch: city unreachable: gotham is down", "status": 503}
		}
		return nil // "stall": no reply
	})
	w := &wsClient{url: wsURL(srv), timeout: 200 * time.Millisecond}
	defer w.close()
	ctx := context.Background()

	a := w.do(ctx, map[string]any{"op": "create", "name": "x"})
	h, err := a.hero()
	if a.outcome(chaos.KindCreate) != chaos.OK || err != nil || h.ID != "h1" || h.Stamp != (chaos.Stamp{Wall: 17, Logical: 1, Node: "dispatch"}) {
		t.Fatalf("create: %+v %+v %v", a, h, err)
	}
	if a := w.do(ctx, map[string]any{"op": "delete", "id": "h1"}); a.outcome(chaos.KindTerminate) != chaos.Unknown || a.status != 503 {
		t.Fatalf("delete, outcome unknown: %+v", a)
	}
	if a := w.do(ctx, map[string]any{"op": "assign", "id": "h1", "location": "gotham"}); a.outcome(chaos.KindAssign) != chaos.Fail {
		t.Fatalf("assign to a city that is down: %+v", a)
	}
	// No reply within the timeout: unknown, and the connection is dropped
	// so a late reply cannot answer the next command.
	if a := w.do(ctx, map[string]any{"op": "stall"}); a.outcome(chaos.KindCreate) != chaos.Unknown {
		t.Fatalf("no reply: %+v", a)
	}
	if w.conn != nil {
		t.Fatal("the connection was kept after a command got no reply")
	}
	if a := w.do(ctx, map[string]any{"op": "create"}); a.outcome(chaos.KindCreate) != chaos.OK {
		t.Fatalf("create on a new connection: %+v", a)
	}
}

func TestWSClientNotConnected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	w := &wsClient{url: "ws://" + addr + "/ws", timeout: time.Second}
	if a := w.do(context.Background(), map[string]any{"op": "create"}); a.outcome(chaos.KindCreate) != chaos.Fail {
		t.Fatalf("refused connection: %+v", a)
	}
	// Refused at the upgrade: no command sent either.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"dispatch: shutting down"}`, http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	w = &wsClient{url: wsURL(srv), timeout: time.Second}
	if a := w.do(context.Background(), map[string]any{"op": "create"}); a.outcome(chaos.KindCreate) != chaos.Fail || a.status != 503 {
		t.Fatalf("upgrade refused: %+v", a)
	}
}
