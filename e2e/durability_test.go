package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// killRounds is how many kill-after-acknowledge rounds the durability test
// runs: $E2E_KILL_ROUNDS, default 6 (about 10 creates and 2 terminates a
// round). The figures in the closing note come from 100 rounds.
func killRounds(t *testing.T) int {
	if v := os.Getenv("E2E_KILL_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("E2E_KILL_ROUNDS=%q", v)
		}
		return n
	}
	return 6
}

// call is one concurrent API call's outcome.
type call struct {
	status int
	body   []byte
	took   time.Duration
}

// concurrently runs the requests at once and returns their outcomes; it
// never calls t.Fatal off the test's goroutine.
func concurrently(base string, reqs []func() (*http.Request, error)) []call {
	out := make([]call, len(reqs))
	var wg sync.WaitGroup
	for i, mk := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := mk()
			if err != nil {
				return
			}
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return // status 0: no answer, the outcome is unknown
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			out[i] = call{status: resp.StatusCode, body: b, took: time.Since(start)}
		}()
	}
	wg.Wait()
	return out
}

func createReq(base, name string) func() (*http.Request, error) {
	return func() (*http.Request, error) {
		req, err := http.NewRequest("POST", base+"/api/superheroes", strings.NewReader(`{"name":"`+name+`"}`))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	}
}

func deleteReq(base, id string) func() (*http.Request, error) {
	return func() (*http.Request, error) { return http.NewRequest("DELETE", base+"/api/superheroes/"+id, nil) }
}

// TestAcknowledgedWritesSurviveDispatchKill: rounds of 8 concurrent
// creates, then 2 terminates of those heroes alongside 2 more creates,
// with dispatch SIGKILLed the moment the answers arrive and started again.
// Every create dispatch acknowledged (201) is on every city, and no
// acknowledged terminate (204) is undone. Before writes waited for a city,
// 10% of creates were lost and 23% of terminates undone this way.
func TestAcknowledgedWritesSurviveDispatchKill(t *testing.T) {
	c := newCluster(t)
	a := c.api()
	for _, name := range cities {
		c.startCity(name, quiet...)
	}
	// $E2E_WRITE_QUORUM runs the same rounds with another -write-quorum
	// (0 shows the losses this test guards against).
	var extra []string
	if q := os.Getenv("E2E_WRITE_QUORUM"); q != "" {
		extra = []string{"-write-quorum", q}
	}
	d := c.startDispatch(extra...)
	base := "http://" + c.httpAddr
	ready := func(what string) {
		await(t, 30*time.Second, what, func() bool {
			code, _ := a.do("GET", "/readyz", nil, nil)
			cs := a.cluster()
			return code == http.StatusOK && cs.city("gotham").Up && cs.city("metropolis").Up && cs.city("capitol").Up
		})
	}
	ready("cluster up and dispatch ready")

	created := map[string]bool{}    // acknowledged creates
	terminated := map[string]bool{} // acknowledged terminates
	var unknown, rounds int
	var lat []float64 // create latency, ms
	for round := range killRounds(t) {
		var reqs []func() (*http.Request, error)
		for i := range 8 {
			reqs = append(reqs, createReq(base, "Durable "+strconv.Itoa(round)+"-"+strconv.Itoa(i)))
		}
		var ids []string
		for _, r := range concurrently(base, reqs) {
			switch r.status {
			case http.StatusCreated:
				var h hero
				if err := json.Unmarshal(r.body, &h); err != nil {
					t.Fatal(err)
				}
				created[h.ID] = true
				ids = append(ids, h.ID)
				lat = append(lat, float64(r.took.Microseconds())/1000)
			case http.StatusServiceUnavailable, 0:
				unknown++ // not acknowledged: may or may not exist
			default:
				t.Fatalf("create answered %d: %s", r.status, r.body)
			}
		}
		if len(ids) < 2 {
			t.Fatalf("round %d: only %d creates acknowledged", round, len(ids))
		}
		reqs = []func() (*http.Request, error){
			deleteReq(base, ids[0]), deleteReq(base, ids[1]),
			createReq(base, "Late "+strconv.Itoa(round)+"-a"), createReq(base, "Late "+strconv.Itoa(round)+"-b"),
		}
		for i, r := range concurrently(base, reqs) {
			switch {
			case i < 2 && r.status == http.StatusNoContent:
				terminated[ids[i]] = true
			case i >= 2 && r.status == http.StatusCreated:
				var h hero
				if err := json.Unmarshal(r.body, &h); err != nil {
					t.Fatal(err)
				}
				created[h.ID] = true
			case r.status == http.StatusServiceUnavailable || r.status == 0:
				unknown++
			default:
				t.Fatalf("answered %d: %s", r.status, r.body)
			}
		}
		// The moment the answers are in: SIGKILL, start again.
		if err := d.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-d.Done()
		d = c.startDispatch(extra...)
		ready("dispatch back and ready")
		rounds++
	}

	// Every city holds every acknowledged create; no acknowledged terminate
	// is undone.
	lost, undone := map[string]bool{}, map[string]bool{} // by hero, on any city
	for _, city := range cities {
		var live []hero
		await(t, 10*time.Second, city+" readable", func() bool {
			var ok bool
			live, ok = a.cityHeroes(city)
			return ok
		})
		have := map[string]bool{}
		for _, h := range live {
			have[h.ID] = true
		}
		for id := range created {
			if !have[id] && !terminated[id] {
				lost[id] = true
				t.Errorf("%s lacks acknowledged create %s", city, id)
			}
		}
		for id := range terminated {
			if have[id] {
				undone[id] = true
				t.Errorf("%s holds %s live, though its terminate was acknowledged", city, id)
			}
		}
	}
	t.Logf("FIGURE %d rounds: %d creates and %d terminates acknowledged, %d answers with unknown outcome; lost %d, undone %d; create latency p50 %.2f ms p99 %.2f ms",
		rounds, len(created), len(terminated), unknown, len(lost), len(undone), percentile(lat, 0.50), percentile(lat, 0.99))
}

// TestWritesWithNoCityUp: with every city down, a create is never
// acknowledged: 503 saying the outcome is unknown (or that dispatch is
// catching up, while it waits to learn that no city is up).
func TestWritesWithNoCityUp(t *testing.T) {
	c := newCluster(t)
	a := c.api()
	c.startDispatch()
	await(t, 30*time.Second, "dispatch answers", func() bool {
		code, _ := a.do("GET", "/healthz", nil, nil)
		return code == http.StatusOK
	})
	sawCatchingUp := false
	await(t, 10*time.Second, "a create answered 503, outcome unknown", func() bool {
		resp, err := http.Post("http://"+c.httpAddr+"/api/superheroes", "application/json", bytes.NewReader([]byte(`{"name":"Nobody"}`)))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("create with no city up answered %d: %s", resp.StatusCode, b)
		}
		if strings.Contains(string(b), "catching up") {
			sawCatchingUp = true
			return false
		}
		return strings.Contains(string(b), "outcome unknown")
	})
	t.Logf("saw the catching-up answer first: %v", sawCatchingUp)
}
