package fakeconsul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// The one node, datacenter and server the fake pretends to be.
const (
	datacenter    = "dc1"
	nodeName      = "fakeconsul"
	nodeID        = "6d0d4a2e-3f57-4c1a-9b7e-2f1c8a9e5b10"
	nodeAddr      = "127.0.0.1"
	leaderAddr    = "127.0.0.1:8300"
	consulVersion = "1.22.7"
	serfCheckID   = "serfHealth"
	// nodeIndex is the raft index at which the node and its serfHealth check
	// were registered; the fake's store starts just after it.
	nodeIndex = 1
)

// Consul's fixed limits.
const (
	defaultMinSessionTTL = 10 * time.Second
	maxSessionTTL        = 24 * time.Hour
	sessionTTLMultiplier = 2 // a session is invalidated at 2 x TTL without renewal
	defaultLockDelay     = 15 * time.Second
	maxLockDelay         = 60 * time.Second
	defaultQueryWait     = 5 * time.Minute
	maxQueryWait         = 10 * time.Minute
	jitterFraction       = 16 // blocking queries time out after wait + rand(wait/16)
)

// Options tunes the fake where tests need Consul's limits lowered.
type Options struct {
	// MinSessionTTL is the agent's session_ttl_min: session creates with a
	// smaller non-zero TTL fail like Consul's. Zero means Consul's default,
	// 10s; tests lower it (e.g. to 1s) so TTL expiry (at 2 x TTL) stays fast.
	MinSessionTTL time.Duration
	// MinCheckInterval is the shortest interval at which service checks run;
	// a check registered with a shorter interval runs at this one. Consul
	// itself enforces 1s; the default 0 lets tests use millisecond intervals.
	MinCheckInterval time.Duration
}

// Server is a running fake Consul agent (and server) for one test.
type Server struct {
	// URL is the base URL, "http://127.0.0.1:port".
	URL string

	t      testing.TB
	opts   Options
	srv    *httptest.Server
	ctx    context.Context // canceled at cleanup; ends every goroutine
	cancel context.CancelFunc
	wg     sync.WaitGroup // session reaper and check runners
	checkc *http.Client   // runs HTTP checks
	down   atomic.Bool
	kick   chan struct{} // wakes the session reaper after a create or renew

	mu        sync.Mutex
	closed    bool
	parkHook  func(*http.Request) // tests only: a blocking query started waiting
	index     uint64              // the raft-like index, bumped by every write
	changed   chan struct{}       // closed and replaced by every write
	downCh    chan struct{}       // closed while the fake is down
	kvsIndex  uint64              // the KV table index (includes deletes)
	sessIndex uint64              // the sessions table index
	svcIndex  uint64              // the services table index
	kv        map[string]*kvEntry
	tombs     map[string]uint64    // deleted key -> index of the delete
	lockDelay map[string]time.Time // key -> end of its lock-delay
	sessions  map[string]*session
	services  map[string]*service // by service ID
	nameIndex map[string]uint64   // service name -> index of its last change
}

// New starts a fake Consul for t. Cleanup stops the HTTP server, the session
// reaper and every check runner, and waits for them.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.MinSessionTTL <= 0 {
		opts.MinSessionTTL = defaultMinSessionTTL
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		t:      t,
		opts:   opts,
		ctx:    ctx,
		cancel: cancel,
		// Consul's HTTP checks do not keep connections alive; neither do we,
		// so no idle connection outlives a check.
		checkc:    &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		kick:      make(chan struct{}, 1),
		index:     nodeIndex,
		changed:   make(chan struct{}),
		downCh:    make(chan struct{}),
		kv:        map[string]*kvEntry{},
		tombs:     map[string]uint64{},
		lockDelay: map[string]time.Time{},
		sessions:  map[string]*session{},
		services:  map[string]*service{},
		nameIndex: map[string]uint64{},
	}
	s.srv = httptest.NewServer(s.routes())
	s.URL = s.srv.URL
	s.wg.Go(s.reapSessions)
	t.Cleanup(s.stop)
	return s
}

// stop ends every goroutine the fake owns: blocking queries return (their
// connections are dropped), check runners and the reaper exit.
func (s *Server) stop() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.srv.Close()
	s.wg.Wait()
}

// Config is the client configuration for this fake, for api.NewClient.
func (s *Server) Config() *api.Config {
	return &api.Config{Address: s.srv.Listener.Addr().String(), Scheme: "http"}
}

// SetDown makes the fake unreachable (true) or reachable again (false).
// While down every request, and every blocking query already waiting, has
// its connection closed without a response, so clients see a transport
// error rather than a status. (Go's transport retries an idempotent request
// once on a fresh connection when a reused one closes; while down that retry
// fails too, but a down-up blip shorter than the retry goes unnoticed.)
// State and timers keep running, as they would on the Consul servers while
// the local agent is unreachable: sessions that are not renewed expire.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down.Load() == down {
		return
	}
	s.down.Store(down)
	if down {
		close(s.downCh)
	} else {
		s.downCh = make(chan struct{})
	}
}

// InvalidateSession invalidates a session as if its TTL expired or its node
// failed: the keys it holds are released or deleted (its behavior) and the
// lock-delay starts for them. Unknown sessions are ignored.
func (s *Server) InvalidateSession(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidateSessionLocked(id)
}

// Sessions lists the IDs of the live sessions, sorted.
func (s *Server) Sessions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.sessions))
	for id := range s.sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// KV reports a key's value and the session holding it; ok is false when the
// key does not exist.
func (s *Server) KV(key string) (value []byte, session string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.kv[key]
	if !ok {
		return nil, "", false
	}
	return append([]byte(nil), e.Value...), e.Session, true
}

// commitLocked performs a raft-like write: it bumps the index and wakes every
// blocking query, which re-evaluates its own table index.
func (s *Server) commitLocked() uint64 {
	s.index++
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

// apiError is an HTTP error answered as Consul does: status and a plain-text
// body.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

func badRequest(format string, a ...any) error {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, a...)}
}

// internalError is a 500 with Consul's text, the way Consul answers errors
// from its servers (RPC and raft apply failures).
func internalError(format string, a ...any) error {
	return &apiError{status: http.StatusInternalServerError, msg: fmt.Sprintf(format, a...)}
}

// errDrop makes the handler drop the connection without a response.
var errDrop = errors.New("fakeconsul: drop connection")

// rawBody is a response written as is instead of as JSON.
type rawBody struct {
	contentType string
	data        []byte
}

// handlerFunc handles one endpoint; the wrapper writes v as JSON or err as a
// status with a text body.
type handlerFunc func(w http.ResponseWriter, r *http.Request) (any, error)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h handlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v, err := h(w, r)
			writeResponse(w, v, err)
		})
	}
	handle("PUT /v1/session/create", s.sessionCreate)
	handle("PUT /v1/session/destroy/{id}", s.sessionDestroy)
	handle("PUT /v1/session/renew/{id}", s.sessionRenew)
	handle("GET /v1/session/info/{id}", s.sessionInfo)
	handle("GET /v1/session/list", s.sessionList)
	handle("GET /v1/session/node/{node}", s.sessionNode)

	handle("GET /v1/kv/{key...}", s.kvGet)
	handle("PUT /v1/kv/{key...}", s.kvPut)
	handle("DELETE /v1/kv/{key...}", s.kvDelete)

	handle("PUT /v1/agent/service/register", s.agentServiceRegister)
	handle("PUT /v1/agent/service/deregister/{id}", s.agentServiceDeregister)
	handle("GET /v1/agent/services", s.agentServices)
	handle("GET /v1/agent/checks", s.agentChecks)
	handle("GET /v1/agent/self", s.agentSelf)
	handle("GET /v1/health/service/{name}", s.healthService)
	handle("GET /v1/health/checks/{name}", s.healthChecks)
	handle("GET /v1/catalog/service/{name}", s.catalogService)
	handle("GET /v1/status/leader", func(http.ResponseWriter, *http.Request) (any, error) { return leaderAddr, nil })
	handle("GET /v1/status/peers", func(http.ResponseWriter, *http.Request) (any, error) { return []string{leaderAddr}, nil })

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			dropConn(w)
			return
		}
		w.Header().Set("X-Consul-Default-Acl-Policy", "allow")
		q := r.URL.Query()
		if dc := q.Get("dc"); dc != "" && dc != datacenter {
			writeResponse(w, nil, &apiError{status: http.StatusInternalServerError, msg: "No path to datacenter"})
			return
		}
		if q.Get("filter") != "" {
			writeResponse(w, nil, badRequest("fakeconsul: ?filter expressions are not supported"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeResponse(w http.ResponseWriter, v any, err error) {
	var ae *apiError
	switch {
	case errors.Is(err, errDrop):
		dropConn(w)
	case errors.Is(err, context.Canceled):
		// The client went away; there is no one to answer.
	case errors.As(err, &ae):
		if ae.msg != "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		w.WriteHeader(ae.status)
		_, _ = w.Write([]byte(ae.msg))
	case err != nil:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(err.Error()))
	default:
		if raw, ok := v.(rawBody); ok {
			w.Header().Set("Content-Type", raw.contentType)
			_, _ = w.Write(raw.data)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if v == nil {
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(err.Error()))
			return
		}
		_, _ = w.Write(b)
	}
}

// dropConn closes the client's connection without an HTTP response, the way
// an unreachable agent looks to a client.
func dropConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // closes the connection without a response
	}
	_ = conn.Close()
}

// queryFunc computes a read's answer and its index under s.mu. The answer
// must not share mutable state with the store: it is encoded after the lock
// is released. err is part of the answer (a KV 404 blocks like any answer).
type queryFunc func() (index uint64, v any, err error)

// blockingQuery answers a read with Consul's blocking-query rules: without
// ?index it answers at once; otherwise it waits until the answer's index
// exceeds ?index or ?wait (plus jitter) passes, and answers with the index
// it saw. It sets X-Consul-Index and the other query-meta headers.
func (s *Server) blockingQuery(w http.ResponseWriter, r *http.Request, q queryFunc) (any, error) {
	minIndex, wait, err := parseBlocking(r)
	if err != nil {
		return nil, err
	}
	var timeout <-chan time.Time
	if minIndex > 0 {
		d := wait
		if j := int64(wait / jitterFraction); j > 0 {
			d += time.Duration(rand.Int64N(j))
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	parked := false
	for {
		s.mu.Lock()
		idx, v, qerr := q()
		changed, down, hook := s.changed, s.downCh, s.parkHook
		s.mu.Unlock()
		idx = max(idx, 1) // Consul never answers index 0, which would not block
		if minIndex == 0 || idx > minIndex {
			return answer(w, idx, v, qerr)
		}
		if !parked && hook != nil {
			hook(r)
		}
		parked = true
		select {
		case <-changed:
		case <-timeout:
			return answer(w, idx, v, qerr)
		case <-down:
			return nil, errDrop
		case <-s.ctx.Done():
			return nil, errDrop
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
}

// answer sets the query-meta headers every Consul read carries. The client
// fails to parse a read without X-Consul-LastContact.
func answer(w http.ResponseWriter, idx uint64, v any, err error) (any, error) {
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	h.Set("X-Consul-Knownleader", "true")
	h.Set("X-Consul-Lastcontact", "0")
	h.Set("X-Consul-Query-Backend", "blocking-query")
	return v, err
}

func parseBlocking(r *http.Request) (minIndex uint64, wait time.Duration, err error) {
	q := r.URL.Query()
	if v := q.Get("index"); v != "" {
		if minIndex, err = strconv.ParseUint(v, 10, 64); err != nil {
			return 0, 0, badRequest("Invalid index")
		}
	}
	wait = defaultQueryWait
	if v := q.Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil {
			return 0, 0, badRequest("Invalid wait time")
		}
	}
	if wait <= 0 {
		wait = defaultQueryWait // as Consul: no (or a zero) wait is the default
	}
	return minIndex, min(wait, maxQueryWait), nil
}

// boolParam reads a Consul boolean query flag: present and empty is true.
func boolParam(r *http.Request, key string) (bool, error) {
	q := r.URL.Query()
	if _, ok := q[key]; !ok {
		return false, nil
	}
	v := q.Get(key)
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("Invalid value for ?%s", key)
	}
	return b, nil
}

func has(r *http.Request, key string) bool {
	_, ok := r.URL.Query()[key]
	return ok
}
