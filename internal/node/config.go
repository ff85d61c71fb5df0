package node

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
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
)

// Config describes one cluster member. Build it with DefaultConfig and set
// at least Port, HealthPort and Peers. Zero-valued optional fields get the
// documented default at Start.
type Config struct {
	// Name is the logical member name ("gotham", "dispatch", ...). Required.
	// Every log line of the node carries node=<Name>.
	Name string

	// Host is the interface remoting binds and the address advertised to
	// peers, so it must be a concrete IP (not 0.0.0.0). Default DefaultHost
	// ("127.0.0.1").
	Host string

	// Port is the remoting (gRPC) port, 1-65535. Required; it must be free,
	// Start checks it before starting anything.
	Port int

	// HealthPort is the membership health port, 1-65535, different from
	// Port. Required. The node answers membership challenges (GET
	// /_health?nonce=...) on Host:HealthPort, not on other interfaces;
	// Start checks that it is free and that the node itself answers on it
	// after start.
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
	}
}

// LogValue implements slog.LogValuer so a Config can be logged without
// leaking the cookie.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", c.Name),
		slog.String("host", c.Host),
		slog.Int("port", c.Port),
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
	c.Peers = slices.Clone(c.Peers)
	if c.HealthPort > 0 {
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
	case c.HealthPort < 1 || c.HealthPort > 65535:
		return fmt.Errorf("%w: HealthPort %d out of range 1-65535", ErrInvalidConfig, c.HealthPort)
	case c.Port == c.HealthPort:
		return fmt.Errorf("%w: Port and HealthPort are both %d", ErrInvalidConfig, c.Port)
	}
	if ip := net.ParseIP(c.Host); (ip == nil && c.Host != "localhost") || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("%w: Host %q must be a concrete IP address (it is advertised to peers)", ErrInvalidConfig, c.Host)
	}
	for _, p := range c.Peers {
		host, port, err := net.SplitHostPort(p)
		if err != nil || host == "" {
			return fmt.Errorf("%w: peer %q is not host:port", ErrInvalidConfig, p)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%w: peer %q has an invalid port", ErrInvalidConfig, p)
		}
	}
	return nil
}
