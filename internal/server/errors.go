package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/certmon/certmon/internal/store"
)

// Error is every error response: {"error":{"code":"...","message":"..."}}.
// It is the one place an error becomes a status and a safe message; the
// cause, if any, is logged with the request and never sent.
type Error struct {
	Body ErrorBody `json:"error"`

	status int
	cause  error
}

// ErrorBody is the inside of an error response.
type ErrorBody struct {
	Code    string `json:"code" doc:"Stable machine-readable code, e.g. invalid_field, not_found" example:"invalid_field"`
	Message string `json:"message" doc:"Human-readable explanation; names the offending field for validation errors" example:"warn_days: must be >= 0"`
}

func (e *Error) Error() string { return e.Body.Message }

// GetStatus makes Error a huma.StatusError.
func (e *Error) GetStatus() int { return e.status }

// Unwrap exposes the cause to errors.Is/As.
func (e *Error) Unwrap() error { return e.cause }

var _ huma.StatusError = (*Error)(nil)

func newError(status int, code, format string, args ...any) *Error {
	return &Error{status: status, Body: ErrorBody{Code: code, Message: fmt.Sprintf(format, args...)}}
}

// invalid is a 400 naming the field: "warn_days: must be >= 0".
func invalid(field, format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "invalid_field", "%s: %s", field, fmt.Sprintf(format, args...))
}

func notFound(what string) *Error {
	return newError(http.StatusNotFound, "not_found", "%s not found", what)
}

// internal hides err from the client; it is logged with the request.
func internal(err error) *Error {
	e := newError(http.StatusInternalServerError, "internal", "internal error; see the server log")
	e.cause = err
	return e
}

// storeError maps a store error: sentinel errors become their status,
// anything else is an internal error.
func storeError(err error, what string) *Error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound(what)
	case errors.Is(err, store.ErrConflict):
		e := newError(http.StatusConflict, "conflict", "%s conflicts with the current state; retry", what)
		e.cause = err
		return e
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		e := newError(499, "canceled", "request canceled")
		e.cause = err
		return e
	default:
		return internal(err)
	}
}

// codes names huma's own errors (bad content type, oversize body, ...).
var codes = map[int]string{
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusNotAcceptable:         "not_acceptable",
	http.StatusRequestTimeout:        "request_timeout",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "body_too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
}

// fromHuma converts the errors huma raises itself (validation, unknown
// fields, malformed JSON, size limits) to our shape. Validation is 400,
// not huma's 422, and each detail becomes "field: message".
func fromHuma(status int, msg string, errs ...error) *Error {
	var fields, whole []string
	for _, err := range errs {
		if err == nil {
			continue
		}
		var d huma.ErrorDetailer
		if !errors.As(err, &d) {
			whole = append(whole, err.Error())
			continue
		}
		det := d.ErrorDetail()
		// Location is "body.tags[0]", "query.limit", "path.id" or "body";
		// the value is deliberately not echoed (it may be the whole body).
		loc := det.Location
		for _, p := range []string{"body.", "query.", "path.", "header."} {
			loc = strings.TrimPrefix(loc, p)
		}
		field, m := humaDetail(loc, det.Message)
		switch {
		case field != "":
			fields = append(fields, field+": "+m)
		case loc == "":
			whole = append(whole, det.Message)
		case status == http.StatusBadRequest && loc == "body":
			// The body did not parse at all.
			whole = append(whole, "invalid JSON: "+det.Message)
		default:
			fields = append(fields, loc+": "+det.Message)
		}
	}
	switch {
	case status == 0:
		// huma builds one error at registration to document the schema.
		return &Error{}
	case status >= 500:
		e := internal(errors.New(strings.Join(append([]string{msg}, whole...), ": ")))
		e.status = status
		return e
	case len(fields) > 0 && (status == http.StatusBadRequest || status == http.StatusUnprocessableEntity):
		return newError(http.StatusBadRequest, "invalid_field", "%s", strings.Join(fields, "; "))
	case len(whole) > 0 && status == http.StatusBadRequest:
		return newError(http.StatusBadRequest, "malformed_json", "body: %s", strings.Join(whole, "; "))
	case status == http.StatusUnprocessableEntity:
		return newError(http.StatusBadRequest, "invalid_request", "%s", strings.Join(append([]string{msg}, whole...), ": "))
	case status == http.StatusRequestEntityTooLarge:
		return newError(status, "body_too_large", "request body is too large")
	case status == http.StatusUnsupportedMediaType:
		return newError(status, "unsupported_media_type", "request body must be application/json")
	}
	code, ok := codes[status]
	if !ok {
		code = strings.ReplaceAll(strings.ToLower(http.StatusText(status)), " ", "_")
	}
	return newError(status, code, "%s", strings.Join(append([]string{msg}, whole...), ": "))
}

// humaDetail rewrites the validation messages of huma that read badly in
// our "field: message" form; a message it does not know is kept as is.
func humaDetail(loc, msg string) (field, out string) {
	if loc == "body" {
		if rest, ok := strings.CutPrefix(msg, "expected required property "); ok {
			if name, ok := strings.CutSuffix(rest, " to be present"); ok {
				return name, "required"
			}
		}
		return "", msg
	}
	if loc == "" {
		return "", msg
	}
	switch {
	case msg == "unexpected property":
		return loc, "unknown field"
	case strings.HasPrefix(msg, "expected number "):
		// "expected number >= 0" → "must be >= 0"
		return loc, "must be " + strings.TrimPrefix(msg, "expected number ")
	}
	return loc, msg
}

// installOnce guards the one piece of package-level state huma offers for
// its error model: huma.NewError and huma.NewErrorWithContext are package
// variables read by huma itself. Every Server installs the same pure
// function, so setting them once per process is safe.
var installOnce sync.Once

func installErrorModel() {
	installOnce.Do(func() {
		huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
			return fromHuma(status, msg, errs...)
		}
		huma.NewErrorWithContext = func(ctx huma.Context, status int, msg string, errs ...error) huma.StatusError {
			e := fromHuma(status, msg, errs...)
			if e.cause != nil && ctx != nil {
				r, _ := humago.Unwrap(ctx)
				noteCause(r.Context(), e.cause)
			}
			return e
		}
	})
}

// writeError writes e from a plain (non-huma) handler and records its
// cause for the request log.
func writeError(w http.ResponseWriter, r *http.Request, e *Error) {
	if e.cause != nil {
		noteCause(r.Context(), e.cause)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(e)
}
