package e2e

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// lively city timers: patrols and fights often enough to watch, slowly
// enough that a hero lives for about ten fights.
var lively = []string{"-patrol", "500ms", "-fight", "1s"}

// TestBrowser drives the live page in a real headless Chromium against a
// real cluster of node processes: the cards, the hero table, the event
// feed and flash messages through every kind of fault, two pages at once,
// and the cost of applying a frame with 1,000 heroes. Screenshots of the
// key moments go to e2e/testout/.
func TestBrowser(t *testing.T) {
	c := newCluster(t)
	a := c.api()
	browser := startBrowser(t)
	shot := newShots(t)
	fig := &figures{t: t}
	defer fig.log()
	began := time.Now()

	for _, name := range cities {
		c.startCity(name, lively...)
	}
	c.startDispatch()
	await(t, 30*time.Second, "three cities up", func() bool {
		cs := a.cluster()
		return cs.Ready && cs.city("gotham").Up && cs.city("metropolis").Up && cs.city("capitol").Up
	})

	// Something to look at: one hero on patrol in capitol and one in
	// metropolis (each will fight until it dies), and a few at home. The
	// probe stays home, where nothing happens to it but what the test does.
	create := func(name string) hero {
		t.Helper()
		var h hero
		if code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": name}, &h); code != http.StatusCreated {
			t.Fatalf("create %q: %d", name, code)
		}
		return h
	}
	assign := func(id, to string) hero {
		t.Helper()
		var h hero
		if code, _ := a.do("PUT", "/api/superheroes/"+id+"/location", map[string]string{"location": to}, &h); code != http.StatusOK {
			t.Fatalf("assign %s to %s: %d", id, to, code)
		}
		return h
	}
	assign(create("Captain Capitol").ID, "capitol")
	assign(create("Metro Girl").ID, "metropolis")
	for _, n := range []string{"Idle Ivy", "Home Hawk", "Quiet Quill", "Resting Rex"} {
		create(n)
	}
	probe := create("Frame Probe")

	p1 := openPage(t, browser, "desktop", c.url("/"), 1280, 900, shot)
	allUp := `['gotham', 'metropolis', 'capitol'].every((c) => { const e = document.querySelector('[data-city="' + c + '"]'); return e && e.dataset.state === 'up'; })`
	p1.wait(15*time.Second, "three city cards up", allUp)
	p1.screenshot("cities-up")

	// Create a hero from the page, with the keyboard: type, then Enter.
	p1.do("create with the keyboard", chromedp.SendKeys(chromedp.CSS("#create-name"), "Browser Hero\r"))
	byName := func(name string) string {
		return `[...document.querySelectorAll('#heroes tbody tr[data-hero-id]')].find((r) => r.querySelector('th.name').textContent === ` + jsString(name) + `)`
	}
	p1.wait(5*time.Second, "the created hero's row", byName("Browser Hero"))
	var bh string
	p1.eval(byName("Browser Hero")+`.dataset.heroId`, &bh)
	p1.wait(2*time.Second, "a created event", feedHas("created", "Browser Hero"))

	// Assign it to gotham with its drop-down: the row moves to gotham, where
	// it patrols and fights, so its health drops.
	choose(p1, row(bh)+" select", "gotham")
	p1.do("click Assign", chromedp.Click(chromedp.CSS(row(bh)+" .assign-button")))
	p1.wait(5*time.Second, "the row in gotham", attr(row(bh), "location")+` === 'gotham'`)
	p1.wait(2*time.Second, "an assigned event", feedHas("assigned", "Browser Hero was assigned to gotham"))
	p1.wait(15*time.Second, "the hero hurt in a fight", `+`+attr(row(bh), "health")+` < 100`)
	p1.wait(2*time.Second, "patrolling and fought events", feedHas("patrolling", "Browser Hero")+` && `+feedHas("fought", "Browser Hero"))
	p1.screenshot("assigned-and-fighting")

	// A one-hero change makes a small frame, with few heroes...
	bytesFew := oneHeroFrame(t, p1, func() { assign(probe.ID, "home") }, probe.ID)
	heroesFew := rowCount(p1)

	// Terminate it: the row goes.
	p1.do("click Terminate", chromedp.Click(chromedp.CSS(row(bh)+" .terminate")))
	p1.wait(5*time.Second, "the row gone", `!document.querySelector('`+row(bh)+`')`)
	p1.wait(2*time.Second, "a terminated event", feedHas("terminated", "Browser Hero"))

	// Filter by name, then by location.
	p1.do("filter by name", chromedp.SendKeys(chromedp.CSS("#filter-name"), "probe"))
	p1.wait(2*time.Second, "only the probe shown", `[...document.querySelectorAll('#heroes tbody tr[data-hero-id]')].map((r) => r.dataset.heroId).join() === `+jsString(probe.ID))
	p1.eval(`(() => { const f = document.querySelector('#filter-name'); f.value = ''; f.dispatchEvent(new Event('input', { bubbles: true })); return true; })()`, nil)
	choose(p1, "#filter-city", "capitol")
	// The table holds the matching rows only, and the count says how many
	// of all.
	p1.wait(2*time.Second, "only capitol shown", `[...document.querySelectorAll('#heroes tbody tr[data-hero-id]')].every((r) => r.dataset.location === 'capitol') && document.querySelector('#hero-count').textContent === document.querySelectorAll('#heroes tbody tr[data-hero-id]').length + ' of ' + window.__view.total() && window.__view.shown() < window.__view.total()`)
	choose(p1, "#filter-city", "")
	p1.wait(2*time.Second, "every row shown", `document.querySelectorAll('#heroes tbody tr[data-hero-id]').length === window.__view.total() && document.querySelector('#hero-count').textContent === String(window.__view.total())`)

	// Destroy gotham: the flash names it, its card shows restarting, then up
	// and in sync.
	choose(p1, "#bomb-city", "gotham")
	p1.do("click Destroy", chromedp.Click(chromedp.CSS("#bomb")))
	p1.wait(5*time.Second, "the flash", `[...document.querySelectorAll('#flash .msg')].some((m) => m.textContent.includes('gotham has been destroyed'))`)
	p1.wait(5*time.Second, "gotham restarting", attr(card("gotham"), "state")+` === 'restarting'`)
	p1.screenshot("gotham-destroyed")
	back := p1.wait(20*time.Second, "gotham up and in sync", attr(card("gotham"), "state")+` === 'up' && `+attr(card("gotham"), "sync")+` === 'in-sync'`)
	fig.add("gotham card restarting to up and in sync", back)
	p1.wait(2*time.Second, "bombed and restarted events", feedHas("bombed", "gotham")+` && `+feedHas("restarted", "gotham"))

	// SIGKILL metropolis: its card shows down within 2 s.
	metro := c.procs["metropolis"]
	if err := metro.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	down := p1.wait(5*time.Second, "metropolis down", attr(card("metropolis"), "state")+` === 'down'`)
	fig.add("SIGKILL to the card showing down", down)
	if down > 2*time.Second {
		t.Errorf("metropolis card down after %v, want within 2 s", down)
	}
	p1.wait(2*time.Second, "a down event", feedHas("down", "metropolis"))
	// Sending a hero there fails with a clear error.
	choose(p1, row(probe.ID)+" select", "metropolis")
	p1.do("click Assign", chromedp.Click(chromedp.CSS(row(probe.ID)+" .assign-button")))
	p1.wait(5*time.Second, "an error naming the down city", `[...document.querySelectorAll('#flash .msg[data-kind="error"]')].some((m) => m.textContent.includes('Could not assign Frame Probe to metropolis: metropolis is down'))`)
	p1.screenshot("metropolis-down")
	<-metro.Done()

	// Restart it: up and in sync again.
	c.startCity("metropolis", lively...)
	rejoin := p1.wait(30*time.Second, "metropolis up and in sync", attr(card("metropolis"), "state")+` === 'up' && `+attr(card("metropolis"), "sync")+` === 'in-sync'`)
	fig.add("metropolis restart to its card up and in sync", rejoin)
	p1.wait(2*time.Second, "a joined event", feedHas("joined", "metropolis"))
	p1.wait(20*time.Second, "a died event", `document.querySelector('#log li[data-event="died"]')`)
	p1.screenshot("metropolis-back")

	// The page on a phone.
	phone := openPage(t, browser, "phone", c.url("/"), 390, 844, shot, chromedp.EmulateMobile, chromedp.EmulateScale(2))
	phone.wait(5*time.Second, "three city cards up", allUp)
	phone.screenshot("phone")
	phone.fullScreenshot("phone-full")
	for _, width := range []int64{390, 360} {
		phone.do("resize", chromedp.EmulateViewport(width, 800, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
		var wide []string
		phone.eval(`[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > `+strconv.Itoa(int(width)+1)+`).map((e) => e.tagName + '.' + e.className).slice(0, 5)`, &wide)
		if len(wide) > 0 {
			t.Errorf("phone: wider than a %d px screen: %v", width, wide)
		}
	}
	phone.checkClean()
	phone.close()

	// A second page sees what the first does within 1 s, and the other way
	// round.
	p2 := openPage(t, browser, "second", c.url("/"), 1280, 900, shot)
	p2.eval(watchFor("Twice Seen"), nil)
	var clicked float64
	p1.eval(`(() => { document.querySelector('#create-name').value = 'Twice Seen'; const t0 = Date.now(); document.querySelector('#create-form').requestSubmit(); return t0; })()`, &clicked)
	p2.wait(5*time.Second, "the second page sees the hero", `window.__seenAt > 0`)
	var seen float64
	p2.eval(`window.__seenAt`, &seen)
	created := time.Duration((seen - clicked) * float64(time.Millisecond))
	fig.add("create on page 1 to its row on page 2", created)
	if created > time.Second {
		t.Errorf("page 2 saw page 1's hero after %v, want within 1 s", created)
	}
	var twice string
	p2.eval(byName("Twice Seen")+`.dataset.heroId`, &twice)
	p1.eval(watchGone(twice), nil)
	p2.eval(`(() => { const t0 = Date.now(); document.querySelector('`+row(twice)+` .terminate').click(); return t0; })()`, &clicked)
	p1.wait(5*time.Second, "the first page sees the termination", `window.__goneAt > 0`)
	p1.eval(`window.__goneAt`, &seen)
	gone := time.Duration((seen - clicked) * float64(time.Millisecond))
	fig.add("terminate on page 2 to its row gone on page 1", gone)
	if gone > time.Second {
		t.Errorf("page 1 saw page 2's termination after %v, want within 1 s", gone)
	}
	p2.checkClean()
	p2.close()

	// A picture for the README: heroes on patrol in every city, one city
	// just destroyed. The error from before is dismissed with its button.
	for _, name := range []string{"Night Owl", "Star Sparrow", "Iron Wren"} {
		create(name)
	}
	for name, city := range map[string]string{"Idle Ivy": "gotham", "Home Hawk": "capitol", "Quiet Quill": "metropolis"} {
		var id string
		p1.eval(byName(name)+`.dataset.heroId`, &id)
		choose(p1, row(id)+" select", city)
		p1.do("click Assign", chromedp.Click(chromedp.CSS(row(id)+" .assign-button")))
	}
	p1.wait(10*time.Second, "three heroes on patrol", `document.querySelectorAll('#heroes tbody tr[data-state="patrolling"]').length >= 3`)
	// (A click from script: the message may time out on its own meanwhile.)
	p1.eval(`document.querySelectorAll('#flash .msg[data-kind="error"] button').forEach((b) => b.click()), true`, nil)
	p1.wait(time.Second, "errors dismissed", `!document.querySelector('#flash .msg[data-kind="error"]')`)
	choose(p1, "#bomb-city", "capitol")
	p1.do("click Destroy", chromedp.Click(chromedp.CSS("#bomb")))
	p1.wait(5*time.Second, "capitol restarting", attr(card("capitol"), "state")+` === 'restarting' && document.querySelector('#flash').textContent.includes('capitol has been destroyed')`)
	p1.screenshot("overview")
	p1.wait(20*time.Second, "capitol up and in sync", attr(card("capitol"), "state")+` === 'up' && `+attr(card("capitol"), "sync")+` === 'in-sync'`)

	// Every control has a name a screen reader can say.
	var unnamed []string
	p1.eval(`[...document.querySelectorAll('button, select, input')].filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim()).map((e) => e.outerHTML.slice(0, 80))`, &unnamed)
	if len(unnamed) > 0 {
		t.Errorf("controls without a label: %v", unnamed)
	}

	// 1,000 heroes: applying a frame that changes one of them stays within
	// a 60 Hz frame's time, and the frame is as small as with a few heroes.
	p1.eval(`window.__perf.reset(), true`, nil)
	loadStart := time.Now()
	bulk := createMany(t, a, 1000)
	p1.eval(`window.__want = `+jsIDs(bulk)+`, true`, nil)
	// The table holds only the rows in sight: the page's model holds them
	// all.
	p1.wait(30*time.Second, "1,000 more heroes", `window.__want.every((id) => window.__view.has(id))`)
	fig.add("1,000 heroes created through the API and shown", time.Since(loadStart))
	var load perfStats
	p1.eval(`window.__perf`, &load)
	fig.lines = append(fig.lines, fmt.Sprintf("apply time while they arrive: p95 %.2f ms, max %.2f ms over %d frames (largest recent delta %d heroes)", percentile(load.ApplyMs, 0.95), load.MaxApplyMs, load.Frames, load.largest()))

	// A page opened now gets them all in its snapshot; it indexes them in
	// steps that leave the page responsive, then builds the rows in sight.
	big := openPage(t, browser, "reload", c.url("/"), 1280, 900, shot)
	big.wait(10*time.Second, "every row built", `window.__perf.snapshotReadyMs > 0`)
	var snap perfStats
	big.eval(`window.__perf`, &snap)
	fig.lines = append(fig.lines, fmt.Sprintf("snapshot of %d heroes (%d KB): frame parsed and handed to the model in %.1f ms, table shown %.1f ms after the frame came, longest indexing step %.1f ms",
		snap.SnapshotHeroes, snap.SnapshotBytes/1024, snap.SnapshotApplyMs, snap.SnapshotReadyMs, snap.MaxBuildStepMs))
	big.checkClean()
	big.close()

	// An open drop-down keeps its focus while its row updates.
	focused := bulk[0].ID
	reveal(p1, focused)
	p1.do("focus a drop-down", chromedp.Focus(chromedp.CSS(row(focused)+" select")))
	p1.eval(`window.__perf.reset(), true`, nil)
	assign(focused, "capitol")
	p1.wait(5*time.Second, "the focused row updated", attr(row(focused), "location")+` === 'capitol'`)
	if !p1.truth(`document.activeElement === document.querySelector('` + row(focused) + ` select')`) {
		t.Error("the drop-down lost its focus when its row updated")
	}
	p1.do("blur", chromedp.Blur(chromedp.CSS(row(focused)+" select")))
	// Single-hero changes, each waited for.
	for i, h := range bulk[1:21] {
		to := cities[i%len(cities)]
		reveal(p1, h.ID)
		assign(h.ID, to)
		p1.wait(5*time.Second, "row "+strconv.Itoa(i)+" updated", attr(row(h.ID), "location")+` === '`+to+`'`)
	}
	var st perfStats
	p1.eval(`window.__perf`, &st)
	p1.screenshot("1000-heroes")
	bytesMany := oneHeroFrame(t, p1, func() { assign(probe.ID, "home") }, probe.ID)
	heroesMany := rowCount(p1)

	// The budget is a 60 Hz frame. On a loaded machine the odd frame can
	// lose the CPU mid-apply, so the test holds the 95th percentile to it
	// and reports the maximum.
	p95 := percentile(st.ApplyMs, 0.95)
	fig.lines = append(fig.lines,
		fmt.Sprintf("apply one frame with %d heroes shown: p50 %.2f ms, p95 %.2f ms, max %.2f ms over %d frames (budget 16 ms)",
			heroesMany, percentile(st.ApplyMs, 0.5), p95, st.MaxApplyMs, st.Frames),
		fmt.Sprintf("rendering after a delta with %d heroes shown: last %.1f ms, max %.1f ms over %d frames", heroesMany, st.LastRenderMs, st.MaxRenderMs, st.Renders),
		fmt.Sprintf("one-hero delta frame: %d bytes with %d heroes, %d bytes with %d heroes", bytesFew, heroesFew, bytesMany, heroesMany))
	if st.Frames < 20 {
		t.Errorf("only %d frames applied during the single-hero changes", st.Frames)
	}
	if p95 > 16 {
		t.Errorf("applying a frame with %d heroes took %.2f ms at the 95th percentile (max %.2f ms), want at most 16 ms", heroesMany, p95, st.MaxApplyMs)
	}
	if bytesMany > 1024 || bytesFew > 1024 || bytesMany-bytesFew > 64 || bytesFew-bytesMany > 64 {
		t.Errorf("one-hero frame: %d bytes with %d heroes and %d with %d; want about equal and under 1 KB", bytesFew, heroesFew, bytesMany, heroesMany)
	}
	p1.checkClean()
	fig.add("browser test, start to end", time.Since(began))
}

// perfStats is window.__perf.
type perfStats struct {
	Frames          int       `json:"frames"`
	LastApplyMs     float64   `json:"lastApplyMs"`
	MaxApplyMs      float64   `json:"maxApplyMs"`
	SnapshotApplyMs float64   `json:"snapshotApplyMs"`
	SnapshotHeroes  int       `json:"snapshotHeroes"`
	SnapshotBytes   int       `json:"snapshotBytes"`
	SnapshotReadyMs float64   `json:"snapshotReadyMs"`
	SnapshotSteps   int       `json:"snapshotSteps"`
	MaxBuildStepMs  float64   `json:"maxBuildStepMs"`
	LastRenderMs    float64   `json:"lastRenderMs"`
	MaxRenderMs     float64   `json:"maxRenderMs"`
	Renders         int       `json:"renders"`
	LastFrameBytes  int       `json:"lastFrameBytes"`
	ApplyMs         []float64 `json:"applyMs"`
	Deltas          []struct {
		Heroes int     `json:"heroes"`
		Bytes  int     `json:"bytes"`
		Ms     float64 `json:"ms"`
		ID     string  `json:"id"`
	} `json:"deltas"`
}

// largest returns the most heroes in one recent delta frame.
func (s perfStats) largest() int {
	n := 0
	for _, d := range s.Deltas {
		n = max(n, d.Heroes)
	}
	return n
}

// oneHeroFrame runs change, which must write hero id alone, and returns the
// size of the delta frame that brought it to the page. It tries again if
// the change shared its frame with another hero's.
func oneHeroFrame(t *testing.T, p *page, change func(), id string) int {
	t.Helper()
	for range 5 {
		p.eval(`window.__perf.deltas = [], true`, nil)
		change()
		p.wait(5*time.Second, "the frame of the change", `window.__perf.deltas.some((d) => d.id === `+jsString(id)+`)`)
		var st perfStats
		p.eval(`window.__perf`, &st)
		for _, d := range st.Deltas {
			if d.ID == id && d.Heroes == 1 {
				return d.Bytes
			}
		}
	}
	t.Fatalf("hero %s never had a frame of its own", id)
	return 0
}

// percentile returns the q-quantile of xs (nearest rank), or 0 for none.
func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)]
}

// rowCount returns how many heroes the page holds (not how many rows the
// table holds: only those in sight).
func rowCount(p *page) int {
	var n int
	p.eval(`window.__view.total()`, &n)
	return n
}

// createMany creates n heroes through the API, 16 at a time.
func createMany(t *testing.T, a *api, n int) []hero {
	t.Helper()
	out := make([]hero, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			client := &api{t: t, base: a.base, http: a.http}
			for i := range next {
				var h hero
				if code, _ := client.do("POST", "/api/superheroes", map[string]string{"name": fmt.Sprintf("Load %04d", i)}, &h); code != http.StatusCreated {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("#%d: %d", i, code))
					mu.Unlock()
					continue
				}
				out[i] = h
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d creates failed: %s", len(failed), strings.Join(failed[:min(5, len(failed))], ", "))
	}
	return out
}

func jsIDs(hs []hero) string {
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.ID
	}
	return `[` + `"` + strings.Join(ids, `","`) + `"` + `]`
}

// choose picks a value in a drop-down as a user does: it focuses it, sets
// the value and fires change. It fails if the value is not offered.
func choose(p *page, sel, value string) {
	p.t.Helper()
	p.do("focus "+sel, chromedp.Focus(chromedp.CSS(sel)))
	var ok bool
	p.eval(`(() => { const s = document.querySelector(`+jsString(sel)+`); s.value = `+jsString(value)+`; s.dispatchEvent(new Event('change', { bubbles: true })); return s.value === `+jsString(value)+`; })()`, &ok)
	if !ok {
		p.t.Fatalf("%s: %s does not offer %q", p.name, sel, value)
	}
}

// attr is the JavaScript for a data attribute of the element sel.
func attr(sel, name string) string {
	return `(document.querySelector(` + jsString(sel) + `) || { dataset: {} }).dataset.` + name
}

// feedHas is the JavaScript condition that the event feed has an entry of
// kind whose text contains text.
func feedHas(kind, text string) string {
	return `[...document.querySelectorAll('#log li[data-event="` + kind + `"]')].some((li) => li.textContent.includes(` + jsString(text) + `))`
}

// watchFor records in window.__seenAt when a row named name appears.
func watchFor(name string) string {
	return `(() => {
		window.__seenAt = 0;
		const tbody = document.querySelector('#heroes tbody');
		new MutationObserver((records, obs) => {
			for (const r of records) for (const n of r.addedNodes) {
				const th = n.querySelector && n.querySelector('th.name');
				if (th && th.textContent === ` + jsString(name) + `) { window.__seenAt = Date.now(); obs.disconnect(); return; }
			}
		}).observe(tbody, { childList: true });
		return true;
	})()`
}

// watchGone records in window.__goneAt when the row of id goes.
func watchGone(id string) string {
	return `(() => {
		window.__goneAt = 0;
		const tbody = document.querySelector('#heroes tbody');
		new MutationObserver((records, obs) => {
			if (!tbody.querySelector('tr[data-hero-id="` + id + `"]')) { window.__goneAt = Date.now(); obs.disconnect(); }
		}).observe(tbody, { childList: true });
		return true;
	})()`
}
