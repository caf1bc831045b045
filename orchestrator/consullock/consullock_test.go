package consullock_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/consullock"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/locktest"
)

const (
	testKey   = "llm-switchboard/leader"
	testTTL   = time.Second
	testDelay = 300 * time.Millisecond
	// patience bounds every wait for something that must happen.
	patience = 30 * time.Second
)

func TestLock_Conformance(t *testing.T) {
	srv := newFake(t)
	client := newClient(t, srv.Config())
	logger, _ := newLogger(t)
	// A second of lock-delay makes the suite's "no lock-delay after a
	// voluntary release" check meaningful.
	const lockDelay = time.Second
	locktest.Run(t, locktest.Harness{
		New: func(t *testing.T) orchestrator.Lock {
			return newLock(t, consullock.Options{Client: client, Key: testKey, Holder: t.Name(), Log: logger, LockDelay: lockDelay})
		},
		Revoke: func(t *testing.T) {
			t.Helper()
			_, session, ok := srv.KV(testKey)
			if !ok || session == "" {
				t.Fatalf("revoke: nobody holds %q", testKey)
			}
			srv.InvalidateSession(session)
		},
		LockDelay: lockDelay,
	})
	if s := srv.Sessions(); len(s) != 0 {
		t.Fatalf("sessions left behind after the suite: %v", s)
	}
}

// TestLock_RealAgent runs the conformance suite against a real Consul agent.
func TestLock_RealAgent(t *testing.T) {
	if os.Getenv("CONSUL_HTTP_ADDR") == "" {
		t.Skip("set CONSUL_HTTP_ADDR to run the lock suite against a real Consul agent (make test-real)")
	}
	client := newClient(t, api.DefaultConfig())
	key := "llm-switchboard-test/locktest-" + strings.ToLower(rand.Text())
	t.Cleanup(func() {
		if _, err := client.KV().Delete(key, nil); err != nil {
			t.Errorf("delete test key %q: %v", key, err)
		}
	})
	logger, _ := newLogger(t)
	locktest.Run(t, locktest.Harness{
		New: func(t *testing.T) orchestrator.Lock {
			return newLock(t, consullock.Options{
				Client: client, Key: key, Holder: t.Name(), Log: logger,
				SessionTTL: 10 * time.Second, LockDelay: time.Second,
			})
		},
		Revoke: func(t *testing.T) {
			t.Helper()
			pair, _, err := client.KV().Get(key, &api.QueryOptions{RequireConsistent: true})
			if err != nil {
				t.Fatalf("revoke: read %q: %v", key, err)
			}
			if pair == nil || pair.Session == "" {
				t.Fatalf("revoke: nobody holds %q", key)
			}
			if _, err := client.Session().Destroy(pair.Session, nil); err != nil {
				t.Fatalf("revoke: destroy session %s: %v", pair.Session, err)
			}
		},
		LockDelay: time.Second,
	})
}

func TestNew_Validates(t *testing.T) {
	client := newClient(t, &api.Config{Address: "127.0.0.1:1"})
	tests := []struct {
		name string
		opts consullock.Options
	}{
		{name: "no client", opts: consullock.Options{Key: testKey}},
		{name: "no key", opts: consullock.Options{Client: client}},
		{name: "key with leading slash", opts: consullock.Options{Client: client, Key: "/" + testKey}},
		{name: "negative TTL", opts: consullock.Options{Client: client, Key: testKey, SessionTTL: -time.Second}},
		{name: "negative lock-delay", opts: consullock.Options{Client: client, Key: testKey, LockDelay: -time.Second}},
		{name: "negative retry cap", opts: consullock.Options{Client: client, Key: testKey, RetryMax: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := consullock.New(tc.opts); err == nil {
				t.Fatal("New accepted invalid options")
			}
		})
	}
}

// TestLock_SessionAndValue: the session is the one the design asks for,
// and the key's value says who holds it.
func TestLock_SessionAndValue(t *testing.T) {
	srv := newFake(t)
	client := newClient(t, srv.Config())
	logger, _ := newLogger(t)
	l := newLock(t, consullock.Options{Client: client, Key: testKey, Holder: "orchestrator-a", Log: logger})

	before := time.Now().UTC()
	r := start(t, l)
	locktest.Recv(t, r.started, "never acquired")
	value, session, ok := srv.KV(testKey)
	if !ok || session == "" {
		t.Fatalf("key %q not held while fn runs (exists %v, session %q)", testKey, ok, session)
	}
	if s := srv.Sessions(); len(s) != 1 || s[0] != session {
		t.Fatalf("sessions = %v, want just the holder %s", s, session)
	}
	entry, _, err := client.Session().Info(session, nil)
	if err != nil || entry == nil {
		t.Fatalf("session info %s: %v, %v", session, entry, err)
	}
	if entry.Name != consullock.SessionName || entry.Behavior != api.SessionBehaviorRelease ||
		entry.TTL != testTTL.String() || entry.LockDelay != testDelay {
		t.Fatalf("session = name %q behavior %q TTL %q lock-delay %s, want %q release %s %s",
			entry.Name, entry.Behavior, entry.TTL, entry.LockDelay, consullock.SessionName, testTTL, testDelay)
	}

	var v struct {
		Holder string    `json:"holder"`
		Node   string    `json:"node"`
		PID    int       `json:"pid"`
		Since  time.Time `json:"since"`
	}
	if err := json.Unmarshal(value, &v); err != nil {
		t.Fatalf("lock value %q is not JSON: %v", value, err)
	}
	host, _ := os.Hostname()
	if v.Holder != "orchestrator-a" || v.Node != host || v.PID != os.Getpid() ||
		v.Since.Before(before.Truncate(time.Second)) || v.Since.After(time.Now()) {
		t.Fatalf("lock value = %+v, want holder orchestrator-a, node %q, pid %d, since after %s", v, host, os.Getpid(), before)
	}

	r.finish <- nil
	locktest.Recv(t, r.done, "RunWhileHeld did not return after fn returned")
	if _, session, _ := srv.KV(testKey); session != "" {
		t.Fatalf("key still held by %s after RunWhileHeld returned", session)
	}
	if s := srv.Sessions(); len(s) != 0 {
		t.Fatalf("sessions after RunWhileHeld returned = %v, want none (destroyed)", s)
	}
}

// TestLock_ConsulDownAtStart: RunWhileHeld logs that Consul is unreachable,
// keeps retrying, and leads once Consul is back.
func TestLock_ConsulDownAtStart(t *testing.T) {
	srv := newFake(t)
	client := newClient(t, srv.Config())
	logger, logs := newLogger(t)
	l := newLock(t, consullock.Options{Client: client, Key: testKey, Log: logger, RetryMax: 200 * time.Millisecond})

	srv.SetDown(true)
	r := start(t, l)
	want := "consul at " + srv.Config().Address + " unreachable"
	logs.waitFor(t, "an error naming the unreachable address", func(m logLine) bool {
		return m["@level"] == "error" && m["@message"] == want && m["error"] != nil
	})
	logs.waitFor(t, "a retry after the first failure", func(m logLine) bool { return m["@message"] == want })
	select {
	case <-r.started:
		t.Fatal("fn ran while Consul was down")
	case <-r.done:
		t.Fatalf("RunWhileHeld gave up while Consul was down: %v", r.err)
	default:
	}

	srv.SetDown(false)
	tm := locktest.Recv(t, r.started, "never acquired after Consul came back")
	if err := tm.held.Check(locktest.TestContext(t)); err != nil {
		t.Fatalf("Check after acquiring: %v", err)
	}
	r.finish <- nil
	locktest.Recv(t, r.done, "RunWhileHeld did not return after fn returned")
	if r.err != nil {
		t.Fatalf("RunWhileHeld = %v", r.err)
	}
}

// TestLock_ConsulDownWhileHolding: a leader that cannot renew gives up
// leadership on its own, before Consul could hand the lock to someone
// else, and leadership resumes once Consul is back.
func TestLock_ConsulDownWhileHolding(t *testing.T) {
	srv := newFake(t)
	client := newClient(t, srv.Config())
	logger, _ := newLogger(t)
	l := newLock(t, consullock.Options{Client: client, Key: testKey, Log: logger, RetryMax: 200 * time.Millisecond})

	r := start(t, l)
	tm := locktest.Recv(t, r.started, "never acquired")
	srv.SetDown(true)
	locktest.Recv(t, tm.ctx.Done(), "fn's ctx not canceled although Consul stayed unreachable past the TTL")
	if err := context.Cause(tm.ctx); !errors.Is(err, consullock.ErrLockLost) {
		t.Fatalf("fn's ctx cause = %v, want ErrLockLost", err)
	}
	if err := tm.held.Check(locktest.TestContext(t)); !errors.Is(err, consullock.ErrLockLost) {
		t.Fatalf("Check after the loss = %v, want ErrLockLost", err)
	}
	locktest.Recv(t, r.done, "RunWhileHeld did not return after fn returned, with Consul down")

	srv.SetDown(false)
	again := start(t, l)
	tg := locktest.Recv(t, again.started, "never led again after Consul came back")
	if err := tg.held.Check(locktest.TestContext(t)); err != nil {
		t.Fatalf("Check after leading again: %v", err)
	}
	again.finish <- nil
	locktest.Recv(t, again.done, "RunWhileHeld did not return after fn returned")
}

// TestLock_InvalidateSession: the monitor notices an invalidated session at
// once; fn's ctx ends with ErrLockLost and Check fails.
func TestLock_InvalidateSession(t *testing.T) {
	srv := newFake(t)
	client := newClient(t, srv.Config())
	logger, _ := newLogger(t)
	l := newLock(t, consullock.Options{Client: client, Key: testKey, Log: logger})

	r := start(t, l)
	tm := locktest.Recv(t, r.started, "never acquired")
	_, session, _ := srv.KV(testKey)
	srv.InvalidateSession(session)
	locktest.Recv(t, tm.ctx.Done(), "fn's ctx not canceled after the session was invalidated")
	if err := context.Cause(tm.ctx); !errors.Is(err, consullock.ErrLockLost) {
		t.Fatalf("fn's ctx cause = %v, want ErrLockLost", err)
	}
	if err := tm.held.Check(locktest.TestContext(t)); !errors.Is(err, consullock.ErrLockLost) {
		t.Fatalf("Check = %v, want ErrLockLost", err)
	}
	locktest.Recv(t, r.done, "RunWhileHeld did not return after fn returned")
	if !errors.Is(r.err, consullock.ErrLockLost) {
		t.Fatalf("RunWhileHeld = %v, want fn's error (ErrLockLost)", r.err)
	}
	if s := srv.Sessions(); len(s) != 0 {
		t.Fatalf("sessions left behind: %v", s)
	}
}

// TestLock_CheckReadsConsul: Check asks the Consul servers, so a holder
// whose session was invalidated fails its next Check even when its own
// monitors have not noticed yet (here: their answers are held back), and
// once the loss is known Check fails without I/O.
func TestLock_CheckReadsConsul(t *testing.T) {
	srv := newFake(t)
	tap := newGate(t, testKey)
	cfg := srv.Config()
	cfg.HttpClient = &http.Client{Transport: tap}
	client := newClient(t, cfg)
	logger, _ := newLogger(t)
	// A long TTL keeps the local lease from running out while the
	// monitors are held back.
	l := newLock(t, consullock.Options{Client: client, Key: testKey, Log: logger, SessionTTL: 10 * time.Second})

	r := start(t, l)
	tm := locktest.Recv(t, r.started, "never acquired")
	locktest.Recv(t, tap.watching, "the monitor never parked on a blocking read of the key")
	reads := tap.reads.Load()
	if err := tm.held.Check(locktest.TestContext(t)); err != nil {
		t.Fatalf("Check while holding: %v", err)
	}
	if tap.reads.Load() == reads {
		t.Fatal("Check passed without a consistent read of the key")
	}

	tap.hold()
	_, session, _ := srv.KV(testKey)
	srv.InvalidateSession(session)
	if err := tm.ctx.Err(); err != nil {
		t.Fatalf("fn's ctx ended although the monitors were held back: %v", context.Cause(tm.ctx))
	}
	reads = tap.reads.Load()
	if err := tm.held.Check(locktest.TestContext(t)); !errors.Is(err, consullock.ErrLockLost) {
		t.Fatalf("Check after invalidation = %v, want ErrLockLost", err)
	}
	if tap.reads.Load() == reads {
		t.Fatal("Check failed without reading the key")
	}
	select {
	case <-tm.ctx.Done():
	default:
		t.Fatal("a failed Check did not end the term")
	}
	reads = tap.reads.Load()
	if err := tm.held.Check(locktest.TestContext(t)); !errors.Is(err, consullock.ErrLockLost) {
		t.Fatalf("second Check = %v, want ErrLockLost", err)
	}
	if tap.reads.Load() != reads {
		t.Fatal("Check read Consul although the loss was already known")
	}
	tap.open()
	locktest.Recv(t, r.done, "RunWhileHeld did not return after fn returned")
}

// TestLock_ReleaseHasNoLockDelay: after a voluntary release the next
// contender gets the lock at once, even with Consul's maximum lock-delay.
func TestLock_ReleaseHasNoLockDelay(t *testing.T) {
	srv := newFake(t)
	client := newClient(t, srv.Config())
	logger, _ := newLogger(t)
	opts := consullock.Options{Client: client, Key: testKey, Log: logger, LockDelay: time.Minute}
	a := start(t, newLock(t, opts))
	locktest.Recv(t, a.started, "first contender never acquired")
	b := start(t, newLock(t, opts))
	a.finish <- nil
	locktest.Recv(t, a.done, "RunWhileHeld did not return after fn returned")
	// patience (30s) is half the lock-delay: acquiring within it proves
	// none applied.
	locktest.Recv(t, b.started, "second contender did not acquire after a voluntary release")
	_, holder, _ := srv.KV(testKey)
	if s := srv.Sessions(); len(s) != 1 || s[0] != holder {
		t.Fatalf("sessions = %v, want only the new holder %s", s, holder)
	}
	b.finish <- nil
	locktest.Recv(t, b.done, "RunWhileHeld did not return after fn returned")
}

// --- helpers ---

func newFake(t *testing.T) *fakeconsul.Server {
	t.Helper()
	return fakeconsul.New(t, fakeconsul.Options{MinSessionTTL: time.Second})
}

func newClient(t *testing.T, cfg *api.Config) *api.Client {
	t.Helper()
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("consul client: %v", err)
	}
	return c
}

// newLock builds a Lock with the test TTL and lock-delay unless opts set
// their own.
func newLock(t *testing.T, opts consullock.Options) *consullock.Lock {
	t.Helper()
	if opts.SessionTTL == 0 {
		opts.SessionTTL = testTTL
	}
	if opts.LockDelay == 0 {
		opts.LockDelay = testDelay
	}
	l, err := consullock.New(opts)
	if err != nil {
		t.Fatalf("consullock.New: %v", err)
	}
	return l
}

// term is what fn saw on entry.
type term struct {
	ctx  context.Context
	held orchestrator.Held
}

// run is RunWhileHeld in a goroutine the test owns, with an fn the test
// steers: fn reports on started, then returns what is sent on finish, or
// its ctx's cause when that ends first.
type run struct {
	started chan term
	finish  chan error
	done    chan struct{}
	err     error // RunWhileHeld's result; read after done is closed
}

func start(t *testing.T, l orchestrator.Lock) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{started: make(chan term, 1), finish: make(chan error, 1), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = l.RunWhileHeld(ctx, func(ctx context.Context, held orchestrator.Held) error {
			r.started <- term{ctx: ctx, held: held}
			select {
			case err := <-r.finish:
				return err
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		timer := time.NewTimer(patience)
		defer timer.Stop()
		select {
		case <-r.done:
		case <-timer.C:
			t.Errorf("RunWhileHeld still running %s after its ctx was canceled", patience)
		}
	})
	return r
}

// logLine is one decoded hclog JSON line.
type logLine map[string]any

// logSink collects a logger's JSON lines so tests can wait for one; they
// are printed when the test fails.
type logSink struct {
	mu      sync.Mutex
	partial []byte
	lines   []logLine
	raw     []string
	notify  chan struct{}
}

func newLogger(t *testing.T) (hclog.Logger, *logSink) {
	t.Helper()
	s := &logSink{notify: make(chan struct{}, 1)}
	t.Cleanup(func() {
		if t.Failed() {
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Logf("lock log:\n%s", strings.Join(s.raw, "\n"))
		}
	})
	return hclog.New(&hclog.LoggerOptions{Output: s, JSONFormat: true, Level: hclog.Trace}), s
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		line := string(s.partial[:i])
		s.partial = s.partial[i+1:]
		s.raw = append(s.raw, line)
		var m logLine
		if json.Unmarshal([]byte(line), &m) == nil {
			s.lines = append(s.lines, m)
		}
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

// waitFor waits for a line, logged after the previous waitFor's match,
// that matches.
func (s *logSink) waitFor(t *testing.T, what string, match func(logLine) bool) {
	t.Helper()
	timer := time.NewTimer(patience)
	defer timer.Stop()
	for {
		s.mu.Lock()
		for len(s.lines) > 0 {
			m := s.lines[0]
			s.lines = s.lines[1:]
			if match(m) {
				s.mu.Unlock()
				return
			}
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-timer.C:
			t.Fatalf("never logged %s (waited %s)", what, patience)
		}
	}
}

// gate sits between the Consul client and the fake. It counts the
// consistent one-shot reads of the key (what Check does), reports when a
// consistent blocking read of it is waiting (the lock's monitor), and,
// while held, holds back the answers to blocking reads and session
// renewals so the lock's own monitors cannot see a change.
type gate struct {
	base     *http.Transport
	key      string
	reads    atomic.Int64
	watching chan struct{}

	mu   sync.Mutex
	held chan struct{} // non-nil while holding; closed by open
}

func newGate(t *testing.T, key string) *gate {
	t.Helper()
	g := &gate{base: http.DefaultTransport.(*http.Transport).Clone(), key: key, watching: make(chan struct{}, 1)}
	t.Cleanup(g.open)
	t.Cleanup(g.base.CloseIdleConnections)
	return g
}

func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = make(chan struct{})
	}
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held != nil {
		close(g.held)
		g.held = nil
	}
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	q := r.URL.Query()
	keyRead := r.Method == http.MethodGet && r.URL.Path == "/v1/kv/"+g.key && q.Has("consistent")
	blocking := r.Method == http.MethodGet && q.Has("index")
	renew := r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/session/renew/")
	switch {
	case keyRead && !blocking:
		g.reads.Add(1)
	case keyRead:
		select {
		case g.watching <- struct{}{}:
		default:
		}
	}
	resp, err := g.base.RoundTrip(r)
	if !blocking && !renew {
		return resp, err
	}
	g.mu.Lock()
	held := g.held
	g.mu.Unlock()
	if held == nil {
		return resp, err
	}
	select {
	case <-held:
		return resp, err
	case <-r.Context().Done():
		if resp != nil {
			resp.Body.Close()
		}
		return nil, r.Context().Err()
	}
}
