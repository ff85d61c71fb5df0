package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/superhero-cluster/superhero/crdt"
	"github.com/superhero-cluster/superhero/dispatch/service"
)

// statusError gives an error an HTTP status that overrides the mapping in
// statusOf, for the few cases that depend on the request (a dead hero is
// 410 on GET but 409 on assign) and for request validation.
type statusError struct {
	status int
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// withStatus returns err carrying status.
func withStatus(status int, err error) error { return &statusError{status: status, err: err} }

// badRequest returns a 400 error with msg.
func badRequest(msg string) error { return withStatus(http.StatusBadRequest, errors.New(msg)) }

// statusOf maps an error to its HTTP status. It is the only place that
// does so; WebSocket error frames carry the same status.
func statusOf(err error) int {
	var se *statusError
	var he *echo.HTTPError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &se):
		return se.status
	case errors.As(err, &he):
		return he.Code
	case errors.Is(err, crdt.ErrUnknown):
		return http.StatusNotFound
	case errors.Is(err, crdt.ErrDead):
		return http.StatusConflict
	case errors.Is(err, crdt.ErrLocation), errors.Is(err, service.ErrUnknownCity):
		return http.StatusBadRequest
	case errors.Is(err, service.ErrCityDown),
		errors.Is(err, service.ErrUnavailable),
		errors.Is(err, service.ErrOutcomeUnknown),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// maxErrorMessage bounds the text of an error answer, in bytes: every
// message quotes at most maxQuoted bytes of the client's input, and this
// is the backstop.
const maxErrorMessage = 1024

// errorMessage is the text a client sees for err with status. Internal
// errors are not shown; everything else is the error's own text, cut to
// maxErrorMessage bytes.
func errorMessage(err error, status int) string {
	msg := fullErrorMessage(err, status)
	if len(msg) > maxErrorMessage {
		msg = cut(msg, maxErrorMessage) + "…"
	}
	return msg
}

func fullErrorMessage(err error, status int) string {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg, ok := he.Message.(string)
		if !ok || msg == http.StatusText(he.Code) {
			msg = lowerStatusText(he.Code)
		}
		return msg
	}
	switch {
	case status == http.StatusInternalServerError:
		return "internal server error"
	case errors.Is(err, context.DeadlineExceeded):
		return "dispatch: timed out waiting for the cluster"
	}
	return err.Error()
}

func lowerStatusText(code int) string {
	b := []byte(http.StatusText(code))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	if len(b) == 0 {
		return "error"
	}
	return string(b)
}

// errCatchingUp answers reads while dispatch has not caught up.
var errCatchingUp = fmt.Errorf("%w: dispatch is catching up", service.ErrUnavailable)

// maxQuoted is the most bytes of client input an error message quotes.
const maxQuoted = 100

// quoteInput quotes client input for an error message: at most maxQuoted
// bytes of it, then how long it was.
func quoteInput(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(cut(s, maxQuoted)), len(s))
}

// cut returns the longest prefix of s of at most n bytes that does not end
// inside a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
