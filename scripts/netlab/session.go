package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/superhero-cluster/superhero/internal/netlab"
)

const helpText = `  cut A B              drop all traffic between nodes A and B
  isolate A            cut A from every other node (etcd included)
  partition A,B C,D    nodes in different groups cannot talk; nodes in no group reach all
  drop A PERCENT       drop PERCENT of A's packets, in and out, at random
  heal [A ...]         take away every fault (or those involving A ...)
  kill NODE            SIGKILL the node's process
  stop NODE            SIGSTOP it (frozen: connections stay open, nothing answers)
  cont NODE            SIGCONT it
  start NODE           start it again (after kill, or if it exited)
  status               which processes run, the faults, whether the page answers
  sleep DURATION       wait, e.g. sleep 2s (for scripts)
  help                 this text
  quit                 clean up and exit (so do EOF and Ctrl-C)
  Lines starting with # are comments.
`

// errQuit ends the session without error.
var errQuit = errors.New("quit")

// session is a running lab with the cluster's processes, and the commands
// that act on them. Only the goroutine running serve (after setup) touches
// procs and stopped.
type session struct {
	lab     *netlab.Lab
	opts    options
	certDir string
	log     *slog.Logger
	start   time.Time

	outMu sync.Mutex
	out   io.Writer

	procs   map[string]*netlab.Proc // the latest process of every node
	stopped map[string]bool         // nodes sent SIGSTOP and not SIGCONT

	closing  atomic.Bool
	watchers sync.WaitGroup

	forwardAddr string
	forwarder   *forwarder

	// apiToken is dispatch's API token: its web server is not on loopback
	// in the lab, so it needs one. $SUPERHERO_API_TOKEN, or a random one.
	apiToken string
}

func newSession(lab *netlab.Lab, o options, out io.Writer, log *slog.Logger) *session {
	token := os.Getenv("SUPERHERO_API_TOKEN")
	if token == "" {
		token = rand.Text()
	}
	return &session{
		lab: lab, opts: o, certDir: filepath.Join(o.dir, "certs"), log: log, start: time.Now(), out: out,
		procs: map[string]*netlab.Proc{}, stopped: map[string]bool{}, apiToken: token,
	}
}

func (s *session) printf(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.out, format, args...)
}

// close stops the relay, every process and the lab, and waits for the
// goroutines that watch the processes.
func (s *session) close() error {
	s.closing.Store(true)
	if s.forwarder != nil {
		s.forwarder.close()
	}
	// Thaw what was frozen, then stop the nodes first, while etcd still
	// runs: a node leaving the cluster deregisters there, and waits for
	// etcd if it is gone.
	for n := range s.stopped {
		_ = s.procs[n].Signal(syscall.SIGCONT)
	}
	var wg sync.WaitGroup
	for n, p := range s.procs {
		if n != netlab.EtcdNode {
			wg.Go(func() { p.Stop(s.opts.stopTimeout) })
		}
	}
	wg.Wait()
	err := s.lab.Close()
	s.watchers.Wait()
	if err != nil {
		return err
	}
	s.printf("lab %s removed; logs kept in %s\n", s.lab.Name(), s.lab.Dir())
	return nil
}

// watch reports the process's exit, with the end of its log, unless the
// session is closing.
func (s *session) watch(p *netlab.Proc) {
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		err := p.Wait()
		if s.closing.Load() {
			return
		}
		status := "exit status 0"
		if err != nil {
			status = err.Error()
		}
		s.printf("%s exited (%s); last lines of %s:\n%s", p.Node(), status, p.LogFile(), tail(p.LogFile(), 5))
	}()
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "    (" + err.Error() + ")\n"
	}
	defer f.Close()
	const most = 8 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > most {
		_, _ = f.Seek(-most, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return "    " + strings.Join(lines, "\n    ") + "\n"
}

func (s *session) startEtcd(ctx context.Context) error {
	cert, key := s.cert(netlab.EtcdNode)
	e, err := s.lab.StartEtcd(ctx, netlab.EtcdNode, netlab.EtcdTLS{CA: s.ca(), Cert: cert, Key: key})
	if err != nil {
		return err
	}
	s.procs[netlab.EtcdNode] = e.Proc
	delete(s.stopped, netlab.EtcdNode)
	s.watch(e.Proc)
	return nil
}

func (s *session) startNode(node string) error {
	bin, args := s.nodeArgs(node)
	// Not bound to a context: the lab stops it (SIGTERM first) on Close.
	cmd := s.lab.Command(context.Background(), node, bin, args...)
	cmd.Dir = s.opts.dir
	if node == "dispatch" {
		// In the environment, not on the command line that ps shows.
		cmd.Env = append(os.Environ(), "SUPERHERO_API_TOKEN="+s.apiToken)
	}
	p, err := s.lab.Start(node, cmd)
	if err != nil {
		return err
	}
	s.procs[node] = p
	delete(s.stopped, node)
	s.watch(p)
	return nil
}

// serve runs the commands read from r until EOF, quit, or ctx is done. From
// a script (named script), it echoes each command with the time since the
// start, and stops at the first failing one; otherwise it reports errors
// and goes on, prompting if prompt is set.
func (s *session) serve(ctx context.Context, r io.Reader, script string, prompt bool) error {
	lines := make(chan string)
	readErr := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	// The reader ends at EOF, or at its next line once serve has
	// returned; a read of a terminal blocked then ends with the process.
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
		readErr <- sc.Err()
	}()
	interrupted := func() error {
		s.printf("\ninterrupted; cleaning up\n")
		return nil
	}
	for n := 1; ; n++ {
		if ctx.Err() != nil { // checked first: a sleep cut short by it returns too
			return interrupted()
		}
		if prompt {
			s.printf("netlab> ")
		}
		var line string
		select {
		case <-ctx.Done():
			return interrupted()
		case l, ok := <-lines:
			if !ok {
				return <-readErr
			}
			line = strings.TrimSpace(l)
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if script != "" {
			s.printf("[%6.1fs] %s\n", time.Since(s.start).Seconds(), line)
		}
		err := s.exec(ctx, line)
		switch {
		case errors.Is(err, errQuit):
			return nil
		case err != nil && script != "":
			return fmt.Errorf("%s:%d: %s: %w", script, n, line, err)
		case err != nil:
			s.printf("error: %v\n", err)
		}
	}
}

// exec runs one command line.
func (s *session) exec(ctx context.Context, line string) error {
	f := strings.Fields(line)
	verb, args := f[0], f[1:]
	want := func(n int, usage string) error {
		if len(args) != n {
			return fmt.Errorf("usage: %s %s", verb, usage)
		}
		return nil
	}
	switch verb {
	case "help", "?":
		s.printf("%s", helpText)
		return nil
	case "quit", "exit":
		return errQuit
	case "status":
		s.status(ctx)
		return nil
	case "sleep":
		if err := want(1, "DURATION"); err != nil {
			return err
		}
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return err
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		return nil
	case "cut":
		if err := want(2, "A B"); err != nil {
			return err
		}
		return s.fault(s.lab.Cut(args[0], args[1]))
	case "isolate":
		if err := want(1, "NODE"); err != nil {
			return err
		}
		return s.fault(s.lab.Isolate(args[0]))
	case "partition":
		if len(args) < 2 {
			return errors.New("usage: partition A,B C,D [...]")
		}
		var groups [][]string
		for _, g := range args {
			groups = append(groups, strings.Split(g, ","))
		}
		return s.fault(s.lab.Partition(groups...))
	case "drop":
		if err := want(2, "NODE PERCENT"); err != nil {
			return err
		}
		p, err := strconv.Atoi(strings.TrimSuffix(args[1], "%"))
		if err != nil {
			return fmt.Errorf("drop: percent %q is not a whole number", args[1])
		}
		return s.fault(s.lab.Drop(args[0], p))
	case "heal":
		if len(args) == 0 {
			return s.fault(s.lab.HealAll())
		}
		return s.fault(s.lab.Heal(args...))
	case "kill", "stop", "cont", "start":
		if err := want(1, "NODE"); err != nil {
			return err
		}
		return s.process(ctx, verb, args[0])
	}
	return fmt.Errorf("unknown command %q (help lists them)", verb)
}

// fault reports the faults in force after a change.
func (s *session) fault(err error) error {
	if err != nil {
		return err
	}
	s.printf("faults: %s\n", s.lab.Faults())
	return nil
}

func (s *session) process(ctx context.Context, verb, node string) error {
	if s.lab.Namespace(node) == "" {
		return fmt.Errorf("unknown node %q (have %s)", node, strings.Join(s.lab.Nodes(), ", "))
	}
	p := s.procs[node]
	running := p != nil && !p.Exited()
	if verb == "start" {
		if running {
			return fmt.Errorf("%s is running (pid %d)", node, p.Pid())
		}
		var err error
		if node == netlab.EtcdNode {
			err = s.startEtcd(ctx)
		} else {
			err = s.startNode(node)
		}
		if err != nil {
			return err
		}
		p = s.procs[node]
		s.printf("%s started, pid %d, log %s\n", node, p.Pid(), p.LogFile())
		return nil
	}
	if !running {
		return fmt.Errorf("%s is not running (start %s starts it)", node, node)
	}
	switch verb {
	case "kill":
		if err := p.Kill(); err != nil {
			return err
		}
		delete(s.stopped, node)
	case "stop":
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			return err
		}
		s.stopped[node] = true
		s.printf("%s stopped (cont %s resumes it)\n", node, node)
	case "cont":
		if err := p.Signal(syscall.SIGCONT); err != nil {
			return err
		}
		delete(s.stopped, node)
		s.printf("%s continued\n", node)
	}
	return nil
}

// status prints the processes, the faults, and whether dispatch's page
// answers (asked from dispatch's own namespace, so faults do not matter).
func (s *session) status(ctx context.Context) {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, n := range s.lab.Nodes() {
		p := s.procs[n]
		state := "not started"
		switch {
		case p == nil:
		case p.Exited():
			state = "exited (" + exitText(p.Wait()) + ")"
		case s.stopped[n]:
			state = fmt.Sprintf("stopped (SIGSTOP), pid %d", p.Pid())
		default:
			state = fmt.Sprintf("running, pid %d", p.Pid())
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", n, s.lab.Addr(n), state)
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "faults   %s\n", s.lab.Faults())
	if p := s.procs["dispatch"]; p != nil && !p.Exited() && !s.stopped["dispatch"] {
		fmt.Fprintf(&b, "page     GET http://%s/readyz: %s\n", s.httpAddr(), s.probePage(ctx))
		if view := s.clusterView(ctx); view != "" {
			fmt.Fprintf(&b, "cluster  %s (dispatch's view)\n", view)
		}
	}
	s.printf("%s", b.String())
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (s *session) probePage(ctx context.Context) string {
	status, _, err := s.get(ctx, "/readyz")
	if err != nil {
		return err.Error()
	}
	return status
}

// clusterView summarises dispatch's GET /api/cluster, or returns "" if it
// does not answer one.
func (s *session) clusterView(ctx context.Context) string {
	_, body, err := s.get(ctx, "/api/cluster")
	if err != nil {
		return ""
	}
	var view struct {
		Cities []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"cities"`
		InSync bool `json:"in_sync"`
	}
	if json.Unmarshal(body, &view) != nil || len(view.Cities) == 0 {
		return ""
	}
	var parts []string
	for _, c := range view.Cities {
		parts = append(parts, c.Name+" "+c.State)
	}
	sync := "in sync"
	if !view.InSync {
		sync = "not in sync"
	}
	return strings.Join(parts, ", ") + "; " + sync
}

// get asks dispatch's web server for path, from dispatch's namespace,
// within a second.
func (s *session) get(ctx context.Context, path string) (status string, body []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{
		DialContext:       s.dialDispatch,
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.httpAddr()+path, nil)
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.apiToken)
	resp, err := c.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.Status, body, err
}

// dialDispatch connects from dispatch's namespace, where its address is
// local.
func (s *session) dialDispatch(ctx context.Context, network, addr string) (net.Conn, error) {
	return s.lab.DialContext(ctx, "dispatch", network, addr)
}
