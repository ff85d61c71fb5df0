package membership

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
)

// Defaults of Config.
const (
	// DefaultHealthHost is the interface the health endpoint binds and
	// advertises.
	DefaultHealthHost = "127.0.0.1"
	// DefaultRefreshInterval is the poll period of the peers.
	DefaultRefreshInterval = time.Second
	// DefaultPollTimeout bounds one challenge (connect, request, answer).
	DefaultPollTimeout = 2 * time.Second
	// DefaultRejectLogWindow: a peer address whose answers are refused is
	// logged at most once per window.
	DefaultRejectLogWindow = 30 * time.Second
	// minKeyBytes is the shortest key New accepts.
	minKeyBytes = 16
)

// Config configures a Provider. Zero-valued optional fields get the
// documented default in New.
type Config struct {
	// HealthHost is the interface the health endpoint binds, and the host
	// it names in its answers: peers must poll it under exactly this host.
	// It must be a concrete address (not 0.0.0.0). Default
	// DefaultHealthHost ("127.0.0.1").
	HealthHost string

	// HealthPort is the port of the health endpoint; 0 picks a free one
	// (see HealthAddress). Default 0.
	HealthPort int

	// Peers are the health addresses ("host:port") polled every
	// RefreshInterval. This member's own health address may be among them;
	// it is not polled (a member always counts itself). Default none.
	Peers []string

	// RefreshInterval is the poll period; it bounds how fast a member
	// joining or leaving is noticed. Default DefaultRefreshInterval (1 s).
	RefreshInterval time.Duration

	// PollTimeout bounds one challenge to one peer. Default
	// DefaultPollTimeout (2 s).
	PollTimeout time.Duration

	// Key is the membership key, DeriveKey(cookie); at least 16 bytes.
	// Required. It is never logged or sent.
	Key []byte

	// ClusterName is the base cluster name answers must carry. Default:
	// the name the cluster was configured with.
	ClusterName string

	// Logger receives the provider's lines (admissions, departures,
	// refused answers). Default slog.Default().
	Logger *slog.Logger

	// RejectLogWindow: refused answers from one address are logged at most
	// once per window, with the count of those left out. Default
	// DefaultRejectLogWindow (30 s).
	RejectLogWindow time.Duration
}

// Provider is a cluster.ClusterProvider whose members prove the cluster
// cookie. Every member serves a challenge endpoint (see NewHandler) and
// polls its peers' endpoints with a fresh nonce; a peer becomes a member of
// the topology only while its answer verifies (MAC under the key derived
// from the cookie, this cluster's name, the polled address). Create it with
// New; it can be started once.
type Provider struct {
	cfg     Config
	log     *slog.Logger
	client  *http.Client
	rejects *rejectLog

	mu       sync.Mutex
	started  bool
	stopped  bool
	cancel   context.CancelFunc
	server   *http.Server
	listener net.Listener
	wg       sync.WaitGroup

	// Set at start, read-only afterwards.
	cluster    string
	self       *Member // nil for a client
	healthAddr string
	publish    func(cluster.Members)

	// Owned by the poll loop.
	admitted map[string]Member // member id -> member
}

var _ cluster.ClusterProvider = (*Provider)(nil)

// New returns a Provider for cfg, with defaults applied.
func New(cfg Config) (*Provider, error) {
	if cfg.HealthHost == "" {
		cfg.HealthHost = DefaultHealthHost
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = DefaultPollTimeout
	}
	if cfg.RejectLogWindow <= 0 {
		cfg.RejectLogWindow = DefaultRejectLogWindow
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Peers = slices.Clone(cfg.Peers)
	cfg.Key = slices.Clone(cfg.Key)

	if len(cfg.Key) < minKeyBytes {
		return nil, fmt.Errorf("membership: key of %d bytes, want at least %d (use DeriveKey)", len(cfg.Key), minKeyBytes)
	}
	if ip, err := netip.ParseAddr(cfg.HealthHost); (err != nil && cfg.HealthHost != "localhost") || (err == nil && ip.IsUnspecified()) {
		return nil, fmt.Errorf("membership: health host %q must be a concrete address (it is advertised)", cfg.HealthHost)
	}
	if cfg.HealthPort < 0 || cfg.HealthPort > 65535 {
		return nil, fmt.Errorf("membership: health port %d out of range 0-65535", cfg.HealthPort)
	}
	for _, p := range cfg.Peers {
		host, port, err := net.SplitHostPort(p)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("membership: peer %q is not host:port", p)
		}
	}

	transport := &http.Transport{
		Proxy:                  nil, // peers are dialled directly, never through a proxy
		DialContext:            (&net.Dialer{Timeout: cfg.PollTimeout}).DialContext,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        30 * time.Second,
		ResponseHeaderTimeout:  cfg.PollTimeout,
		MaxResponseHeaderBytes: 8 << 10,
	}
	return &Provider{
		cfg:      cfg,
		log:      cfg.Logger,
		client:   &http.Client{Transport: transport, CheckRedirect: noRedirects},
		rejects:  newRejectLog(cfg.RejectLogWindow),
		admitted: make(map[string]Member),
	}, nil
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// StartMember serves the health endpoint with this member's description
// and starts polling the peers. It returns an error when the health port
// cannot be bound (the library turns it into a panic of StartMember).
func (p *Provider) StartMember(c *cluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("membership: remoting address: %w", err)
	}
	kinds := c.GetClusterKinds()
	slices.Sort(kinds)
	self := Member{ID: c.ActorSystem.ID, Host: host, Port: port, Kinds: kinds, Cluster: p.clusterName(c)}
	return p.start(&self, c.MemberList.UpdateClusterTopology)
}

// StartClient polls the peers without serving a health endpoint: the
// client sees the members but is not one.
func (p *Provider) StartClient(c *cluster.Cluster) error {
	p.cfg.ClusterName = p.clusterName(c)
	return p.start(nil, c.MemberList.UpdateClusterTopology)
}

func (p *Provider) clusterName(c *cluster.Cluster) string {
	if p.cfg.ClusterName != "" {
		return p.cfg.ClusterName
	}
	return c.Config.Name
}

// start is StartMember/StartClient without the library: self (nil for a
// client, its health host and port filled in here) and where topologies go.
func (p *Provider) start(self *Member, publish func(cluster.Members)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.stopped {
		return errors.New("membership: provider already started or shut down")
	}
	name := p.cfg.ClusterName
	if self != nil {
		name = self.Cluster
	}
	if name == "" {
		return errors.New("membership: no cluster name")
	}
	p.cluster, p.publish = name, publish

	if self != nil {
		l, err := net.Listen("tcp", net.JoinHostPort(p.cfg.HealthHost, strconv.Itoa(p.cfg.HealthPort)))
		if err != nil {
			return fmt.Errorf("membership: health endpoint: %w", err)
		}
		self.HealthHost = p.cfg.HealthHost
		self.HealthPort = l.Addr().(*net.TCPAddr).Port
		p.self, p.listener = self, l
		p.healthAddr = self.HealthAddress()
		p.server = &http.Server{
			Handler:           NewHandler(p.cfg.Key, *self),
			ReadHeaderTimeout: 2 * time.Second,
			ReadTimeout:       5 * time.Second,
			WriteTimeout:      5 * time.Second,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    8 << 10,
			ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := p.server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("health endpoint stopped", slog.String("health", p.healthAddr), slog.Any("error", err))
			}
		}()
	}

	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.started = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.run(ctx)
	}()
	p.log.Info("membership started", slog.String("health", p.healthAddr),
		slog.Int("peers", len(p.cfg.Peers)), slog.Duration("refresh", p.cfg.RefreshInterval))
	return nil
}

// Shutdown stops polling and closes the health endpoint, so peers see this
// member leave at their next poll. It waits for the provider's goroutines
// and is idempotent; graceful makes no difference.
func (p *Provider) Shutdown(graceful bool) error {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	cancel, server := p.cancel, p.server
	p.mu.Unlock()

	var err error
	if cancel != nil {
		cancel()
	}
	if server != nil {
		err = server.Close()
	}
	p.wg.Wait()
	p.client.CloseIdleConnections()
	return err
}

// clusterNameNow is the cluster name answers must carry: the configured
// one, or the library's once started.
func (p *Provider) clusterNameNow() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cluster != "" {
		return p.cluster
	}
	return p.cfg.ClusterName
}

// HealthAddress returns the address the health endpoint listens on
// ("host:port"), or "" before StartMember.
func (p *Provider) HealthAddress() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.healthAddr
}

// run polls the peers every RefreshInterval until ctx is done, and
// publishes every round's verified members (and this member) as the
// topology.
func (p *Provider) run(ctx context.Context) {
	t := time.NewTicker(p.cfg.RefreshInterval)
	defer t.Stop()
	for {
		members := p.round(ctx)
		if ctx.Err() != nil {
			return
		}
		p.publish(members)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round challenges every peer at once and returns the members that proved
// the cookie, this member first.
func (p *Provider) round(ctx context.Context) cluster.Members {
	type result struct {
		m   Member
		err error
	}
	results := make([]result, len(p.cfg.Peers))
	var wg sync.WaitGroup
	for i, addr := range p.cfg.Peers {
		if p.self != nil && sameAddress(addr, p.healthAddr) {
			results[i].err = errSelf
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := p.Probe(ctx, addr)
			results[i] = result{m, err}
		}()
	}
	wg.Wait()

	var members cluster.Members
	seen := make(map[string]bool)
	failed := make(map[string]error)
	if p.self != nil {
		members = append(members, toClusterMember(*p.self))
		seen[p.self.ID] = true
	}
	for i, r := range results {
		addr := p.cfg.Peers[i]
		switch {
		case errors.Is(r.err, errSelf):
			continue
		case r.err != nil:
			failed[addr] = r.err
			p.noteFailure(ctx, addr, r.err)
			continue
		case seen[r.m.ID]:
			continue // this member under another peer address, or a duplicate
		}
		seen[r.m.ID] = true
		members = append(members, toClusterMember(r.m))
		if _, ok := p.admitted[r.m.ID]; !ok {
			p.log.Info("member admitted", slog.String("health", addr), slog.String("member_id", r.m.ID),
				slog.String("address", r.m.Address()), slog.Any("kinds", r.m.Kinds))
		}
		p.admitted[r.m.ID] = r.m
		p.rejects.clear(addr)
	}
	for id, m := range p.admitted {
		if !seen[id] {
			delete(p.admitted, id)
			if ctx.Err() == nil {
				attrs := []any{slog.String("health", m.HealthAddress()), slog.String("member_id", id)}
				for addr, err := range failed {
					if sameAddress(addr, m.HealthAddress()) {
						attrs = append(attrs, slog.String("reason", err.Error()))
					}
				}
				p.log.Info("member gone", attrs...)
			}
		}
	}
	return members
}

var errSelf = errors.New("own health address")

// errUnreachable marks a peer that could not be asked (nothing listening,
// timeout): normal for a free slot, so only logged at debug level.
var errUnreachable = errors.New("unreachable")

func (p *Provider) noteFailure(ctx context.Context, addr string, err error) {
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, errUnreachable) {
		p.log.Debug("peer unreachable", slog.String("health", addr), slog.Any("error", err))
		return
	}
	if suppressed, ok := p.rejects.allow(addr, time.Now()); ok {
		attrs := []any{slog.String("health", addr), slog.String("reason", err.Error())}
		if suppressed > 0 {
			attrs = append(attrs, slog.Int("suppressed", suppressed))
		}
		p.log.Warn("refused health answer", attrs...)
	}
}

// Probe challenges the health endpoint at addr once and returns the member
// it describes if the answer proves the cookie, names this cluster and
// names addr as its health address. Errors wrap ErrMalformed, ErrTooLarge,
// ErrStale, ErrBadMAC, ErrOtherCluster, ErrWrongAddress or ErrStatus for a
// refused answer; anything else means the peer could not be asked.
func (p *Provider) Probe(ctx context.Context, addr string) (Member, error) {
	nonce, err := newNonce()
	if err != nil {
		return Member{}, fmt.Errorf("nonce: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PollTimeout)
	defer cancel()
	u := url.URL{Scheme: "http", Host: addr, Path: HealthPath, RawQuery: "nonce=" + nonce}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Member{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL and its nonce
		}
		return Member{}, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Member{}, fmt.Errorf("%w %d", ErrStatus, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return Member{}, fmt.Errorf("%w: reading answer: %w", errUnreachable, err)
	}
	return verifyAnswer(p.cfg.Key, p.clusterNameNow(), nonce, addr, body)
}

func toClusterMember(m Member) *cluster.Member {
	return &cluster.Member{Id: m.ID, Host: m.Host, Port: int32(m.Port), Kinds: slices.Clone(m.Kinds)}
}

// rejectLog rate-limits rejection lines per address.
type rejectLog struct {
	window time.Duration
	mu     sync.Mutex
	last   map[string]*rejectEntry
}

type rejectEntry struct {
	at         time.Time
	suppressed int
}

func newRejectLog(window time.Duration) *rejectLog {
	return &rejectLog{window: window, last: make(map[string]*rejectEntry)}
}

// allow reports whether a rejection from addr may be logged now, and how
// many were left out since the last one logged.
func (r *rejectLog) allow(addr string, now time.Time) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.last[addr]
	if e == nil {
		r.last[addr] = &rejectEntry{at: now}
		return 0, true
	}
	if now.Sub(e.at) < r.window {
		e.suppressed++
		return 0, false
	}
	n := e.suppressed
	e.at, e.suppressed = now, 0
	return n, true
}

// clear forgets addr once it answers correctly, so a later refusal is
// logged at once.
func (r *rejectLog) clear(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, addr)
}
