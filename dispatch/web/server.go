package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/brianvoe/gofakeit/v7"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

//go:embed static
var staticFiles embed.FS

// Config holds the server's settings. The zero value of a field means its
// default; see DefaultConfig.
type Config struct {
	// Addr is the TCP address Run listens on. Default "127.0.0.1:4900".
	Addr string
	// Metrics, when set, counts every request (see NewMetrics) and serves
	// GET /metrics, behind the same Host allow-list and API token as the
	// API. Default none: no /metrics, nothing counted.
	Metrics *Metrics
	// AllowedOrigins are extra origins whose pages may open the WebSocket
	// and call the mutating API, as patterns in path.Match syntax matched
	// against the Origin's host[:port], e.g. "localhost:*" or
	// "*.example.com", or against scheme://host[:port] when the pattern
	// contains "://". A page served by this server (Origin host equal to
	// the request's Host) is always allowed, and requests without an
	// Origin (curl, tests) are too. Default none.
	AllowedOrigins []string
	// BodyLimit is the largest request body and the largest WebSocket
	// command frame, in bytes. A larger body gets 413; a larger frame gets
	// an error frame (status 413) and the connection stays open, up to 16
	// times the limit, beyond which the connection is closed with status
	// 1009 (message too big). Default 64 KiB.
	BodyLimit int64
	// WriteTimeout bounds the write of one WebSocket frame. A client that
	// cannot take a frame in time is disconnected. Default 5 s.
	WriteTimeout time.Duration
	// CommandTimeout bounds every backend call made for a request or a
	// WebSocket command, and the cluster status read for a snapshot.
	// Default 1 s.
	CommandTimeout time.Duration
	// ShutdownTimeout bounds graceful shutdown in Run and Serve. Default 5 s.
	ShutdownTimeout time.Duration
	// NewName makes up a name for a hero created without one. It must be
	// safe for concurrent use. Default: fake superhero names.
	NewName func() string
	// TombstoneTTL is how long replicas keep a tombstone before collecting
	// it; the snapshot frame passes it to the page, which remembers
	// tombstones as long, so that no stale live entry can bring a dead
	// hero back. Default crdt.DefaultTombstoneTTL, the backend's default.
	TombstoneTTL time.Duration
	// AllowedHosts are extra values the Host header may name. Always
	// allowed: Addr itself (unless its host is a wildcard such as 0.0.0.0),
	// localhost, 127.0.0.1 and [::1], each with the port the server
	// listens on. An entry "name" (or "[v6 address]") allows that name on
	// the same port; "name:port" allows exactly that (a proxy's address).
	// Any other Host gets 421, which is what defeats DNS rebinding: a page
	// of another site that points its own name at this machine. Default
	// none.
	AllowedHosts []string
	// APIToken, when not empty, protects everything but /healthz, /readyz
	// and /login: the API then needs "Authorization: Bearer APIToken"
	// (else 401); the page, its assets and the WebSocket need the bearer
	// token or a session cookie, which a one-time login link sets (Serve
	// logs the link; LoginLink returns it). At least MinAPITokenLen bytes.
	// Required when Addr's host is not a loopback address. Default none.
	APIToken string
	// SessionTTL is how long a page session lasts after its login.
	// Default 24 h.
	SessionTTL time.Duration
	// ReadTimeout bounds reading one request, its headers and its body,
	// from its first byte: a client that sends part of a body and stalls
	// gets 408 and its connection is closed when it runs out (one that
	// stalls within the headers is closed without an answer). It does not
	// apply to a WebSocket once upgraded (see PingInterval). Keep it above
	// CommandTimeout. Default 10 s.
	ReadTimeout time.Duration
	// AnswerTimeout bounds an HTTP answer, from the end of its request's
	// headers to its last byte: a client that does not read its answer is
	// disconnected. It does not apply to a WebSocket once upgraded.
	// Default 30 s.
	AnswerTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and headers; the HTTP server
	// answers 431 beyond it. Default 32 KiB.
	MaxHeaderBytes int
	// MaxConns bounds the connections open at once, WebSockets included. A
	// connection beyond it is answered 503 {"error":"too many
	// connections..."} with Connection: close once its request's headers
	// arrived, and closed; it is closed without an answer when they do not
	// arrive within 1 s, or when more than 32 are being refused at that
	// moment. Default 512.
	MaxConns int
	// MaxWebSockets bounds the WebSocket connections open at once; an
	// upgrade beyond it gets 503 before upgrading. It must be less than
	// MaxConns, so that the API stays reachable. Default 128.
	MaxWebSockets int
	// LogSummaryInterval is how often Serve logs one INFO line counting
	// the requests by status class, the WebSocket commands and the
	// connections refused since the last one (nothing when there were
	// none). Single requests and commands are logged at DEBUG, and
	// refused requests at WARN at most once per kind in this interval.
	// Default 1 min.
	LogSummaryInterval time.Duration
	// PingInterval is how often a WebSocket is pinged; a client that does
	// not answer within WriteTimeout is disconnected, and its place
	// freed. Default 30 s.
	PingInterval time.Duration
	// SnapshotPartHeroes is how many heroes one snapshot_part frame of
	// the WebSocket feed carries at most: a page's snapshot comes in
	// pieces, so no single frame is large (see the package documentation).
	// Default 500.
	SnapshotPartHeroes int
	// SnapshotWriters is how many connections write snapshot_part frames
	// at once; the others wait their turn, in order (a connection whose
	// client takes a part slowly, over 50 ms, goes back in line for the
	// next). A crowd of new pages then gets its snapshots a few at a
	// time, one after the other, while events to the pages already open,
	// which never wait for a turn, and dispatch's own actors keep running
	// between them. Default 2.
	SnapshotWriters int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	faker := gofakeit.New(0)
	return Config{
		Addr:            "127.0.0.1:4900",
		BodyLimit:       64 << 10,
		WriteTimeout:    5 * time.Second,
		CommandTimeout:  time.Second,
		ShutdownTimeout: 5 * time.Second,
		NewName:         func() string { return fakeHeroName(faker) },
		TombstoneTTL:    crdt.DefaultTombstoneTTL,
		SessionTTL:      24 * time.Hour,
		ReadTimeout:     10 * time.Second,
		AnswerTimeout:   30 * time.Second,
		MaxHeaderBytes:  32 << 10,
		MaxConns:        512,
		MaxWebSockets:   128,
		PingInterval:    30 * time.Second,

		SnapshotPartHeroes: 500,
		SnapshotWriters:    2,

		LogSummaryInterval: time.Minute,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.BodyLimit <= 0 {
		c.BodyLimit = d.BodyLimit
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = d.CommandTimeout
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = d.ShutdownTimeout
	}
	if c.NewName == nil {
		c.NewName = d.NewName
	}
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = d.TombstoneTTL
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = d.SessionTTL
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = d.ReadTimeout
	}
	if c.AnswerTimeout <= 0 {
		c.AnswerTimeout = d.AnswerTimeout
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if c.MaxConns <= 0 {
		c.MaxConns = d.MaxConns
	}
	if c.MaxWebSockets <= 0 {
		c.MaxWebSockets = min(d.MaxWebSockets, c.MaxConns-1)
	}
	if c.PingInterval <= 0 {
		c.PingInterval = d.PingInterval
	}
	if c.SnapshotPartHeroes <= 0 {
		c.SnapshotPartHeroes = d.SnapshotPartHeroes
	}
	if c.SnapshotWriters <= 0 {
		c.SnapshotWriters = d.SnapshotWriters
	}
	if c.LogSummaryInterval <= 0 {
		c.LogSummaryInterval = d.LogSummaryInterval
	}
	return c
}

// Validate reports a setting that cannot work: a malformed address,
// origin pattern or allowed host, a missing API token on an address that
// is not loopback, or one too short. Zero values are fine (defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	for _, p := range c.AllowedOrigins {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("dispatch: allowed origin %q: %w", p, err)
		}
	}
	_, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("dispatch: http address %q: %w", c.Addr, err)
	}
	if _, err := allowedHosts(c.Addr, port, c.AllowedHosts); err != nil {
		return err
	}
	switch {
	case c.ReadTimeout <= c.CommandTimeout || c.AnswerTimeout <= c.CommandTimeout:
		// The HTTP server cancels a request still running when the read
		// deadline passes, and cuts its answer at the write deadline.
		return fmt.Errorf("dispatch: the read timeout (%s) and the answer timeout (%s) must exceed the command timeout (%s)", c.ReadTimeout, c.AnswerTimeout, c.CommandTimeout)
	case c.MaxWebSockets >= c.MaxConns:
		return fmt.Errorf("dispatch: at most %d WebSockets with at most %d connections would leave none for the API", c.MaxWebSockets, c.MaxConns)
	case c.APIToken == "" && !isLoopback(c.Addr):
		return fmt.Errorf("dispatch: http address %s is not a loopback address: set an API token (-api-token or SUPERHERO_API_TOKEN)", c.Addr)
	case c.APIToken != "" && len(c.APIToken) < MinAPITokenLen:
		return fmt.Errorf("dispatch: the API token is shorter than %d bytes", MinAPITokenLen)
	}
	return nil
}

// Server is the dispatch node's web layer: the JSON API, the WebSocket
// feed and the live page.
type Server struct {
	cfg     Config
	backend service.Backend
	hub     *Hub
	log     *slog.Logger
	echo    *echo.Echo
	auth    *auth // nil without an API token
	warns   warnLimiter
	stats   stats

	listener atomic.Pointer[limitListener] // set by Serve

	// port is the port listened on (Config.Addr's until Serve knows the
	// listener's); hosts the Host values allowed with it.
	port  atomic.Value // string
	hosts atomic.Pointer[hostSet]

	// ctx ends every WebSocket connection; Shutdown cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closing bool
	conns   sync.WaitGroup // WebSocket handlers
	active  atomic.Int64   // open WebSocket connections
	// partTurns holds a token per snapshot part being written (see
	// Config.SnapshotWriters).
	partTurns chan struct{}
}

// New returns a server. It fails only for an invalid Config. It logs to
// logger as given: main has already tagged it with the node's name.
func New(cfg Config, backend service.Backend, hub *Hub, logger *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if backend == nil || hub == nil {
		return nil, errors.New("dispatch: web server needs a backend and a hub")
	}
	_, port, _ := net.SplitHostPort(cfg.Addr)
	hosts, _ := allowedHosts(cfg.Addr, port, cfg.AllowedHosts)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:     cfg,
		backend: backend,
		hub:     hub,
		log:     logger,
		ctx:     ctx,
		cancel:  cancel,

		partTurns: make(chan struct{}, cfg.SnapshotWriters),
	}
	s.warns.init(cfg.LogSummaryInterval)
	s.stats.since = time.Now()
	if cfg.APIToken != "" {
		s.auth = newAuth(cfg.APIToken, cfg.SessionTTL)
	}
	s.port.Store(port)
	s.hosts.Store(&hosts)
	s.echo = s.routes()
	return s, nil
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = echo.ExtractIPDirect()
	s.cfg.Metrics.instrument(e) // first: counts every request, refused ones too (metrics.go)
	// Before routing, so that unknown routes are refused alike.
	e.Pre(s.logRequests, s.recoverPanics, s.checkHost, s.authenticate)
	e.Use(s.limitBody)

	// Every GET route answers HEAD too: the same status and headers, no
	// body.
	get := func(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
		e.Match([]string{http.MethodGet, http.MethodHead}, path, h, m...)
	}
	get("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	// /readyz says whether dispatch's view may be trusted (after a
	// restart, not until it has read a city); /healthz only that it runs.
	get("/readyz", func(c echo.Context) error {
		if !s.backend.Ready() {
			return errCatchingUp
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	})

	get("/api/superheroes", s.listHeroes)
	e.POST("/api/superheroes", s.createHero, s.checkOrigin, s.requireJSON)
	get("/api/superheroes/:id", s.getHero)
	e.DELETE("/api/superheroes/:id", s.deleteHero, s.checkOrigin, s.requireJSON)
	e.PUT("/api/superheroes/:id/location", s.assignHero, s.checkOrigin, s.requireJSON)
	e.POST("/api/bomb", s.bomb, s.checkOrigin, s.requireJSON)
	get("/api/cluster", s.cluster)
	get("/api/cities/:city/superheroes", s.cityHeroes)

	get("/ws", s.serveWS)
	get("/login", s.login)

	static := echo.MustSubFS(staticFiles, "static")
	get("/", echo.StaticFileHandler("index.html", static), s.pageHeaders)
	get("/static/*", echo.StaticDirectoryHandler(static, true), s.pageHeaders)
	return e
}

// Handler returns the HTTP handler, for tests and for callers that run
// their own http.Server. Call Shutdown to end WebSocket connections. It
// answers for the Hosts of Config.Addr's port (Serve takes the listener's
// port instead); the limits on connections, read times and headers and
// the log summary are Serve's, not the handler's.
func (s *Server) Handler() http.Handler { return s.echo }

// Run listens on Config.Addr and serves until ctx ends, then shuts down
// gracefully within Config.ShutdownTimeout.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("dispatch: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then stops accepting, closes every
// WebSocket (status 1001) and waits for requests in flight, all within
// Config.ShutdownTimeout. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.listeningOn(ln.Addr()); err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{
		Handler: s.echo,
		// The HTTP server clears both deadlines when a WebSocket takes
		// the connection over; WebSockets have their own write deadline
		// (WriteTimeout, per frame) and pings.
		ReadTimeout:    s.cfg.ReadTimeout,
		WriteTimeout:   s.cfg.AnswerTimeout,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: s.cfg.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	limited := newLimitListener(ln, s.cfg.MaxConns, func(remote string, answered bool) {
		s.stats.refusedConns.Add(1)
		s.warnf("conns", "connection refused: too many connections", "max", s.cfg.MaxConns, "answered", answered, "remote", remote)
	})
	s.listener.Store(limited)
	srv.RegisterOnShutdown(s.cancel)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(limited) }()
	s.log.Info("http listening", "addr", ln.Addr().String())
	if link := s.LoginLink(); link != "" {
		s.log.Info("page login link (one-time)", "url", link)
	}

	summaries := time.NewTicker(s.cfg.LogSummaryInterval)
	defer summaries.Stop()
wait:
	for {
		select {
		case err := <-errc:
			s.cancel()
			s.logSummary()
			return fmt.Errorf("dispatch: serve: %w", err)
		case <-summaries.C:
			s.logSummary()
		case <-ctx.Done():
			break wait
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := errors.Join(srv.Shutdown(sctx), s.Shutdown(sctx))
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	s.logSummary() // what the last interval saw
	s.log.Info("http stopped", "err", err)
	return err
}

// listeningOn takes the port of the listener's address for the Host
// allow-list and the login link.
func (s *Server) listeningOn(addr net.Addr) error {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return nil
	}
	port := strconv.Itoa(tcp.Port)
	hosts, err := allowedHosts(s.cfg.Addr, port, s.cfg.AllowedHosts)
	if err != nil {
		return err
	}
	if !tcp.IP.IsUnspecified() {
		if h, ok := canonicalHost(net.JoinHostPort(tcp.IP.String(), port)); ok {
			hosts[h] = true
		}
	}
	s.port.Store(port)
	s.hosts.Store(&hosts)
	return nil
}

// Shutdown closes every WebSocket connection with status 1001 (going
// away), refuses new ones, and waits for their goroutines to end or ctx to
// end. It does not close the hub, which the caller owns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dispatch: websockets still open after shutdown timeout: %w", ctx.Err())
	}
}

// track registers a WebSocket handler; it fails once shutdown started.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns.Add(1)
	return true
}

// --- middleware ---

// logRequests logs one short line per request at DEBUG (a 500, a bug, at
// ERROR) and counts it for the summary. It handles the error itself so the
// logged status is the one sent.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		req, status := c.Request(), c.Response().Status
		s.stats.request(status)
		level := slog.LevelDebug
		if status == http.StatusInternalServerError {
			level = slog.LevelError
		}
		if !s.log.Enabled(req.Context(), level) {
			return nil
		}
		attrs := []any{"method", req.Method, "path", clip(req.URL.Path), "status", status, "dur", time.Since(start).Round(time.Microsecond)}
		if err != nil && status >= 500 {
			attrs = append(attrs, "err", err)
		}
		s.log.Log(req.Context(), level, "http", attrs...)
		return nil
	}
}

// recoverPanics turns a handler panic into a 500 and logs it with the
// stack. (echo's own Recover middleware lives in a package whose
// dependencies this module does not carry.)
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("http panic", "path", c.Request().URL.Path, "panic", v, "stack", string(debug.Stack()))
				err = fmt.Errorf("dispatch: handler panic: %v", v)
			}
		}()
		return next(c)
	}
}

// limitBody rejects bodies over Config.BodyLimit: at once when the
// Content-Length says so, otherwise when reading passes the limit.
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength > s.cfg.BodyLimit {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", s.cfg.BodyLimit))
		}
		req.Body = http.MaxBytesReader(c.Response(), req.Body, s.cfg.BodyLimit)
		return next(c)
	}
}

// checkOrigin refuses state-changing API calls from pages of other
// origins, which could otherwise bomb cities with a cross-site form post.
func (s *Server) checkOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.originAllowed(c.Request()) {
			return withStatus(http.StatusForbidden, errors.New("origin not allowed"))
		}
		return next(c)
	}
}

// originAllowed reports whether r comes from no browser page, from a page
// of this server, or from an allowed origin.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range s.cfg.AllowedOrigins {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

func (s *Server) pageHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		host := c.Request().Host
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; connect-src 'self' ws://"+host+" wss://"+host+"; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		return next(c)
	}
}

// handleError writes every error as {"error": "..."} with its status.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status := statusOf(err)
	msg := errorMessage(err, status) // logRequests logs the error itself
	// For HEAD the HTTP server drops the body and keeps its headers.
	if werr := c.JSON(status, errorJSON{Error: msg}); werr != nil {
		s.log.Debug("http error response not written", "err", werr)
	}
}

// --- handlers ---

func (s *Server) listHeroes(c echo.Context) error {
	if !s.backend.Ready() {
		return errCatchingUp
	}
	heroes, err := s.backend.Heroes()
	if err != nil {
		return err
	}
	heroes = slices.Clone(heroes)
	sortHeroes(heroes)
	return c.JSON(http.StatusOK, heroesJSON{Superheroes: toHeroesJSON(heroes)})
}

func (s *Server) createHero(c echo.Context) error {
	var body struct {
		Name string `json:"name"`
	}
	if err := decodeBody(c.Request().Body, &body, true); err != nil {
		return err
	}
	h, err := s.create(c.Request().Context(), body.Name)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/superheroes/"+h.ID.String())
	return c.JSON(http.StatusCreated, toHeroJSON(h))
}

func (s *Server) getHero(c echo.Context) error {
	id, err := parseID(c.Param("id"))
	if err != nil {
		return err
	}
	h, err := s.backend.Hero(id)
	if errors.Is(err, crdt.ErrDead) {
		// The tombstone comes with the error, stamp and all, so a reader
		// can tell which write it holds (the chaos soak compares it).
		return c.JSON(http.StatusGone, goneJSON{Error: err.Error(), Superhero: toHeroJSON(h)})
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toHeroJSON(h))
}

// goneJSON is the 410 answer to a read of a dead hero: the error, as every
// error answer has it, and the tombstone.
type goneJSON struct {
	Error     string   `json:"error"`
	Superhero heroJSON `json:"superhero"`
}

func (s *Server) deleteHero(c echo.Context) error {
	id, err := parseID(c.Param("id"))
	if err != nil {
		return err
	}
	if err := s.delete(c.Request().Context(), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) assignHero(c echo.Context) error {
	id, err := parseID(c.Param("id"))
	if err != nil {
		return err
	}
	var body struct {
		Location *string `json:"location"`
	}
	if err := decodeBody(c.Request().Body, &body, false); err != nil {
		return err
	}
	if body.Location == nil {
		return badRequest(`"location" is required`)
	}
	h, err := s.assign(c.Request().Context(), id, *body.Location)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toHeroJSON(h))
}

func (s *Server) bomb(c echo.Context) error {
	var body struct {
		City string `json:"city"`
	}
	if err := decodeBody(c.Request().Body, &body, true); err != nil {
		return err
	}
	city, err := s.bombCity(c.Request().Context(), body.City)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, cityRefJSON{City: string(city)})
}

func (s *Server) cluster(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.CommandTimeout)
	defer cancel()
	return c.JSON(http.StatusOK, toClusterJSON(s.backend.Cluster(ctx)))
}

func (s *Server) cityHeroes(c echo.Context) error {
	city, err := parseCity(c.Param("city"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.CommandTimeout)
	defer cancel()
	heroes, err := s.backend.CityHeroes(ctx, city)
	if err != nil {
		return err
	}
	heroes = slices.Clone(heroes)
	sortHeroes(heroes)
	return c.JSON(http.StatusOK, heroesJSON{Superheroes: toHeroesJSON(heroes)})
}

// --- operations shared by the API and WebSocket commands ---

func (s *Server) create(ctx context.Context, name string) (crdt.Hero, error) {
	name, err := cleanName(name)
	if err != nil {
		return crdt.Hero{}, err
	}
	if name == "" {
		if name, err = cleanName(s.cfg.NewName()); err != nil || name == "" {
			return crdt.Hero{}, fmt.Errorf("dispatch: made-up name %q unusable: %w", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout)
	defer cancel()
	return s.backend.Create(ctx, name)
}

func (s *Server) delete(ctx context.Context, id uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout)
	defer cancel()
	return s.backend.Delete(ctx, id)
}

func (s *Server) assign(ctx context.Context, id uuid.UUID, location string) (crdt.Hero, error) {
	to, err := parseLocation(location)
	if err != nil {
		return crdt.Hero{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout)
	defer cancel()
	return s.backend.Assign(ctx, id, to)
}

// bombCity bombs city ("" for a random one) and tells every page.
func (s *Server) bombCity(ctx context.Context, city string) (crdt.Location, error) {
	var target crdt.Location
	if city != "" {
		var err error
		if target, err = parseCity(city); err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout)
	defer cancel()
	bombed, err := s.backend.Bomb(ctx, target)
	if err != nil {
		return "", err
	}
	s.log.Info("city bombed", "city", bombed)
	s.hub.Publish(service.FlashEvent(string(bombed) + " has been destroyed"))
	return bombed, nil
}

// readError is the answer to a request whose body could not be read.
func readError(err error) error {
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooBig):
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit))
	case errors.As(err, &netErr) && netErr.Timeout():
		return withStatus(http.StatusRequestTimeout, errors.New("the request body did not arrive in time"))
	}
	return badRequest("request body could not be read: " + err.Error())
}

// --- input parsing ---

// parseID accepts only the canonical 36-character form of a UUID.
func parseID(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.UUID{}, badRequest("superhero id is required")
	}
	if len(s) != 36 {
		return uuid.UUID{}, badRequest("invalid superhero id " + quoteInput(s))
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.UUID{}, badRequest("invalid superhero id " + quoteInput(s))
	}
	return id, nil
}

// parseLocation is crdt.ParseLocation with an error that quotes at most
// maxQuoted bytes of s.
func parseLocation(s string) (crdt.Location, error) {
	l, err := crdt.ParseLocation(s)
	if err != nil {
		return "", fmt.Errorf("%w: %s", crdt.ErrLocation, quoteInput(s))
	}
	return l, nil
}

// parseCity accepts a valid location other than Home.
func parseCity(s string) (crdt.Location, error) {
	l, err := parseLocation(s)
	if err != nil {
		return "", err
	}
	if !l.IsCity() {
		return "", fmt.Errorf("%w: %s", service.ErrUnknownCity, quoteInput(s))
	}
	return l, nil
}

// decodeBody reads r and decodes it, one JSON object, into dst, refusing
// unknown fields, trailing data and bytes that are not UTF-8 (which the
// JSON decoder would silently replace). An empty body is fine when
// optional.
func decodeBody(r io.Reader, dst any, optional bool) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return readError(err)
	}
	if !utf8.Valid(data) {
		return badRequest("request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(dst)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("unexpected data after the JSON object")
			if terr != nil {
				err = terr
			}
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF) && optional:
		return nil
	case errors.Is(err, io.EOF):
		return badRequest("request body is required")
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: " + err.Error())
	case errors.As(err, &typ) && typ.Field == "":
		return badRequest("invalid JSON: expected an object, got " + typ.Value)
	case errors.As(err, &typ):
		return badRequest(fmt.Sprintf("invalid JSON: %s must not be %s", quoteInput(typ.Field), typ.Value))
	}
	msg := err.Error()
	if field, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		// The field's name is the client's, and may be long.
		if name, err := strconv.Unquote(field); err == nil {
			return badRequest("invalid JSON: unknown field " + quoteInput(name))
		}
	}
	return badRequest("invalid JSON: " + strings.TrimPrefix(msg, "json: "))
}
