package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/internal/testkit"
	"github.com/superhero-cluster/superhero/messages"
)

// serveFake runs h on addr until the test ends or stop is called.
func serveFake(t *testing.T, addr string, h http.HandlerFunc) (stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = srv.Close()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestForgedMemberNeverAdmitted reproduces the security review's attack on
// the free slots of a running cluster: a plain HTTP server answering in the
// automanaged format with the cookie's fingerprint (as the health endpoints
// used to publish it) and claiming every city's kind, and one replaying an
// answer captured from gotham's health endpoint. Neither holds the cookie,
// so neither is admitted: for several provider polls the cities stay up in
// dispatch's status, city reads answer 200, never 503, and writes are
// acknowledged.
func TestForgedMemberNeverAdmitted(t *testing.T) {
	c := newCluster(t)
	a := c.api()
	for _, name := range cities {
		c.startCity(name, quiet...)
	}
	c.startDispatch()
	allUp := func(cs clusterStatus) bool {
		for _, city := range cities {
			if !cs.city(city).Up {
				return false
			}
		}
		return true
	}
	await(t, 30*time.Second, "three cities up", func() bool { cs := a.cluster(); return cs.Ready && allUp(cs) })

	slotAddr := func(slot int) string { return "127.0.0.1:" + strconv.Itoa(c.healthBase+slot) }
	oldFake, replayFake := slotAddr(4), slotAddr(5)

	// What the old health endpoints published: cluster name and cookie
	// fingerprint (HMAC-SHA256 of the label under the cookie, 8 bytes).
	m := hmac.New(sha256.New, []byte(node.DefaultCookie))
	m.Write([]byte("superhero-cluster/v1/cluster-name"))
	oldName := node.DefaultClusterName + "-" + hex.EncodeToString(m.Sum(nil)[:8])
	var kinds []string
	for _, city := range cities {
		kinds = append(kinds, messages.CityKind(city))
	}
	oldAnswer, err := json.Marshal(map[string]any{
		"id": "forged", "address": "127.0.0.1", "port": c.remoteBase + 4, "auto_manage_port": c.healthBase + 4,
		"kinds": kinds, "cluster_name": oldName,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A real answer, captured by asking gotham like a poller would.
	resp, err := http.Get("http://" + slotAddr(1) + "/_health?nonce=" + strings.Repeat("c3", 16))
	if err != nil {
		t.Fatal(err)
	}
	captured, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || strings.Contains(string(captured), oldName[len(node.DefaultClusterName)+1:]) {
		t.Fatalf("gotham's answer: %d %q %v (want 200 without the fingerprint)", resp.StatusCode, captured, err)
	}

	stopOld := serveFake(t, oldFake, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(oldAnswer) })
	stopReplay := serveFake(t, replayFake, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(captured) })
	defer stopOld()
	defer stopReplay()

	// Every node polls both fakes and refuses them.
	await(t, 10*time.Second, "every node refused both fakes", func() bool {
		for _, name := range append([]string{"dispatch"}, cities...) {
			for _, fake := range []string{oldFake, replayFake} {
				if c.log.count("node="+name, "refused health answer", "health="+fake) == 0 {
					return false
				}
			}
		}
		return true
	})
	// For five polls (1 s apart) the cities stay up and readable.
	polls := 0
	start := time.Now()
	testkit.AssertNever(t, 5*time.Second, func() bool {
		polls++
		if !allUp(a.cluster()) {
			t.Logf("dispatch shows a city down after %v", time.Since(start))
			return true
		}
		city := cities[polls%len(cities)]
		code, _ := a.do("GET", "/api/cities/"+city+"/superheroes", nil, nil)
		if code != http.StatusOK {
			t.Logf("GET /api/cities/%s/superheroes: %d after %v", city, code, time.Since(start))
			return true
		}
		return false
	}, "a forged member disturbed the cluster")
	var h hero
	if code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": "Undisturbed"}, &h); code != http.StatusCreated {
		t.Fatalf("create while the fakes run: %d", code)
	}
	t.Logf("%d checks of status and city reads while the fakes ran; refusals logged: %d (old format), %d (replay)",
		polls, c.log.count("refused health answer", "health="+oldFake), c.log.count("refused health answer", "health="+replayFake))
	if n := c.log.count("member admitted", "forged"); n > 0 {
		t.Fatalf("the forged member was admitted (%d lines)", n)
	}
	if n := c.log.count("EndpointWriter", "127.0.0.1:"+strconv.Itoa(c.remoteBase+4)); n > 0 {
		t.Fatalf("a node dialled the forged member's remote port (%d lines)", n)
	}
}
