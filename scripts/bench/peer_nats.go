package main

// The peer system of the peer scenario: a three-node NATS JetStream
// cluster on loopback, its server built from source into the benchmark's
// cache folder so that it stays a benchmark-only tool (go.mod holds only
// the client).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/superhero-cluster/superhero/internal/layout"
	"github.com/superhero-cluster/superhero/internal/localcluster"
	"github.com/superhero-cluster/superhero/internal/proc"
)

const (
	// natsServerModule and natsServerVersion are the server the peer
	// scenario builds.
	natsServerModule  = "github.com/nats-io/nats-server/v2"
	natsServerVersion = "v2.15.2"
	// natsServerEnv names a nats-server binary to use instead of building
	// one (a machine without network access).
	natsServerEnv = "BENCH_NATS_SERVER"
)

// errNoNATSServer means there is no nats-server to run: the peer scenario
// is skipped.
var errNoNATSServer = errors.New("bench: no nats-server")

// natsServerBinary returns a nats-server binary: $BENCH_NATS_SERVER when
// set, else the one in the cache folder, built there with `go install`
// first if it is missing.
func natsServerBinary(ctx context.Context, log *slog.Logger) (string, error) {
	if p := os.Getenv(natsServerEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %s: %v", errNoNATSServer, natsServerEnv, err)
		}
		return p, nil
	}
	bin, err := natsServerCached()
	if err != nil {
		return "", fmt.Errorf("%w: %v", errNoNATSServer, err)
	}
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	dir := filepath.Dir(bin)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", errNoNATSServer, err)
	}
	// Build into a directory of its own and rename: a cut-off build never
	// leaves a partial binary behind, and two runs cannot clash.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("%w: %v", errNoNATSServer, err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	log.Info("building nats-server", "version", natsServerVersion, "dir", dir)
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, "go", "install", natsServerModule+"@"+natsServerVersion)
	cmd.Dir = tmp // outside the module: go.mod is not involved
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: go install %s@%s: %v: %s", errNoNATSServer, natsServerModule, natsServerVersion, err, lastLines(string(out), 5))
	}
	if err := os.Rename(filepath.Join(tmp, "nats-server"), bin); err != nil {
		return "", fmt.Errorf("%w: %v", errNoNATSServer, err)
	}
	log.Info("built nats-server", "took", time.Since(start).Round(time.Millisecond))
	return bin, nil
}

// natsServerCached is where the built nats-server is kept between runs:
// the user's cache folder, by version.
func natsServerCached() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "superhero-bench", "nats-server-"+natsServerVersion, "nats-server"), nil
}

// lastLines returns the last n lines of s, joined by " | ".
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], " | ")
}

// natsCluster is a running JetStream cluster on loopback with one client
// connection pinned to each server.
type natsCluster struct {
	urls  []string // client URL per server
	names []string // server names
	procs []*proc.Proc
	conns []*nats.Conn // conns[i] is connected to server i only
	store string       // the servers' store directories live under it
	log   *slog.Logger
}

// natsArgs returns the command line of server i of n: client port
// base+i, cluster port base+n+i, routes to the others, store under store.
func natsArgs(i, n, base int, store string) []string {
	host := layout.DefaultHost
	var routes []string
	for j := range n {
		if j != i {
			routes = append(routes, "nats://"+host+":"+strconv.Itoa(base+n+j))
		}
	}
	return []string{
		"--server_name", natsName(i), "--addr", host, "--port", strconv.Itoa(base + i),
		"--jetstream", "--store_dir", filepath.Join(store, natsName(i)),
		"--cluster_name", "bench", "--cluster", "nats://" + host + ":" + strconv.Itoa(base+n+i),
		"--routes", strings.Join(routes, ","),
	}
}

func natsName(i int) string { return "n" + strconv.Itoa(i+1) }

// startNATS starts n servers of bin on free loopback ports with their
// stores in a new temporary directory, and waits until each one accepts
// a connection and answers JetStream requests (a meta leader is elected).
func startNATS(ctx context.Context, bin string, n int, log *slog.Logger, out io.Writer) (*natsCluster, error) {
	base, err := layout.FreeRun(2 * n)
	if err != nil {
		return nil, err
	}
	store, err := os.MkdirTemp("", "superhero-bench-nats-")
	if err != nil {
		return nil, err
	}
	c := &natsCluster{store: store, log: log}
	for i := range n {
		p := &proc.Proc{Name: natsName(i), Path: bin, Args: natsArgs(i, n, base, store)}
		if err := p.Start(out); err != nil {
			c.Stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
		c.names = append(c.names, natsName(i))
		c.urls = append(c.urls, "nats://"+layout.DefaultHost+":"+strconv.Itoa(base+i))
	}
	start := time.Now()
	for i := range n {
		nc, err := c.dial(ctx, i)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.conns = append(c.conns, nc)
	}
	for i, nc := range c.conns {
		err := localcluster.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
			// Without a meta leader the request goes unanswered.
			_, err := nc.Request("$JS.API.INFO", nil, time.Second)
			return err == nil, nil
		})
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("nats %s: JetStream not ready: %w", c.names[i], err)
		}
	}
	log.Info("nats cluster up", "servers", n, "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// dial connects to server i alone, retrying until it listens or ctx ends.
// The connection never moves to another server.
func (c *natsCluster) dial(ctx context.Context, i int) (*nats.Conn, error) {
	var nc *nats.Conn
	err := localcluster.Poll(ctx, 20*time.Millisecond, func() (bool, error) {
		var err error
		select {
		case <-c.procs[i].Done():
			return false, fmt.Errorf("nats %s exited", c.names[i])
		default:
		}
		nc, err = nats.Connect(c.urls[i], nats.Name("bench"), nats.NoReconnect(), nats.DontRandomize(), nats.Timeout(time.Second))
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("nats %s: connect: %w", c.names[i], err)
	}
	return nc, nil
}

// pids returns the server processes' ids.
func (c *natsCluster) pids() []int {
	out := make([]int, len(c.procs))
	for i, p := range c.procs {
		out[i] = p.Pid()
	}
	return out
}

// Stop closes the connections, stops the servers (SIGTERM, then SIGKILL
// after a grace period) and removes their stores.
func (c *natsCluster) Stop() {
	for _, nc := range c.conns {
		nc.Close()
	}
	proc.StopAll(c.procs, 5*time.Second, c.log)
	if err := os.RemoveAll(c.store); err != nil {
		c.log.Warn("removing the nats stores", "dir", c.store, "err", err)
	}
}

// directGet is the stream's direct-get subject. Every replica of a stream
// with allow_direct (a KV bucket's default) answers on it in a queue group,
// and a server prefers its own members of a queue group: a request through
// server i is answered from server i's replica.
func directGet(stream string) string { return "$JS.API.DIRECT.GET." + stream }

// hasSeq reports whether the replica behind nc holds stream sequence seq.
func hasSeq(ctx context.Context, nc *nats.Conn, stream string, seq uint64) (bool, error) {
	req, _ := json.Marshal(map[string]uint64{"seq": seq})
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, directGet(stream), req)
	if err != nil {
		return false, err
	}
	switch st := m.Header.Get("Status"); st {
	case "":
		return true, nil
	case "404":
		return false, nil
	default:
		return false, fmt.Errorf("direct get seq %d: status %s %s", seq, st, m.Header.Get("Description"))
	}
}

// scanBatch is how many messages one batched direct get asks for.
const scanBatch = 1000

// scanReplica reads every message of the replica behind nc, in batched
// direct gets by sequence, and calls fn with each message's subject.
func scanReplica(ctx context.Context, nc *nats.Conn, stream string, fn func(subject string)) error {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	for seq := uint64(1); ; {
		req, _ := json.Marshal(map[string]uint64{"seq": seq, "batch": scanBatch})
		if err := nc.PublishRequest(directGet(stream), inbox, req); err != nil {
			return err
		}
		got := 0
		for done := false; !done; {
			mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			m, err := sub.NextMsgWithContext(mctx)
			cancel()
			if err != nil {
				return fmt.Errorf("direct get from seq %d: %w", seq, err)
			}
			var last uint64
			last, done, err = scanStep(m.Header)
			if err != nil {
				return err
			}
			if done {
				break
			}
			fn(m.Header.Get("Nats-Subject"))
			seq, got = last+1, got+1
		}
		if got == 0 {
			return nil
		}
	}
}

// scanStep reads one answer of a batched direct get: a message (its
// sequence), the end of the batch (done), or the end of the stream (done
// with seq 0 when the batch is the first past the last message).
func scanStep(h nats.Header) (seq uint64, done bool, err error) {
	switch st := h.Get("Status"); st {
	case "":
		seq, err := strconv.ParseUint(h.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("direct get: bad Nats-Sequence %q", h.Get("Nats-Sequence"))
		}
		return seq, false, nil
	case "204", "404": // end of batch; nothing at or after the sequence
		return 0, true, nil
	default:
		return 0, false, fmt.Errorf("direct get: status %s %s", st, h.Get("Description"))
	}
}
