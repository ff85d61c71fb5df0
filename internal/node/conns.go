package node

import (
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
)

// The library's endpoint writer dials a member with grpc.Dial and, when the
// stream on that connection cannot be opened or its connect handshake
// fails, dials again (Config.ConnectAttempts times) without closing the
// connection it gives up on; only the last one is closed when the writer
// stops. Each abandoned connection keeps an addrConn redialling its target
// with backoff, forever: a few goroutines per failed attempt, for every
// crashed member or unreachable address anyone sent to. handshakeGuard
// closes a connection as soon as its stream fails before the first message
// arrived, which is exactly when the library abandons it. After the
// handshake the library owns the connection: a stream that breaks later
// publishes EndpointTerminatedEvent, and a member that leaves the topology
// gets one from the MemberList; either way the endpoint manager stops the
// writer, which closes its connection.

// guardHandshake wraps cs, the stream the library opened on cc.
func guardHandshake(cc *grpc.ClientConn, cs grpc.ClientStream) grpc.ClientStream {
	return &handshakeGuard{ClientStream: cs, cc: cc}
}

// releaseConn closes a connection whose stream could not be opened.
func releaseConn(cc *grpc.ClientConn) { _ = cc.Close() }

type handshakeGuard struct {
	grpc.ClientStream
	cc      *grpc.ClientConn
	shaken  atomic.Bool // a message arrived: the library owns cc
	release sync.Once
}

func (s *handshakeGuard) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if !s.shaken.Load() {
		if err != nil {
			s.release.Do(func() { releaseConn(s.cc) })
		} else {
			s.shaken.Store(true)
		}
	}
	return err
}

func (s *handshakeGuard) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil && !s.shaken.Load() {
		s.release.Do(func() { releaseConn(s.cc) })
	}
	return err
}
