package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	cfg := Config{Name: "gotham", Port: 8101, HealthPort: 6331, Peers: []string{"127.0.0.1:6330"}}
	got := cfg.withDefaults()
	if got.Host != DefaultHost || got.Cookie != DefaultCookie || got.ClusterName != DefaultClusterName {
		t.Fatalf("defaults not applied: %v", got)
	}
	if got.LibraryLogLevel.Level() != slog.LevelWarn {
		t.Fatalf("library level = %v, want WARN", got.LibraryLogLevel)
	}
	if want := []string{"127.0.0.1:6330", "127.0.0.1:6331"}; fmt.Sprint(got.Peers) != fmt.Sprint(want) {
		t.Fatalf("peers = %v, want own health address added: %v", got.Peers, want)
	}
	if len(cfg.Peers) != 1 {
		t.Fatalf("withDefaults modified the caller's Peers slice")
	}
	if err := got.validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}

	bad := []Config{
		{Port: 1, HealthPort: 2},
		{Name: "x", Port: 0, HealthPort: 2},
		{Name: "x", Port: 1, HealthPort: 70000},
		{Name: "x", Port: 5, HealthPort: 5},
		{Name: "x", Port: 1, HealthPort: 2, Peers: []string{"nohostport"}},
		{Name: "x", Port: 1, HealthPort: 2, Host: "not an ip"},
		{Name: "x", Port: 1, HealthPort: 2, Host: "0.0.0.0"},
		{Name: "x", Port: 1, HealthPort: 2, Provider: "consul"},
		{Name: "x", Port: 1, Provider: ProviderEtcd},
		{Name: "x", Port: 1, Provider: ProviderEtcd, Etcd: []string{"a, b"}},
		{Name: "x", Port: 1, HealthPort: 2, Advertise: "nohostport"},
		{Name: "x", Port: 1, HealthPort: 2, Host: "0.0.0.0", Advertise: "0.0.0.0:1"},
		{Name: "x", Port: 1, HealthPort: 2, ServerTLS: &tls.Config{}},
		{Name: "x", Port: 1, HealthPort: 2, Host: "0.0.0.0", Advertise: "10.0.0.7:8100"},
	}
	for i, c := range bad {
		if err := c.withDefaults().validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("case %d: err = %v, want ErrInvalidConfig", i, err)
		}
	}
}

func TestConfigEtcdAndAdvertise(t *testing.T) {
	good := []Config{
		// etcd needs no health port nor peers.
		{Name: "x", Port: 1, Provider: ProviderEtcd, Etcd: []string{"https://10.0.0.5:2379"}},
		// bound to every interface, reached at the advertised address.
		{Name: "x", Port: 1, Provider: ProviderEtcd, Etcd: []string{"https://10.0.0.5:2379"}, Host: "0.0.0.0", Advertise: "10.0.0.7:8100"},
		{Name: "x", Port: 1, HealthPort: 2, ServerTLS: &tls.Config{}, ClientTLS: &tls.Config{}},
	}
	for i, c := range good {
		if err := c.withDefaults().validate(); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestConfigNeverPrintsCookie(t *testing.T) {
	cfg := DefaultConfig("gotham")
	cfg.Cookie = "top-secret-value"
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("cfg", "config", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg), sb.String()} {
		if strings.Contains(s, "top-secret-value") {
			t.Fatalf("cookie leaked: %s", s)
		}
	}
}

func TestEffectiveClusterName(t *testing.T) {
	a := effectiveClusterName("superhero", "cookie-a")
	b := effectiveClusterName("superhero", "cookie-b")
	if a == b {
		t.Fatalf("different cookies produced the same cluster name %q", a)
	}
	if a != effectiveClusterName("superhero", "cookie-a") {
		t.Fatal("cluster name is not deterministic")
	}
	if !strings.HasPrefix(a, "superhero-") || strings.Contains(a, "cookie") {
		t.Fatalf("unexpected cluster name %q", a)
	}
}
