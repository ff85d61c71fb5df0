package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestTokenVerification(t *testing.T) {
	a := newAuthenticator("cookie-a", time.Minute, discardLogger())
	b := newAuthenticator("cookie-b", time.Minute, discardLogger())

	tok, nonce, err := a.newToken()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tok, "cookie-a") {
		t.Fatal("token contains the cookie")
	}
	if got, err := a.verifyToken(tok); err != nil || got != nonce {
		t.Fatalf("valid token rejected: %v", err)
	}
	if _, err := a.verifyToken(tok); !errors.Is(err, errAuthReplayed) {
		t.Fatalf("replay: err = %v, want errAuthReplayed", err)
	}
	tok2, _, _ := a.newToken()
	if _, err := b.verifyToken(tok2); !errors.Is(err, errAuthMAC) {
		t.Fatalf("other cookie: err = %v, want errAuthMAC", err)
	}
	for _, bad := range []string{"", "v1.1.2", "v2.1.00.00", tok2 + "x", strings.Replace(tok2, "v1.", "v1.9", 1)} {
		if _, err := a.verifyToken(bad); err == nil {
			t.Fatalf("malformed/tampered token %q accepted", bad)
		}
	}
	old := newAuthenticator("cookie-a", time.Minute, discardLogger())
	old.now = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	stale, _, _ := old.newToken()
	if _, err := a.verifyToken(stale); !errors.Is(err, errAuthStale) {
		t.Fatalf("stale: err = %v, want errAuthStale", err)
	}
	if a.proof("n1") == b.proof("n1") || a.proof("n1") == a.proof("n2") {
		t.Fatal("proof does not depend on cookie and nonce")
	}
}

// echoRemoting stands in for the library's endpoint reader: it answers every
// received message with a ConnectResponse.
type echoRemoting struct {
	remote.UnimplementedRemotingServer
}

func (echoRemoting) Receive(s remote.Remoting_ReceiveServer) error {
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		err := s.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectResponse{
			ConnectResponse: &remote.ConnectResponse{MemberId: "srv"},
		}})
		if err != nil {
			return err
		}
	}
}

func serveRemoting(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	remote.RegisterRemotingServer(s, echoRemoting{})
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

// roundTrip opens the Receive stream like the library's endpoint writer does
// and returns the error of the first send/receive.
func roundTrip(t *testing.T, addr string, opts ...grpc.DialOption) error {
	t.Helper()
	conn, err := grpc.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := remote.NewRemotingClient(conn).Receive(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&remote.RemoteMessage{}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = stream.Recv()
	return err
}

func TestCookieHandshakeOverGRPC(t *testing.T) {
	good := newAuthenticator("the-cookie", time.Minute, discardLogger())
	addr := serveRemoting(t, good.serverOptions(nil)...)

	// Same cookie: accepted, and the server's proof is verified.
	peer := newAuthenticator("the-cookie", time.Minute, discardLogger())
	if err := roundTrip(t, addr, peer.dialOptions(nil)...); err != nil {
		t.Fatalf("same cookie rejected: %v", err)
	}

	// Different cookie: refused by the server.
	intruder := newAuthenticator("wrong-cookie", time.Minute, discardLogger())
	if err := roundTrip(t, addr, intruder.dialOptions(nil)...); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong cookie: err = %v, want Unauthenticated", err)
	}

	// No token at all (a plain library client): refused.
	plain := grpc.WithTransportCredentials(insecure.NewCredentials())
	if err := roundTrip(t, addr, plain); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: err = %v, want Unauthenticated", err)
	}

	// Unary methods (their library handlers panic) are refused, never run.
	conn, err := grpc.Dial(addr, peer.dialOptions(nil)...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = remote.NewRemotingClient(conn).ListProcesses(ctx, &remote.ListProcessesRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unary without token: err = %v, want Unauthenticated", err)
	}
	tok, _, _ := peer.newToken()
	_, err = remote.NewRemotingClient(conn).ListProcesses(metadata.AppendToOutgoingContext(ctx, authTokenKey, tok), &remote.ListProcessesRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("unary with token: err = %v, want Unimplemented", err)
	}
}

func TestClientRejectsServerWithoutProof(t *testing.T) {
	// A server that accepts anything (no interceptor) cannot produce the
	// proof: the dialling member refuses to use it.
	addr := serveRemoting(t)
	a := newAuthenticator("the-cookie", time.Minute, discardLogger())
	if err := roundTrip(t, addr, a.dialOptions(nil)...); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("err = %v, want Unauthenticated", err)
	}

	// A server with another cookie rejects us first; either way no message
	// is exchanged.
	other := newAuthenticator("other", time.Minute, discardLogger())
	addr2 := serveRemoting(t, other.serverOptions(nil)...)
	if err := roundTrip(t, addr2, a.dialOptions(nil)...); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("err = %v, want Unauthenticated", err)
	}
}
