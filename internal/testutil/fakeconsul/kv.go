package fakeconsul

import (
	"bytes"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// kvEntry is a stored key; its JSON form is the wire form of GET /v1/kv.
// Entries are replaced, never mutated, so answers can share them.
type kvEntry struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte
	Session     string `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

// same reports whether a write would change nothing, in which case Consul
// keeps the ModifyIndex.
func (e *kvEntry) same(o *kvEntry) bool {
	return e.LockIndex == o.LockIndex && e.Flags == o.Flags && e.Session == o.Session && bytes.Equal(e.Value, o.Value)
}

var errKVNotFound = &apiError{status: http.StatusNotFound}

func (s *Server) kvGet(w http.ResponseWriter, r *http.Request) (any, error) {
	key := r.PathValue("key")
	switch {
	case has(r, "keys"):
		q := r.URL.Query()
		sep := q.Get("seperator") // Consul still accepts its historic misspelling
		if has(r, "separator") {
			sep = q.Get("separator")
		}
		return s.blockingQuery(w, r, func() (uint64, any, error) {
			idx, entries := s.kvListLocked(key)
			keys := listKeys(key, sep, entries)
			if len(keys) == 0 && key != "" {
				return idx, nil, errKVNotFound
			}
			return idx, keys, nil
		})
	case has(r, "recurse"):
		return s.blockingQuery(w, r, func() (uint64, any, error) {
			idx, entries := s.kvListLocked(key)
			if len(entries) == 0 {
				return idx, nil, errKVNotFound
			}
			return idx, entries, nil
		})
	case key == "":
		return nil, badRequest("Missing key name")
	}
	raw := has(r, "raw")
	return s.blockingQuery(w, r, func() (uint64, any, error) {
		e, ok := s.kv[key]
		if !ok {
			return s.kvsIndex, nil, errKVNotFound
		}
		if raw {
			return e.ModifyIndex, rawBody{contentType: "text/plain", data: e.Value}, nil
		}
		return e.ModifyIndex, []kvEntry{*e}, nil
	})
}

// kvListLocked lists the entries under prefix, sorted by key, with Consul's
// list index: the highest ModifyIndex or delete under the prefix, else the
// table index.
func (s *Server) kvListLocked(prefix string) (uint64, []kvEntry) {
	entries := []kvEntry{}
	var idx uint64
	for k, e := range s.kv {
		if strings.HasPrefix(k, prefix) {
			entries = append(entries, *e)
			idx = max(idx, e.ModifyIndex)
		}
	}
	for k, tomb := range s.tombs {
		if strings.HasPrefix(k, prefix) {
			idx = max(idx, tomb)
		}
	}
	if prefix == "" || idx == 0 {
		idx = s.kvsIndex
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key })
	return idx, entries
}

// listKeys folds keys at the first separator after prefix, as ?keys does.
func listKeys(prefix, sep string, entries []kvEntry) []string {
	keys := []string{}
	seen := map[string]bool{}
	for _, e := range entries {
		k := e.Key
		if sep != "" {
			if i := strings.Index(k[len(prefix):], sep); i >= 0 {
				k = k[:len(prefix)+i+len(sep)]
			}
		}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

func conflicting(r *http.Request, flags ...string) error {
	n := 0
	for _, f := range flags {
		if has(r, f) {
			n++
		}
	}
	if n > 1 {
		return badRequest("Conflicting flags: %v\n", r.URL.Query().Encode())
	}
	return nil
}

func (s *Server) kvPut(_ http.ResponseWriter, r *http.Request) (any, error) {
	key := r.PathValue("key")
	if key == "" {
		return nil, badRequest("Missing key name")
	}
	if err := conflicting(r, "cas", "acquire", "release"); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	var flags uint64
	if has(r, "flags") {
		v, err := strconv.ParseUint(q.Get("flags"), 10, 64)
		if err != nil {
			return nil, err
		}
		flags = v
	}
	var cas uint64
	if has(r, "cas") {
		v, err := strconv.ParseUint(q.Get("cas"), 10, 64)
		if err != nil {
			return nil, err
		}
		cas = v
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		body = nil // an empty body is stored as a null Value
	}
	in := &kvEntry{Key: key, Flags: flags, Value: body}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case has(r, "release"):
		return s.kvReleaseLocked(in, q.Get("release"))
	case has(r, "acquire"):
		return s.kvAcquireLocked(in, q.Get("acquire"))
	case has(r, "cas"):
		idx := s.commitLocked()
		old, ok := s.kv[key]
		if (cas == 0 && ok) || (cas != 0 && (!ok || old.ModifyIndex != cas)) {
			return false, nil
		}
		s.kvSetLocked(idx, in, false)
		return true, nil
	default:
		s.kvSetLocked(s.commitLocked(), in, false)
		return true, nil
	}
}

// kvSetLocked writes an entry the way Consul's kvsSetTxn does: CreateIndex
// kept, Session kept unless updateSession, and no change at all (ModifyIndex
// kept) when nothing differs. A plain write does not carry LockIndex over.
func (s *Server) kvSetLocked(idx uint64, in *kvEntry, updateSession bool) {
	old, ok := s.kv[in.Key]
	in.CreateIndex = idx
	if ok {
		in.CreateIndex = old.CreateIndex
	}
	if !updateSession {
		in.Session = ""
		if ok {
			in.Session = old.Session
		}
	}
	if ok && old.same(in) {
		return
	}
	in.ModifyIndex = idx
	s.kv[in.Key] = in
	delete(s.tombs, in.Key)
	s.kvsIndex = idx
}

// kvAcquireLocked is PUT ?acquire: false during the key's lock-delay (checked
// before the raft write, as Consul's leader does), an error for an unknown
// session, true for the holder and for a free key.
func (s *Server) kvAcquireLocked(in *kvEntry, sid string) (any, error) {
	if until, ok := s.lockDelay[in.Key]; ok {
		if time.Now().Before(until) {
			return false, nil
		}
		delete(s.lockDelay, in.Key)
	}
	idx := s.commitLocked()
	if sid == "" {
		return nil, internalError("raft apply failed: missing session")
	}
	if _, ok := s.sessions[sid]; !ok {
		return nil, internalError("raft apply failed: invalid session %q", sid)
	}
	in.Session = sid
	in.LockIndex = 1
	if old, ok := s.kv[in.Key]; ok {
		switch old.Session {
		case sid:
			in.LockIndex = old.LockIndex
		case "":
			in.LockIndex = old.LockIndex + 1
		default:
			return false, nil
		}
	}
	s.kvSetLocked(idx, in, true)
	return true, nil
}

// kvReleaseLocked is PUT ?release: only the holder releases; the request's
// value and flags are written, LockIndex is kept, and no lock-delay starts.
func (s *Server) kvReleaseLocked(in *kvEntry, sid string) (any, error) {
	idx := s.commitLocked()
	if sid == "" {
		return nil, internalError("raft apply failed: missing session")
	}
	old, ok := s.kv[in.Key]
	if !ok || old.Session != sid {
		return false, nil
	}
	in.Session = ""
	in.LockIndex = old.LockIndex
	s.kvSetLocked(idx, in, true)
	return true, nil
}

func (s *Server) kvDelete(_ http.ResponseWriter, r *http.Request) (any, error) {
	key := r.PathValue("key")
	if err := conflicting(r, "recurse", "cas"); err != nil {
		return nil, err
	}
	recurse := has(r, "recurse")
	if !recurse && key == "" {
		return nil, badRequest("Missing key name")
	}
	var cas uint64
	casGiven := has(r, "cas")
	if casGiven {
		v, err := strconv.ParseUint(r.URL.Query().Get("cas"), 10, 64)
		if err != nil {
			return nil, err
		}
		cas = v
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.commitLocked()
	switch {
	case recurse:
		for k := range s.kv {
			if strings.HasPrefix(k, key) {
				s.kvDeleteLocked(idx, k)
			}
		}
		return true, nil
	case casGiven:
		old, ok := s.kv[key]
		if !ok || old.ModifyIndex != cas {
			return !ok, nil
		}
		s.kvDeleteLocked(idx, key)
		return true, nil
	default:
		s.kvDeleteLocked(idx, key)
		return true, nil
	}
}

func (s *Server) kvDeleteLocked(idx uint64, key string) {
	if _, ok := s.kv[key]; !ok {
		return
	}
	delete(s.kv, key)
	s.tombs[key] = idx
	s.kvsIndex = idx
}
