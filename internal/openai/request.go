package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// MaxNesting bounds the nesting depth of a request body: deeper documents
// are refused before any decoder walks them.
const MaxNesting = 64

// Request is what the switchboard needs to know about an inference
// request; everything else in the body passes through untouched.
type Request struct {
	Model  string
	Stream bool
	Async  bool

	fields map[string]json.RawMessage
}

// InspectRequest validates body as a JSON object and reads model, stream
// and async. Client mistakes come back as *Error with status 400.
func InspectRequest(body []byte) (Request, error) {
	var req Request
	if err := checkNesting(body); err != nil {
		return req, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) || (len(bytes.TrimSpace(body)) > 0 && bytes.TrimSpace(body)[0] != '{') {
			return req, BadRequest("", "request body must be a JSON object")
		}
		return req, BadRequest("", "request body is not valid JSON: %v", err)
	}
	if fields == nil {
		return req, BadRequest("", "request body must be a JSON object")
	}
	// A repeated key would let the backend read another value than the
	// switchboard did (JSON parsers keep the first or the last one).
	for _, k := range []string{"model", "stream", "async"} {
		if n := countTopLevel(body, k); n > 1 {
			return req, BadRequest(k, "the key %q appears %d times", k, n)
		}
	}
	raw, ok := fields["model"]
	if !ok {
		return req, BadRequest("model", "you must provide a model parameter")
	}
	if err := json.Unmarshal(raw, &req.Model); err != nil || req.Model == "" {
		return req, BadRequest("model", "model must be a non-empty string")
	}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"stream", &req.Stream}, {"async", &req.Async}} {
		raw, ok := fields[f.name]
		if !ok || string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return req, BadRequest(f.name, "%s must be a boolean", f.name)
		}
	}
	if req.Stream && req.Async {
		return req, BadRequest("async", "async and stream cannot both be true")
	}
	req.fields = fields
	return req, nil
}

// Validate checks the fields the route needs and the types of the common
// sampling fields, so a request the backend would refuse with 400 is
// refused here, before it becomes a job or makes a model load.
func (req Request) Validate(path string) error {
	f := req.fields
	switch path {
	case "/v1/chat/completions":
		var msgs []map[string]json.RawMessage
		if err := json.Unmarshal(f["messages"], &msgs); err != nil || len(msgs) == 0 {
			return BadRequest("messages", "messages must be a non-empty array of message objects")
		}
		for i, m := range msgs {
			var role string
			if m == nil || json.Unmarshal(m["role"], &role) != nil || role == "" {
				return BadRequest(fmt.Sprintf("messages[%d].role", i), "every message needs a role (a non-empty string)")
			}
		}
	case "/v1/completions":
		// vLLM also takes prompt_embeds instead of a prompt.
		if _, embeds := f["prompt_embeds"]; !embeds && !stringOrArray(f["prompt"]) {
			return BadRequest("prompt", "prompt must be a string or a non-empty array")
		}
	case "/v1/embeddings":
		// vLLM also takes chat-style messages instead of an input.
		if _, chat := f["messages"]; !chat && !stringOrArray(f["input"]) {
			return BadRequest("input", "input must be a string or a non-empty array")
		}
	}
	for _, name := range []string{"max_tokens", "max_completion_tokens", "n", "top_k", "seed", "logprobs", "top_logprobs"} {
		if raw, ok := f[name]; ok && !isNull(raw) && !isInteger(raw) {
			if name == "logprobs" && path == "/v1/chat/completions" && isBool(raw) {
				continue // a boolean in chat completions
			}
			return BadRequest(name, "%s must be an integer", name)
		}
	}
	for _, name := range []string{"temperature", "top_p", "frequency_penalty", "presence_penalty", "min_p", "repetition_penalty"} {
		if raw, ok := f[name]; ok && !isNull(raw) && !isNumber(raw) {
			return BadRequest(name, "%s must be a number", name)
		}
	}
	if raw, ok := f["stop"]; ok && !isNull(raw) {
		var one string
		var many []string
		if json.Unmarshal(raw, &one) != nil && json.Unmarshal(raw, &many) != nil {
			return BadRequest("stop", "stop must be a string or an array of strings")
		}
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func isBool(raw json.RawMessage) bool {
	var b bool
	return json.Unmarshal(raw, &b) == nil
}

func isNumber(raw json.RawMessage) bool {
	var n float64
	return json.Unmarshal(raw, &n) == nil
}

// isInteger: a JSON number with an integral value (16, 16.0, and every
// int64, which a float64 cannot tell apart).
func isInteger(raw json.RawMessage) bool {
	tok := string(bytes.TrimSpace(raw))
	if _, err := strconv.ParseInt(tok, 10, 64); err == nil {
		return true
	}
	n, err := strconv.ParseFloat(tok, 64)
	return err == nil && n == math.Trunc(n) && !math.IsInf(n, 0)
}

// stringOrArray: a string, or a non-empty array (of strings, of token
// ids, of arrays of token ids).
func stringOrArray(raw json.RawMessage) bool {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return true
	}
	var a []json.RawMessage
	return json.Unmarshal(raw, &a) == nil && len(a) > 0
}

// checkNesting refuses documents nested deeper than MaxNesting.
func checkNesting(body []byte) error {
	depth, inString, escaped := 0, false, false
	for _, c := range body {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			if depth > MaxNesting {
				return BadRequest("", "request body is nested deeper than %d levels", MaxNesting)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// RewriteRequest returns body with the top-level "model" set to model and
// the switchboard's own "async" field removed; every other byte stays.
func RewriteRequest(body []byte, model string) ([]byte, error) {
	out, err := ReplaceTopLevelString(body, "model", model)
	if err != nil {
		return nil, err
	}
	return RemoveTopLevel(out, "async")
}

// ReplaceTopLevelString replaces the value of the top-level key with the
// JSON string s, leaving every other byte of doc as it was. A document
// without the key is returned unchanged.
func ReplaceTopLevelString(doc []byte, key, s string) ([]byte, error) {
	start, end, _, _, err := findTopLevel(doc, key)
	if err != nil || start < 0 {
		return doc, err
	}
	val, _ := json.Marshal(s) // a string cannot fail to marshal
	out := make([]byte, 0, len(doc)-(end-start)+len(val))
	out = append(out, doc[:start]...)
	out = append(out, val...)
	return append(out, doc[end:]...), nil
}

// RemoveTopLevel deletes the top-level key (and its value and one comma)
// from doc, leaving every other byte as it was.
func RemoveTopLevel(doc []byte, key string) ([]byte, error) {
	_, _, memberStart, memberEnd, err := findTopLevel(doc, key)
	if err != nil || memberStart < 0 {
		return doc, err
	}
	out := make([]byte, 0, len(doc))
	out = append(out, doc[:memberStart]...)
	return append(out, doc[memberEnd:]...), nil
}

// findTopLevel scans a JSON object for key and returns the byte span of
// its value and of the whole member (including a separating comma), or
// -1s when the key is absent.
func findTopLevel(doc []byte, key string) (valStart, valEnd, memberStart, memberEnd int, err error) {
	s := scanner{b: doc}
	s.ws()
	if !s.eat('{') {
		return -1, -1, -1, -1, errNotObject
	}
	prevEnd := s.i // end of '{' or of the previous value
	first := true
	for {
		s.ws()
		if s.eat('}') {
			return -1, -1, -1, -1, nil
		}
		if !first {
			if !s.eat(',') {
				return -1, -1, -1, -1, errNotObject
			}
			s.ws()
		}
		keyStart := s.i
		k, ok := s.str()
		if !ok {
			return -1, -1, -1, -1, errNotObject
		}
		s.ws()
		if !s.eat(':') {
			return -1, -1, -1, -1, errNotObject
		}
		s.ws()
		vs := s.i
		if !s.value() {
			return -1, -1, -1, -1, errNotObject
		}
		ve := s.i
		if k == key {
			ms, me := prevEnd, ve
			if first {
				// Remove "key": v and the comma after it, if any.
				ms = keyStart
				t := scanner{b: doc, i: ve}
				t.ws()
				if t.eat(',') {
					t.ws()
					me = t.i
				}
			}
			return vs, ve, ms, me, nil
		}
		prevEnd = ve
		first = false
	}
}

var errNotObject = BadRequest("", "request body must be a JSON object")

// countTopLevel counts the top-level members named key of a JSON object.
func countTopLevel(doc []byte, key string) int {
	s := scanner{b: doc}
	s.ws()
	if !s.eat('{') {
		return 0
	}
	n := 0
	for first := true; ; first = false {
		s.ws()
		if s.eat('}') {
			return n
		}
		if !first {
			if !s.eat(',') {
				return n
			}
			s.ws()
		}
		k, ok := s.str()
		if !ok {
			return n
		}
		s.ws()
		if !s.eat(':') {
			return n
		}
		s.ws()
		if !s.value() {
			return n
		}
		if k == key {
			n++
		}
	}
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str consumes a JSON string and returns its decoded value.
func (s *scanner) str() (string, bool) {
	start := s.i
	if !s.eat('"') {
		return "", false
	}
	escaped := false
	for s.i < len(s.b) {
		c := s.b[s.i]
		s.i++
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			raw := s.b[start:s.i]
			if !bytes.ContainsRune(raw, '\\') {
				return string(raw[1 : len(raw)-1]), true
			}
			var v string
			if json.Unmarshal(raw, &v) != nil {
				return "", false
			}
			return v, true
		}
	}
	return "", false
}

// value consumes one JSON value of any kind.
func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.str()
		return ok
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if _, ok := s.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	default:
		start := s.i
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.i > start
			}
			s.i++
		}
		return s.i > start
	}
}

// String renders a request for logs.
func (r Request) String() string {
	return fmt.Sprintf("model=%q stream=%t async=%t", r.Model, r.Stream, r.Async)
}
