package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/superhero-cluster/superhero/dispatch/service"
)

// rawConn opens a TCP connection to the server.
func (e *env) rawConn() net.Conn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// TestSlowBodyIsCut: connections that send part of a body and stall are
// answered 408 and closed once the read timeout runs out, counted from the
// request's first byte; nothing is created. A WebSocket open meanwhile is
// not cut by the same deadline.
func TestSlowBodyIsCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := newEnv(t, func(c *Config, _ *HubConfig) { c.ReadTimeout, c.CommandTimeout = timeout, timeout/2 })
	ws := e.dial(t.Context(), nil)
	nextFrame(t, ws, "snapshot")

	const n = 20
	start := time.Now()
	type result struct {
		status string
		body   string
		err    error
		took   time.Duration
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for range n {
		c := e.rawConn()
		// 9 bytes of a 100-byte body, then nothing.
		if _, err := fmt.Fprintf(c, "POST /api/superheroes HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":\"", e.addr); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			b, err := io.ReadAll(c) // until the server closes
			status, body, _ := strings.Cut(string(b), "\r\n")
			if i := strings.Index(body, "\r\n\r\n"); i >= 0 {
				body = body[i+4:]
			}
			results <- result{status: status, body: body, err: err, took: time.Since(start)}
		})
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.err != nil {
			t.Errorf("connection not closed by the server: %v", r.err)
			continue
		}
		if !strings.HasPrefix(r.status, "HTTP/1.1 408") || !isJSONError([]byte(r.body)) {
			t.Errorf("answer %q %q, want 408 with a JSON error", r.status, r.body)
		}
		if r.took < timeout || r.took > timeout+2*time.Second {
			t.Errorf("closed after %v, want just after %v", r.took, timeout)
		}
	}
	if len(e.backend.mustHeroes()) != 0 {
		t.Errorf("heroes created from cut bodies: %v", e.backend.mustHeroes())
	}

	// A request stalled within its headers is closed too.
	c := e.rawConn()
	fmt.Fprintf(c, "GET /api/superheroes HTTP/1.1\r\nHost: %s\r\n", e.addr)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("stalled headers: %v", err)
	}

	// The WebSocket outlived the read timeout.
	if time.Since(start) < timeout {
		t.Fatal("the checks ended before the timeout")
	}
	if r := roundTrip(t, ws, `{"op":"create","name":"Still Here","ref":1}`); r.Type != "ok" {
		t.Fatalf("WebSocket after the read timeout: %+v", r)
	}
}

// TestConnectionCap: beyond MaxConns a connection is answered 503 and
// closed; once one closes, the next is served.
func TestConnectionCap(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) { c.MaxConns, c.MaxWebSockets = 3, 1 })
	var held []net.Conn
	for range 3 {
		held = append(held, e.rawConn()) // they say nothing
	}
	inUse := func() int {
		if l := e.srv.listener.Load(); l != nil { // nil until Serve runs
			return l.inUse()
		}
		return 0
	}
	waitFor(t, 5*time.Second, "3 connections accepted", func() bool { return inUse() == 3 })

	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	res, err := fresh.Get(e.url + "/api/superheroes")
	if err != nil {
		t.Fatalf("4th connection: %v, want a 503 answer", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !isJSONError(body) || !strings.Contains(string(body), "too many connections") || res.Header.Get("Retry-After") == "" {
		t.Fatalf("4th connection: %d %v %s", res.StatusCode, res.Header, body)
	}
	if n := len(e.logs.lines("level=WARN", "too many connections")); n != 1 {
		t.Errorf("%d WARN lines for the refusal, want 1", n)
	}

	held[0].Close()
	waitFor(t, 5*time.Second, "the closed connection's slot back", func() bool { return inUse() == 2 })
	res, err = fresh.Get(e.url + "/api/superheroes")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("after a slot freed: %d", res.StatusCode)
	}
}

// TestWebSocketCap: beyond MaxWebSockets an upgrade gets 503 before
// upgrading, and the API still answers.
func TestWebSocketCap(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) { c.MaxWebSockets = 2 })
	ctx := t.Context()
	first, second := e.dial(ctx, nil), e.dial(ctx, nil)
	nextFrame(t, first, "snapshot")
	nextFrame(t, second, "snapshot")
	_, res, err := websocket.Dial(ctx, e.wsURL(), nil)
	if err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("3rd WebSocket: %v %v, want 503", err, res)
	}
	if e.hub.Subscribers() != 2 {
		t.Fatalf("%d subscribers", e.hub.Subscribers())
	}
	if r := e.doJSON("GET", "/api/superheroes", ""); r.status != 200 {
		t.Fatalf("API while the WebSockets are full: %d", r.status)
	}
	first.Close(websocket.StatusNormalClosure, "")
	waitFor(t, 5*time.Second, "a place freed", func() bool { return e.srv.active.Load() == 1 })
	c := e.dial(ctx, nil)
	nextFrame(t, c, "snapshot")
}

// TestPingDropsSilentClient: a client that does not answer pings is
// disconnected and its place freed; one that reads stays.
func TestPingDropsSilentClient(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) {
		c.PingInterval, c.WriteTimeout = 50*time.Millisecond, 200*time.Millisecond
	})
	ctx := t.Context()
	live := e.dial(ctx, nil)
	frames := make(chan frame, 16)
	go func() {
		for {
			f, err := readFrame(context.Background(), live)
			if err != nil {
				close(frames)
				return
			}
			frames <- f
		}
	}()
	e.dial(ctx, nil) // never reads, so never answers a ping
	waitFor(t, 5*time.Second, "the silent client dropped", func() bool { return e.hub.Subscribers() == 1 && e.srv.active.Load() == 1 })
	e.hub.Publish(service.FlashEvent("still here"))
	for f := range frames {
		if f.Type == "flash" && f.Message == "still here" {
			return
		}
	}
	t.Fatal("the reading client was disconnected too")
}

// TestErrorsQuoteLittleInput: long bad input is quoted in an error answer
// by at most 100 bytes, and said how long it was.
func TestErrorsQuoteLittleInput(t *testing.T) {
	e := newEnv(t)
	live := e.backend.seed(t, "Alpha").ID.String()
	long := strings.Repeat("x", 20000)
	check := func(what string, status, want int, msg string) {
		t.Helper()
		if status != want {
			t.Errorf("%s: %d, want %d: %.200s", what, status, want, msg)
		}
		if len(msg) > 300 || !strings.Contains(msg, "(20000 bytes)") || !strings.Contains(msg, strings.Repeat("x", 100)) || strings.Contains(msg, strings.Repeat("x", 101)) {
			t.Errorf("%s: %d bytes of error: %.300s", what, len(msg), msg)
		}
	}
	for _, tc := range []struct {
		method, path, body string
	}{
		{"GET", "/api/superheroes/" + long, ""},
		{"DELETE", "/api/superheroes/" + long, ""},
		{"GET", "/api/cities/" + long + "/superheroes", ""},
		{"PUT", "/api/superheroes/" + live + "/location", `{"location":"` + long + `"}`},
		{"PUT", "/api/superheroes/" + live + "/location", `{"location":"` + strings.Repeat("x", 19999) + `!"}`},
		{"POST", "/api/bomb", `{"city":"` + long + `"}`},
		{"POST", "/api/superheroes", `{"` + long + `":1}`},
	} {
		r := e.doJSON(tc.method, tc.path, tc.body)
		check(tc.method+" "+tc.path[:min(len(tc.path), 40)]+" "+tc.body[:min(len(tc.body), 20)], r.status, 400, r.errorText(t))
	}
	r := e.do("GET", "/api/superheroes", nil, http.Header{"Host": {long + ".example"}})
	if r.status != 421 || len(r.body) > 400 {
		t.Errorf("long Host: %d, %d bytes", r.status, len(r.body))
	}
	// A path beyond the header limit never reaches a handler.
	r = e.doJSON("GET", "/api/superheroes/"+strings.Repeat("x", 1<<20), "")
	if r.status != http.StatusRequestHeaderFieldsTooLarge || len(r.body) > 1000 {
		t.Errorf("1 MB path: %d, %d bytes", r.status, len(r.body))
	}

	ctx := t.Context()
	c := e.dial(ctx, nil)
	nextFrame(t, c, "snapshot")
	for _, cmd := range []string{
		`{"op":"` + long + `","ref":1}`,
		`{"op":"delete","id":"` + long + `","ref":2}`,
		`{"op":"bomb","city":"` + long + `","ref":3}`,
	} {
		f := roundTrip(t, c, cmd)
		check("WebSocket "+cmd[:20], f.Status, 400, f.Error)
	}
}

// TestHeaderLimit: headers beyond MaxHeaderBytes get 431.
func TestHeaderLimit(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) { c.MaxHeaderBytes = 1 << 10 })
	c := e.rawConn()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", e.addr, strings.Repeat("b", 8<<10))
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 431") {
		t.Fatalf("status %q %v", status, err)
	}
}
