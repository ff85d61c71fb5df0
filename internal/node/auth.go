package node

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// gRPC metadata keys of the cookie handshake.
const (
	// authTokenKey carries the client token "v1.<unix-ms>.<nonce-hex>.<mac-hex>"
	// on every stream opened to a member's remote port.
	authTokenKey = "x-superhero-auth"
	// authProofKey carries the server's proof (HMAC over the client nonce)
	// in the response header.
	authProofKey = "x-superhero-auth-proof"

	authVersion   = "v1"
	nonceBytes    = 16
	maxReplayKeys = 100_000
)

// Domain-separation labels: the cookie is only used as an HMAC key, never
// sent or logged.
const (
	labelAuthKey     = "superhero-cluster/v1/remote-auth-key"
	labelClusterName = "superhero-cluster/v1/cluster-name"
	labelClient      = "client"
	labelServer      = "server"
)

var (
	errAuthMissing  = errors.New("missing cookie token")
	errAuthMalform  = errors.New("malformed cookie token")
	errAuthStale    = errors.New("stale cookie token")
	errAuthMAC      = errors.New("cookie mismatch")
	errAuthReplayed = errors.New("replayed cookie token")
)

func hmacSHA256(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for i, p := range parts {
		if i > 0 {
			m.Write([]byte{0})
		}
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// effectiveClusterName derives the cluster name the provider advertises and
// filters on: base + "-" + 16 hex digits of HMAC-SHA256(cookie, label).
func effectiveClusterName(base, cookie string) string {
	return base + "-" + hex.EncodeToString(hmacSHA256([]byte(cookie), labelClusterName)[:8])
}

// authenticator implements the cookie handshake on both sides of the
// library's gRPC streams.
type authenticator struct {
	key     []byte
	maxSkew time.Duration
	now     func() time.Time
	log     *slog.Logger
	// onBlocked, when set, is called when a peer answers a stream this
	// node opened with "your member id is blocked".
	onBlocked func(target string)

	mu   sync.Mutex
	seen map[string]time.Time // nonce -> forget after
}

func newAuthenticator(cookie string, maxSkew time.Duration, log *slog.Logger) *authenticator {
	return &authenticator{
		key:     hmacSHA256([]byte(cookie), labelAuthKey),
		maxSkew: maxSkew,
		now:     time.Now,
		log:     log,
		seen:    make(map[string]time.Time),
	}
}

// newToken returns a fresh client token and its nonce.
func (a *authenticator) newToken() (token, nonce string, err error) {
	b := make([]byte, nonceBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	nonce = hex.EncodeToString(b)
	ts := strconv.FormatInt(a.now().UnixMilli(), 10)
	mac := hex.EncodeToString(hmacSHA256(a.key, labelClient, ts, nonce))
	return strings.Join([]string{authVersion, ts, nonce, mac}, "."), nonce, nil
}

// verifyToken checks a client token and returns its nonce.
func (a *authenticator) verifyToken(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 4 || parts[0] != authVersion || len(parts[2]) != 2*nonceBytes {
		return "", errAuthMalform
	}
	ts, nonce := parts[1], parts[2]
	mac, err := hex.DecodeString(parts[3])
	if err != nil {
		return "", errAuthMalform
	}
	if !hmac.Equal(mac, hmacSHA256(a.key, labelClient, ts, nonce)) {
		return "", errAuthMAC
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", errAuthMalform
	}
	issued := time.UnixMilli(ms)
	now := a.now()
	if d := now.Sub(issued); d > a.maxSkew || d < -a.maxSkew {
		return "", errAuthStale
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if _, dup := a.seen[nonce]; dup {
		return "", errAuthReplayed
	}
	if len(a.seen) >= maxReplayKeys/2 {
		for k, until := range a.seen {
			if now.After(until) {
				delete(a.seen, k)
			}
		}
		if len(a.seen) >= maxReplayKeys {
			// Flooded with valid tokens: only holders of the cookie can
			// produce them, so refusing is the safe choice.
			return "", errAuthReplayed
		}
	}
	// A token is accepted while |now-issued| <= maxSkew, so remembering its
	// nonce until issued+maxSkew (plus margin) covers its whole life.
	a.seen[nonce] = issued.Add(a.maxSkew + time.Second)
	return nonce, nil
}

func (a *authenticator) proof(nonce string) string {
	return hex.EncodeToString(hmacSHA256(a.key, labelServer, nonce))
}

// authenticate checks the token carried by an incoming call.
func (a *authenticator) authenticate(ctx context.Context, method string) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(authTokenKey)
	var nonce string
	var err error
	if len(vals) != 1 {
		err = errAuthMissing
	} else {
		nonce, err = a.verifyToken(vals[0])
	}
	if err != nil {
		from := "unknown"
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			from = p.Addr.String()
		}
		// Logged through the library handler: repeated rejections are
		// de-duplicated. The reason never includes secret material.
		a.log.Warn("rejected remote connection: cookie check failed",
			slog.String("reason", err.Error()), slog.String("method", method), slog.String("from", from))
		return "", status.Error(codes.Unauthenticated, "node: cookie check failed")
	}
	return nonce, nil
}

// streamServerInterceptor guards the library's Remoting.Receive stream.
func (a *authenticator) streamServerInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	nonce, err := a.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	// Sent with the first response message (the library's ConnectResponse).
	if err := ss.SetHeader(metadata.Pairs(authProofKey, a.proof(nonce))); err != nil {
		return status.Error(codes.Internal, "node: cannot set auth header")
	}
	return handler(srv, ss)
}

// unaryServerInterceptor refuses every unary call. The library registers two
// unary methods (ListProcesses, GetProcessDiagnostics) whose handlers panic,
// which would crash the process; it never calls them itself.
func (a *authenticator) unaryServerInterceptor(ctx context.Context, _ any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
	if _, err := a.authenticate(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "node: unary remote calls are disabled")
}

// streamClientInterceptor attaches a fresh token to every stream the library
// opens and wraps the stream so the server's proof is verified before the
// first message is handed to the library.
func (a *authenticator) streamClientInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	token, nonce, err := a.newToken()
	if err != nil {
		return nil, status.Error(codes.Internal, fmt.Sprintf("node: cannot create auth token: %v", err))
	}
	ctx = metadata.AppendToOutgoingContext(ctx, authTokenKey, token)
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		releaseConn(cc) // see conns.go
		return nil, err
	}
	return guardHandshake(cc, &verifiedClientStream{ClientStream: cs, auth: a, want: a.proof(nonce), target: cc.Target()}), nil
}

// serverOptions are the gRPC server options for remote.WithServerOptions:
// the cookie check, inside mutual TLS when tlsCfg is not nil.
func (a *authenticator) serverOptions(tlsCfg *tls.Config) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.StreamInterceptor(a.streamServerInterceptor),
		grpc.UnaryInterceptor(a.unaryServerInterceptor),
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	return opts
}

// dialOptions are the gRPC dial options for remote.WithDialOptions. They
// replace the library's defaults: TLS when tlsCfg is not nil (gRPC sets the
// server name to verify from the dialled address), else the library's
// insecure transport.
func (a *authenticator) dialOptions(tlsCfg *tls.Config) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithStreamInterceptor(a.streamClientInterceptor),
	}
}

type verifiedClientStream struct {
	grpc.ClientStream
	auth     *authenticator
	want     string
	target   string
	verified atomic.Bool
}

func (s *verifiedClientStream) RecvMsg(m any) error {
	if s.verified.Load() {
		return s.ClientStream.RecvMsg(m)
	}
	if err := s.ClientStream.RecvMsg(m); err != nil {
		return err
	}
	// A message arrived, so the header is available without blocking.
	md, err := s.ClientStream.Header()
	if err == nil {
		got := md.Get(authProofKey)
		if len(got) == 1 && hmac.Equal([]byte(got[0]), []byte(s.want)) {
			s.verified.Store(true)
			if s.auth.onBlocked != nil && blockedBy(m) {
				s.auth.onBlocked(s.target)
			}
			return nil
		}
	}
	s.auth.log.Warn("rejected remote peer: it failed the cookie proof", slog.String("target", s.target))
	_ = s.ClientStream.CloseSend()
	return status.Error(codes.Unauthenticated, "node: peer failed cookie proof")
}
