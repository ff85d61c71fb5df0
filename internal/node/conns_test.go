package node

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// handshake dials addr and runs the endpoint writer's connect handshake
// (open the stream, send, receive) on ctx, leaving the connection to the
// caller as the library does.
func handshake(t *testing.T, ctx context.Context, addr string, opts ...grpc.DialOption) (*grpc.ClientConn, remote.Remoting_ReceiveClient, error) {
	t.Helper()
	conn, err := grpc.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	stream, err := remote.NewRemotingClient(conn).Receive(ctx)
	if err != nil {
		return conn, nil, err
	}
	if err := stream.Send(&remote.RemoteMessage{}); err != nil {
		_, err = stream.Recv() // the status is reported by Recv
		return conn, stream, err
	}
	_, err = stream.Recv()
	return conn, stream, err
}

func TestFailedHandshakeReleasesConnection(t *testing.T) {
	a := newAuthenticator("the-cookie", time.Minute, discardLogger())
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nothing := closed.Addr().String()
	_ = closed.Close()

	for _, tc := range []struct {
		name string
		addr string
		code codes.Code
	}{
		{"nothing listening", nothing, codes.Unavailable},
		{"server with another cookie", serveRemoting(t, newAuthenticator("other", time.Minute, discardLogger()).serverOptions(nil)...), codes.Unauthenticated},
		{"server without the proof", serveRemoting(t), codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, _, err := handshake(t, ctx, tc.addr, a.dialOptions(nil)...)
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
			// Closed by the interceptor: no addrConn left redialling.
			if s := conn.GetState(); s != connectivity.Shutdown {
				t.Fatalf("connection state %v after a failed handshake, want Shutdown", s)
			}
		})
	}

	t.Run("after a good handshake the library owns the connection", func(t *testing.T) {
		addr := serveRemoting(t, newAuthenticator("the-cookie", time.Minute, discardLogger()).serverOptions(nil)...)
		ctx, cancel := context.WithCancel(context.Background())
		conn, stream, err := handshake(t, ctx, addr, a.dialOptions(nil)...)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		cancel() // the stream breaks later
		if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
			t.Fatalf("Recv after cancel: %v, want Canceled", err)
		}
		if s := conn.GetState(); s == connectivity.Shutdown {
			t.Fatal("a connection that completed its handshake was closed under the library")
		}
	})
}
