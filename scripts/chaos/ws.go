package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// wsClient sends a client's writes as WebSocket commands (create, delete,
// assign; see dispatch/web/doc.go) on one connection, dialled when needed
// and dropped after any command that got no reply, so that a late reply
// can never be taken for the next command's.
type wsClient struct {
	url     string
	timeout time.Duration
	opts    *websocket.DialOptions // nil: the defaults

	conn    *websocket.Conn
	cancel  context.CancelFunc
	replies chan wsReply
	done    chan struct{} // the reader ended
	ref     int
}

// wsReply is a command's reply frame.
type wsReply struct {
	Type   string          `json:"type"`
	Ref    int             `json:"ref"`
	Hero   json.RawMessage `json:"hero"`
	Error  string          `json:"error"`
	Status int             `json:"status"`
}

// do sends one command and waits for its reply within the timeout; cmd
// gets a fresh ref.
func (w *wsClient) do(ctx context.Context, cmd map[string]any) answer {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if w.conn == nil {
		if a, ok := w.dial(ctx); !ok {
			return a
		}
	}
	w.ref++
	cmd["ref"] = w.ref
	b, err := json.Marshal(cmd)
	if err != nil {
		return answer{err: err, msg: err.Error()}
	}
	if err := w.conn.Write(ctx, websocket.MessageText, b); err != nil {
		w.close()
		return answer{err: err, msg: "websocket write: " + err.Error()}
	}
	for {
		select {
		case r := <-w.replies:
			if r.Ref != w.ref {
				continue // cannot happen: one command at a time
			}
			if r.Type == "ok" {
				return answer{status: http.StatusOK, body: r.Hero}
			}
			return answer{status: r.Status, msg: r.Error}
		case <-w.done:
			w.close()
			return answer{err: errors.New("websocket closed before the reply"), msg: "websocket closed before the reply"}
		case <-ctx.Done():
			w.close()
			return answer{err: ctx.Err(), msg: "no reply in time: " + ctx.Err().Error()}
		}
	}
}

// dial opens the connection and starts its reader. A failed dial is an
// answer: refused (nothing sent), or the handshake's HTTP status.
func (w *wsClient) dial(ctx context.Context) (answer, bool) {
	conn, resp, err := websocket.Dial(ctx, w.url, w.opts)
	if err != nil {
		// No connection, no command sent: the operation did not happen.
		a := answer{err: err, msg: "websocket dial: " + err.Error(), unsent: true}
		if resp != nil {
			a.status = resp.StatusCode // refused at the upgrade, e.g. 503 shutting down
		}
		return a, false
	}
	conn.SetReadLimit(64 << 20)
	rctx, cancel := context.WithCancel(context.Background())
	w.conn, w.cancel = conn, cancel
	w.replies, w.done = make(chan wsReply, 4), make(chan struct{})
	go w.read(rctx, conn, w.replies, w.done)
	return answer{}, true
}

// read takes every frame: replies go to the command waiting for them;
// snapshots, deltas, cluster status and flashes are read and dropped, so
// the hub never finds this page slow.
func (w *wsClient) read(ctx context.Context, conn *websocket.Conn, replies chan<- wsReply, done chan<- struct{}) {
	defer close(done)
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return
		}
		var r wsReply
		if err := json.Unmarshal(b, &r); err != nil {
			continue
		}
		if r.Type != "ok" && r.Type != "error" {
			continue
		}
		select {
		case replies <- r:
		case <-ctx.Done():
			return
		}
	}
}

// close drops the connection and waits for its reader. It is safe on a
// nil client and on a closed connection.
func (w *wsClient) close() {
	if w == nil || w.conn == nil {
		return
	}
	w.cancel()
	_ = w.conn.CloseNow()
	<-w.done
	w.conn = nil
}
