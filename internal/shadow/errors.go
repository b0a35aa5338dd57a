package shadow

import (
	"fmt"
	"strconv"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// Error is a shadow error in the shape of AWS IoT Device Shadow errors:
// an HTTP status code and a message. Over MQTT it is published on the
// request's /rejected topic as {"code", "message", "timestamp",
// "clientToken"}; over REST it becomes a problem response with that status.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return strconv.Itoa(e.Code) + " " + e.Message }

// Unwrap exposes the error as a core error of the matching kind, so that
// core.KindOf and the HTTP edge classify it.
func (e *Error) Unwrap() error { return &core.Error{Kind: e.Kind(), Msg: e.Message} }

// Kind returns the core error kind of the code.
func (e *Error) Kind() core.Kind {
	switch e.Code {
	case 400, 415:
		return core.KindInvalid
	case 401:
		return core.KindUnauthorized
	case 403:
		return core.KindForbidden
	case 404:
		return core.KindNotFound
	case 409:
		return core.KindConflict
	case 413:
		return core.KindTooLarge
	case 429:
		return core.KindRateLimited
	case 503:
		return core.KindUnavailable
	}
	return core.KindInternal
}

// The errors of the Device Shadow service, with the AWS messages.
var (
	ErrInvalidJSON     = &Error{400, "Invalid JSON"}
	ErrMissingState    = &Error{400, "Missing required node: state"}
	ErrStateNotObject  = &Error{400, "State node must be an object"}
	ErrDesiredNotObj   = &Error{400, "Desired node must be an object"}
	ErrReportedNotObj  = &Error{400, "Reported node must be an object"}
	ErrInvalidVersion  = &Error{400, "Invalid version"}
	ErrInvalidToken    = &Error{400, "Invalid clientToken"}
	ErrTooDeep         = &Error{400, fmt.Sprintf("JSON contains too many levels of nesting; maximum is %d", MaxDepth)}
	ErrInvalidNode     = &Error{400, "State contains an invalid node"}
	ErrForbidden       = &Error{403, "Forbidden"}
	ErrThingNotFound   = &Error{404, "Thing not found"}
	ErrVersionConflict = &Error{409, "Version conflict"}
	ErrTooLarge        = &Error{413, "The payload exceeds the maximum size allowed"}
	ErrEncoding        = &Error{415, "Unsupported documented encoding; supported encoding is UTF-8"}
	ErrTooManyRequests = &Error{429, "Too many requests"}
	ErrInternal        = &Error{500, "Internal service failure"}
	ErrUnavailable     = &Error{503, "Service unavailable"}
)

// errConflict marks an op whose write lost a compare-and-set in the store
// (another cluster node wrote the shadow first); it is never answered:
// the request runs again.
var errConflict = &Error{409, "Version conflict in the store"}

// ErrNoShadow returns the 404 of a shadow that does not exist; the classic
// shadow is named by its thing, as AWS does.
func ErrNoShadow(thing, name string) *Error {
	if name == "" {
		name = thing
	}
	return &Error{404, "No shadow exists with name: '" + name + "'"}
}

// ErrorBody returns the /rejected document of an error.
func ErrorBody(e *Error, token string, hasToken bool, now time.Time) []byte {
	b := make([]byte, 0, 96+len(e.Message)+len(token))
	b = append(b, `{"code":`...)
	b = strconv.AppendInt(b, int64(e.Code), 10)
	b = append(b, `,"message":`...)
	b = core.AppendJSONString(b, e.Message)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = appendToken(b, token, hasToken)
	return append(b, '}')
}

func appendToken(b []byte, token string, has bool) []byte {
	if !has {
		return b
	}
	b = append(b, `,"clientToken":`...)
	return core.AppendJSONString(b, token)
}
