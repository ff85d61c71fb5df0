package netlab

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/superhero-cluster/superhero/internal/devcerts"
	"github.com/superhero-cluster/superhero/internal/tlsconf"
)

func TestEtcdClientCertificates(t *testing.T) {
	requireLab(t, "etcd")
	l := newLab(t, "etcd", "alpha")
	certs := filepath.Join(t.TempDir(), "certs")
	res, err := devcerts.Generate(certs, []devcerts.Node{{Name: "etcd", Hosts: []string{l.Addr("etcd").String()}}, {Name: "alpha"}}, devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := devcerts.Generate(filepath.Join(t.TempDir(), "other"), []devcerts.Node{{Name: "alpha"}}, devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	creds := EtcdTLS{CA: res.CACert, Cert: res.Nodes[0].Cert, Key: res.Nodes[0].Key}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	e, err := l.StartEtcd(ctx, "etcd", creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd healthy at %s in %v", e.Endpoint, time.Since(start).Round(time.Millisecond))
	if e.Endpoint != "https://198.18.0.2:2379" {
		t.Errorf("endpoint %s", e.Endpoint)
	}

	// The nodes' own etcd client configuration: TLS 1.3 only.
	bundle, err := tlsconf.Files{CA: res.CACert, Cert: res.Nodes[1].Cert, Key: res.Nodes[1].Key}.Load()
	if err != nil {
		t.Fatal(err)
	}
	withCert := bundle.Client("")
	noCert := withCert.Clone()
	noCert.Certificates = nil
	foreign, err := clientTLS(res.CACert, other.Nodes[0].Cert, other.Nodes[0].Key)
	if err != nil {
		t.Fatal(err)
	}

	if body, err := getFrom(l, "alpha", e.Endpoint+"/health", withCert); err != nil || !strings.Contains(body, `"health":"true"`) {
		t.Errorf("with a certificate from the CA, over TLS 1.3 as the nodes' client: %q, %v", body, err)
	}
	if body, err := getFrom(l, "alpha", e.Endpoint+"/health", noCert); err == nil {
		t.Errorf("without a certificate: answered %q", body)
	} else {
		t.Logf("without a certificate: %v", err)
	}
	if body, err := getFrom(l, "alpha", e.Endpoint+"/health", foreign); err == nil {
		t.Errorf("with a certificate from another CA: answered %q", body)
	} else {
		t.Logf("with a certificate from another CA: %v", err)
	}

	// Killed and started again, it comes back on the same data.
	if err := e.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := getFrom(l, "alpha", e.Endpoint+"/health", withCert); err == nil {
		t.Error("killed etcd answered")
	}
	start = time.Now()
	e2, err := l.StartEtcd(ctx, "etcd", creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted in %v, log %s", time.Since(start).Round(time.Millisecond), e2.LogFile())
	if e2.LogFile() == e.LogFile() {
		t.Errorf("the restart logs to the first run's file %s", e.LogFile())
	}
}

// getFrom makes a GET from node with the TLS configuration and returns the
// body.
func getFrom(l *Lab, node, url string, cfg *tls.Config) (string, error) {
	c := &http.Client{
		Timeout: 3 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: cfg,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return l.DialContext(ctx, node, network, addr)
			},
			DisableKeepAlives: true,
		},
	}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
