package node

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults used by DefaultConfig and by Start for zero-valued fields.
const (
	// DefaultCookie is the shared secret used when Config.Cookie is empty.
	// Override it in any deployment that is reachable by untrusted users.
	DefaultCookie = "secret_superhero_cookie"
	// DefaultClusterName is the base cluster name.
	DefaultClusterName = "superhero"
	// DefaultHost is the interface remoting binds and advertises.
	DefaultHost = "127.0.0.1"
	// DefaultRefreshInterval is the membership peer poll period.
	DefaultRefreshInterval = time.Second
	// DefaultRequestTimeout is the caller-side deadline used when a request
	// is made with timeout <= 0.
	DefaultRequestTimeout = 3 * time.Second
	// DefaultStopTimeout bounds Node.Stop.
	DefaultStopTimeout = 15 * time.Second
	// DefaultLogRepeatWindow is the de-duplication window for repeated
	// library warnings and errors.
	DefaultLogRepeatWindow = 30 * time.Second
	// DefaultConnectAttempts is how often the library dials a peer before
	// dead-lettering the messages queued for it.
	DefaultConnectAttempts = 3
	// DefaultAuthMaxSkew is the accepted age/clock skew of a handshake token.
	DefaultAuthMaxSkew = time.Minute
	// DefaultEtcdPrefix is the etcd key prefix members register under.
	DefaultEtcdPrefix = "/superhero"
	// DefaultMemberCheckInterval is how often a member asks the others
	// whether they have dropped it.
	DefaultMemberCheckInterval = time.Second
	// DefaultJoinTimeout bounds joining through a discovery service.
	DefaultJoinTimeout = 10 * time.Second
)

// Membership providers (Config.Provider).
const (
	// ProviderAutomanaged finds members by polling the fixed list of health
	// addresses in Config.Peers, like the library's automanaged provider,
	// but with this package's cookie-checked challenge (package
	// internal/membership). It needs no other service, so it is the
	// default on one host.
	ProviderAutomanaged = "automanaged"
	// ProviderEtcd registers the member in etcd (Config.Etcd) under a lease
	// and watches the other members there: any node on any host.
	ProviderEtcd = "etcd"
)

// Config describes one cluster member. Build it with DefaultConfig and set
// at least Port, HealthPort and Peers. Zero-valued optional fields get the
// documented default at Start.
type Config struct {
	// Name is the logical member name ("gotham", "dispatch", ...). Required.
	// Every log line of the node carries node=<Name>.
	Name string

	// Host is the interface remoting (and the automanaged health server)
	// binds. It is also the address advertised to peers unless Advertise is
	// set, so without Advertise it must be a concrete IP (not 0.0.0.0).
	// Default DefaultHost ("127.0.0.1").
	Host string

	// Advertise is the "host:port" peers dial to reach this member's
	// remoting, when it differs from Host:Port (a node bound to 0.0.0.0, or
	// behind a port mapping). Empty: Host:Port.
	Advertise string

	// Provider is how members find each other: ProviderAutomanaged
	// (default) or ProviderEtcd.
	Provider string

	// Etcd lists the etcd client endpoints ("https://10.0.0.5:2379"),
	// required with ProviderEtcd. With ClientTLS set the etcd client
	// presents this node's certificate.
	Etcd []string

	// EtcdPrefix is the key prefix members register under. Default
	// DefaultEtcdPrefix.
	EtcdPrefix string

	// JoinTimeout bounds joining through etcd: an unreachable or refusing
	// etcd fails Start with ErrDiscovery after this long instead of hanging.
	// Default DefaultJoinTimeout (10 s).
	JoinTimeout time.Duration

	// MemberCheckInterval is how often this member asks every other one
	// whether it has blocked this member's id (see Node.Excluded). Default
	// DefaultMemberCheckInterval (1 s).
	MemberCheckInterval time.Duration

	// ServerTLS and ClientTLS turn on mutual TLS for remoting: the gRPC
	// server presents ServerTLS (which should require and verify client
	// certificates) and every dial presents ClientTLS (whose ServerName is
	// left empty, so the dialled host is verified). Both or neither. The
	// cookie handshake still runs inside TLS.
	ServerTLS, ClientTLS *tls.Config

	// Port is the remoting (gRPC) port, 1-65535. Required; it must be free,
	// Start checks it before starting anything.
	Port int

	// HealthPort is the membership health port, 1-65535, different from
	// Port. Required with ProviderAutomanaged, unused with ProviderEtcd.
	// The node answers membership challenges (GET /_health?nonce=...) on
	// Host:HealthPort, not on other interfaces; Start checks that it is
	// free and that the node itself answers on it after start.
	HealthPort int

	// Peers is the fixed list of health addresses ("host:port") of all
	// members of the cluster; a peer is admitted only while it proves the
	// cookie from exactly the address listed. Start adds this node's own
	// health address (Host:HealthPort) when it is missing; the node never
	// polls itself (it always counts itself). Required (may contain just
	// this node).
	Peers []string

	// ClusterName is the base cluster name; health answers carry it and
	// peers with another name are refused. The library's internal name is
	// ClusterName + "-" + a fingerprint of Cookie (see Node.ClusterName).
	// Default DefaultClusterName.
	ClusterName string

	// Cookie is the shared secret; members with different cookies cannot
	// see each other nor exchange messages. Default DefaultCookie. Never
	// logged.
	Cookie string

	// RefreshInterval is the membership poll period of the Peers list; it
	// bounds how fast a member joining or leaving is noticed. Default
	// DefaultRefreshInterval (1 s).
	RefreshInterval time.Duration

	// RequestTimeout is the caller-side deadline of Request/Send calls made
	// with timeout <= 0. Default DefaultRequestTimeout (3 s).
	RequestTimeout time.Duration

	// StopTimeout bounds Node.Stop; the library's graceful shutdown sleeps
	// about 2 s by itself. Default DefaultStopTimeout (15 s).
	StopTimeout time.Duration

	// LibraryLogLevel is the minimum level of Proto.Actor's own log lines.
	// Nil means slog.LevelWarn; use slog.LevelInfo or slog.LevelDebug when
	// troubleshooting. This node's own lines are not affected.
	LibraryLogLevel slog.Leveler

	// LogRepeatWindow: a library warning/error identical to one logged less
	// than this long ago (same message and stable attributes) is demoted to
	// Debug and counted; the next one after the window carries
	// suppressed_repeats=N. Default DefaultLogRepeatWindow (30 s).
	LogRepeatWindow time.Duration

	// ConnectAttempts is how many times the library's endpoint writer dials
	// a peer (sleeping 2 s after each failure, inside the library) before
	// giving up and dead-lettering the messages queued for that peer.
	// Default DefaultConnectAttempts (3); the library's own default is 5.
	ConnectAttempts int

	// AuthMaxSkew is how old (or how far in the future) a connection
	// handshake token may be. Default DefaultAuthMaxSkew (1 min).
	AuthMaxSkew time.Duration
}

// DefaultConfig returns a Config for the member name with every optional
// field set to its default. Port, HealthPort and Peers still have to be set.
func DefaultConfig(name string) Config {
	return Config{
		Name:            name,
		Host:            DefaultHost,
		ClusterName:     DefaultClusterName,
		Cookie:          DefaultCookie,
		RefreshInterval: DefaultRefreshInterval,
		RequestTimeout:  DefaultRequestTimeout,
		StopTimeout:     DefaultStopTimeout,
		LibraryLogLevel: slog.LevelWarn,
		LogRepeatWindow: DefaultLogRepeatWindow,
		ConnectAttempts: DefaultConnectAttempts,
		AuthMaxSkew:     DefaultAuthMaxSkew,
		Provider:        ProviderAutomanaged,
		EtcdPrefix:      DefaultEtcdPrefix,
		JoinTimeout:     DefaultJoinTimeout,

		MemberCheckInterval: DefaultMemberCheckInterval,
	}
}

// LogValue implements slog.LogValuer so a Config can be logged without
// leaking the cookie.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", c.Name),
		slog.String("host", c.Host),
		slog.Int("port", c.Port),
		slog.String("advertise", c.Advertise),
		slog.String("provider", c.Provider),
		slog.Any("etcd", c.Etcd),
		slog.Bool("tls", c.ServerTLS != nil),
		slog.Int("health_port", c.HealthPort),
		slog.Any("peers", c.Peers),
		slog.String("cluster_name", c.ClusterName),
		slog.String("cookie", "<redacted>"),
		slog.Duration("refresh_interval", c.RefreshInterval),
		slog.Duration("request_timeout", c.RequestTimeout),
	)
}

// String implements fmt.Stringer without the cookie.
func (c Config) String() string {
	return fmt.Sprintf("node.Config{Name:%q Host:%q Port:%d HealthPort:%d Peers:%v ClusterName:%q Cookie:<redacted>}",
		c.Name, c.Host, c.Port, c.HealthPort, c.Peers, c.ClusterName)
}

// GoString keeps %#v from printing the cookie.
func (c Config) GoString() string { return c.String() }

// withDefaults returns a copy with zero-valued optional fields defaulted and
// the own health address added to Peers.
func (c Config) withDefaults() Config {
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.Cookie == "" {
		c.Cookie = DefaultCookie
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.LibraryLogLevel == nil {
		c.LibraryLogLevel = slog.LevelWarn
	}
	if c.LogRepeatWindow <= 0 {
		c.LogRepeatWindow = DefaultLogRepeatWindow
	}
	if c.ConnectAttempts <= 0 {
		c.ConnectAttempts = DefaultConnectAttempts
	}
	if c.AuthMaxSkew <= 0 {
		c.AuthMaxSkew = DefaultAuthMaxSkew
	}
	if c.Provider == "" {
		c.Provider = ProviderAutomanaged
	}
	if c.EtcdPrefix == "" {
		c.EtcdPrefix = DefaultEtcdPrefix
	}
	if c.JoinTimeout <= 0 {
		c.JoinTimeout = DefaultJoinTimeout
	}
	if c.MemberCheckInterval <= 0 {
		c.MemberCheckInterval = DefaultMemberCheckInterval
	}
	c.Etcd = slices.Clone(c.Etcd)
	c.Peers = slices.Clone(c.Peers)
	if c.Provider == ProviderAutomanaged && c.HealthPort > 0 {
		self := c.healthAddress()
		if !slices.Contains(c.Peers, self) {
			c.Peers = append(c.Peers, self)
		}
	}
	return c
}

// healthAddress is the address peers use to reach this node's /_health.
func (c Config) healthAddress() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.HealthPort))
}

func (c Config) validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: Name is empty", ErrInvalidConfig)
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("%w: Port %d out of range 1-65535", ErrInvalidConfig, c.Port)
	case (c.ServerTLS == nil) != (c.ClientTLS == nil):
		return fmt.Errorf("%w: ServerTLS and ClientTLS go together", ErrInvalidConfig)
	}
	switch c.Provider {
	case ProviderAutomanaged:
		switch {
		case c.HealthPort < 1 || c.HealthPort > 65535:
			return fmt.Errorf("%w: HealthPort %d out of range 1-65535", ErrInvalidConfig, c.HealthPort)
		case c.Port == c.HealthPort:
			return fmt.Errorf("%w: Port and HealthPort are both %d", ErrInvalidConfig, c.Port)
		}
		for _, p := range c.Peers {
			if err := checkHostPort(p); err != nil {
				return fmt.Errorf("%w: peer %w", ErrInvalidConfig, err)
			}
		}
	case ProviderEtcd:
		if len(c.Etcd) == 0 {
			return fmt.Errorf("%w: the etcd provider needs at least one etcd endpoint", ErrInvalidConfig)
		}
		for _, e := range c.Etcd {
			if e == "" || strings.ContainsAny(e, " ,") {
				return fmt.Errorf("%w: etcd endpoint %q", ErrInvalidConfig, e)
			}
		}
	default:
		return fmt.Errorf("%w: provider %q: want %s or %s", ErrInvalidConfig, c.Provider, ProviderAutomanaged, ProviderEtcd)
	}
	ip := net.ParseIP(c.Host)
	if ip == nil && c.Host != "localhost" {
		return fmt.Errorf("%w: Host %q must be an IP address", ErrInvalidConfig, c.Host)
	}
	if c.Provider == ProviderAutomanaged && ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%w: Host %q: the health port answers on the node's own address, so it must be a concrete IP (use the etcd provider to bind every interface)", ErrInvalidConfig, c.Host)
	}
	if c.Advertise == "" && ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%w: Host %q binds every interface, so Advertise must say where peers reach this node", ErrInvalidConfig, c.Host)
	}
	if c.Advertise != "" {
		if err := checkHostPort(c.Advertise); err != nil {
			return fmt.Errorf("%w: Advertise %w", ErrInvalidConfig, err)
		}
		if h, _, _ := net.SplitHostPort(c.Advertise); net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified() {
			return fmt.Errorf("%w: Advertise %q is not an address peers can dial", ErrInvalidConfig, c.Advertise)
		}
	}
	return nil
}

// checkHostPort checks a "host:port" address.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has an invalid port", addr)
	}
	return nil
}
