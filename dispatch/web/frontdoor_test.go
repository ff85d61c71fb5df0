package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestHostAllowList: a request naming a host other than the server's own
// (DNS rebinding: evil.example resolving to 127.0.0.1) gets 421 on every
// route, reads and the WebSocket included, and nothing is done.
func TestHostAllowList(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *HubConfig) {
		c.AllowedHosts = []string{"proxy.example", "front.example:8080", "[fd00::1]"}
	})
	_, port, _ := strings.Cut(e.addr, ":")
	for _, tc := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:" + port, 200},
		{"localhost:" + port, 200},
		{"LocalHost:" + port, 200},
		{"[::1]:" + port, 200},
		{"proxy.example:" + port, 200},
		{"front.example:8080", 200},
		{"[fd00::1]:" + port, 200},
		{"evil.example:" + port, 421},
		{"evil.example", 421},
		{"localhost", 421},   // port 80
		{"localhost:1", 421}, // another port
		{"localhost.:" + port, 421},
		{"proxy.example:8080", 421},
		{"front.example:" + port, 421},
		{"127.0.0.2:" + port, 421},
		{"[::2]:" + port, 421},
	} {
		r := e.do("GET", "/api/superheroes", nil, http.Header{"Host": {tc.host}})
		if r.status != tc.want {
			t.Errorf("Host %q: %d %s, want %d", tc.host, r.status, r.body, tc.want)
		}
		if tc.want == 421 && !strings.Contains(r.errorText(t), "not served here") {
			t.Errorf("Host %q: error %s", tc.host, r.body)
		}
	}

	evil := "evil.example:" + port
	// The rebinding attack itself: a state-changing call with the Host
	// and a matching Origin of the attacker's page.
	r := e.do("POST", "/api/bomb", strings.NewReader(`{"city":"gotham"}`), http.Header{
		"Host": {evil}, "Origin": {"http://" + evil}, "Content-Type": {"application/json"},
	})
	if r.status != http.StatusMisdirectedRequest || !isJSONError(r.body) {
		t.Fatalf("rebinding bomb: %d %s", r.status, r.body)
	}
	if len(e.backend.bombed) != 0 {
		t.Fatalf("bombed %v", e.backend.bombed)
	}
	for _, path := range []string{"/", "/static/app.js", "/healthz", "/api/cluster", "/api/nope", "/login?t=x"} {
		if r := e.do("GET", path, nil, http.Header{"Host": {evil}}); r.status != 421 || !isJSONError(r.body) {
			t.Errorf("GET %s with Host %s: %d %s", path, evil, r.status, r.body)
		}
	}

	// The WebSocket upgrade.
	_, res, err := websocket.Dial(t.Context(), e.wsURL(), &websocket.DialOptions{Host: evil, HTTPHeader: http.Header{"Origin": {"http://" + evil}}})
	if err == nil || res == nil || res.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("WebSocket with Host %s: %v %v", evil, err, res)
	}
	if e.hub.Subscribers() != 0 {
		t.Fatalf("%d subscribers", e.hub.Subscribers())
	}
	if lines := e.logs.lines("level=WARN", "request for a host not served here", "host=evil.example"); len(lines) != 1 {
		t.Errorf("want one WARN line for the refused hosts (the rest at DEBUG), got %q", lines)
	}
	if lines := e.logs.lines("level=DEBUG", "request for a host not served here"); len(lines) == 0 {
		t.Error("no DEBUG line for the later refusals")
	}
}

func TestCanonicalHost(t *testing.T) {
	for in, want := range map[string]string{
		"LOCALHOST:4900":      "localhost:4900",
		"localhost":           "localhost:80",
		"[::1]:4900":          "[::1]:4900",
		"[0:0:0:0:0:0:0:1]:1": "[::1]:1",
		"[::1]":               "[::1]:80",
		"10.0.0.1:4900":       "10.0.0.1:4900",
		"::1":                 "",
		"[localhost]:80":      "",
		"a:b:c":               "",
		"host:":               "",
		"host:x":              "",
		"host:99999":          "",
		"host:080":            "",
		"":                    "",
		":4900":               "",
		"user@host:1":         "",
		"host/x:1":            "",
	} {
		got, ok := canonicalHost(in)
		if got != want || ok != (want != "") {
			t.Errorf("canonicalHost(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	long := strings.Repeat("t", MinAPITokenLen)
	for _, tc := range []struct {
		cfg  Config
		fail string // "" when valid
	}{
		{Config{}, ""},
		{Config{Addr: "localhost:4900"}, ""},
		{Config{Addr: "[::1]:4900"}, ""},
		{Config{Addr: "127.0.0.1:0", AllowedHosts: []string{"a.example", "b.example:81", "10.0.0.1", "[fd00::1]:80"}}, ""},
		{Config{Addr: "0.0.0.0:4900"}, "not a loopback address"},
		{Config{Addr: ":4900"}, "not a loopback address"},
		{Config{Addr: "10.0.0.10:4900"}, "not a loopback address"},
		{Config{Addr: "10.0.0.10:4900", APIToken: long}, ""},
		{Config{Addr: "0.0.0.0:4900", APIToken: long}, ""},
		{Config{APIToken: "short"}, "shorter than"},
		{Config{Addr: "4900"}, "http address"},
		{Config{AllowedHosts: []string{"a b"}}, "allowed host"},
		{Config{AllowedHosts: []string{"http://a.example"}}, "allowed host"},
		{Config{AllowedHosts: []string{"a.example:0"}}, "allowed host"},
		{Config{AllowedHosts: []string{""}}, "allowed host"},
		{Config{AllowedOrigins: []string{"["}}, "allowed origin"},
		{Config{MaxConns: 10, MaxWebSockets: 10}, "none for the API"},
		{Config{MaxConns: 10}, ""},
		{Config{ReadTimeout: time.Second}, "must exceed the command timeout"},
		{Config{AnswerTimeout: time.Second}, "must exceed the command timeout"},
		{Config{ReadTimeout: time.Second, AnswerTimeout: time.Second, CommandTimeout: time.Second / 2}, ""},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.fail == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
			t.Errorf("%+v: error %v, want one saying %q", tc.cfg, err, tc.fail)
		}
	}
	hub := NewHub(HubConfig{}, nil)
	if _, err := New(Config{Addr: "0.0.0.0:4900"}, newFakeBackend(hub), hub, nil); err == nil {
		t.Error("New served 0.0.0.0 without an API token")
	}
}

// TestContentType: state-changing calls must say application/json, which
// a page of another site cannot send without asking first.
func TestContentType(t *testing.T) {
	e := newEnv(t)
	live := e.backend.seed(t, "Alpha").ID.String()
	for _, tc := range []struct {
		method, path, ct, body string
		want                   int
	}{
		{"POST", "/api/superheroes", "", `{"name":"A"}`, 415},
		{"POST", "/api/superheroes", "", "", 415},
		{"POST", "/api/superheroes", "text/plain", `{"name":"A"}`, 415},
		{"POST", "/api/superheroes", "application/x-www-form-urlencoded", `name=A`, 415},
		{"POST", "/api/superheroes", "multipart/form-data; boundary=x", `--x--`, 415},
		{"POST", "/api/superheroes", "application/json; charset=latin1", `{"name":"A"}`, 415},
		{"POST", "/api/superheroes", "application/json; x=y", `{"name":"A"}`, 415},
		{"POST", "/api/superheroes", "application/jsonx", `{"name":"A"}`, 415},
		{"POST", "/api/bomb", "text/plain", `{"city":"gotham"}`, 415},
		{"PUT", "/api/superheroes/" + live + "/location", "text/plain", `{"location":"gotham"}`, 415},
		{"PUT", "/api/superheroes/" + live + "/location", "", `{"location":"gotham"}`, 415},
		{"DELETE", "/api/superheroes/" + live, "text/plain", `{}`, 415},
		{"POST", "/api/superheroes", "application/json", `{"name":"A"}`, 201},
		{"POST", "/api/superheroes", "Application/JSON; charset=UTF-8", `{"name":"B"}`, 201},
		{"POST", "/api/superheroes", "application/json", "", 201},
		{"PUT", "/api/superheroes/" + live + "/location", "application/json", `{"location":"gotham"}`, 200},
		{"DELETE", "/api/superheroes/" + live, "", "", 204},
	} {
		h := http.Header{}
		if tc.ct != "" {
			h.Set("Content-Type", tc.ct)
		}
		var r response
		if tc.body == "" {
			r = e.do(tc.method, tc.path, nil, h)
		} else {
			r = e.do(tc.method, tc.path, strings.NewReader(tc.body), h)
		}
		if r.status != tc.want {
			t.Errorf("%s %s with %q: %d %s, want %d", tc.method, tc.path, tc.ct, r.status, r.body, tc.want)
		}
		if tc.want == 415 && !strings.Contains(r.errorText(t), "application/json") {
			t.Errorf("415 error %s", r.body)
		}
	}
	if len(e.backend.bombed) != 0 {
		t.Errorf("bombed %v", e.backend.bombed)
	}
}

const testToken = "0123456789abcdef-token"

func withToken(c *Config, _ *HubConfig) { c.APIToken = testToken }

// TestAPIToken: with a token, the API needs it as a bearer token; the
// probes do not; the page takes the token or a session.
func TestAPIToken(t *testing.T) {
	e := newEnv(t, withToken)
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	for _, tc := range []struct {
		method, path string
		header       http.Header
		want         int
	}{
		{"GET", "/api/superheroes", nil, 401},
		{"GET", "/api/superheroes", bearer("wrong-token-wrong-token"), 401},
		{"GET", "/api/superheroes", bearer(testToken[:len(testToken)-1]), 401},
		{"GET", "/api/superheroes", http.Header{"Authorization": {"Basic " + testToken}}, 401},
		{"GET", "/api/superheroes", bearer(testToken), 200},
		{"GET", "/api/superheroes", http.Header{"Authorization": {"bearer " + testToken}}, 200},
		{"POST", "/api/bomb", http.Header{"Content-Type": {"application/json"}}, 401},
		{"GET", "/api/nope", nil, 401},
		{"GET", "/healthz", nil, 200},
		{"GET", "/readyz", nil, 200},
		{"GET", "/", nil, 401},
		{"GET", "/static/app.js", nil, 401},
		{"GET", "/", bearer(testToken), 200},
		{"GET", "/api/superheroes", http.Header{"Cookie": {e.srv.cookieName() + "=made-up"}}, 401},
	} {
		r := e.do(tc.method, tc.path, nil, tc.header)
		if r.status != tc.want {
			t.Errorf("%s %s %v: %d %s, want %d", tc.method, tc.path, tc.header, r.status, r.body, tc.want)
		}
		if tc.want == 401 && (!isJSONError(r.body) || r.header.Get("WWW-Authenticate") == "") {
			t.Errorf("%s %s: 401 without a JSON error or WWW-Authenticate: %v %s", tc.method, tc.path, r.header, r.body)
		}
	}
	if len(e.backend.bombed) != 0 {
		t.Errorf("bombed %v", e.backend.bombed)
	}
	if len(e.logs.lines("level=WARN", "without a valid token")) != 1 {
		t.Errorf("want one WARN line for the refusals: %q", e.logs.lines("without a valid token"))
	}
}

// TestPageLogin: the one-time link sets an HttpOnly, SameSite=Strict
// session cookie once; the page and the WebSocket take the cookie, the API
// does not.
func TestPageLogin(t *testing.T) {
	e := newEnv(t, withToken)
	link := e.srv.LoginLink()
	if !strings.HasPrefix(link, e.url+"/login?t=") {
		t.Fatalf("login link %q", link)
	}
	waitFor(t, 5*time.Second, "the login link logged at start", func() bool { return len(e.logs.lines("page login link", link)) == 1 })
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(method, u string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}

	// HEAD says the link is good without using it up.
	if res := get("HEAD", link); res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 0 {
		t.Fatalf("HEAD login: %d %v", res.StatusCode, res.Cookies())
	}
	res := get("GET", link)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
		t.Fatalf("login: %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == e.srv.cookieName() {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/" || session.MaxAge <= 0 || len(session.Value) < 32 {
		t.Fatalf("session cookie %+v", session)
	}
	if strings.Contains(link, session.Value) {
		t.Fatal("the cookie is the code")
	}

	// Once only.
	for _, m := range []string{"GET", "HEAD"} {
		if res := get(m, link); res.StatusCode != http.StatusUnauthorized || len(res.Cookies()) != 0 {
			t.Fatalf("%s of a used link: %d %v", m, res.StatusCode, res.Cookies())
		}
	}
	if r := e.do("GET", "/login?t=", nil, nil); r.status != 401 || !isJSONError(r.body) {
		t.Fatalf("empty code: %d %s", r.status, r.body)
	}
	next := e.srv.LoginLink()
	if next == link || len(e.logs.lines("page login link", next)) != 1 {
		t.Fatalf("no new link logged after the first was used: %q", next)
	}

	cookie := http.Header{"Cookie": {e.srv.cookieName() + "=" + session.Value}}
	if r := e.do("GET", "/", nil, cookie); r.status != 200 {
		t.Fatalf("page with the session: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/static/app.js", nil, cookie); r.status != 200 {
		t.Fatalf("script with the session: %d", r.status)
	}
	if r := e.do("GET", "/api/superheroes", nil, cookie); r.status != 401 {
		t.Fatalf("API with only the session: %d, want 401", r.status)
	}

	// The WebSocket: refused without either, taken with the cookie or the
	// bearer token.
	ctx := t.Context()
	_, res, err := websocket.Dial(ctx, e.wsURL(), nil)
	if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("WebSocket without a token: %v", err)
	}
	_, res, err = websocket.Dial(ctx, e.wsURL(), &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {e.srv.cookieName() + "=nope"}}})
	if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("WebSocket with a made-up cookie: %v", err)
	}
	for name, h := range map[string]http.Header{
		"cookie": cookie,
		"bearer": {"Authorization": {"Bearer " + testToken}},
	} {
		c := e.dial(ctx, &websocket.DialOptions{HTTPHeader: h})
		nextFrame(t, c, "snapshot")
		if r := roundTrip(t, c, `{"op":"create","name":"By `+name+`","ref":1}`); r.Type != "ok" {
			t.Fatalf("WebSocket command with the %s: %+v", name, r)
		}
	}

	// The second link works once too.
	u, err := url.Parse(next)
	if err != nil {
		t.Fatal(err)
	}
	if res := get("GET", e.url+u.RequestURI()); res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 {
		t.Fatalf("second link: %d %v", res.StatusCode, res.Cookies())
	}
}

// TestSessionExpires: a session cookie is refused once its time is up.
func TestSessionExpires(t *testing.T) {
	a := newAuth(testToken, time.Hour)
	session, _, ok := a.login(a.currentCode())
	if !ok {
		t.Fatal("login refused")
	}
	req, _ := http.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "s", Value: session})
	if !a.sessionOK(req, "s") {
		t.Fatal("fresh session refused")
	}
	start := a.now()
	a.now = func() time.Time { return start.Add(time.Hour) }
	if a.sessionOK(req, "s") {
		t.Fatal("expired session taken")
	}
}
