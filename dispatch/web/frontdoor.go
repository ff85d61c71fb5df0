package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// The front door: which Host a request may name, who may call the API and
// open the page, and what a state-changing request must look like. See
// the package documentation for the rules as a client sees them.

// MinAPITokenLen is the shortest Config.APIToken accepted, in bytes.
const MinAPITokenLen = 16

// sessionCookie is the name of the page's session cookie, set by
// /login, before the port: cookies are not kept apart by port, and two
// dispatches on one machine must not overwrite each other's.
const sessionCookie = "superhero_session_"

// maxSessions bounds the page sessions kept; the oldest goes first.
const maxSessions = 1024

// --- Host allow-list ---

// hostSet is the set of allowed Host header values, each in the form
// canonicalHost returns.
type hostSet map[string]bool

// canonicalHost returns a Host header value as "host:port", lower case,
// an IP address in its shortest form (IPv6 in brackets), a missing port
// as 80 (plain HTTP's default). ok is false for a value that is not a
// host, with or without a port.
func canonicalHost(v string) (string, bool) {
	if v == "" || strings.ContainsAny(v, "/@?#\\ \t") {
		return "", false
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		host, port = v, "80"
		if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
			host = v[1 : len(v)-1]
		} else if strings.Contains(v, ":") {
			return "", false // an IPv6 address needs its brackets
		}
		if strings.ContainsAny(host, "[]") {
			return "", false
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || strconv.Itoa(n) != port {
		return "", false
	}
	if host == "" {
		return "", false
	}
	if strings.HasPrefix(v, "[") && (net.ParseIP(host) == nil || !strings.Contains(host, ":")) {
		return "", false // brackets only around an IPv6 address
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	} else if strings.Contains(host, ":") {
		return "", false
	}
	return net.JoinHostPort(strings.ToLower(host), port), true
}

// allowedHosts returns the Host values served when listening on addr's
// host and port: that address (unless it is a wildcard), localhost,
// 127.0.0.1 and [::1] with the port, and every extra entry ("name" for
// name on that port, "name:port" exactly).
func allowedHosts(addr, port string, extra []string) (hostSet, error) {
	set := hostSet{}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dispatch: address %q: %w", addr, err)
	}
	names := []string{"localhost", "127.0.0.1", "::1"}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		names = append(names, host)
	}
	for _, n := range names {
		h, ok := canonicalHost(net.JoinHostPort(n, port))
		if !ok {
			return nil, fmt.Errorf("dispatch: address %q is not a host and port", addr)
		}
		set[h] = true
	}
	for _, e := range extra {
		v := e
		_, p, err := net.SplitHostPort(e)
		if err != nil {
			// No port: the server's own.
			v = net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(e, "["), "]"), port)
		}
		h, ok := canonicalHost(v)
		if !ok || p == "0" {
			return nil, fmt.Errorf("dispatch: allowed host %q: want a host name or address, with or without a port", e)
		}
		set[h] = true
	}
	return set, nil
}

// hostAllowed reports whether r names a host this server answers for.
func (s *Server) hostAllowed(r *http.Request) bool {
	h, ok := canonicalHost(r.Host)
	return ok && (*s.hosts.Load())[h]
}

// checkHost answers 421 to a request whose Host is not allowed: a page of
// another site that resolves its own name to this machine (DNS
// rebinding) must not reach the API, the WebSocket or the page.
func (s *Server) checkHost(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !s.hostAllowed(r) {
			s.warn(r, "host", "request for a host not served here", "host", clip(r.Host))
			return withStatus(http.StatusMisdirectedRequest,
				fmt.Errorf("host %s is not served here (add it with -allowed-hosts)", quoteInput(r.Host)))
		}
		return next(c)
	}
}

// --- Content-Type of state-changing calls ---

// requireJSON answers 415 to a POST or PUT, or a request with a body,
// whose Content-Type is not application/json (optionally with
// charset=utf-8). A page of another site can send a form or text/plain
// without asking first, but not application/json.
func (s *Server) requireJSON(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Method == http.MethodDelete && r.ContentLength == 0 {
			return next(c)
		}
		ct := r.Header.Get(echo.HeaderContentType)
		mt, params, err := mime.ParseMediaType(ct)
		charset, hasCharset := params["charset"]
		if err != nil || mt != echo.MIMEApplicationJSON || len(params) > 1 || len(params) == 1 && !hasCharset ||
			hasCharset && !strings.EqualFold(charset, "utf-8") {
			return withStatus(http.StatusUnsupportedMediaType,
				fmt.Errorf("Content-Type must be application/json, not %s", quoteInput(ct)))
		}
		return next(c)
	}
}

// --- API token, page login and sessions ---

// auth holds the API token, the page's one-time login code and its
// sessions. Secrets are compared in constant time; sessions are kept by
// the SHA-256 of their cookie, so that looking one up reveals nothing
// about the others.
type auth struct {
	token [sha256.Size]byte
	ttl   time.Duration
	now   func() time.Time

	mu       sync.Mutex
	code     string // the current one-time login code
	sessions map[[sha256.Size]byte]time.Time
}

func newAuth(token string, ttl time.Duration) *auth {
	return &auth{
		token:    sha256.Sum256([]byte(token)),
		ttl:      ttl,
		now:      time.Now,
		code:     randomSecret(),
		sessions: map[[sha256.Size]byte]time.Time{},
	}
}

// randomSecret returns 128 random bits, URL-safe.
func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// bearerOK reports whether r carries "Authorization: Bearer TOKEN".
func (a *auth) bearerOK(r *http.Request) bool {
	scheme, got, ok := strings.Cut(r.Header.Get(echo.HeaderAuthorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
	return subtle.ConstantTimeCompare(sum[:], a.token[:]) == 1
}

// sessionOK reports whether r carries a valid session cookie named name.
func (a *auth) sessionOK(r *http.Request, name string) bool {
	c, err := r.Cookie(name)
	if err != nil || c.Value == "" {
		return false
	}
	key := sha256.Sum256([]byte(c.Value))
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.sessions[key]
	if ok && !a.now().Before(exp) {
		delete(a.sessions, key)
		return false
	}
	return ok
}

// currentCode returns the one-time login code.
func (a *auth) currentCode() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.code
}

// checkCode reports whether code is the current one-time code.
func (a *auth) checkCode(code string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return subtle.ConstantTimeCompare([]byte(code), []byte(a.code)) == 1
}

// login uses up code: if it is the current one, it makes a new code and a
// session, and returns the session's cookie value and the new code.
func (a *auth) login(code string) (session, next string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if subtle.ConstantTimeCompare([]byte(code), []byte(a.code)) != 1 {
		return "", "", false
	}
	a.code = randomSecret()
	now := a.now()
	for k, exp := range a.sessions {
		if !now.Before(exp) {
			delete(a.sessions, k)
		}
	}
	if len(a.sessions) >= maxSessions {
		var oldest [sha256.Size]byte
		var first time.Time
		for k, exp := range a.sessions {
			if first.IsZero() || exp.Before(first) {
				oldest, first = k, exp
			}
		}
		delete(a.sessions, oldest)
	}
	session = randomSecret() + randomSecret()
	a.sessions[sha256.Sum256([]byte(session))] = now.Add(a.ttl)
	return session, a.code, true
}

// openPaths need no token: the probes and the login link itself.
func openPath(p string) bool { return p == "/healthz" || p == "/readyz" || p == "/login" }

// authenticate answers 401 to a request without the API token when one is
// set: the API takes only the bearer token; the page, its assets and the
// WebSocket take the bearer token or the session cookie.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if s.auth == nil || openPath(r.URL.Path) || s.auth.bearerOK(r) {
			return next(c)
		}
		api := strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/api"
		if !api && s.auth.sessionOK(r, s.cookieName()) {
			return next(c)
		}
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="dispatch"`)
		s.warn(r, "auth", "request without a valid token or session", "path", clip(r.URL.Path))
		if api {
			return withStatus(http.StatusUnauthorized, errors.New("missing or wrong API token: send Authorization: Bearer TOKEN"))
		}
		return withStatus(http.StatusUnauthorized, errors.New("not logged in: open the one-time login link that dispatch logged (…/login?t=…)"))
	}
}

// login serves GET /login?t=CODE: with the current one-time code it sets
// the session cookie (HttpOnly, SameSite=Strict) and sends the browser to
// the page; the code is then used up and a new link is logged. HEAD
// answers the same status without using the code.
func (s *Server) login(c echo.Context) error {
	r := c.Request()
	if s.auth == nil {
		return c.Redirect(http.StatusSeeOther, "/")
	}
	code := r.URL.Query().Get("t")
	if r.Method == http.MethodHead {
		if !s.auth.checkCode(code) {
			return withStatus(http.StatusUnauthorized, errors.New("login link invalid or already used"))
		}
		c.Response().Header().Set(echo.HeaderLocation, "/")
		return c.NoContent(http.StatusSeeOther)
	}
	session, next, ok := s.auth.login(code)
	if !ok {
		s.warn(r, "login", "login link invalid or already used")
		return withStatus(http.StatusUnauthorized, errors.New("login link invalid or already used: use the latest link dispatch logged"))
	}
	c.SetCookie(&http.Cookie{
		Name:     s.cookieName(),
		Value:    session,
		Path:     "/",
		MaxAge:   int(s.cfg.SessionTTL / time.Second),
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	s.log.Info("page login", "remote", r.RemoteAddr)
	s.log.Info("page login link (one-time)", "url", s.loginURL(next))
	return c.Redirect(http.StatusSeeOther, "/")
}

// cookieName is the session cookie's name: superhero_session_PORT.
func (s *Server) cookieName() string { return sessionCookie + s.port.Load().(string) }

// LoginLink returns the current one-time login link of the page, or ""
// without an API token.
func (s *Server) LoginLink() string {
	if s.auth == nil {
		return ""
	}
	return s.loginURL(s.auth.currentCode())
}

func (s *Server) loginURL(code string) string {
	return "http://" + s.linkHost() + "/login?t=" + code
}

// linkHost is the host:port the login link names: the listening address,
// or localhost for a wildcard one.
func (s *Server) linkHost() string {
	host, _, _ := net.SplitHostPort(s.cfg.Addr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, s.port.Load().(string))
}

// isLoopback reports whether the host of addr is a loopback address or
// localhost.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
