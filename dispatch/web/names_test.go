package web

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// TestHEAD: every GET route answers HEAD with GET's status and headers and
// no body.
func TestHEAD(t *testing.T) {
	e := newEnv(t)
	live := e.backend.seed(t, "Alpha").ID.String()
	for _, path := range []string{
		"/healthz", "/readyz", "/api/superheroes", "/api/superheroes/" + live, "/api/superheroes/nope",
		"/api/cluster", "/api/cities/gotham/superheroes", "/api/cities/atlantis/superheroes",
		"/ws", "/", "/static/app.js", "/static/style.css", "/static/nope.js", "/nope", "/login",
	} {
		get := e.doJSON("GET", path, "")
		head := e.doJSON("HEAD", path, "")
		if head.status != get.status || len(head.body) != 0 {
			t.Errorf("HEAD %s: %d with %d bytes; GET: %d", path, head.status, len(head.body), get.status)
		}
		if head.status == http.StatusMethodNotAllowed {
			t.Errorf("HEAD %s: 405", path)
		}
		if ct := head.header.Get("Content-Type"); ct != get.header.Get("Content-Type") {
			t.Errorf("HEAD %s: Content-Type %q, GET's %q", path, ct, get.header.Get("Content-Type"))
		}
	}
	// 405 names HEAD among the methods allowed.
	r := e.doJSON("PATCH", "/api/superheroes", "")
	if allow := r.header.Get("Allow"); r.status != 405 || !strings.Contains(allow, "HEAD") {
		t.Errorf("PATCH: %d, Allow %q", r.status, allow)
	}
}

// nameCases are names to refuse, as JSON string contents.
var nameCases = []struct {
	name, json, says string
}{
	{"right-to-left override", `Bob\u202Eevil`, "bidirectional"},
	{"left-to-right embedding", `\u202ABob`, "bidirectional"},
	{"pop directional formatting", `Bob\u202C`, "bidirectional"},
	{"first strong isolate", `Bob\u2068x\u2069`, "bidirectional"},
	{"right-to-left isolate", `\u2067Bob`, "bidirectional"},
	{"left-to-right mark", `Bob\u200E`, "bidirectional"},
	{"right-to-left mark", `Bob\u200F`, "bidirectional"},
	{"arabic letter mark", `Bob\u061C`, "bidirectional"},
	{"zero-width space", `Bo\u200Bb`, "zero-width"},
	{"zero-width non-joiner", `Bo\u200Cb`, "zero-width"},
	{"zero-width joiner", `Bo\u200Db`, "zero-width"},
	{"word joiner", `Bo\u2060b`, "zero-width"},
	{"byte order mark", `\uFEFFBob`, "zero-width"},
	{"line separator inside", `Bob\u2028Evil`, "line or paragraph separator"},
	{"line separator at the end", `Bob\u2028`, "line or paragraph separator"},
	{"paragraph separator", `\u2029Bob`, "line or paragraph separator"},
	{"soft hyphen", `Bo\u00ADb`, "invisible format"},
	{"tag character", `Bob\uDB40\uDC41`, "invisible format"},
	{"lone surrogate", `Bob\uD800`, "replacement character"},
	{"replacement character", `Bob\uFFFD`, "replacement character"},
	{"tab", `Bob\tSmith`, "control character"},
	{"newline at the end", `Bob\n`, "control character"},
	{"bell", `a\u0007b`, "control character"},
}

// TestNamesRefused: names that would look other than they are get 400
// saying why, over the API and over the WebSocket (an error frame), and
// nothing is created.
func TestNamesRefused(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.dial(ctx, nil)
	nextFrame(t, c, "snapshot")
	for _, tc := range nameCases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.doJSON("POST", "/api/superheroes", `{"name":"`+tc.json+`"}`)
			if r.status != 400 || !strings.Contains(r.errorText(t), tc.says) {
				t.Errorf("API: %d %s, want 400 saying %q", r.status, r.body, tc.says)
			}
			f := roundTrip(t, c, `{"op":"create","name":"`+tc.json+`","ref":1}`)
			if f.Type != "error" || f.Status != 400 || !strings.Contains(f.Error, tc.says) {
				t.Errorf("WebSocket: %+v, want an error frame 400 saying %q", f, tc.says)
			}
		})
	}
	if hs := e.backend.mustHeroes(); len(hs) != 0 {
		t.Errorf("created %v", hs)
	}

	// Names that are fine, as sent (white space around trimmed).
	for json, want := range map[string]string{
		`Ünïcødé Wömån`:   "Ünïcødé Wömån",
		`שלום עולם`:       "שלום עולם", // right-to-left text, no controls
		`  Bob  `:         "Bob",
		`\u00A0Bob\u3000`: "Bob",
		`Bob 🦸`:           "Bob 🦸",
	} {
		r := e.doJSON("POST", "/api/superheroes", `{"name":"`+json+`"}`)
		var h heroJSON
		if r.status != 201 {
			t.Errorf("name %s: %d %s", json, r.status, r.body)
			continue
		}
		r.json(t, &h)
		if h.Name != want {
			t.Errorf("name %s stored as %q, want %q", json, h.Name, want)
		}
	}
}

// TestInvalidUTF8Refused: bytes that are not UTF-8 are refused, never
// replaced, in an API body and in a WebSocket frame.
func TestInvalidUTF8Refused(t *testing.T) {
	e := newEnv(t)
	for _, body := range []string{
		"{\"name\":\"Bob\xff\"}",
		"{\"name\":\"Bob\xc3\"}",
		"{\"name\":\"\xed\xa0\x80\"}", // an encoded surrogate
	} {
		r := e.doJSON("POST", "/api/superheroes", body)
		if r.status != 400 || !strings.Contains(r.errorText(t), "not valid UTF-8") {
			t.Errorf("body %q: %d %s", body, r.status, r.body)
		}
	}
	r := e.doJSON("POST", "/api/bomb", "{\"city\":\"gotham\xff\"}")
	if r.status != 400 || len(e.backend.bombed) != 0 {
		t.Errorf("bomb with invalid UTF-8: %d %s", r.status, r.body)
	}

	ctx := t.Context()
	c := e.dial(ctx, nil)
	nextFrame(t, c, "snapshot")
	if err := c.Write(ctx, websocket.MessageText, []byte("{\"op\":\"create\",\"name\":\"Bob\xff\",\"ref\":7}")); err != nil {
		t.Fatal(err)
	}
	f := nextReply(t, ctx, c)
	if f.Type != "error" || f.Status != 400 || !strings.Contains(f.Error, "not valid UTF-8") {
		t.Errorf("WebSocket: %+v", f)
	}
	if hs := e.backend.mustHeroes(); len(hs) != 0 {
		t.Errorf("created %v", hs)
	}
}

// nextReply reads frames until a command reply.
func nextReply(t *testing.T, ctx context.Context, c *websocket.Conn) frame {
	t.Helper()
	for {
		f, err := readFrame(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == "ok" || f.Type == "error" {
			return f
		}
	}
}

func TestCleanName(t *testing.T) {
	if _, err := cleanName("Bob\xff"); err == nil {
		t.Error("invalid UTF-8 taken")
	}
	for _, ok := range []string{"", "Captain Otter", "Ça va", "東京"} {
		if got, err := cleanName(ok); err != nil || got != ok {
			t.Errorf("cleanName(%q) = %q, %v", ok, got, err)
		}
	}
}
