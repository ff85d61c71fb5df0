package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// testOut is where the browser test saves its screenshots; git ignores it.
const testOut = "testout"

// browserNames are the system browsers the test can drive, tried in order
// after $CHROMIUM. Nothing is downloaded: CI installs Debian's chromium.
var browserNames = []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// findBrowser returns the path of a Chromium-based browser, or "".
func findBrowser() string {
	names := browserNames
	if p := os.Getenv("CHROMIUM"); p != "" {
		names = append([]string{p}, names...)
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// startBrowser starts a headless browser for the test and returns a context
// for its first tab. Without a browser the test is skipped, except in CI
// (CI=true), where it fails.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := findBrowser()
	if path == "" {
		msg := "no Chromium-based browser found (tried $CHROMIUM and " + strings.Join(browserNames, ", ") + "); apt-get install chromium"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	// Chromium occasionally dies while starting on a loaded 2-core box
	// ("chrome failed to start"); a second start is a new process, not a
	// wait for the first.
	for attempt := 1; ; attempt++ {
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(allocCtx)
		// Start the browser now, so one that cannot start fails here and
		// not in the middle of a step.
		start := time.Now()
		err := startFirst(ctx, 60*time.Second, chromedp.Navigate("about:blank"))
		if err == nil {
			t.Cleanup(func() {
				cancel()
				cancelAlloc() // waits for the browser to exit
			})
			t.Logf("browser %s started in %v", path, time.Since(start).Round(time.Millisecond))
			return ctx
		}
		cancel()
		cancelAlloc()
		if attempt == 2 {
			t.Fatalf("starting %s: %v", path, err)
		}
		t.Logf("starting %s failed, starting it again: %v", path, err)
	}
}

// startFirst runs the first action of a chromedp context within timeout.
func startFirst(ctx context.Context, timeout time.Duration, action chromedp.Action[chromedp.Void]) error {
	errc := make(chan error, 1)
	go func() { errc <- chromedp.Do(ctx, action) }()
	select {
	case err := <-errc:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("not done within %v", timeout)
	}
}

// firstRun runs the first action of a chromedp context, which starts the
// browser or opens the tab. The browser or tab lives as long as the
// context the first action runs with, so it gets ctx itself, and the bound
// is kept here instead.
func firstRun(t *testing.T, ctx context.Context, timeout time.Duration, what string, action chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := startFirst(ctx, timeout, action); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// page is one browser tab showing the live page.
type page struct {
	t     *testing.T
	name  string
	ctx   context.Context
	close context.CancelFunc // closes the tab
	shot  *shots

	mu       sync.Mutex
	problems []string // uncaught exceptions and console errors
}

// openPage opens a new tab of the browser of parent at url with the given
// viewport and waits until the page has its first snapshot.
func openPage(t *testing.T, parent context.Context, name, url string, width, height int64, shot *shots, emulate ...chromedp.EmulateViewportOption) *page {
	t.Helper()
	return openPageWith(t, parent, name, url, width, height, shot, nil, emulate...)
}

// openPageWith is openPage that calls before, if not nil, once the tab is
// open and before it loads the page.
func openPageWith(t *testing.T, parent context.Context, name, url string, width, height int64, shot *shots, before func(*page), emulate ...chromedp.EmulateViewportOption) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent)
	t.Cleanup(cancel)
	p := &page{t: t, name: name, ctx: ctx, close: cancel, shot: shot}
	// The first action opens the tab, which lives as long as the context
	// of that action: it must be the tab's own context, without a timeout.
	firstRun(t, ctx, 20*time.Second, name+": opening a tab", chromedp.EmulateViewport(width, height, emulate...))
	console := chromedp.Console(ctx) // subscribe before loading
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				p.mu.Lock()
				p.problems = append(p.problems, m.String())
				p.mu.Unlock()
			}
		}
	}()
	if before != nil {
		before(p)
	}
	if err := chromedp.Do(p.bounded(20*time.Second), chromedp.Navigate(url)); err != nil {
		t.Fatalf("%s: open %s: %v", name, url, err)
	}
	p.wait(20*time.Second, "the first snapshot", `document.querySelector('#conn').dataset.state === 'open' && window.__perf && window.__perf.snapshots > 0`)
	return p
}

// bounded returns the page's context with a timeout for one action. The
// cancel func is left to the timer: actions are short, and the deadline
// frees it.
func (p *page) bounded(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(p.ctx, d)
	context.AfterFunc(ctx, cancel)
	return ctx
}

// do runs actions with a 10 s bound.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.bounded(10*time.Second), actions...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// eval evaluates a JavaScript expression in the page and decodes its JSON
// value into out (which may be nil).
func (p *page) eval(js string, out any) {
	p.t.Helper()
	raw, err := chromedp.Run(p.bounded(10*time.Second), chromedp.Evaluate[[]byte](js))
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.name, js, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			p.t.Fatalf("%s: decoding %s from %s: %v", p.name, raw, js, err)
		}
	}
}

// truth evaluates a JavaScript condition.
func (p *page) truth(js string) bool {
	p.t.Helper()
	var ok bool
	p.eval("!!("+js+")", &ok)
	return ok
}

// wait polls a JavaScript condition every 20 ms until it holds, and fails
// the test after timeout. It returns how long it took.
func (p *page) wait(timeout time.Duration, what, js string) time.Duration {
	p.t.Helper()
	start := time.Now()
	for !p.truth(js) {
		if time.Since(start) > timeout {
			p.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
			p.t.Fatalf("%s: %s: not within %v (condition %s)", p.name, what, timeout, js)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// screenshot saves the visible part of the page as a PNG in testOut.
func (p *page) screenshot(name string) {
	p.t.Helper()
	p.capture(name, chromedp.CaptureScreenshot())
}

// fullScreenshot saves the whole page, scrolled or not, as a PNG.
func (p *page) fullScreenshot(name string) {
	p.t.Helper()
	p.capture(name, chromedp.FullScreenshot(100)) // quality 100 is PNG
}

func (p *page) capture(name string, shot chromedp.Action[[]byte]) {
	p.t.Helper()
	if p.shot == nil {
		return
	}
	png, err := chromedp.Run(p.bounded(15*time.Second), shot)
	if err != nil {
		p.t.Errorf("%s: screenshot %s: %v", p.name, name, err)
		return
	}
	p.shot.save(p.t, p.name+"-"+name, png)
}

// checkClean fails the test if the page threw or logged an error.
func (p *page) checkClean() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.problems {
		p.t.Errorf("%s: console: %s", p.name, m)
	}
}

// shots numbers and saves the screenshots of one test run.
type shots struct {
	mu  sync.Mutex
	n   int
	dir string
}

func newShots(t *testing.T) *shots {
	t.Helper()
	if err := os.MkdirAll(testOut, 0o755); err != nil {
		t.Fatal(err)
	}
	return &shots{dir: testOut}
}

func (s *shots) save(t *testing.T, name string, png []byte) {
	t.Helper()
	s.mu.Lock()
	s.n++
	file := filepath.Join(s.dir, fmt.Sprintf("browser-%02d-%s.png", s.n, name))
	s.mu.Unlock()
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Errorf("saving %s: %v", file, err)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// row is the CSS selector of a hero's table row.
func row(id string) string { return `tr[data-hero-id="` + id + `"]` }

// card is the CSS selector of a city's card.
func card(city string) string { return `[data-city="` + city + `"]` }
