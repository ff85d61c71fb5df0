package e2e

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// quietWindow is how long a healthy cluster is watched after it is up.
const quietWindow = 3 * time.Second

var (
	// nodeLine is a line of node output in the nodes' log format: the
	// harness's name prefix, then slog's text format carrying node=NAME.
	nodeLine = regexp.MustCompile(`^(\S+) +\| time=\S+ level=(DEBUG|INFO|WARN|ERROR) msg=.* node=(\S+)`)
	// summaryCount reads one count of dispatch's summary line.
	summaryCount = regexp.MustCompile(`\b(ws_commands|2xx)=(\d+)`)
)

// TestHealthyClusterIsQuiet: a healthy cluster, started, used through the
// API and the WebSocket and watched for a few seconds, prints no WARN or
// ERROR line; every line is in the nodes' format; single requests and
// commands are not logged at INFO, but dispatch's summary counts them.
func TestHealthyClusterIsQuiet(t *testing.T) {
	c := newCluster(t)
	a := c.api()
	for _, name := range cities {
		c.startCity(name)
	}
	c.startDispatch("-log-summary", "1s")
	await(t, 30*time.Second, "three cities up and in sync", func() bool {
		cs := a.cluster()
		return cs.Ready && cs.InSync && cs.city("gotham").Up && cs.city("metropolis").Up && cs.city("capitol").Up
	})
	up := time.Now()
	window := time.After(quietWindow) // observed, not waited on for anything

	// Use it: 20 creates and reads over the API, 10 creates on the
	// WebSocket.
	for i := range 20 {
		var h hero
		if code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": "Quiet " + strconv.Itoa(i)}, &h); code != 201 {
			t.Fatalf("create: %d", code)
		}
		if code, _ := a.do("GET", "/api/superheroes/"+h.ID, nil, nil); code != 200 {
			t.Fatalf("read: %d", code)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+c.httpAddr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1)
	for i := range 10 {
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"op":"create","name":"Socket `+strconv.Itoa(i)+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	for replies := 0; replies < 10; {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(b), `{"type":"ok"`) {
			replies++
		} else if strings.HasPrefix(string(b), `{"type":"error"`) {
			t.Fatalf("command failed: %s", b)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")

	<-window
	// The summary of the interval that saw the traffic may come a second
	// later.
	await(t, 5*time.Second, "dispatch's summaries to count the traffic", func() bool {
		sums := map[string]int{}
		for _, line := range c.log.lines(`msg="http summary"`) {
			for _, m := range summaryCount.FindAllStringSubmatch(line, -1) {
				n, _ := strconv.Atoi(m[2])
				sums[m[1]] += n
			}
		}
		return sums["ws_commands"] == 10 && sums["2xx"] >= 40
	})
	t.Logf("watched for %v after all were up", time.Since(up).Round(time.Millisecond))

	if bad := append(c.log.lines("level=WARN"), c.log.lines("level=ERROR")...); len(bad) > 0 {
		t.Errorf("%d WARN or ERROR lines from a healthy cluster:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	for _, line := range c.log.lines("") {
		if line == "" {
			continue
		}
		m := nodeLine.FindStringSubmatch(line)
		if m == nil || m[1] != m[3] {
			t.Errorf("line not in the nodes' format: %q", line)
		}
	}
	for _, msg := range []string{"msg=http ", `msg="websocket command"`, `msg="websocket open"`} {
		if lines := c.log.lines("level=INFO", msg); len(lines) > 0 {
			t.Errorf("%d INFO lines for single requests or commands (%s), e.g. %q", len(lines), msg, lines[0])
		}
	}
	if lines := c.log.lines(`msg="http summary"`, "level=INFO", "node=dispatch", "actor=web"); len(lines) == 0 {
		t.Error("no summary line in the nodes' format")
	}
}
