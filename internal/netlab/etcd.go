package netlab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// EtcdTLS names the PEM files etcd serves its clients with.
type EtcdTLS struct {
	CA   string // certificate authority that client certificates must chain to
	Cert string // etcd's certificate, valid for the node's address
	Key  string // its private key
}

// Etcd is an etcd server running in the lab.
type Etcd struct {
	*Proc
	// Endpoint is the client URL, https://<node address>:2379.
	Endpoint string
	// DataDir is Dir/<node>-etcd; it is kept across restarts.
	DataDir string
}

// etcdStartTimeout bounds StartEtcd's wait for health when ctx has no
// deadline.
const etcdStartTimeout = 30 * time.Second

// StartEtcd starts a one-member etcd inside the node's namespace, serving
// clients on https://<address>:2379 (and https://127.0.0.1:2379 inside the
// namespace) only to those with a certificate from tls.CA, its peer URL on
// the namespace's own 127.0.0.1:2380, its data in Dir/<node>-etcd. It
// returns once GET /health, made with etcd's own certificate as the client
// certificate, says it is healthy; if that does not happen before ctx is
// done (or 30s when ctx has no deadline), it kills etcd and returns an
// error. Called again on the same node after etcd died, it restarts it on
// the same data.
func (l *Lab) StartEtcd(ctx context.Context, node string, creds EtcdTLS) (*Etcd, error) {
	if err := l.check(node); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		return nil, fmt.Errorf("%w: needs etcd in PATH", ErrUnavailable)
	}
	client, err := clientTLS(creds.CA, creds.Cert, creds.Key)
	if err != nil {
		return nil, fmt.Errorf("netlab: etcd on %s: %w", node, err)
	}
	addr := l.Addr(node)
	e := &Etcd{
		Endpoint: "https://" + net.JoinHostPort(addr.String(), "2379"),
		DataDir:  filepath.Join(l.dir, node+"-etcd"),
	}
	if err := os.MkdirAll(e.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("netlab: etcd on %s: %w", node, err)
	}
	const peer = "http://127.0.0.1:2380"
	args := []string{
		"--name", node,
		"--data-dir", e.DataDir,
		"--listen-client-urls", e.Endpoint + ",https://127.0.0.1:2379",
		"--advertise-client-urls", e.Endpoint,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", node + "=" + peer,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", l.name,
		"--client-cert-auth",
		"--trusted-ca-file", creds.CA,
		"--cert-file", creds.Cert,
		"--key-file", creds.Key,
		"--logger", "zap",
		"--log-outputs", "stderr",
	}
	// etcd outlives ctx, which only bounds the start.
	p, err := l.Start(node, l.Command(context.WithoutCancel(ctx), node, "etcd", args...))
	if err != nil {
		return nil, err
	}
	e.Proc = p
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, etcdStartTimeout)
		defer cancel()
	}
	httpc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: client,
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			return l.DialContext(ctx, node, network, address)
		},
		DisableKeepAlives: true,
	}}
	defer httpc.CloseIdleConnections()
	start := time.Now()
	var last error
	for {
		if last = etcdHealthy(ctx, httpc, e.Endpoint); last == nil {
			l.log.Info("netlab: etcd healthy", "node", node, "endpoint", e.Endpoint, "took", time.Since(start).Round(time.Millisecond))
			return e, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("netlab: etcd on %s exited (%v) before it was healthy; see %s", node, exitStatus(p.Wait()), p.LogFile())
		case <-ctx.Done():
			_ = p.Kill()
			return nil, fmt.Errorf("netlab: etcd on %s not healthy after %v (last: %v); see %s", node, time.Since(start).Round(time.Millisecond), last, p.LogFile())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// etcdHealthy asks GET /health once, bounded by a second.
func etcdHealthy(ctx context.Context, c *http.Client, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	var h struct {
		Health string `json:"health"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return fmt.Errorf("GET /health: %s: %q", resp.Status, body)
	}
	if resp.StatusCode != http.StatusOK || h.Health != "true" {
		return fmt.Errorf("GET /health: %s: %s", resp.Status, body)
	}
	return nil
}

// clientTLS returns a client configuration that trusts ca and presents
// cert and key.
func clientTLS(ca, cert, key string) (*tls.Config, error) {
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", ca)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}
