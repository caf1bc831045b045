package fakeconsul

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"time"
)

const (
	behaviorRelease = "release"
	behaviorDelete  = "delete"
	// lockDelayMinThreshold: a LockDelay below this many nanoseconds is
	// taken as seconds (Consul's FixupLockDelay).
	lockDelayMinThreshold = 1000
)

// session is a live session. Its JSON form is the wire form of
// /v1/session/info (LockDelay in nanoseconds).
type session struct {
	ID            string
	Name          string
	Node          string
	LockDelay     time.Duration
	Behavior      string
	TTL           string
	NodeChecks    []string
	ServiceChecks []serviceCheckRef
	CreateIndex   uint64
	ModifyIndex   uint64

	ttl     time.Duration // parsed TTL; 0 = none
	expires time.Time     // zero when there is no TTL
}

type serviceCheckRef struct {
	ID        string
	Namespace string
}

// linksCheck reports whether the session is invalidated with the check.
func (se *session) linksCheck(id string) bool {
	if slices.Contains(se.NodeChecks, id) {
		return true
	}
	return slices.ContainsFunc(se.ServiceChecks, func(c serviceCheckRef) bool { return c.ID == id })
}

// createRequest is the body of PUT /v1/session/create. Checks and NodeChecks
// are pointers to tell "absent" (default serfHealth) from "empty" (no checks).
type createRequest struct {
	Name          string
	Node          string
	LockDelay     json.RawMessage
	Behavior      string
	TTL           string
	Checks        *[]string
	NodeChecks    *[]string
	ServiceChecks []serviceCheckRef
}

func (s *Server) sessionCreate(_ http.ResponseWriter, r *http.Request) (any, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var req createRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, badRequest("Request decode failed: %v", err)
		}
	}
	se := &session{
		Name:          req.Name,
		Node:          req.Node,
		LockDelay:     defaultLockDelay,
		Behavior:      req.Behavior,
		TTL:           req.TTL,
		NodeChecks:    []string{serfCheckID},
		ServiceChecks: req.ServiceChecks,
	}
	if se.Node == "" {
		se.Node = nodeName
	}
	if len(req.LockDelay) > 0 {
		if se.LockDelay, err = parseLockDelay(req.LockDelay); err != nil {
			return nil, badRequest("Request decode failed: %v", err)
		}
	}
	// Consul's fixupEmptySessionChecks: "Checks": [] means no checks at all;
	// the deprecated Checks otherwise add to NodeChecks.
	if req.NodeChecks != nil {
		se.NodeChecks = *req.NodeChecks
	}
	if req.Checks != nil {
		if len(*req.Checks) == 0 {
			se.NodeChecks = []string{}
		}
		for _, c := range *req.Checks {
			if !slices.Contains(se.NodeChecks, c) {
				se.NodeChecks = append(se.NodeChecks, c)
			}
		}
	}

	switch se.Behavior {
	case "":
		se.Behavior = behaviorRelease
	case behaviorRelease, behaviorDelete:
	default:
		return nil, internalError("Invalid Behavior setting '%s'", se.Behavior)
	}
	if se.TTL != "" {
		ttl, err := time.ParseDuration(se.TTL)
		if err != nil {
			return nil, internalError("Session TTL '%s' invalid: %v", se.TTL, err)
		}
		if ttl != 0 && (ttl < s.opts.MinSessionTTL || ttl > maxSessionTTL) {
			return nil, internalError("Invalid Session TTL '%d', must be between [%v=%v]", ttl, s.opts.MinSessionTTL, maxSessionTTL)
		}
		se.ttl = ttl
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if se.Node != nodeName {
		return nil, internalError("raft apply failed: Missing node registration")
	}
	ids := slices.Clone(se.NodeChecks)
	for _, c := range se.ServiceChecks {
		ids = append(ids, c.ID)
	}
	for _, id := range ids {
		status, ok := s.checkStatusLocked(id)
		if !ok {
			return nil, internalError("raft apply failed: Missing check '%s' registration", id)
		}
		if status == statusCritical {
			return nil, internalError("raft apply failed: Check '%s' is in critical state", id)
		}
	}
	se.ID = newUUID()
	idx := s.commitLocked()
	se.CreateIndex, se.ModifyIndex = idx, idx
	s.sessIndex = idx
	if se.ttl > 0 {
		se.expires = time.Now().Add(se.ttl * sessionTTLMultiplier)
	}
	s.sessions[se.ID] = se
	s.kickReaper()
	return struct{ ID string }{se.ID}, nil
}

// parseLockDelay follows Consul's FixupLockDelay: a duration string or a
// number of nanoseconds, where values below 1000ns mean seconds.
func parseLockDelay(raw json.RawMessage) (time.Duration, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, err
	}
	var d time.Duration
	switch v := v.(type) {
	case string:
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, err
		}
	case float64:
		d = time.Duration(v)
	case nil:
		return defaultLockDelay, nil
	default:
		return 0, fmt.Errorf("LockDelay: unexpected %T", v)
	}
	if d < lockDelayMinThreshold {
		d *= time.Second
	}
	return d, nil
}

func (s *Server) sessionDestroy(_ http.ResponseWriter, r *http.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidateSessionLocked(r.PathValue("id"))
	return true, nil
}

func (s *Server) sessionRenew(_ http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.sessions[id]
	if !ok {
		return nil, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("Session id '%s' not found", id)}
	}
	if se.ttl > 0 {
		se.expires = time.Now().Add(se.ttl * sessionTTLMultiplier)
		s.kickReaper()
	}
	return []session{*se}, nil
}

func (s *Server) sessionInfo(w http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	return s.blockingQuery(w, r, func() (uint64, any, error) {
		out := []session{}
		if se, ok := s.sessions[id]; ok {
			out = append(out, *se)
		}
		return s.sessIndex, out, nil
	})
}

func (s *Server) sessionList(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.blockingQuery(w, r, func() (uint64, any, error) {
		return s.sessIndex, s.sessionsLocked(""), nil
	})
}

func (s *Server) sessionNode(w http.ResponseWriter, r *http.Request) (any, error) {
	node := r.PathValue("node")
	return s.blockingQuery(w, r, func() (uint64, any, error) {
		return s.sessIndex, s.sessionsLocked(node), nil
	})
}

// sessionsLocked copies the sessions (of node, if given), sorted by ID as
// Consul lists them.
func (s *Server) sessionsLocked(node string) []session {
	out := []session{}
	for _, se := range s.sessions {
		if node == "" || se.Node == node {
			out = append(out, *se)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// invalidateSessionLocked destroys a session in one write: the keys it holds
// are released or deleted (its behavior) and get its lock-delay.
func (s *Server) invalidateSessionLocked(id string) {
	se, ok := s.sessions[id]
	if !ok {
		return
	}
	idx := s.commitLocked()
	delete(s.sessions, id)
	s.sessIndex = idx
	delay := min(se.LockDelay, maxLockDelay)
	now := time.Now()
	for key, e := range s.kv {
		if e.Session != id {
			continue
		}
		switch se.Behavior {
		case behaviorDelete:
			delete(s.kv, key)
			s.tombs[key] = idx
		default:
			released := *e
			released.Session = ""
			released.ModifyIndex = idx
			s.kv[key] = &released
		}
		if delay > 0 {
			s.lockDelay[key] = now.Add(delay)
		}
		s.kvsIndex = idx
	}
}

// invalidateSessionsForCheckLocked invalidates the sessions linked to a check
// that went critical or was removed.
func (s *Server) invalidateSessionsForCheckLocked(checkID string) {
	var ids []string
	for id, se := range s.sessions {
		if se.linksCheck(checkID) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		s.invalidateSessionLocked(id)
	}
}

func (s *Server) kickReaper() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// reapSessions invalidates sessions whose TTL ran out without renewal, at
// the moment they run out.
func (s *Server) reapSessions() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		var next time.Time
		var expired []string
		for id, se := range s.sessions {
			switch {
			case se.expires.IsZero():
			case !se.expires.After(now):
				expired = append(expired, id)
			case next.IsZero() || se.expires.Before(next):
				next = se.expires
			}
		}
		sort.Strings(expired)
		for _, id := range expired {
			s.invalidateSessionLocked(id)
		}
		s.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = next.Sub(now)
		}
		t.Reset(wait)
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// newUUID returns a random UUID in Consul's format.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
