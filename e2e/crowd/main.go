// Command crowd is a test tool for the end-to-end tests: it opens many
// WebSocket feeds of dispatch at once, as a crowd of pages would, checks
// that each gets its whole snapshot (a snapshot frame, then its parts in
// order, nothing in between), and notes the ids of the heroes named
// "Marker ..." each page sees, in its snapshot or in a delta. It runs as
// its own process, built without the race detector, because the race
// detector's cost grows with the number of goroutines: thousands of
// connections in the test binary would slow it down far more than they
// load dispatch.
//
// It prints "held N MS" once every page holds its snapshot (MS after the
// first dial), or "failed ERROR". Then, for each line "expect ID..." on
// its standard input, it prints "saw MS" once every page has seen every
// id, or "missing N" (pages) after -expect-timeout. It exits at the end of
// its input.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "crowd:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("crowd", flag.ContinueOnError)
	url := fs.String("url", "", "dispatch's WebSocket URL, ws://host:port/ws")
	n := fs.Int("pages", 100, "pages to open")
	timeout := fs.Duration("timeout", time.Minute, "how long every page may take to hold its snapshot")
	expectTimeout := fs.Duration("expect-timeout", 20*time.Second, "how long every page may take to see the ids of an expect line")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *url == "" || *n <= 0 {
		return errors.New("-url and a positive -pages are required")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Each page on a connection of its own.
	opts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	pages := make([]*page, *n)
	errs := make(chan error, *n)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	start := time.Now()
	for i := range pages {
		pages[i] = &page{held: make(chan struct{}), seen: map[string]bool{}}
		wg.Go(func() {
			if err := pages[i].run(ctx, *url, opts); err != nil {
				errs <- err
			}
		})
	}
	deadline := time.After(*timeout)
	var last time.Time
	for i, p := range pages {
		select {
		case <-p.held:
		case err := <-errs:
			fmt.Printf("failed page: %v (%d of %d held their snapshot)\n", err, i, len(pages))
			return nil
		case <-deadline:
			fmt.Printf("failed %d of %d held their snapshot after %v\n", i, len(pages), *timeout)
			return nil
		}
		if at := p.heldAt(); at.After(last) {
			last = at
		}
	}
	fmt.Printf("held %d %d\n", len(pages), last.Sub(start).Milliseconds())

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		ids := strings.Fields(strings.TrimPrefix(in.Text(), "expect"))
		t0 := time.Now()
		until := t0.Add(*expectTimeout)
		for {
			missing := 0
			for _, p := range pages {
				if !p.saw(ids) {
					missing++
				}
			}
			if missing == 0 {
				fmt.Printf("saw %d\n", time.Since(t0).Milliseconds())
				break
			}
			select {
			case err := <-errs:
				fmt.Printf("failed page: %v\n", err)
				return nil
			default:
			}
			if time.Now().After(until) {
				fmt.Printf("missing %d\n", missing)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return in.Err()
}

// page is one page of the crowd; it parses no hero.
type page struct {
	held chan struct{} // closed when it holds its whole snapshot

	mu   sync.Mutex
	at   time.Time
	seen map[string]bool // marker ids
}

func (p *page) run(ctx context.Context, url string, opts *websocket.DialOptions) error {
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(16 << 20)
	parts, next := -1, 0
	var buf bytes.Buffer // one frame at a time, reused
	for {
		_, rd, err := conn.Reader(ctx)
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(rd)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
		b := buf.Bytes()
		switch {
		case parts < 0:
			if parts, err = snapshotParts(b); err != nil {
				return err
			}
			next = 1
		case next <= parts:
			head := `{"type":"snapshot_part","part":` + strconv.Itoa(next) + `,`
			if !bytes.HasPrefix(b, []byte(head)) {
				return fmt.Errorf("frame %.80q, want snapshot part %d of %d", b, next, parts)
			}
			next++
			p.note(b)
		case bytes.HasPrefix(b, []byte(`{"type":"delta"`)):
			p.note(b)
		case bytes.HasPrefix(b, []byte(`{"type":"snapshot`)):
			return errors.New("a second snapshot")
		}
		if parts >= 0 && next > parts {
			p.hold()
		}
	}
}

// snapshotParts checks that b is the snapshot frame and returns its parts.
func snapshotParts(b []byte) (int, error) {
	if !bytes.HasPrefix(b, []byte(`{"type":"snapshot",`)) {
		return 0, fmt.Errorf("first frame %.80q, want the snapshot frame", b)
	}
	i := bytes.Index(b, []byte(`"parts":`))
	if i < 0 {
		return 0, fmt.Errorf("snapshot frame without parts: %.200q", b)
	}
	i += len(`"parts":`)
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	n, err := strconv.Atoi(string(b[i:j]))
	if err != nil {
		return 0, fmt.Errorf("snapshot frame: %w", err)
	}
	return n, nil
}

// markerName is how a marker's entry goes on the wire, right after its id.
var markerName = []byte(`","name":"Marker `)

// note notes the markers in a frame: the id is the 36 bytes before the
// name.
func (p *page) note(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for off := 0; ; {
		i := bytes.Index(b[off:], markerName)
		if i < 0 {
			return
		}
		if at := off + i; at >= 36 {
			p.seen[string(b[at-36:at])] = true
		}
		off += i + len(markerName)
	}
}

func (p *page) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.at.IsZero() {
		p.at = time.Now()
		close(p.held)
	}
}

func (p *page) heldAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.at
}

func (p *page) saw(ids []string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if !p.seen[id] {
			return false
		}
	}
	return true
}
