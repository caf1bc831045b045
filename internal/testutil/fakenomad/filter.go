package fakenomad

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// jobFilter is the subset of Nomad's ?filter= expressions (go-bexpr) that
// lists of jobs are filtered with: clauses joined by "and", each one of
//
//	<selector> == "v"    <selector> != "v"
//	"v" in <selector>    "v" not in <selector>
//	<selector> contains "v"
//	<selector> is empty  <selector> is not empty
//
// where a selector is a field path such as Status, Meta.model or
// Meta["managed-by"]. Anything else is a 400, like an expression Nomad
// cannot parse.
type jobFilter struct {
	clauses []filterClause
}

type filterClause struct {
	path  []string
	op    string
	value string
}

func parseFilter(expr string) (*jobFilter, error) {
	f := &jobFilter{}
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return f, nil
	}
	for _, part := range strings.Split(expr, " and ") {
		c, err := parseClause(strings.TrimSpace(part))
		if err != nil {
			return nil, &codedError{code: http.StatusBadRequest, msg: fmt.Sprintf("failed to read filter expression: %v", err)}
		}
		f.clauses = append(f.clauses, c)
	}
	return f, nil
}

func parseClause(s string) (filterClause, error) {
	for _, op := range []string{" is not empty", " is empty"} {
		if sel, ok := strings.CutSuffix(s, op); ok {
			path, err := parseSelector(sel)
			return filterClause{path: path, op: strings.TrimSpace(op)}, err
		}
	}
	for _, op := range []string{" not in ", " in "} {
		if val, sel, ok := strings.Cut(s, op); ok && strings.HasPrefix(val, `"`) {
			v, err := strconv.Unquote(strings.TrimSpace(val))
			if err != nil {
				return filterClause{}, fmt.Errorf("bad value %s", val)
			}
			path, err := parseSelector(sel)
			return filterClause{path: path, op: strings.TrimSpace(op), value: v}, err
		}
	}
	for _, op := range []string{" == ", " != ", " contains "} {
		if sel, val, ok := strings.Cut(s, op); ok {
			v, err := strconv.Unquote(strings.TrimSpace(val))
			if err != nil {
				return filterClause{}, fmt.Errorf("bad value %s", val)
			}
			path, err := parseSelector(sel)
			return filterClause{path: path, op: strings.TrimSpace(op), value: v}, err
		}
	}
	return filterClause{}, fmt.Errorf("unsupported expression %q (fakenomad knows ==, !=, in, not in, contains, is empty, is not empty joined by and)", s)
}

func parseSelector(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	var path []string
	for s != "" {
		switch {
		case strings.HasPrefix(s, "["):
			end := strings.Index(s, "]")
			if end < 0 {
				return nil, fmt.Errorf("bad selector %q", s)
			}
			key, err := strconv.Unquote(s[1:end])
			if err != nil {
				return nil, fmt.Errorf("bad selector %q", s)
			}
			path = append(path, key)
			s = strings.TrimPrefix(s[end+1:], ".")
		default:
			end := strings.IndexAny(s, ".[")
			if end < 0 {
				end = len(s)
			}
			path = append(path, s[:end])
			s = strings.TrimPrefix(s[end:], ".")
		}
	}
	if len(path) == 0 {
		return nil, fmt.Errorf("empty selector")
	}
	return path, nil
}

func (f *jobFilter) matches(v any) bool {
	if len(f.clauses) == 0 {
		return true
	}
	b, _ := json.Marshal(v)
	var doc any
	_ = json.Unmarshal(b, &doc)
	for _, c := range f.clauses {
		if !c.matches(doc) {
			return false
		}
	}
	return true
}

func (c filterClause) matches(doc any) bool {
	cur := doc
	for _, key := range c.path {
		m, ok := cur.(map[string]any)
		if !ok {
			cur = nil
			break
		}
		cur = m[key]
	}
	empty := cur == nil
	switch x := cur.(type) {
	case string:
		empty = x == ""
	case []any:
		empty = len(x) == 0
	case map[string]any:
		empty = len(x) == 0
	}
	contains := func() bool {
		switch x := cur.(type) {
		case string:
			return strings.Contains(x, c.value)
		case []any:
			for _, e := range x {
				if fmt.Sprint(e) == c.value {
					return true
				}
			}
		case map[string]any:
			_, ok := x[c.value]
			return ok
		}
		return false
	}
	switch c.op {
	case "is empty":
		return empty
	case "is not empty":
		return !empty
	case "==":
		return cur != nil && fmt.Sprint(cur) == c.value
	case "!=":
		return cur == nil || fmt.Sprint(cur) != c.value
	case "in", "contains":
		return contains()
	case "not in":
		return !contains()
	}
	return false
}
