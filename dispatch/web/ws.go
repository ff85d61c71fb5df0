package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"github.com/superhero-cluster/superhero/dispatch/service"
)

// repliesQueued is how many command replies may wait for the writer before
// the reader stops reading commands.
const repliesQueued = 16

// serveWS upgrades GET /ws to a WebSocket. The connection gets the
// snapshot, then every published event; the client sends commands and gets
// one reply per command. See the package documentation for the protocol.
func (s *Server) serveWS(c echo.Context) error {
	r := c.Request()
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		c.Response().Header().Set("Upgrade", "websocket")
		return withStatus(http.StatusUpgradeRequired, errors.New("expected a WebSocket upgrade"))
	}
	if !s.originAllowed(r) {
		return withStatus(http.StatusForbidden, errors.New("origin not allowed"))
	}
	if !s.track() {
		return withStatus(http.StatusServiceUnavailable, errors.New("dispatch: shutting down"))
	}
	defer s.conns.Done()
	if !s.reserveWebSocket() {
		s.warn(r, "websockets", "websocket refused: too many", "max", s.cfg.MaxWebSockets)
		c.Response().Header().Set("Retry-After", "1")
		return withStatus(http.StatusServiceUnavailable, fmt.Errorf("too many WebSocket connections (at most %d): try again later", s.cfg.MaxWebSockets))
	}
	defer s.active.Add(-1)
	conn, err := websocket.Accept(c.Response(), r, &websocket.AcceptOptions{OriginPatterns: s.cfg.AllowedOrigins})
	if err != nil {
		// Accept has written the response.
		s.warn(r, "upgrade", "websocket upgrade refused", "err", err)
		return nil
	}
	s.runConn(r.RemoteAddr, conn)
	return nil
}

// wsConn is one WebSocket connection: a reader goroutine that runs the
// client's commands, and a writer (the handler's goroutine) that alone
// writes frames, each under a deadline.
type wsConn struct {
	s       *Server
	conn    *websocket.Conn
	sub     *Subscription
	log     *slog.Logger
	replies chan []byte // command replies, from the reader to the writer
}

func (s *Server) runConn(remote string, conn *websocket.Conn) {
	start := time.Now()
	// ctx ends the connection from the server side (Shutdown).
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	log := s.log.With("remote", remote)
	conn.SetReadLimit(16 * s.cfg.BodyLimit)

	sub, err := s.hub.Subscribe(&SnapshotSource{
		Read: s.readSnapshot,
		Cluster: func() service.ClusterStatus {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout)
			defer cancel()
			return s.backend.Cluster(cctx)
		},
	})
	if errors.Is(err, ErrHubClosed) {
		log.Debug("websocket refused", "err", err)
		if err := conn.Close(websocket.StatusGoingAway, "server shutting down"); err != nil {
			log.Debug("websocket close handshake", "err", err)
		}
		return
	}
	if err != nil {
		// No view to start from (dispatch's replica is not answering,
		// or it is rejoining the cluster): an empty snapshot would show
		// an empty table as if it were true. The page connects again.
		log.Info("websocket refused", "err", err)
		if err := conn.Close(websocket.StatusTryAgainLater, "dispatch is catching up"); err != nil {
			log.Debug("websocket close handshake", "err", err)
		}
		return
	}
	defer sub.Close()
	wc := &wsConn{s: s, conn: conn, sub: sub, log: log, replies: make(chan []byte, repliesQueued)}
	s.stats.wsOpened.Add(1)
	wc.log.Debug("websocket open", "subscribers", s.hub.Subscribers())

	// The reader's context is not ctx: cancelling a read closes the
	// connection at once, and on shutdown the writer first sends a close
	// frame, which the reader must still be there to complete.
	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()
	readerDone, writerDone, pingerDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(readerDone)
		wc.readLoop(readCtx, ctx, writerDone)
	}()
	go func() {
		defer close(pingerDone)
		wc.pingLoop(writerDone)
	}()

	reason := wc.writeLoop(ctx, sub, readerDone)
	close(writerDone)
	stopReading()
	<-readerDone
	<-pingerDone
	if err := conn.CloseNow(); err != nil && !errors.Is(err, net.ErrClosed) {
		wc.log.Debug("websocket close", "err", err)
	}
	wc.log.Debug("websocket closed", "reason", reason, "dur", time.Since(start).Round(time.Millisecond))
}

// readSnapshot reads dispatch's view and encodes it for the hub, which
// shares it among the subscribers that start from it; it fails when the
// view cannot be read.
func (s *Server) readSnapshot() (*Snapshot, error) {
	heroes, err := s.backend.Heroes()
	if err != nil {
		return nil, err
	}
	return NewSnapshot(heroes, s.cfg.SnapshotPartHeroes)
}

// writeLoop writes events and replies until the connection ends, and says
// why it ended.
func (wc *wsConn) writeLoop(ctx context.Context, sub *Subscription, readerDone <-chan struct{}) string {
	for {
		select {
		case <-ctx.Done():
			wc.close(websocket.StatusGoingAway, "server shutting down")
			return "server shutting down"
		case <-readerDone:
			return "read ended"
		case <-sub.Done():
			if errors.Is(sub.Err(), ErrSlowSubscriber) {
				wc.close(websocket.StatusTryAgainLater, "too slow, reconnect")
				return "too slow"
			}
			wc.close(websocket.StatusGoingAway, "server shutting down")
			return "hub closed"
		case b := <-wc.replies:
			if err := wc.write(b); err != nil {
				return wc.writeFailed(err)
			}
		case <-sub.Ready():
			for _, p := range sub.Take() {
				if p.Snapshot != nil {
					err := wc.writeSnapshot(ctx, p.Snapshot, p.Cluster, sub, readerDone)
					if errors.Is(err, errConnEnding) {
						break // the loop's select says why
					}
					if err != nil {
						return wc.writeFailed(err)
					}
					continue
				}
				b, err := p.Frame()
				if err != nil {
					wc.log.Error("websocket event not encoded", "kind", p.Kind, "err", err)
					continue
				}
				if err := wc.write(b); err != nil {
					return wc.writeFailed(err)
				}
			}
		}
	}
}

// errConnEnding cuts a snapshot short: the server shuts down, the page
// went away or its subscription was dropped.
var errConnEnding = errors.New("dispatch: connection ending")

// writeSnapshot writes the snapshot frame, then the snapshot's parts, the
// bytes shared with every subscriber starting from it, in its turn among
// the connections writing snapshots (Config.SnapshotWriters): it keeps
// the turn from part to part while each is taken quickly. Events
// published meanwhile wait in the subscription, coalesced, and follow the
// last part. It stops early with errConnEnding when the connection is
// ending (ctx, the reader or the subscription done), whether it waits for
// a turn or is between parts. While it holds a turn a part must be taken
// within turnWriteTimeout: a page that stopped reading is closed then,
// instead of holding up every page behind it for Config.WriteTimeout.
func (wc *wsConn) writeSnapshot(ctx context.Context, snap *Snapshot, cs service.ClusterStatus, sub *Subscription, readerDone <-chan struct{}) error {
	b, err := encodeSnapshotHeader(snap, cs, wc.s.cfg.TombstoneTTL)
	if err != nil {
		return err
	}
	if err := wc.write(b); err != nil {
		return err
	}
	turn := false
	defer func() {
		if turn {
			<-wc.s.partTurns
		}
	}()
	for _, part := range snap.Parts() {
		if !turn {
			select {
			case wc.s.partTurns <- struct{}{}:
				turn = true
			case <-ctx.Done():
				return errConnEnding
			case <-readerDone:
				return errConnEnding
			case <-sub.Done():
				return errConnEnding
			}
		} else {
			select {
			case <-ctx.Done():
				return errConnEnding
			case <-readerDone:
				return errConnEnding
			case <-sub.Done():
				return errConnEnding
			default:
			}
		}
		start := time.Now()
		if err := wc.writeWithin(part, min(turnWriteTimeout, wc.s.cfg.WriteTimeout)); err != nil {
			return err
		}
		if time.Since(start) > slowPart {
			// A slow reader goes back in line for each part, so it
			// cannot hold up the others.
			<-wc.s.partTurns
			turn = false
		}
	}
	return nil
}

// slowPart is how long a snapshot part may take to write for its
// connection to keep its turn for the next part.
const slowPart = 50 * time.Millisecond

// turnWriteTimeout bounds the write of one snapshot part while its
// connection holds a turn: a few hundred heroes that a page cannot take
// in a second mean a page that stopped reading (asleep, offline), and the
// pages waiting in line must not wait for it.
const turnWriteTimeout = time.Second

// write sends one text frame within Config.WriteTimeout; on timeout the
// library closes the connection. This is what ends a connection whose
// client stopped reading: the hub drops its subscription without waiting,
// and the write stuck on it fails within the timeout. (Aborting the stuck
// write as soon as the hub drops the subscriber would race with writes
// that just completed and close healthy connections without a close
// frame.)
func (wc *wsConn) write(b []byte) error { return wc.writeWithin(b, wc.s.cfg.WriteTimeout) }

// writeWithin is write with a timeout of its own.
func (wc *wsConn) writeWithin(b []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return wc.conn.Write(ctx, websocket.MessageText, b)
}

// writeFailed says why a write failed: most often a client too slow to
// take a frame within the write timeout.
func (wc *wsConn) writeFailed(err error) string {
	if errors.Is(wc.sub.Err(), ErrSlowSubscriber) {
		return "too slow (dropped, write timed out): " + err.Error()
	}
	return "write failed: " + err.Error()
}

// close runs the close handshake; the library bounds it (5 s to write the
// close frame, 5 s to hear back).
func (wc *wsConn) close(code websocket.StatusCode, reason string) {
	if err := wc.conn.Close(code, reason); err != nil {
		wc.log.Debug("websocket close handshake", "err", err)
	}
}

// pingLoop pings the client every Config.PingInterval until done closes,
// and closes the connection when a pong does not come back within
// Config.WriteTimeout: a client that went away without a word (its
// machine asleep, its network gone) would otherwise keep its place among
// the MaxWebSockets until the next event could not be written.
func (wc *wsConn) pingLoop(done <-chan struct{}) {
	t := time.NewTicker(wc.s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), wc.s.cfg.WriteTimeout)
		err := wc.conn.Ping(ctx)
		cancel()
		if err != nil {
			wc.log.Debug("websocket ping not answered", "err", err)
			_ = wc.conn.CloseNow()
			return
		}
	}
}

// readLoop reads frames until the connection ends, running each command
// and queueing its reply. A frame that is not a valid command gets an
// error reply; the connection stays open.
func (wc *wsConn) readLoop(readCtx, cmdCtx context.Context, writerDone <-chan struct{}) {
	limit := wc.s.cfg.BodyLimit
	for {
		typ, r, err := wc.conn.Reader(readCtx)
		if err != nil {
			wc.log.Debug("websocket read ended", "err", err)
			return
		}
		data, err := io.ReadAll(io.LimitReader(r, limit+1))
		tooBig := int64(len(data)) > limit
		if err == nil && tooBig {
			_, err = io.Copy(io.Discard, r)
		}
		if err != nil {
			wc.log.Debug("websocket read ended", "err", err)
			return
		}
		wc.s.stats.wsCommands.Add(1)
		var reply []byte
		switch {
		case typ != websocket.MessageText:
			reply = wc.errorReply(nil, badRequest("binary frames are not supported: send JSON text frames"))
		case tooBig:
			reply = wc.errorReply(nil, withStatus(http.StatusRequestEntityTooLarge, fmt.Errorf("frame is larger than %d bytes", limit)))
		default:
			reply = wc.execute(cmdCtx, data)
		}
		select {
		case wc.replies <- reply:
		case <-writerDone:
			return
		}
	}
}

// execute runs one command frame and returns the reply frame.
func (wc *wsConn) execute(ctx context.Context, data []byte) []byte {
	start := time.Now()
	var cmd command
	if err := decodeBody(bytes.NewReader(data), &cmd, false); err != nil {
		// Echo the ref even when the rest of the frame is wrong: decode the
		// first JSON value leniently. On failure there is no ref.
		var loose struct{ Ref json.RawMessage }
		if json.NewDecoder(bytes.NewReader(data)).Decode(&loose) != nil {
			loose.Ref = nil
		}
		return wc.errorReply(loose.Ref, err)
	}
	ok := okFrame{Type: "ok", Ref: cmd.Ref}
	var err error
	s := wc.s
	switch cmd.Op {
	case "create":
		h, cerr := s.create(ctx, cmd.Name)
		if err = cerr; err == nil {
			hj := toHeroJSON(h)
			ok.Hero = &hj
		}
	case "delete":
		id, perr := parseID(cmd.ID)
		if err = perr; err == nil {
			err = s.delete(ctx, id)
			ok.ID = id.String()
		}
	case "assign":
		id, perr := parseID(cmd.ID)
		switch {
		case perr != nil:
			err = perr
		case cmd.Location == nil:
			err = badRequest(`"location" is required`)
		default:
			h, aerr := s.assign(ctx, id, *cmd.Location)
			if err = aerr; err == nil {
				hj := toHeroJSON(h)
				ok.Hero = &hj
			}
		}
	case "bomb":
		city, berr := s.bombCity(ctx, cmd.City)
		if err = berr; err == nil {
			ok.City = string(city)
		}
	case "":
		err = badRequest(`"op" is required`)
	default:
		err = badRequest("unknown op " + quoteInput(cmd.Op))
	}
	wc.log.Debug("websocket command", "op", clip(cmd.Op), "status", statusOf(err), "dur", time.Since(start).Round(time.Microsecond))
	if err != nil {
		return wc.errorReply(cmd.Ref, err)
	}
	b, merr := json.Marshal(ok)
	if merr != nil {
		return wc.errorReply(cmd.Ref, merr)
	}
	return b
}

func (wc *wsConn) errorReply(ref json.RawMessage, err error) []byte {
	wc.s.stats.wsErrors.Add(1)
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		wc.log.Error("websocket command failed", "err", err)
	}
	b, merr := json.Marshal(errorFrame{Type: "error", Ref: ref, Error: errorMessage(err, status), Status: status})
	if merr != nil {
		// Only a ref that is not valid JSON could fail; drop it.
		b, _ = json.Marshal(errorFrame{Type: "error", Error: errorMessage(err, status), Status: status})
	}
	return b
}

// headerHasToken reports whether the comma-separated header name holds
// token, ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
