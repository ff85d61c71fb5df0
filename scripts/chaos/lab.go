package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/superhero-cluster/superhero/internal/devcerts"
	"github.com/superhero-cluster/superhero/internal/localcluster"
	"github.com/superhero-cluster/superhero/internal/netlab"
	"github.com/superhero-cluster/superhero/messages"
)

// The soak in the network lab (-net): etcd, dispatch and every city each
// on a host of their own (a network namespace, package internal/netlab),
// finding each other through etcd and talking mutual TLS, as
// scripts/netlab runs them. One more host, "chaos", is the clients': the
// workload's connections to dispatch are made in its namespace (no fault
// cuts the clients from dispatch, so dispatch's answers under faults are
// what the history records), and the member agent (agent.go) runs there
// to read the cities' replicas.

// Lab hosts besides dispatch and the cities.
const (
	clientHost = "chaos"
	labPrefix  = "shchaos"
	remotePort = 8100
	httpPort   = 4900
)

// labCluster is the cluster running in a lab. Its methods are safe for
// concurrent use.
type labCluster struct {
	lab     *netlab.Lab
	bin     string
	self    string // this binary, run again as the agent
	certDir string
	etcd    string
	cookie  string
	token   string
	cities  []string
	log     *slog.Logger
	agent   *agentClient
	obs     *observer

	mu    sync.Mutex
	procs map[string]*netlab.Proc // the current process of every node, the agent's under clientHost
}

// labAvailable says what the machine lacks to run the lab, if anything.
func labAvailable() error {
	if err := netlab.Available("etcd"); err != nil {
		return fmt.Errorf("-net: %w (run as root; apt-get install -y iproute2 nftables etcd-server)", err)
	}
	return nil
}

// startLab builds the lab in dir and starts etcd, the cities, dispatch and
// the agent, and waits until the agent sees every node and dispatch shows
// every city up and is ready. On error everything is removed again.
func startLab(ctx context.Context, bin, dir string, cities []string, log *slog.Logger) (lc *labCluster, err error) {
	if err := labAvailable(); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("-net: this binary, to run as the agent: %w", err)
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	nodes := append([]string{netlab.EtcdNode, clientHost, dispatchName}, cities...)
	lab, err := netlab.New(ctx, netlab.Config{Prefix: labPrefix, Nodes: nodes, Dir: dir, Logger: log.With("part", "lab"), StopTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	lc = &labCluster{
		lab: lab, bin: bin, self: self, certDir: filepath.Join(dir, "certs"), cities: cities, log: log,
		cookie: "chaos-" + hex.EncodeToString(b[:6]), token: "chaos-token-" + hex.EncodeToString(b[6:]),
		procs: map[string]*netlab.Proc{},
	}
	lc.agent = newAgentClient(lc.dial)
	lc.obs = &observer{
		state: lc.agent.state, base: "http://" + lc.httpAddr(), token: lc.token,
		http: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			DialContext: lc.dial, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second,
		}},
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, lc.close())
			lc = nil
		}
	}()
	var certNodes []devcerts.Node
	for _, n := range nodes {
		certNodes = append(certNodes, devcerts.Node{Name: n, Hosts: []string{lab.Addr(n).String()}})
	}
	if _, err := devcerts.Generate(lc.certDir, certNodes, devcerts.Options{Force: true}); err != nil {
		return lc, fmt.Errorf("certificates: %w", err)
	}
	cert, key := lc.cert(netlab.EtcdNode)
	e, err := lab.StartEtcd(ctx, netlab.EtcdNode, netlab.EtcdTLS{CA: lc.ca(), Cert: cert, Key: key})
	if err != nil {
		return lc, err
	}
	lc.etcd = e.Endpoint
	for _, n := range append(append([]string{}, cities...), dispatchName, clientHost) {
		if err := lc.start(n, 0); err != nil {
			return lc, err
		}
	}
	start := time.Now()
	uctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	t := lc.target()
	var last error
	if err := localcluster.Poll(uctx, 200*time.Millisecond, func() (bool, error) {
		for _, n := range append([]string{dispatchName}, cities...) {
			if last = t.Answering(uctx, n); last != nil {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return lc, fmt.Errorf("the cluster in the lab did not come up: %w (last: %v; logs in %s)", err, last, lab.Dir())
	}
	log.Info("cluster up in the lab", "lab", lab.Name(), "took", time.Since(start).Round(time.Millisecond), "logs", lab.Dir())
	return lc, nil
}

func (lc *labCluster) cert(node string) (cert, key string) {
	return filepath.Join(lc.certDir, node+".pem"), filepath.Join(lc.certDir, node+"-key.pem")
}

func (lc *labCluster) ca() string { return filepath.Join(lc.certDir, devcerts.CAFile) }

// httpAddr is dispatch's web address in the lab.
func (lc *labCluster) httpAddr() string {
	return net.JoinHostPort(lc.lab.Addr(dispatchName).String(), strconv.Itoa(httpPort))
}

// dial connects from the clients' host.
func (lc *labCluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return lc.lab.DialContext(ctx, clientHost, network, addr)
}

// args are a node's command line: etcd discovery and mutual TLS on its
// lab address; the agent's on the clients' host.
func (lc *labCluster) args(node string, offset time.Duration) (bin string, args []string) {
	cert, key := lc.cert(node)
	args = []string{
		"-provider", "etcd", "-etcd", lc.etcd, "-join-timeout", "5s",
		"-host", lc.lab.Addr(node).String(), "-port", strconv.Itoa(remotePort),
		"-tls-ca", lc.ca(), "-tls-cert", cert, "-tls-key", key,
		"-cookie", lc.cookie, "-log-level", "info",
	}
	if node == clientHost {
		return lc.self, append([]string{agentCommand, "-name", clientHost}, args...)
	}
	if offset != 0 {
		args = append(args, "-clock-offset", offset.String())
	}
	if node == dispatchName {
		return filepath.Join(lc.bin, "dispatch"), append(args, "-http", lc.httpAddr())
	}
	return filepath.Join(lc.bin, "locations"), append([]string{"-city", node}, args...)
}

// start starts the node's process, with its clock shifted by offset;
// the node's previous process must have exited.
func (lc *labCluster) start(node string, offset time.Duration) error {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if p := lc.procs[node]; p != nil && !p.Exited() {
		return fmt.Errorf("start %s: still running (pid %d)", node, p.Pid())
	}
	bin, args := lc.args(node, offset)
	// Not bound to a context: a node outlives the start; close stops it.
	cmd := lc.lab.Command(context.Background(), node, bin, args...)
	if node == dispatchName {
		// In the environment, not on the command line that ps shows.
		cmd.Env = append(os.Environ(), "SUPERHERO_API_TOKEN="+lc.token)
	}
	p, err := lc.lab.Start(node, cmd)
	if err != nil {
		return err
	}
	lc.procs[node] = p
	return nil
}

func (lc *labCluster) proc(node string) (*netlab.Proc, error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	p := lc.procs[node]
	if p == nil {
		return nil, fmt.Errorf("no node %s", node)
	}
	return p, nil
}

// notRunning names the nodes (and the agent) whose process has exited.
func (lc *labCluster) notRunning() map[string]string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	out := map[string]string{}
	for n, p := range lc.procs {
		if p.Exited() {
			out[n] = fmt.Sprint(p.Wait())
		}
	}
	return out
}

// close stops the agent and the nodes (thawed first) while etcd still
// runs, so they leave it cleanly, then removes the lab; its directory
// with the logs stays.
func (lc *labCluster) close() error {
	lc.agent.close()
	lc.obs.http.CloseIdleConnections()
	lc.mu.Lock()
	procs := make([]*netlab.Proc, 0, len(lc.procs))
	for _, p := range lc.procs {
		procs = append(procs, p)
	}
	lc.mu.Unlock()
	_ = lc.lab.HealAll()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.Stop(5 * time.Second) })
	}
	wg.Wait()
	return lc.lab.Close()
}

// observer reads the lab's replicas: the cities' through the agent,
// dispatch's from the clients' host.
func (lc *labCluster) observer() *observer { return lc.obs }

func (lc *labCluster) target() *labTarget { return &labTarget{lc: lc, obs: lc.obs} }

// labTarget is the lab's cluster as the nemesis's Target, Network and
// Skewer.
type labTarget struct {
	lc  *labCluster
	obs *observer
}

var (
	_ Target  = (*labTarget)(nil)
	_ Network = (*labTarget)(nil)
	_ Skewer  = (*labTarget)(nil)
)

func (t *labTarget) Cities() []string { return t.lc.cities }

func (t *labTarget) Kill(node string) error {
	p, err := t.lc.proc(node)
	if err != nil {
		return err
	}
	return p.Kill()
}

func (t *labTarget) Start(node string) error { return t.lc.start(node, 0) }

func (t *labTarget) StartSkewed(node string, offset time.Duration) error {
	return t.lc.start(node, offset)
}

func (t *labTarget) Freeze(node string) error { return t.signal(node, syscall.SIGSTOP) }

func (t *labTarget) Thaw(node string) error { return t.signal(node, syscall.SIGCONT) }

func (t *labTarget) signal(node string, sig syscall.Signal) error {
	p, err := t.lc.proc(node)
	if err != nil {
		return err
	}
	return p.Signal(sig)
}

func (t *labTarget) Bomb(ctx context.Context, city string) error { return t.lc.agent.bomb(ctx, city) }

func (t *labTarget) Exited(node string) <-chan struct{} {
	p, err := t.lc.proc(node)
	if err != nil {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return p.Done()
}

func (t *labTarget) Isolate(node string) error { return t.lc.lab.Isolate(node) }

func (t *labTarget) Partition(groups ...[]string) error { return t.lc.lab.Partition(groups...) }

func (t *labTarget) Drop(node string, percent int) error { return t.lc.lab.Drop(node, percent) }

func (t *labTarget) HealNetwork() error { return t.lc.lab.HealAll() }

// Answering is localTarget.Answering with the agent as the member and
// dispatch asked from the clients' host.
func (t *labTarget) Answering(ctx context.Context, node string) error {
	a := t.lc.agent
	if node == dispatchName {
		if !a.hasKind(ctx, messages.DispatchKind) {
			return errors.New("dispatch not in the topology")
		}
		if status, err := t.get(ctx, "/readyz", nil); err != nil || status != http.StatusOK {
			return fmt.Errorf("dispatch's /readyz: %d %v", status, err)
		}
		if status, err := t.get(ctx, "/api/superheroes/"+uuid.Nil.String(), nil); status != http.StatusNotFound {
			return fmt.Errorf("dispatch's replica: %d %v", status, err)
		}
		var st localcluster.Status
		if status, err := t.get(ctx, "/api/cluster", &st); err != nil || status != http.StatusOK {
			return fmt.Errorf("dispatch's /api/cluster: %d %v", status, err)
		}
		for _, city := range t.Cities() {
			if a.hasKind(ctx, messages.CityKind(city)) && !st.Up(city) {
				return fmt.Errorf("dispatch shows %s down", city)
			}
		}
		return nil
	}
	if !a.hasKind(ctx, messages.CityKind(node)) {
		return fmt.Errorf("%s not in the topology", node)
	}
	if err := a.digest(ctx, node); err != nil {
		return err
	}
	var st localcluster.Status
	if status, err := t.get(ctx, "/api/cluster", &st); err == nil && status == http.StatusOK && !st.Up(node) {
		return fmt.Errorf("dispatch shows %s down", node)
	}
	return nil
}

func (t *labTarget) get(ctx context.Context, path string, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return t.obs.get(ctx, path, out)
}
