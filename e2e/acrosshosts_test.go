package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/devcerts"
	"github.com/superhero-cluster/superhero/internal/logx"
	"github.com/superhero-cluster/superhero/internal/netlab"
	"github.com/superhero-cluster/superhero/internal/tlsconf"
)

// labCluster is the cluster run as if across hosts: etcd, dispatch and
// every city each in a network namespace of its own (internal/netlab),
// finding each other through etcd and talking mutual TLS. The test's own
// requests leave from a "client" namespace that no fault touches.
type labCluster struct {
	t     *testing.T
	lab   *netlab.Lab
	certs string
	etcd  string
	mu    sync.Mutex
	procs map[string]*netlab.Proc
}

const labRemotePort = 8100

// labAPIToken is dispatch's -api-token in the lab, where its web server
// is not on loopback and so must have one.
const labAPIToken = "lab-api-token-0123456789"

func newLabCluster(t *testing.T) *labCluster {
	t.Helper()
	requireLab(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes := []string{netlab.EtcdNode, "client", "dispatch", "gotham", "metropolis", "capitol"}
	lab, err := netlab.New(ctx, netlab.Config{Prefix: "she2e", Nodes: nodes, Dir: filepath.Join(dir, "lab"), Logger: logx.Test(t), StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lc := &labCluster{t: t, lab: lab, certs: filepath.Join(dir, "certs"), procs: map[string]*netlab.Proc{}}
	t.Cleanup(func() {
		if t.Failed() {
			lc.dumpLogs()
		}
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	var certNodes []devcerts.Node
	for _, n := range nodes {
		certNodes = append(certNodes, devcerts.Node{Name: n, Hosts: []string{lab.Addr(n).String()}})
	}
	if _, err := devcerts.Generate(lc.certs, certNodes, devcerts.Options{}); err != nil {
		t.Fatal(err)
	}
	etcd, err := lab.StartEtcd(ctx, netlab.EtcdNode, netlab.EtcdTLS{
		CA: lc.cert("ca.pem"), Cert: lc.cert("etcd.pem"), Key: lc.cert("etcd-key.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	lc.etcd = etcd.Endpoint
	return lc
}

func (lc *labCluster) cert(name string) string { return filepath.Join(lc.certs, name) }

// args are a node's flags: etcd discovery and mutual TLS on its lab
// address.
func (lc *labCluster) args(node, certDir string) []string {
	return []string{
		"-provider", "etcd", "-etcd", lc.etcd, "-join-timeout", "5s",
		"-host", lc.lab.Addr(node).String(), "-port", fmt.Sprint(labRemotePort),
		"-tls-ca", filepath.Join(certDir, "ca.pem"),
		"-tls-cert", filepath.Join(certDir, node+".pem"),
		"-tls-key", filepath.Join(certDir, node+"-key.pem"),
	}
}

func (lc *labCluster) start(node string, args ...string) *netlab.Proc {
	lc.t.Helper()
	bin := filepath.Join(binDir, "locations")
	if node == "dispatch" {
		bin = filepath.Join(binDir, "dispatch")
	} else {
		args = append([]string{"-city", node}, args...)
	}
	p, err := lc.lab.Start(node, lc.lab.Command(context.Background(), node, bin, args...))
	if err != nil {
		lc.t.Fatal(err)
	}
	lc.mu.Lock()
	lc.procs[node+fmt.Sprint(len(lc.procs))] = p
	lc.mu.Unlock()
	return p
}

func (lc *labCluster) httpAddr() string {
	return net.JoinHostPort(lc.lab.Addr("dispatch").String(), "4900")
}

// api is a client of dispatch's API from the client namespace.
func (lc *labCluster) api() *api {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return lc.lab.DialContext(ctx, "client", network, addr)
	}}
	lc.t.Cleanup(tr.CloseIdleConnections)
	return &api{t: lc.t, base: "http://" + lc.httpAddr(), http: &http.Client{Timeout: 3 * time.Second, Transport: tr}, token: labAPIToken}
}

func (lc *labCluster) dumpLogs() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, p := range lc.procs {
		b, err := os.ReadFile(p.LogFile())
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		var keep []string
		for _, l := range lines {
			if !strings.Contains(l, "msg=http ") {
				keep = append(keep, l)
			}
		}
		if len(keep) > 150 {
			keep = keep[len(keep)-150:]
		}
		lc.t.Logf("%s (%s):\n%s", p.Node(), p.LogFile(), strings.Join(keep, "\n"))
	}
}

// TestAcrossHosts runs the cluster across network namespaces with etcd and
// mutual TLS: it forms, writes reach every replica, a city cut away is
// shown down while the rest take writes and it goes on with its own, and
// after the heal it is back without a restart, every replica equal and no
// acknowledged write lost. Certificates from another CA are refused by the
// nodes and by etcd.
func TestAcrossHosts(t *testing.T) {
	lc := newLabCluster(t)
	a := lc.api()
	// Patrols but no fights: a city's only own writes are sending its idle
	// heroes on patrol, one a second, so what it wrote while cut off can be
	// told apart from what it writes later (nothing).
	cityArgs := []string{"-patrol", "1s", "-fight", "1h"}

	formed := time.Now()
	procs := map[string]*netlab.Proc{}
	for _, city := range cities {
		procs[city] = lc.start(city, append(lc.args(city, lc.certs), cityArgs...)...)
	}
	procs["dispatch"] = lc.start("dispatch", append(lc.args("dispatch", lc.certs), "-http", lc.httpAddr(), "-api-token", labAPIToken)...)
	allUp := func() bool {
		cs := a.cluster()
		return cs.Ready && cs.city("gotham").Up && cs.city("metropolis").Up && cs.city("capitol").Up
	}
	await(t, 60*time.Second, "the cluster forms across namespaces", allUp)
	t.Logf("FIGURE formation across namespaces (etcd, mutual TLS), first node started to all cities up: %v", time.Since(formed).Round(time.Millisecond))

	// Writes reach every replica.
	var acked []string
	var spread []float64
	for i := range 30 {
		var h hero
		code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": fmt.Sprintf("Lab %d", i)}, &h)
		if code != 201 {
			t.Fatalf("create %d: %d", i, code)
		}
		start := time.Now()
		acked = append(acked, h.ID)
		await(t, 10*time.Second, "the create on every city", func() bool {
			for _, city := range cities {
				hs, ok := a.cityHeroes(city)
				if _, found := has(hs, h.ID); !ok || !found {
					return false
				}
			}
			return true
		})
		spread = append(spread, float64(time.Since(start).Microseconds())/1000)
	}
	t.Logf("FIGURE write -> every city across namespaces with TLS (read through dispatch): p50 %.2f ms p99 %.2f ms",
		percentile(spread, 0.5), percentile(spread, 0.99))

	// Heroes of metropolis's own, so it writes (sends them on patrol) while
	// cut off.
	var metroHeroes []string
	for _, id := range acked[:3] {
		if code, _ := a.do("PUT", "/api/superheroes/"+id+"/location", map[string]string{"location": "metropolis"}, nil); code != 200 {
			t.Fatalf("assign to metropolis: %d", code)
		}
		metroHeroes = append(metroHeroes, id)
	}
	home := acked[3:]

	// Partition: metropolis is cut from everyone, etcd included.
	droppedBefore := lc.countIn(procs["dispatch"], `msg="cluster kinds changed"`, `kinds="[city-capitol city-gotham dispatch]"`, "left=1")
	cut := time.Now()
	if err := lc.lab.Isolate("metropolis"); err != nil {
		t.Fatal(err)
	}
	await(t, 15*time.Second, "metropolis shown down", func() bool { return !a.cluster().city("metropolis").Up })
	t.Logf("FIGURE partition -> metropolis shown down: %v", time.Since(cut).Round(time.Millisecond))
	for i := range 10 {
		var h hero
		if code, _ := a.do("POST", "/api/superheroes", map[string]string{"name": fmt.Sprintf("Cut %d", i)}, &h); code != 201 {
			t.Fatalf("create while metropolis is cut away: %d", code)
		}
		home = append(home, h.ID)
	}
	// Heal only once etcd's lease (3 s) has dropped metropolis, so the heal
	// needs a rejoin; its patrols (one a second) write meanwhile.
	await(t, 20*time.Second, "dispatch sees metropolis leave", func() bool {
		return lc.countIn(procs["dispatch"], `msg="cluster kinds changed"`, `kinds="[city-capitol city-gotham dispatch]"`, "left=1") > droppedBefore
	})
	healed := time.Now()
	if err := lc.lab.HealAll(); err != nil {
		t.Fatal(err)
	}
	back := await(t, 20*time.Second, "metropolis back, every replica equal", func() bool {
		return allUp() && a.cluster().InSync
	})
	t.Logf("FIGURE heal -> metropolis back and in sync: %v", back.Round(time.Millisecond))
	if procs["metropolis"].Exited() {
		t.Fatal("metropolis exited instead of rejoining")
	}

	// No acknowledged write lost, on any replica; and metropolis's own
	// writes from while it was cut off reached the others.
	await(t, 10*time.Second, "every acknowledged create on every city", func() bool {
		for _, city := range cities {
			hs, ok := a.cityHeroes(city)
			if !ok {
				return false
			}
			for _, id := range home {
				if _, found := has(hs, id); !found {
					return false
				}
			}
		}
		return true
	})
	// Every replica holds metropolis's patrols, at least one of them
	// written while it was cut off.
	await(t, 10*time.Second, "metropolis's writes from the partition on every city", func() bool {
		for _, city := range cities {
			hs, ok := a.cityHeroes(city)
			if !ok {
				return false
			}
			during := 0
			for _, id := range metroHeroes {
				h, found := has(hs, id)
				if !found || !h.Patrolling || h.UpdatedBy != "metropolis" {
					return false
				}
				if at, err := time.Parse(time.RFC3339Nano, h.UpdatedAt); err == nil && at.After(cut) && at.Before(healed) {
					during++
				}
			}
			if during == 0 {
				return false
			}
		}
		return true
	})
	if !lc.logged("metropolis", "rejoining under a fresh member id") {
		t.Fatal("metropolis did not rejoin: the partition did not drop it, so this test proved nothing")
	}

	t.Run("another CA is refused", func(t *testing.T) {
		evil := filepath.Join(t.TempDir(), "evil")
		if _, err := devcerts.Generate(evil, []devcerts.Node{{Name: "client", Hosts: []string{lc.lab.Addr("client").String()}}}, devcerts.Options{}); err != nil {
			t.Fatal(err)
		}
		// A node with the other CA's certificate (and that CA) cannot
		// register in etcd: it gives up with the discovery error.
		p := lc.start("client", append(lc.args("client", evil), "-city", "gotham")...)
		select {
		case <-p.Done():
		case <-time.After(20 * time.Second):
			t.Fatal("a node with another CA's certificate did not give up")
		}
		if !lc.loggedIn(p, "discovery service") {
			t.Fatal("the node with another CA's certificate did not fail on etcd")
		}
		// The nodes refuse it on their remote port, while a certificate
		// from the cluster's CA is let in (so the check can fail).
		remote := net.JoinHostPort(lc.lab.Addr("dispatch").String(), fmt.Sprint(labRemotePort))
		if err := lc.handshake(remote, filepath.Join(evil, "client.pem"), filepath.Join(evil, "client-key.pem")); err == nil {
			t.Fatal("dispatch accepted a client certificate from another CA")
		} else {
			t.Logf("another CA's certificate refused: %v", err)
		}
		if err := lc.handshake(remote, lc.cert("client.pem"), lc.cert("client-key.pem")); err != nil {
			t.Fatalf("dispatch refused a certificate of the cluster's CA: %v", err)
		}
	})

	t.Run("SIGKILL", func(t *testing.T) {
		if err := procs["capitol"].Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		down := await(t, 15*time.Second, "capitol shown down", func() bool { return !a.cluster().city("capitol").Up })
		t.Logf("FIGURE SIGKILL -> capitol shown down: %v", down.Round(time.Millisecond))
	})
}

// handshake dials addr from the client namespace with mutual TLS, trusting
// the cluster's CA and presenting cert, and reads once: in TLS 1.3 a
// refused client certificate shows on the first read.
func (lc *labCluster) handshake(addr, cert, key string) error {
	b, err := tlsconf.Files{CA: lc.cert("ca.pem"), Cert: lc.cert("client.pem"), Key: lc.cert("client-key.pem")}.Load()
	if err != nil {
		return fmt.Errorf("test certificates: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return fmt.Errorf("test certificates: %w", err)
	}
	cfg := b.Client(lc.lab.Addr("dispatch").String())
	// Always present cert: Go's client would otherwise send none when it
	// does not chain to a CA the server asks for.
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := lc.lab.DialContext(ctx, "client", "tcp", addr)
	if err != nil {
		return err
	}
	conn := tls.Client(raw, cfg)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if err := conn.HandshakeContext(ctx); err != nil {
		return err
	}
	// gRPC's server speaks first (HTTP/2 settings) once it accepts us.
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return err
	}
	return nil
}

func (lc *labCluster) logged(node, what string) bool {
	lc.mu.Lock()
	var ps []*netlab.Proc
	for _, p := range lc.procs {
		if p.Node() == node {
			ps = append(ps, p)
		}
	}
	lc.mu.Unlock()
	for _, p := range ps {
		if lc.loggedIn(p, what) {
			return true
		}
	}
	return false
}

// countIn returns how many lines of p's log contain every substring.
func (lc *labCluster) countIn(p *netlab.Proc, substrings ...string) int {
	b, err := os.ReadFile(p.LogFile())
	if err != nil {
		return 0
	}
	return len(matchingLines(string(b), substrings...))
}

func (lc *labCluster) loggedIn(p *netlab.Proc, what string) bool {
	b, err := os.ReadFile(p.LogFile())
	return err == nil && strings.Contains(string(b), what)
}

// requireLab skips a test that needs the node binaries and the network
// lab (root, ip, nft, etcd) where they are missing, and fails it when
// CI=true, where they must be.
func requireLab(t *testing.T) {
	t.Helper()
	if binDir == "" {
		t.Skip("end-to-end tests need the node binaries; not built in -short mode")
	}
	if err := netlab.Available("etcd"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the network lab cannot run: %v", err)
		}
		t.Skip(err)
	}
}
