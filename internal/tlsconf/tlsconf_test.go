package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/superhero-cluster/superhero/internal/devcerts"
)

// generate issues certificates for nodes in dir and returns the files.
func generate(t *testing.T, dir string, opts devcerts.Options, nodes ...string) devcerts.Result {
	t.Helper()
	var ns []devcerts.Node
	for _, n := range nodes {
		ns = append(ns, devcerts.Node{Name: n})
	}
	res, err := devcerts.Generate(dir, ns, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// files returns the Files of node i of res.
func files(res devcerts.Result, i int) Files {
	return Files{CA: res.CACert, Cert: res.Nodes[i].Cert, Key: res.Nodes[i].Key}
}

func mustLoad(t *testing.T, f Files) *Bundle {
	t.Helper()
	b, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cluster is a CA with the members gotham and metropolis.
type cluster struct {
	gotham, metropolis *Bundle
}

func newCluster(t *testing.T) cluster {
	t.Helper()
	res := generate(t, t.TempDir(), devcerts.Options{}, "gotham", "metropolis")
	return cluster{gotham: mustLoad(t, files(res, 0)), metropolis: mustLoad(t, files(res, 1))}
}

// serverResult is what the server side of one connection saw.
type serverResult struct {
	err   error // handshake error
	state tls.ConnectionState
}

// serveOnce listens on 127.0.0.1 with cfg and accepts one connection. If
// its handshake succeeds it writes "hello" and closes the connection. The
// result arrives on the channel once the connection is done.
func serveOnce(t *testing.T, cfg *tls.Config) (addr string, result <-chan serverResult) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan serverResult, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			ch <- serverResult{err: err}
			return
		}
		defer conn.Close()
		// A bound on a stuck test, not a synchronisation.
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			ch <- serverResult{err: err}
			return
		}
		_, err = tc.Write([]byte("hello"))
		ch <- serverResult{err: err, state: tc.ConnectionState()}
	}()
	return ln.Addr().String(), ch
}

// dial connects to addr with cfg and reads what the server sends until it
// closes the connection.
func dial(addr string, cfg *tls.Config) (string, tls.ConnectionState, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", tls.ConnectionState{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	data, err := io.ReadAll(conn)
	return string(data), conn.ConnectionState(), err
}

func TestMutualTLS(t *testing.T) {
	c := newCluster(t)

	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			addr, result := serveOnce(t, c.gotham.Server())
			_, port, _ := net.SplitHostPort(addr)
			got, state, err := dial(net.JoinHostPort(host, port), c.metropolis.Client(""))
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			if got != "hello" {
				t.Errorf("client read %q, want hello", got)
			}
			if state.Version != tls.VersionTLS13 {
				t.Errorf("version = %x, want TLS 1.3", state.Version)
			}
			if cn := state.PeerCertificates[0].Subject.CommonName; cn != "gotham" {
				t.Errorf("client saw server %q, want gotham", cn)
			}
			r := <-result
			if r.err != nil {
				t.Fatalf("server: %v", r.err)
			}
			if len(r.state.VerifiedChains) == 0 {
				t.Fatal("server did not verify the client certificate")
			}
			if cn := r.state.PeerCertificates[0].Subject.CommonName; cn != "metropolis" {
				t.Errorf("server saw client %q, want metropolis", cn)
			}
		})
	}
}

// refused checks that a connection from a client with cfg is refused by
// the server: the server's handshake fails and the client reads nothing.
func refused(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	addr, result := serveOnce(t, server)
	got, _, clientErr := dial(addr, client)
	r := <-result
	if r.err == nil {
		t.Error("server accepted the connection")
	}
	if clientErr == nil || got != "" {
		t.Errorf("client read %q, err %v; want nothing and an error", got, clientErr)
	}
	return r.err, clientErr
}

func TestServerRefusesCertificateOfAnotherCA(t *testing.T) {
	c := newCluster(t)
	other := mustLoad(t, files(generate(t, t.TempDir(), devcerts.Options{}, "metropolis"), 0))

	// The client trusts the cluster's CA, so it would talk to gotham, but
	// presents a certificate of another CA, whatever the server asks for.
	cfg := c.metropolis.Client("")
	cert := other.Client("").Certificates[0]
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }

	serverErr, _ := refused(t, c.gotham.Server(), cfg)
	var unknown x509.UnknownAuthorityError
	if !errors.As(serverErr, &unknown) {
		t.Errorf("server error = %v, want x509.UnknownAuthorityError", serverErr)
	}
}

func TestServerRefusesClientWithoutCertificate(t *testing.T) {
	c := newCluster(t)
	cfg := c.metropolis.Client("")
	cfg.Certificates = nil
	refused(t, c.gotham.Server(), cfg)
}

func TestServerRefusesTLS12(t *testing.T) {
	c := newCluster(t)
	cfg := c.metropolis.Client("")
	cfg.MinVersion = tls.VersionTLS12
	cfg.MaxVersion = tls.VersionTLS12
	refused(t, c.gotham.Server(), cfg)
}

func TestClientRefusesTLS12(t *testing.T) {
	c := newCluster(t)
	server := c.gotham.Server()
	server.MinVersion = tls.VersionTLS12
	server.MaxVersion = tls.VersionTLS12
	addr, result := serveOnce(t, server)
	if _, _, err := dial(addr, c.metropolis.Client("")); err == nil {
		t.Error("client accepted TLS 1.2")
	}
	<-result
}

func TestClientRefusesServerOfAnotherCA(t *testing.T) {
	c := newCluster(t)
	other := mustLoad(t, files(generate(t, t.TempDir(), devcerts.Options{}, "gotham"), 0))
	server := other.Server()
	server.ClientCAs = c.gotham.CAPool() // the impostor would accept the client
	addr, result := serveOnce(t, server)
	_, _, err := dial(addr, c.metropolis.Client(""))
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("client error = %v, want x509.UnknownAuthorityError", err)
	}
	<-result
}

func TestClientChecksServerName(t *testing.T) {
	c := newCluster(t)

	// gotham's certificate does not name metropolis.
	addr, result := serveOnce(t, c.gotham.Server())
	_, _, err := dial(addr, c.metropolis.Client("metropolis"))
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Errorf("client error = %v, want x509.HostnameError", err)
	}
	<-result

	addr, result = serveOnce(t, c.gotham.Server())
	if _, _, err := dial(addr, c.metropolis.Client("gotham")); err != nil {
		t.Errorf("dialling gotham by name: %v", err)
	}
	<-result

	// tls.Client does not know the address, so Client("") must not
	// handshake without a name rather than skip the check.
	addr, result = serveOnce(t, c.gotham.Server())
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	err = tls.Client(conn, c.metropolis.Client("")).Handshake()
	conn.Close()
	if err == nil {
		t.Error("tls.Client handshook with Client(\"\") and no server name")
	}
	<-result
}

func TestConfigsAreFresh(t *testing.T) {
	c := newCluster(t)
	c.gotham.Server().MinVersion = tls.VersionTLS10
	c.gotham.Client("").MinVersion = tls.VersionTLS10
	if c.gotham.Server().MinVersion != tls.VersionTLS13 || c.gotham.Client("").MinVersion != tls.VersionTLS13 {
		t.Error("changing a returned Config changed the next one")
	}
	s := c.gotham.Server()
	if s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil || len(s.Certificates) != 1 {
		t.Errorf("Server(): ClientAuth %v, ClientCAs %p, %d certificates; want RequireAndVerifyClientCert, the CA, 1",
			s.ClientAuth, s.ClientCAs, len(s.Certificates))
	}
	if cl := c.gotham.Client("gotham.example"); cl.ServerName != "gotham.example" || cl.RootCAs == nil || cl.InsecureSkipVerify {
		t.Errorf("Client(gotham.example): ServerName %q, RootCAs %p, InsecureSkipVerify %v", cl.ServerName, cl.RootCAs, cl.InsecureSkipVerify)
	}
}

func TestGRPC(t *testing.T) {
	c := newCluster(t)
	peers := make(chan string, 10)
	srv := grpc.NewServer(
		grpc.Creds(c.gotham.ServerCredentials()),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			p, _ := peer.FromContext(ctx)
			info, _ := p.AuthInfo.(credentials.TLSInfo)
			if len(info.State.VerifiedChains) > 0 {
				peers <- info.State.VerifiedChains[0][0].Subject.CommonName
			} else {
				peers <- ""
			}
			return h(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	check := func(opts ...grpc.DialOption) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := grpc.DialContext(ctx, ln.Addr().String(), opts...)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}

	if err := check(grpc.WithTransportCredentials(c.metropolis.ClientCredentials())); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if p := <-peers; p != "metropolis" {
		t.Errorf("server saw peer %q, want metropolis", p)
	}

	// The authority, here not the address dialled, is what the server's
	// certificate must name.
	if err := check(grpc.WithTransportCredentials(c.metropolis.ClientCredentials()), grpc.WithAuthority("metropolis")); err == nil {
		t.Error("Check succeeded although gotham's certificate does not name metropolis")
	}

	cfg := c.metropolis.Client("")
	cfg.Certificates = nil
	if err := check(grpc.WithTransportCredentials(credentials.NewTLS(cfg))); err == nil {
		t.Error("Check succeeded without a client certificate")
	}
	if len(peers) != 0 {
		t.Errorf("refused clients reached the server: %q", <-peers)
	}
}

func TestRegisterFlags(t *testing.T) {
	var f Files
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	f.RegisterFlags(fs)
	if f.Enabled() {
		t.Error("Enabled with no flags set")
	}
	if err := fs.Parse([]string{"-tls-ca", "ca.pem", "-tls-cert", "gotham.pem", "-tls-key", "gotham-key.pem"}); err != nil {
		t.Fatal(err)
	}
	if want := (Files{CA: "ca.pem", Cert: "gotham.pem", Key: "gotham-key.pem"}); f != want {
		t.Errorf("Files = %+v, want %+v", f, want)
	}
	if !f.Enabled() || !(Files{Key: "k"}).Enabled() {
		t.Error("Enabled false with files set")
	}
	for _, name := range []string{"tls-ca", "tls-cert", "tls-key"} {
		if fl := fs.Lookup(name); fl == nil || fl.Usage == "" {
			t.Errorf("flag -%s missing or undocumented", name)
		}
	}
}
