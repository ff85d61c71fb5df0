package layout

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/superhero-cluster/superhero/internal/node"
	"github.com/superhero-cluster/superhero/internal/tlsconf"
)

// Member holds the flags every node takes about where it listens and how
// it finds the others. The defaults are the loopback slot layout with the
// automanaged provider, so a node started without flags joins the other
// nodes on this host; -provider etcd with -host, -port and the TLS flags
// runs the same binaries across hosts.
type Member struct {
	// Layout places the nodes on one host (-host, -remote-base,
	// -health-base, -slots).
	Layout Layout
	// Port is the remote port; 0 takes the slot layout's.
	Port int
	// Advertise is the host:port peers dial when it differs from
	// Host:Port.
	Advertise string
	// Provider is node.ProviderAutomanaged (default) or node.ProviderEtcd.
	Provider string
	// Etcd is the comma-separated list of etcd endpoints.
	Etcd string
	// JoinTimeout bounds joining through etcd; 0 takes
	// node.DefaultJoinTimeout.
	JoinTimeout time.Duration
	// TLS names the CA, certificate and key of mutual TLS between nodes
	// and to etcd (-tls-ca, -tls-cert, -tls-key).
	TLS tlsconf.Files
	// Insecure lets a node listen on a non-loopback address without TLS.
	Insecure bool
	// Cookie is the cluster secret (-cookie, else $SUPERHERO_COOKIE).
	Cookie string
}

// DefaultMember returns the flags' defaults.
func DefaultMember() Member {
	return Member{Layout: Default(), Provider: node.ProviderAutomanaged}
}

// Register adds the member flags to fs.
func (m *Member) Register(fs *flag.FlagSet) {
	m.Layout.RegisterFlags(fs)
	fs.IntVar(&m.Port, "port", m.Port, "remote (gRPC) port; 0 takes the slot layout's")
	fs.StringVar(&m.Advertise, "advertise", m.Advertise, "host:port peers dial when it differs from -host and -port (a node bound to 0.0.0.0, or behind NAT)")
	fs.StringVar(&m.Provider, "provider", m.Provider, "how members find each other: automanaged (health ports of the slot layout on -host) or etcd (-etcd)")
	fs.StringVar(&m.Etcd, "etcd", m.Etcd, "comma-separated etcd endpoints for -provider etcd, e.g. https://10.0.0.5:2379")
	fs.DurationVar(&m.JoinTimeout, "join-timeout", node.DefaultJoinTimeout, "how long a node waits for etcd to let it join before giving up")
	m.TLS.RegisterFlags(fs)
	fs.BoolVar(&m.Insecure, "insecure", m.Insecure, "allow a non-loopback address without TLS (traffic and membership in plain text)")
	fs.StringVar(&m.Cookie, "cookie", m.Cookie, "cluster secret (default $"+CookieEnv+", else the original's)")
}

// ErrInsecure means a node would listen beyond loopback without TLS.
var ErrInsecure = errors.New("refusing to run beyond loopback without TLS")

// Config returns the node configuration of the named node in slot (the
// slot gives the ports unless -port is set).
func (m Member) Config(name string, slot int) (node.Config, error) {
	cfg := node.DefaultConfig(name)
	cfg.Host = m.Layout.Host
	cfg.Port = m.Layout.RemotePort(slot)
	if m.Port != 0 {
		cfg.Port = m.Port
	}
	cfg.HealthPort = m.Layout.HealthPort(slot)
	cfg.Peers = m.Layout.Peers()
	cfg.Advertise = m.Advertise
	cfg.Provider = m.Provider
	cfg.JoinTimeout = m.JoinTimeout
	for _, e := range strings.Split(m.Etcd, ",") {
		if e = strings.TrimSpace(e); e != "" {
			cfg.Etcd = append(cfg.Etcd, e)
		}
	}
	if m.Provider == node.ProviderEtcd && len(cfg.Etcd) == 0 {
		return cfg, errors.New("-provider etcd needs -etcd URL[,URL...]")
	}
	cfg.Cookie = Cookie(m.Cookie)
	if m.TLS.Enabled() {
		b, err := m.TLS.Load()
		if err != nil {
			return cfg, err
		}
		cfg.ServerTLS, cfg.ClientTLS = b.Server(), b.Client("")
		return cfg, nil
	}
	if !m.Insecure {
		if where := m.beyondLoopback(cfg); where != "" {
			return cfg, fmt.Errorf("%w: %s is not a loopback address; give -tls-ca, -tls-cert and -tls-key, or -insecure", ErrInsecure, where)
		}
	}
	return cfg, nil
}

// beyondLoopback names the first address of cfg that is not on loopback,
// or returns "".
func (m Member) beyondLoopback(cfg node.Config) string {
	addrs := []string{net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))}
	if cfg.Advertise != "" {
		addrs = append(addrs, cfg.Advertise)
	}
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return a
		}
		if !isLoopback(host) {
			return a
		}
	}
	return ""
}

// isLoopback reports whether host is a loopback IP or "localhost".
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
