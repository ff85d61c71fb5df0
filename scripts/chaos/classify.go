package main

import (
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/superhero-cluster/superhero/internal/chaos"
)

// How an answer becomes an outcome. The checker counts an ok write as done
// and a failed one as not done, and never counts an unknown one either
// way, so a wrong "fail" can make it report a phantom anomaly and a wrong
// "ok" can hide one: when in doubt, unknown. The rules follow dispatch's
// error mapping (dispatch/web/errors.go statusOf, dispatch/backend):
//
//	answer                                     write (create, terminate, assign)   read
//	2xx                                        ok                                  ok
//	404 / 410 on a read of one hero            -                                   ok (absent / tombstone)
//	any other 4xx                              fail                                fail
//	503 "dispatch is catching up"              fail: refused before any write      fail
//	503 "<city> is down" (assign)              fail: dispatch knew the city was    fail
//	                                           down and sent nothing
//	503 "kind not available" (assign)          fail: the city is not in the        fail
//	                                           topology, nothing was sent
//	503 "refused dispatch's entry" (assign)    fail: the city refused the hero's   -
//	                                           context and wrote nothing
//	503 "no answer to backend.contextReq"      fail: dispatch's replica did not    -
//	    (assign to a city)                     even give the hero's context, so
//	                                           the city was never asked
//	WebSocket not opened (refused, upgrade     fail: no command was sent           -
//	    answered 503 "shutting down", ...)
//	503 "outcome unknown"                      unknown: in dispatch's replica,     fail
//	                                           no city confirmed it
//	503 "replica is not answering" (other)     unknown: the actor may still        fail
//	                                           apply it
//	503 "timed out waiting for the cluster"    unknown: the city may have          fail
//	                                           applied it
//	any other 5xx                              unknown                             fail
//	no answer: the connection was refused      fail: nothing was sent              fail
//	no answer: timeout, reset, EOF, ...        unknown                             unknown
//
// A read has no effect, so its "fail" only says it learnt nothing; a read
// that timed out is still unknown, as the brief of the history asks.

// failMarkers are the messages of a 503 that promise nothing was done.
var failMarkers = []string{
	"catching up",
	" is down",
	"kind not available",
	"refused dispatch's entry",
	"no answer to backend.contextReq",
}

// classify returns the outcome of an operation that got an answer with
// status (an HTTP status, or a WebSocket error frame's) and message.
func classify(kind chaos.Kind, status int, msg string) chaos.Outcome {
	read := kind == chaos.KindRead || kind == chaos.KindList || kind == chaos.KindCityRead
	switch {
	case status >= 200 && status < 300:
		return chaos.OK
	case kind == chaos.KindRead && (status == 404 || status == 410):
		return chaos.OK
	case status >= 400 && status < 500:
		return chaos.Fail
	case read:
		return chaos.Fail
	case status == 503:
		for _, m := range failMarkers {
			if strings.Contains(msg, m) {
				return chaos.Fail
			}
		}
	}
	return chaos.Unknown
}

// classifyTransport returns the outcome of an operation that got no
// answer: fail when no connection could be made (nothing was sent),
// unknown otherwise.
func classifyTransport(err error) chaos.Outcome {
	if notConnected(err) {
		return chaos.Fail
	}
	return chaos.Unknown
}

// notConnected reports whether err happened while dialling: dispatch is
// not listening (killed, or not started again yet), so no request went
// out. A frozen dispatch still accepts connections (the kernel does), so
// a request to it times out instead: unknown.
func notConnected(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial")
}
