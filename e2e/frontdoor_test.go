package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// loginLink finds the latest one-time login link dispatch logged.
var loginLink = regexp.MustCompile(`msg="page login link \(one-time\)".* url="?(http://[^"\s]+)`)

// TestFrontDoor drives the real dispatch: a page of another site that
// points its own name at 127.0.0.1 (DNS rebinding) can neither command,
// read nor open the WebSocket; with -api-token the API needs the token and
// the page the one-time link; without one, dispatch refuses to serve off
// loopback.
func TestFrontDoor(t *testing.T) {
	c := newCluster(t)
	const token = "e2e-front-door-token-0123"
	c.startDispatch("-api-token", token)
	_, port, _ := net.SplitHostPort(c.httpAddr)
	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, path, host string, header http.Header, body string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(method, c.url(path), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		if host != "" {
			req.Host = host
		}
		res, err := client.Do(req)
		if err != nil {
			return 0, nil, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, string(b)
	}
	bearer := http.Header{"Authorization": {"Bearer " + token}, "Content-Type": {"application/json"}}
	await(t, 30*time.Second, "dispatch serving", func() bool {
		code, _, _ := send("GET", "/healthz", "", nil, "")
		return code == 200
	})

	// DNS rebinding: even with the token and a matching Origin.
	evil := "evil.example:" + port
	rebound := http.Header{"Authorization": {"Bearer " + token}, "Content-Type": {"application/json"}, "Origin": {"http://" + evil}}
	if code, _, body := send("POST", "/api/bomb", evil, rebound, `{}`); code != http.StatusMisdirectedRequest || !strings.Contains(body, `"error"`) {
		t.Errorf("rebinding bomb: %d %s", code, body)
	}
	if code, _, body := send("GET", "/api/cluster", evil, rebound, ""); code != http.StatusMisdirectedRequest {
		t.Errorf("rebinding read: %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, res, err := websocket.Dial(ctx, "ws://"+c.httpAddr+"/ws", &websocket.DialOptions{Host: evil, HTTPHeader: rebound})
	if err == nil || res == nil || res.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("rebinding WebSocket: %v", err)
	}
	if n := c.log.count("level=WARN", "request for a host not served here", "node=dispatch"); n != 1 {
		t.Errorf("%d WARN lines for the rebinding requests, want 1", n)
	}

	// The token.
	if code, _, _ := send("GET", "/api/cluster", "", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("API without the token: %d", code)
	}
	if code, _, body := send("GET", "/api/cluster", "", bearer, ""); code != 200 {
		t.Errorf("API with the token: %d %s", code, body)
	}
	if code, _, _ := send("POST", "/api/superheroes", "", http.Header{"Authorization": {"Bearer " + token}}, `{"name":"X"}`); code != http.StatusUnsupportedMediaType {
		t.Errorf("create without application/json: %d", code)
	}
	if code, _, _ := send("GET", "/", "", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("page without logging in: %d", code)
	}
	m := loginLink.FindStringSubmatch(strings.Join(c.log.lines("page login link"), "\n"))
	if m == nil {
		t.Fatal("no login link logged")
	}
	link := strings.TrimPrefix(m[1], "http://"+c.httpAddr)
	code, hdr, _ := send("GET", link, "", nil, "")
	cookie := hdr.Get("Set-Cookie")
	if code != http.StatusSeeOther || !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") {
		t.Fatalf("login link: %d, Set-Cookie %q", code, cookie)
	}
	if code, _, _ := send("GET", link, "", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("login link used twice: %d", code)
	}
	session := http.Header{"Cookie": {strings.Split(cookie, ";")[0]}}
	if code, _, _ := send("GET", "/", "", session, ""); code != 200 {
		t.Errorf("page with the session: %d", code)
	}
	ws, _, err := websocket.Dial(ctx, "ws://"+c.httpAddr+"/ws", &websocket.DialOptions{HTTPHeader: session})
	if err != nil {
		t.Fatalf("WebSocket with the session: %v", err)
	}
	ws.CloseNow()
	if _, res, err := websocket.Dial(ctx, "ws://"+c.httpAddr+"/ws", nil); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("WebSocket without a token: %v", err)
	}

	// Off loopback, no token: refused before joining the cluster.
	_, sparePort, _ := net.SplitHostPort(c.spareAddr)
	open := c.start("open-dispatch", filepath.Join(binDir, "dispatch"), append([]string{
		"-http", "0.0.0.0:" + sparePort, "-slot", "4"}, c.layoutArgs()...))
	select {
	case <-open.Done():
		if open.ExitCode() == 0 || c.log.count("open-dispatch", "not a loopback address", "api-token") != 1 {
			t.Errorf("dispatch on 0.0.0.0 without a token: exit %d", open.ExitCode())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dispatch on 0.0.0.0 without a token is still running")
	}
}
