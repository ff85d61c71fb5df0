package layout

import (
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/superhero-cluster/superhero/internal/devcerts"
	"github.com/superhero-cluster/superhero/internal/node"
)

func parseMember(t *testing.T, args ...string) Member {
	t.Helper()
	m := DefaultMember()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	m.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMemberDefaultsAreTheLoopbackSlots(t *testing.T) {
	cfg, err := parseMember(t).Config("gotham", 1)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != DefaultHost || cfg.Port != DefaultRemoteBase+1 || cfg.HealthPort != DefaultHealthBase+1 {
		t.Fatalf("host %s port %d health %d", cfg.Host, cfg.Port, cfg.HealthPort)
	}
	if cfg.Provider != node.ProviderAutomanaged || len(cfg.Peers) != DefaultSlots {
		t.Fatalf("provider %q peers %v", cfg.Provider, cfg.Peers)
	}
}

func TestMemberEtcd(t *testing.T) {
	cfg, err := parseMember(t, "-provider", "etcd", "-etcd", "https://10.0.0.5:2379, https://10.0.0.6:2379",
		"-host", "127.0.0.1", "-port", "9000").Config("gotham", 1)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 9000 || !slices.Equal(cfg.Etcd, []string{"https://10.0.0.5:2379", "https://10.0.0.6:2379"}) {
		t.Fatalf("port %d etcd %v", cfg.Port, cfg.Etcd)
	}
	if _, err := parseMember(t, "-provider", "etcd").Config("gotham", 1); err == nil || !strings.Contains(err.Error(), "-etcd") {
		t.Fatalf("etcd without endpoints: %v", err)
	}
}

func TestMemberRefusesPlaintextBeyondLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"-host", "10.1.2.3"},
		{"-host", "0.0.0.0", "-advertise", "10.1.2.3:8100"},
		{"-advertise", "example.org:8100"},
	} {
		if _, err := parseMember(t, args...).Config("gotham", 1); !errors.Is(err, ErrInsecure) {
			t.Errorf("%v: got %v, want ErrInsecure", args, err)
		}
		if _, err := parseMember(t, append(args, "-insecure")...).Config("gotham", 1); err != nil {
			t.Errorf("%v -insecure: %v", args, err)
		}
	}
}

func TestMemberTLS(t *testing.T) {
	dir := t.TempDir()
	if _, err := devcerts.Generate(dir, []devcerts.Node{{Name: "gotham", Hosts: []string{"10.1.2.3"}}}, devcerts.Options{}); err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	cfg, err := parseMember(t, "-host", "10.1.2.3",
		"-tls-ca", f("ca.pem"), "-tls-cert", f("gotham.pem"), "-tls-key", f("gotham-key.pem")).Config("gotham", 1)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerTLS == nil || cfg.ClientTLS == nil || cfg.ServerTLS.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("TLS not configured: %+v", cfg.ServerTLS)
	}
	if _, err := parseMember(t, "-tls-ca", f("ca.pem")).Config("gotham", 1); err == nil || !strings.Contains(err.Error(), "-tls-cert") {
		t.Fatalf("half the TLS flags: %v", err)
	}
}
