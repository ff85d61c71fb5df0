package e2e

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/crdt"
)

// The page's guarantees with 10,000 heroes: applying a frame that changes
// one hero takes at most a 60 Hz frame at the 95th percentile (the odd
// frame can lose the CPU mid-apply on a loaded machine, so the maximum is
// reported, not held), and building the table from a snapshot never holds
// the main thread longer than the 50 ms after which a user notices a page
// stall.
//
// The second is measured with Chromium's own trace of the page's tasks, by
// the thread's CPU time: on a shared 2-core machine the clock time of a
// task also counts the time the OS gave other processes (a Go test under
// -race, the cluster, another test), which no page controls; both are
// reported. Neither target gets headroom for -race: it slows the Go
// processes, not the browser.
const (
	scaleHeroes    = 10000
	frameBudgetMs  = 16.0
	longTaskBudget = 50.0
)

// TestBrowserTenThousand opens the real page, served by the web package
// against a fake backend, with a snapshot of 10,000 heroes, and measures
// the two guarantees above. Then it checks that the windowed table works
// at that size: scrolling, the filter, highlights and the row actions. It
// needs no node processes, so it runs with -short too.
func TestBrowserTenThousand(t *testing.T) {
	browser := startBrowser(t)
	st := startPageServer(t)
	fig := &figures{t: t}
	defer fig.log()
	shot := newShots(t)

	rng := rand.New(rand.NewPCG(12, 4))
	wall := time.Now().UnixNano()
	heroes := make([]crdt.Hero, scaleHeroes)
	places := []crdt.Location{crdt.Home, crdt.Home, crdt.Gotham, crdt.Metropolis, crdt.Capitol}
	for i := range heroes {
		h := crdt.Hero{
			ID:       uuid.New(),
			Name:     fmt.Sprintf("Hero %05d", i),
			Location: places[rng.IntN(len(places))],
			Health:   1 + rng.IntN(crdt.MaxHealth),
			Stamp:    crdt.Timestamp{Wall: wall, Node: "dispatch"},
		}
		h.Patrolling = h.Location != crdt.Home
		heroes[i] = h
	}
	st.backend.set(heroes...)

	// 1. The snapshot, traced from before the page loads.
	var tr *tracer
	p := openPageWith(t, browser, "10000", st.url, 1280, 900, shot, func(p *page) {
		// chromedp enables the Network domain, which copies every
		// WebSocket frame to DevTools in the page's renderer: 2.6 MB of
		// snapshot cost it tens of milliseconds that no user pays.
		if _, err := chromedp.Call(p.bounded(10*time.Second), network.Disable, struct{}{}); err != nil {
			t.Fatalf("disabling the Network domain: %v", err)
		}
		tr = p.startTrace()
	})
	p.wait(20*time.Second, "the snapshot's table", `window.__perf.snapshotReadyMs > 0`)
	var snap perfStats
	p.eval(`window.__perf`, &snap)
	task, err := between(tr.stop(), "snapshot-frame", "snapshot-shown")
	if err != nil {
		t.Fatal(err)
	}
	fig.lines = append(fig.lines,
		fmt.Sprintf("snapshot of %d heroes (%d KB): frame parsed and handed to the model in %.1f ms, indexed in %d slices (longest %.1f ms), table shown %.1f ms after the frame came",
			snap.SnapshotHeroes, snap.SnapshotBytes/1024, snap.SnapshotApplyMs, snap.SnapshotSteps, snap.MaxBuildStepMs, snap.SnapshotReadyMs),
		fmt.Sprintf("longest main-thread task from the snapshot's arrival to its table shown, of %d: %.1f ms CPU, %.1f ms by the clock (budget %.0f ms CPU)",
			task.Tasks, task.CPUMs, task.WallMs, longTaskBudget))
	if snap.SnapshotHeroes != scaleHeroes {
		t.Fatalf("the snapshot had %d heroes, want %d", snap.SnapshotHeroes, scaleHeroes)
	}
	if task.Tasks == 0 {
		t.Fatal("the trace holds no task of the page's main thread")
	}
	if task.CPUMs > longTaskBudget {
		t.Errorf("building the table from %d heroes held the main thread for %.1f ms of CPU, want at most %.0f ms: %s", scaleHeroes, task.CPUMs, longTaskBudget, task.Longest)
	}
	var total, inTable, trs int
	p.eval(`__view.total()`, &total)
	p.eval(`__view.rows()`, &inTable)
	p.eval(`document.querySelectorAll('#heroes tr[data-hero-id]').length`, &trs)
	fig.lines = append(fig.lines, fmt.Sprintf("rows in the table with %d heroes: %d", total, trs))
	if total != scaleHeroes || inTable != trs || trs == 0 || trs > 100 {
		t.Fatalf("%d heroes, %d rows in the view, %d in the table: want %d heroes and at most 100 rows, all in the table", total, inTable, trs, scaleHeroes)
	}
	p.screenshot("10000-heroes")

	// 2. Frames that change one hero each: a hero in sight, then one far
	// out of it, a new hero, a dead one.
	p.eval(`window.__perf.reset(), true`, nil)
	stamp := func(i int) crdt.Timestamp { return crdt.Timestamp{Wall: wall + int64(i+1), Node: "gotham"} }
	var dead []string
	for i := range 60 {
		var h crdt.Hero
		switch i % 4 {
		case 0: // in sight
			h = heroes[rng.IntN(5)]
		case 1: // out of sight
			h = heroes[100+rng.IntN(scaleHeroes-100)]
		case 2: // new, somewhere in the middle of the order
			h = crdt.Hero{ID: uuid.New(), Name: fmt.Sprintf("Hero %05d newcomer", rng.IntN(9000)), Location: crdt.Home, Health: crdt.MaxHealth}
		case 3: // dead
			k := 100 + rng.IntN(4000) // not the heroes of steps 3 to 5
			h = heroes[k]
			h.Dead, h.Health = true, 0
			heroes[k].Name = "" // not chosen again
			dead = append(dead, h.ID.String())
		}
		if h.Name == "" {
			continue
		}
		if !h.Dead && i%4 != 2 {
			h.Health = max(1, h.Health-1)
		}
		h.Stamp = stamp(i)
		st.send(t, p, "a one-hero frame", h)
	}
	var fr perfStats
	p.eval(`window.__perf`, &fr)
	p95 := percentile(fr.ApplyMs, 0.95)
	fig.lines = append(fig.lines,
		fmt.Sprintf("apply a one-hero frame with %d heroes: p50 %.2f ms, p95 %.2f ms, max %.2f ms over %d frames (budget %.0f ms at p95)",
			scaleHeroes, percentile(fr.ApplyMs, 0.5), p95, fr.MaxApplyMs, fr.Frames, frameBudgetMs),
		fmt.Sprintf("rendering after a one-hero frame with %d heroes: max %.1f ms over %d frames", scaleHeroes, fr.MaxRenderMs, fr.Renders))
	if fr.Frames < 40 {
		t.Errorf("only %d one-hero frames applied", fr.Frames)
	}
	if p95 > frameBudgetMs {
		t.Errorf("applying a one-hero frame with %d heroes took %.2f ms at the 95th percentile (max %.2f ms), want at most %.0f ms", scaleHeroes, p95, fr.MaxApplyMs, frameBudgetMs)
	}
	for _, id := range dead {
		if p.truth(`__view.has(` + jsString(id) + `) || document.querySelector('` + row(id) + `')`) {
			t.Errorf("hero %s is dead but still on the page", id)
		}
	}

	// 3. Scrolling: half way down, the row in the middle of the viewport is
	// a hero's, and the table still holds only the rows in sight.
	p.eval(`window.scrollTo(0, document.documentElement.scrollHeight / 2), true`, nil)
	p.wait(2*time.Second, "a hero's row in the middle of the viewport", `(() => { const e = document.elementFromPoint(400, 450); const tr = e && e.closest('tr[data-hero-id]'); return !!tr && +tr.getAttribute('aria-rowindex') > 3000; })()`)
	p.eval(`document.querySelectorAll('#heroes tr[data-hero-id]').length`, &trs)
	if trs > 100 {
		t.Errorf("%d rows in the table after scrolling, want at most 100", trs)
	}
	p.screenshot("10000-heroes-scrolled")

	// A hero far down, brought into sight: its row updates in place, with
	// a highlight.
	far := heroes[5000]
	reveal(p, far.ID.String())
	far.Health, far.Stamp = 7, stamp(1000)
	st.send(t, p, "a change to a row in sight", far)
	if got := p.data(row(far.ID.String()), "health"); got != "7" {
		t.Errorf("%s's row shows health %q, want 7", far.Name, got)
	}
	if !p.truth(`document.querySelector('` + row(far.ID.String()) + `').matches('.hit-a, .hit-b')`) {
		t.Errorf("%s's row was not highlighted when it changed", far.Name)
	}

	// 4. The filter: ten names match.
	p.do("filter by name", chromedp.SendKeys(chromedp.CSS("#filter-name"), "hero 0999"))
	p.wait(2*time.Second, "ten heroes shown", `document.querySelector('#hero-count').textContent.startsWith('10 of ')`)
	var names []string
	p.eval(`[...document.querySelectorAll('#heroes tr[data-hero-id] th.name')].map((e) => e.textContent)`, &names)
	if len(names) != 10 || names[0] != "Hero 09990" || names[9] != "Hero 09999" {
		t.Errorf("rows shown with the filter: %v, want Hero 09990 to Hero 09999", names)
	}
	p.eval(`(() => { const f = document.querySelector('#filter-name'); f.value = ''; f.dispatchEvent(new Event('input', { bubbles: true })); return true; })()`, nil)
	p.wait(2*time.Second, "every hero shown", `!document.querySelector('#hero-count').textContent.includes(' of ')`)

	// 5. Row actions on a row built by scrolling: the fake backend refuses
	// them, and the page says so, naming the hero.
	act := heroes[7000]
	reveal(p, act.ID.String())
	p.do("click Terminate", chromedp.Click(chromedp.CSS(row(act.ID.String())+" .terminate")))
	p.wait(5*time.Second, "the terminate error", `[...document.querySelectorAll('#flash .msg[data-kind="error"]')].some((m) => m.textContent.includes('Could not terminate Hero 07000'))`)
	p.wait(2*time.Second, "Terminate enabled again", `!document.querySelector('`+row(act.ID.String())+` .terminate').disabled`)
	choose(p, row(act.ID.String())+" select", "capitol")
	p.do("click Assign", chromedp.Click(chromedp.CSS(row(act.ID.String())+" .assign-button")))
	p.wait(5*time.Second, "the assign error", `[...document.querySelectorAll('#flash .msg[data-kind="error"]')].some((m) => m.textContent.includes('Could not assign Hero 07000 to capitol'))`)
	p.checkClean()
}

// reveal scrolls the page until the row of hero id is in the table, and
// fails the test if it cannot.
func reveal(p *page, id string) {
	p.t.Helper()
	if !p.truth(`window.__view.reveal(` + jsString(id) + `)`) {
		p.t.Fatalf("%s: hero %s cannot be brought into sight", p.name, id)
	}
}
