package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/chaos"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		kind   chaos.Kind
		status int
		msg    string
		want   chaos.Outcome
	}{
		{chaos.KindCreate, 201, "", chaos.OK},
		{chaos.KindTerminate, 204, "", chaos.OK},
		{chaos.KindAssign, 200, "", chaos.OK},
		{chaos.KindRead, 200, "", chaos.OK},
		{chaos.KindRead, 410, "crdt: hero is dead", chaos.OK},
		{chaos.KindRead, 404, "crdt: unknown hero", chaos.OK},
		{chaos.KindTerminate, 404, "crdt: unknown hero", chaos.Fail},
		{chaos.KindAssign, 409, "crdt: hero is dead", chaos.Fail},
		{chaos.KindAssign, 400, "bad location", chaos.Fail},
		{chaos.KindCreate, 503, "dispatch: unavailable: dispatch is catching up", chaos.Fail},
		{chaos.KindAssign, 503, "dispatch: city unreachable: gotham is down", chaos.Fail},
		{chaos.KindAssign, 503, `dispatch: city unreachable: gotham: node: kind not available in cluster topology: "city-gotham"`, chaos.Fail},
		{chaos.KindAssign, 503, "dispatch: city unreachable: gotham refused dispatch's entry: clock", chaos.Fail},
		{chaos.KindAssign, 503, "dispatch: unavailable: dispatch's replica is not answering: no answer to backend.contextReq in 1s", chaos.Fail},
		{chaos.KindAssign, 503, "dispatch: unavailable: dispatch's replica is not answering: no answer to backend.homeReq in 1s", chaos.Unknown},
		{chaos.KindAssign, 503, "dispatch: timed out waiting for the cluster", chaos.Unknown},
		{chaos.KindAssign, 503, "dispatch: city unreachable: gotham: node: stopped", chaos.Unknown},
		{chaos.KindCreate, 503, "dispatch: outcome unknown: no city confirmed the write in time; it may still spread", chaos.Unknown},
		{chaos.KindTerminate, 503, "dispatch: unavailable: dispatch's replica is not answering: no answer to backend.deleteReq in 1s", chaos.Unknown},
		{chaos.KindCreate, 500, "internal server error", chaos.Unknown},
		{chaos.KindList, 503, "dispatch: unavailable: dispatch is catching up", chaos.Fail},
		{chaos.KindCityRead, 503, "dispatch: timed out waiting for the cluster", chaos.Fail},
	}
	for _, c := range cases {
		if got := classify(c.kind, c.status, c.msg); got != c.want {
			t.Errorf("%s %d %q: %s, want %s", c.kind, c.status, c.msg, got, c.want)
		}
	}
}

func TestClassifyTransport(t *testing.T) {
	// A real refused connection, as the HTTP client reports it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = http.Get("http://" + addr + "/")
	if got := classifyTransport(err); got != chaos.Fail {
		t.Errorf("refused connection %v: %s, want fail", err, got)
	}
	// A server that takes the request and never answers in time.
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	_, err = (&http.Client{Timeout: 50 * time.Millisecond}).Post(srv.URL, "application/json", nil)
	if got := classifyTransport(err); got != chaos.Unknown {
		t.Errorf("timeout %v: %s, want unknown", err, got)
	}
	for _, err := range []error{
		&url.Error{Op: "Post", URL: "x", Err: errors.New("EOF")},
		fmt.Errorf("read: %w", syscall.ECONNRESET),
		context.DeadlineExceeded,
	} {
		if got := classifyTransport(err); got != chaos.Unknown {
			t.Errorf("%v: %s, want unknown", err, got)
		}
	}
}

func TestPlanIsSeeded(t *testing.T) {
	cities := []string{"gotham", "metropolis", "capitol"}
	a := plan(7, cities, 3*time.Second, 40*time.Second, false)
	b := plan(7, cities, 3*time.Second, 40*time.Second, false)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two schedules")
	}
	if reflect.DeepEqual(a, plan(8, cities, 3*time.Second, 40*time.Second, false)) {
		t.Fatal("two seeds gave the same schedule")
	}
	kinds := map[string]int{}
	doubles := 0
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		for _, s := range plan(seed, cities, 0, 120*time.Second, false) {
			if s.At < 0 || s.At >= 120*time.Second {
				t.Fatalf("step at %v outside the window", s.At)
			}
			if len(s.Faults) == 2 {
				doubles++
				if s.Faults[0].Target == s.Faults[1].Target {
					t.Fatalf("two faults at once on one node: %v", s.Faults)
				}
			}
			for _, f := range s.Faults {
				kinds[f.Kind]++
				if f.Target == dispatchName && (f.Kind == faultBomb || f.Kind == faultKillCity) {
					t.Fatalf("dispatch bombed: %v", f)
				}
				if f.Kind == faultSigstop && (f.Hold < time.Second || f.Hold >= 10*time.Second) {
					t.Fatalf("freeze of %v", f.Hold)
				}
				if f.network() || f.Kind == faultClockSkew {
					t.Fatalf("a -net fault on loopback: %v", f)
				}
			}
		}
	}
	for _, k := range []string{faultBomb, faultKillCity, faultSigkill, faultSigstop} {
		if kinds[k] == 0 {
			t.Errorf("no %s in five schedules: %v", k, kinds)
		}
	}
	if doubles == 0 {
		t.Error("never two faults at once in five schedules")
	}
}

// TestPlanNet: in the lab the schedule adds the network faults and the
// skewed clock, each well formed, never two network faults at once and
// never two faults on one node.
func TestPlanNet(t *testing.T) {
	cities := []string{"gotham", "metropolis", "capitol"}
	if !reflect.DeepEqual(plan(9, cities, 0, time.Minute, true), plan(9, cities, 0, time.Minute, true)) {
		t.Fatal("the same seed gave two schedules")
	}
	kinds := map[string]int{}
	etcdSides := map[int]int{}
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6} {
		for _, s := range plan(seed, cities, 0, 120*time.Second, true) {
			network, nodes := 0, map[string]bool{}
			for _, f := range s.Faults {
				kinds[f.Kind]++
				if f.network() {
					network++
				}
				for _, n := range f.nodes() {
					if nodes[n] {
						t.Fatalf("two faults at once on %s: %v", n, s.Faults)
					}
					nodes[n] = true
				}
				switch f.Kind {
				case faultIsolate:
					if f.Target == dispatchName {
						t.Fatalf("%s of dispatch", f.Kind)
					}
				case faultSplit:
					if len(f.Groups) != 2 || len(f.Groups[0]) == 0 || len(f.Groups[1]) == 0 || len(f.nodes()) != 1+len(cities) {
						t.Fatalf("split %v", f.Groups)
					}
					side := 0
					for i, g := range f.Groups {
						for _, n := range g {
							if n == etcdName {
								side = i + 1
							}
						}
					}
					etcdSides[side]++
				case faultDrop:
					if f.Percent < 10 || f.Percent > 40 {
						t.Fatalf("drop of %d%%", f.Percent)
					}
				}
				if f.Kind == faultClockSkew && (f.Offset.Abs() < 100*time.Millisecond || f.Offset.Abs() >= 400*time.Millisecond) {
					t.Fatalf("skew of %v: outside 100..400 ms", f.Offset)
				}
				if f.network() && f.Hold < 2*time.Second {
					t.Fatalf("%v held %v", f.Kind, f.Hold)
				}
			}
			if network > 1 {
				t.Fatalf("two network faults at once: %v", s.Faults)
			}
		}
	}
	for _, k := range []string{faultBomb, faultKillCity, faultSigkill, faultSigstop, faultIsolate, faultCutDispatch, faultSplit, faultDrop, faultClockSkew} {
		if kinds[k] == 0 {
			t.Errorf("no %s in six schedules: %v", k, kinds)
		}
	}
	if len(etcdSides) != 3 {
		t.Errorf("etcd's side in splits: %v, want each of neither, first and second", etcdSides)
	}
}

func TestDifferences(t *testing.T) {
	cities := []string{"a", "b"}
	live := chaos.Hero{ID: "1", Location: "home", Health: 100, Stamp: chaos.Stamp{Wall: 5, Node: "dispatch"}}
	dead := chaos.Hero{ID: "2", Dead: true, Stamp: chaos.Stamp{Wall: 6, Node: "dispatch"}}
	reps := map[string][]chaos.Hero{"a": {live, dead}, "b": {dead, live}, dispatchName: {live}}
	if d := differences(reps, cities, false); len(d) != 0 {
		t.Fatalf("equal replicas (dispatch's live list): %v", d)
	}
	reps[dispatchName] = []chaos.Hero{live, {ID: "2", Dead: true}}
	if d := differences(reps, cities, true); len(d) != 0 {
		t.Fatalf("equal replicas (dispatch's tombstone without a stamp): %v", d)
	}
	if d := differences(reps, cities, false); len(d) != 1 {
		t.Fatalf("a tombstone in dispatch's live list: %v", d)
	}
	older := live
	older.Stamp.Wall = 4
	reps = map[string][]chaos.Hero{"a": {live, dead}, "b": {older, dead}, dispatchName: {live, {ID: "2", Dead: true}}}
	if d := differences(reps, cities, true); len(d) != 1 {
		t.Fatalf("a city with an older entry: %v", d)
	}
	reps = map[string][]chaos.Hero{"a": {live, dead}, "b": {live, dead}, dispatchName: {live}}
	if d := differences(reps, cities, true); len(d) != 1 {
		t.Fatalf("dispatch lacking a tombstone: %v", d)
	}
}
