// Package openai holds the OpenAI wire format the switchboard speaks: the
// error envelope, request inspection and the in-place model-name rewrite
// that keeps bodies byte-faithful, and SSE framing.
package openai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Error types, as OpenAI names them.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
	TypeUnavailable    = "service_unavailable_error"
	TypeTimeout        = "timeout_error"
)

// Error is an error the API answers with: an HTTP status plus OpenAI's
// error envelope. Handlers return it; one writer renders it.
type Error struct {
	Status int `json:"-"`
	// RetryAfter, in seconds, becomes a Retry-After header when set.
	RetryAfter int     `json:"-"`
	Message    string  `json:"message"`
	Type       string  `json:"type"`
	Param      *string `json:"param"`
	Code       *string `json:"code"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message)
}

// Envelope is the JSON body of an error response.
type Envelope struct {
	Error *Error `json:"error"`
}

// Body renders the error as OpenAI's JSON envelope.
func (e *Error) Body() []byte {
	b, _ := json.Marshal(Envelope{Error: e}) // only strings and pointers: cannot fail
	return b
}

// Errorf builds an Error.
func Errorf(status int, typ, code, param, format string, args ...any) *Error {
	e := &Error{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
	if code != "" {
		e.Code = &code
	}
	if param != "" {
		e.Param = &param
	}
	return e
}

// BadRequest is a 400 invalid_request_error about param.
func BadRequest(param, format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, TypeInvalidRequest, "", param, format, args...)
}

// WriteError writes e as the response.
func WriteError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(e.Body(), '\n'))
}

// ParseError reads an error body a backend produced: OpenAI's envelope,
// vLLM's (code is an int), vLLM's older flat {"object":"error",...}, or its
// bare {"error":"Unauthorized"}. It returns nil when body is none of them.
func ParseError(status int, body []byte) *Error {
	var env struct {
		Error json.RawMessage `json:"error"`
		// flat form
		Object  string          `json:"object"`
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Param   json.RawMessage `json:"param"`
		Code    json.RawMessage `json:"code"`
	}
	if json.Unmarshal(body, &env) != nil {
		return nil
	}
	e := &Error{Status: status}
	switch {
	case len(env.Error) > 0 && env.Error[0] == '"':
		_ = json.Unmarshal(env.Error, &e.Message)
		e.Type = typeForStatus(status)
		return e
	case len(env.Error) > 0 && env.Error[0] == '{':
		var inner struct {
			Message string          `json:"message"`
			Type    string          `json:"type"`
			Param   json.RawMessage `json:"param"`
			Code    json.RawMessage `json:"code"`
		}
		if json.Unmarshal(env.Error, &inner) != nil {
			return nil
		}
		e.Message, e.Type = inner.Message, inner.Type
		e.Param, e.Code = rawString(inner.Param), rawString(inner.Code)
	case env.Object == "error":
		e.Message, e.Type = env.Message, env.Type
		e.Param, e.Code = rawString(env.Param), rawString(env.Code)
	default:
		return nil
	}
	if e.Type == "" {
		e.Type = typeForStatus(status)
	}
	return e
}

// rawString turns a JSON string or number into *string; null gives nil.
func rawString(raw json.RawMessage) *string {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return &s
	}
	s = string(raw)
	return &s
}

func typeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return TypeAuthentication
	case status == http.StatusForbidden:
		return TypePermission
	case status == http.StatusNotFound:
		return TypeNotFound
	case status == http.StatusTooManyRequests:
		return TypeRateLimit
	case status >= 400 && status < 500:
		return TypeInvalidRequest
	default:
		return TypeServer
	}
}
