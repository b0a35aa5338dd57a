// Package core holds the value types every Mote package shares: the error
// kinds that each edge (HTTP, MQTT, CLI) maps to its own vocabulary, the
// message that flows through the platform, and the topic scheme. It imports
// nothing of Mote's own.
package core

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error so that each edge can answer in its own terms:
// an HTTP status, an MQTT reason code, a CLI exit code.
type Kind int

const (
	KindInternal     Kind = iota // a bug or an unexpected failure
	KindInvalid                  // the request is malformed or fails validation
	KindNotFound                 // the named resource does not exist
	KindConflict                 // the resource exists already, or a version did not match
	KindUnauthorized             // no or wrong credentials
	KindForbidden                // authenticated, but not allowed
	KindTooLarge                 // the request or document exceeds a limit
	KindRateLimited              // too many requests; retry later
	KindUnavailable              // the server cannot serve this now (shutting down, overloaded)
	KindQuota                    // storing this would exceed a quota (retained messages)
	// KindInsufficientStorage: the server cannot store what it must (its
	// disk is full or failing); retry later.
	KindInsufficientStorage
)

var kindNames = [...]string{
	KindInternal:            "internal",
	KindInvalid:             "invalid",
	KindNotFound:            "not_found",
	KindConflict:            "conflict",
	KindUnauthorized:        "unauthorized",
	KindForbidden:           "forbidden",
	KindTooLarge:            "too_large",
	KindRateLimited:         "rate_limited",
	KindUnavailable:         "unavailable",
	KindQuota:               "quota_exceeded",
	KindInsufficientStorage: "insufficient_storage",
}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is an error with a Kind and, for validation errors, the field it is
// about. Msg is safe to show to the caller; Err (if any) is the cause and is
// for logs.
type Error struct {
	Kind  Kind
	Field string // the offending input field, e.g. "name" or "attributes.site"
	Msg   string
	Err   error
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Field != "" && s == "" {
		s = "invalid " + e.Field
	}
	if e.Err != nil {
		if s == "" {
			return e.Err.Error()
		}
		return s + ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind with a formatted message.
func Errorf(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Invalid returns a KindInvalid error about one input field.
func Invalid(field, format string, args ...any) error {
	return &Error{Kind: KindInvalid, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// NotFound returns a KindNotFound error such as `thing "x" not found`.
func NotFound(what, name string) error {
	return &Error{Kind: KindNotFound, Msg: fmt.Sprintf("%s %q not found", what, name)}
}

// Conflict returns a KindConflict error.
func Conflict(format string, args ...any) error {
	return &Error{Kind: KindConflict, Msg: fmt.Sprintf(format, args...)}
}

// KindOf reports the Kind of err: the Kind of the first *Error in its chain,
// or KindInternal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// IsNotFound reports whether err is of KindNotFound.
func IsNotFound(err error) bool { return err != nil && KindOf(err) == KindNotFound }

// FieldOf returns the field an error is about, or "".
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

// HTTPStatus is the HTTP status that answers an error of kind k: the REST
// API's edge (internal/httpapi/problem.go) and what audit entries record
// for changes made outside it.
func HTTPStatus(k Kind) int {
	switch k {
	case KindInvalid:
		return http.StatusBadRequest
	case KindUnauthorized:
		return http.StatusUnauthorized
	case KindForbidden:
		return http.StatusForbidden
	case KindNotFound:
		return http.StatusNotFound
	case KindConflict:
		return http.StatusConflict
	case KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case KindRateLimited:
		return http.StatusTooManyRequests
	case KindUnavailable:
		return http.StatusServiceUnavailable
	case KindInsufficientStorage, KindQuota:
		return http.StatusInsufficientStorage
	default:
		return http.StatusInternalServerError
	}
}
