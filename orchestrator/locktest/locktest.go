// Package locktest is the conformance suite every orchestrator.Lock must
// pass: the in-process lock against itself, the Consul lock against the
// fake Consul and, when CONSUL_HTTP_ADDR is set, against a real agent.
// It checks leadership as the orchestrator relies on it: fn runs alone,
// with a live context that ends the moment leadership is lost, and a Held
// that stops vouching for a term once it is over.
//
// The suite waits on events, never on sleeps, and asserts no upper bound
// on time but a generous one (patience), so a slow machine makes it slow,
// not flaky.
package locktest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/orchestrator"
)

// Harness adapts one Lock implementation to the suite.
type Harness struct {
	// New returns a fresh contender for the same lock (call it twice for
	// two contenders).
	New func(t *testing.T) orchestrator.Lock
	// Revoke takes leadership away from whoever holds it now, as a Consul
	// session invalidation would.
	Revoke func(t *testing.T)
	// LockDelay is how long a new holder must wait after a revoke (0 for
	// memlock).
	LockDelay time.Duration
}

// patience bounds every wait for something that must happen. It is far
// above any correct implementation's latency; reaching it means the event
// will never come.
const patience = 30 * time.Second

// contendWindow is how long a holder keeps the lock while the suite waits
// for a forbidden event (a second fn starting). A negative cannot be
// observed as an event; the window gives a broken implementation every
// chance to show itself, and a slow machine can only make the check
// weaker, never make a correct lock fail.
const contendWindow = 300 * time.Millisecond

// Run runs the suite as subtests of t. Subtests run one after another and
// each ends with the lock free, so one lock may back the whole run.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil || h.Revoke == nil {
		t.Fatal("locktest: Harness needs New and Revoke")
	}
	tests := []struct {
		name string
		run  func(t *testing.T, h Harness)
	}{
		{name: "RunsWithLiveContext", run: testLiveContext},
		{name: "Exclusive", run: testExclusive},
		{name: "RevokeCancelsHolder", run: testRevoke},
		{name: "CancelWhileWaiting", run: testCancelWhileWaiting},
		{name: "CancelWhileHolding", run: testCancelWhileHolding},
		{name: "ReturnsFnError", run: testFnError},
		{name: "ReacquireAfterRelease", run: testReacquire},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

// testLiveContext: fn runs with a live ctx and a Held whose Check passes;
// once RunWhileHeld returned, that ctx is done and Check fails.
func testLiveContext(t *testing.T, h Harness) {
	c := start(t, h.New(t), nil)
	tm := Recv(t, c.started, "fn never ran")
	if err := tm.ctx.Err(); err != nil {
		t.Fatalf("fn's ctx is done on entry: %v", err)
	}
	if err := tm.held.Check(TestContext(t)); err != nil {
		t.Fatalf("Check while holding: %v", err)
	}
	c.finish <- nil
	Recv(t, c.done, "RunWhileHeld did not return after fn returned")
	if c.err != nil {
		t.Fatalf("RunWhileHeld = %v, want nil (fn returned nil)", c.err)
	}
	select {
	case <-tm.ctx.Done():
	default:
		t.Fatal("fn's ctx is still live after RunWhileHeld returned")
	}
	if err := tm.held.Check(TestContext(t)); err == nil {
		t.Fatal("Check passed after the term ended; a stale Held must not vouch for leadership")
	}
}

// testExclusive: a second contender's fn does not start while the first
// runs, and starts after the first returns.
func testExclusive(t *testing.T, h Harness) {
	ov := &overlap{}
	a := start(t, h.New(t), ov)
	ta := Recv(t, a.started, "first contender never acquired")
	b := start(t, h.New(t), ov)
	notStarted(t, b, "second contender's fn started while the first held the lock")
	if err := ta.ctx.Err(); err != nil {
		t.Fatalf("holder's ctx ended while a second contender waited: %v", err)
	}
	if err := ta.held.Check(TestContext(t)); err != nil {
		t.Fatalf("holder's Check failed while a second contender waited: %v", err)
	}

	a.finish <- nil
	Recv(t, a.done, "first RunWhileHeld did not return after fn returned")
	if a.err != nil {
		t.Fatalf("first RunWhileHeld = %v, want nil", a.err)
	}
	tb := Recv(t, b.started, "second contender never acquired after the first released")
	if err := tb.held.Check(TestContext(t)); err != nil {
		t.Fatalf("second holder's Check: %v", err)
	}
	b.finish <- nil
	Recv(t, b.done, "second RunWhileHeld did not return after fn returned")
	if ov.violated.Load() {
		t.Fatal("two fns ran at the same time")
	}
}

// testRevoke: Revoke cancels the holder's ctx promptly and fails its
// Check; a waiting contender acquires, but not before LockDelay; the
// revoked contender can lead again later.
func testRevoke(t *testing.T, h Harness) {
	la := h.New(t)
	a := start(t, la, nil)
	ta := Recv(t, a.started, "first contender never acquired")
	b := start(t, h.New(t), nil)
	notStarted(t, b, "second contender's fn started while the first held the lock")

	revoked := time.Now() // the revoke takes effect after this instant
	h.Revoke(t)
	Recv(t, ta.ctx.Done(), "holder's ctx not canceled after Revoke")
	if err := ta.held.Check(TestContext(t)); err == nil {
		t.Fatal("Check passed after Revoke")
	}
	Recv(t, a.done, "revoked RunWhileHeld did not return after its fn returned")

	tb := Recv(t, b.started, "second contender never acquired after Revoke")
	if d := tb.at.Sub(revoked); d < h.LockDelay {
		t.Fatalf("second contender acquired %s after Revoke, before the lock-delay of %s", d, h.LockDelay)
	}
	if err := tb.held.Check(TestContext(t)); err != nil {
		t.Fatalf("new holder's Check: %v", err)
	}

	again := start(t, la, nil)
	notStarted(t, again, "revoked contender acquired again while the new holder held the lock")
	b.finish <- nil
	Recv(t, b.done, "second RunWhileHeld did not return after fn returned")
	tg := Recv(t, again.started, "revoked contender never acquired again")
	if err := tg.held.Check(TestContext(t)); err != nil {
		t.Fatalf("Check after leading again: %v", err)
	}
	again.finish <- nil
	Recv(t, again.done, "RunWhileHeld did not return after fn returned")
}

// testCancelWhileWaiting: a waiter whose ctx ends returns ctx's error
// without running fn and without disturbing the holder or later
// contenders.
func testCancelWhileWaiting(t *testing.T, h Harness) {
	a := start(t, h.New(t), nil)
	ta := Recv(t, a.started, "first contender never acquired")
	b := start(t, h.New(t), nil)
	notStarted(t, b, "second contender's fn started while the first held the lock")

	b.cancel()
	Recv(t, b.done, "RunWhileHeld did not return when its ctx was canceled while waiting")
	if !errors.Is(b.err, context.Canceled) {
		t.Fatalf("canceled waiter's RunWhileHeld = %v, want context.Canceled", b.err)
	}
	select {
	case <-b.started:
		t.Fatal("fn ran although ctx was canceled while waiting")
	default:
	}
	if err := ta.held.Check(TestContext(t)); err != nil {
		t.Fatalf("holder's Check after a waiter gave up: %v", err)
	}

	a.finish <- nil
	Recv(t, a.done, "RunWhileHeld did not return after fn returned")
	c := start(t, h.New(t), nil)
	Recv(t, c.started, "a new contender never acquired after the holder released")
	c.finish <- nil
	Recv(t, c.done, "RunWhileHeld did not return after fn returned")
}

// testCancelWhileHolding: canceling the holder's ctx cancels fn's ctx,
// RunWhileHeld returns ctx's error, and the lock is released voluntarily:
// the next contender does not wait out a lock-delay.
func testCancelWhileHolding(t *testing.T, h Harness) {
	a := start(t, h.New(t), nil)
	ta := Recv(t, a.started, "first contender never acquired")
	b := start(t, h.New(t), nil)
	notStarted(t, b, "second contender's fn started while the first held the lock")

	a.cancel()
	Recv(t, ta.ctx.Done(), "fn's ctx not canceled when RunWhileHeld's ctx was")
	Recv(t, a.done, "RunWhileHeld did not return when its ctx was canceled while holding")
	if !errors.Is(a.err, context.Canceled) {
		t.Fatalf("RunWhileHeld = %v, want context.Canceled", a.err)
	}
	tb := Recv(t, b.started, "second contender never acquired after the holder's ctx was canceled")
	// A voluntary release imposes no lock-delay. A hand-off takes
	// milliseconds, so a lock-delay of a second or more is a generous
	// bound; shorter ones cannot be told apart from a slow machine.
	if d := tb.at.Sub(a.returned); h.LockDelay >= time.Second && d >= h.LockDelay {
		t.Fatalf("second contender acquired %s after a voluntary release: lock-delay (%s) applied", d, h.LockDelay)
	}
	b.finish <- nil
	Recv(t, b.done, "RunWhileHeld did not return after fn returned")
}

// testFnError: fn's error comes back from RunWhileHeld, and the lock is
// free afterwards.
func testFnError(t *testing.T, h Harness) {
	errLead := errors.New("locktest: leader failed")
	a := start(t, h.New(t), nil)
	Recv(t, a.started, "fn never ran")
	a.finish <- errLead
	Recv(t, a.done, "RunWhileHeld did not return after fn returned")
	if !errors.Is(a.err, errLead) {
		t.Fatalf("RunWhileHeld = %v, want fn's error %v", a.err, errLead)
	}
	b := start(t, h.New(t), nil)
	Recv(t, b.started, "lock not free after fn failed")
	b.finish <- nil
	Recv(t, b.done, "RunWhileHeld did not return after fn returned")
}

// testReacquire: one contender leads several terms in a row, each with a
// fresh live ctx, and another contender follows.
func testReacquire(t *testing.T, h Harness) {
	l := h.New(t)
	var prev *term
	for i := range 3 {
		c := start(t, l, nil)
		tc := Recv(t, c.started, "fn never ran")
		if err := tc.ctx.Err(); err != nil {
			t.Fatalf("term %d: fn's ctx is done on entry: %v", i, err)
		}
		if err := tc.held.Check(TestContext(t)); err != nil {
			t.Fatalf("term %d: Check: %v", i, err)
		}
		if prev != nil {
			if err := prev.held.Check(TestContext(t)); err == nil {
				t.Fatalf("term %d: the previous term's Held still passes Check", i)
			}
		}
		c.finish <- nil
		Recv(t, c.done, "RunWhileHeld did not return after fn returned")
		if c.err != nil {
			t.Fatalf("term %d: RunWhileHeld = %v", i, c.err)
		}
		prev = &tc
	}
	o := start(t, h.New(t), nil)
	Recv(t, o.started, "another contender never acquired after the repeated terms")
	o.finish <- nil
	Recv(t, o.done, "RunWhileHeld did not return after fn returned")
}

// term is what fn saw on entry.
type term struct {
	ctx  context.Context
	held orchestrator.Held
	at   time.Time
}

// overlap detects two fns running at once.
type overlap struct {
	inside   atomic.Int32
	violated atomic.Bool
}

// contender runs RunWhileHeld in the background with an fn the test
// steers: fn reports its entry on started, then returns what is sent on
// finish, or its ctx's cause when that ends first.
type contender struct {
	cancel  context.CancelFunc
	started chan term
	finish  chan error
	done    chan struct{}
	// err and returned are RunWhileHeld's result and when it came; read
	// them only after done is closed.
	err      error
	returned time.Time
}

// start runs l.RunWhileHeld in a goroutine the test owns: the cleanup
// cancels it and waits (up to patience) for it to return.
func start(t *testing.T, l orchestrator.Lock, ov *overlap) *contender {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &contender{
		cancel:  cancel,
		started: make(chan term, 1),
		finish:  make(chan error, 1),
		done:    make(chan struct{}),
	}
	go func() {
		defer close(c.done)
		c.err = l.RunWhileHeld(ctx, func(ctx context.Context, held orchestrator.Held) error {
			if ov != nil {
				if ov.inside.Add(1) > 1 {
					ov.violated.Store(true)
				}
				defer ov.inside.Add(-1)
			}
			c.started <- term{ctx: ctx, held: held, at: time.Now()}
			select {
			case err := <-c.finish:
				return err
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
		c.returned = time.Now()
	}()
	t.Cleanup(func() {
		cancel()
		timer := time.NewTimer(patience)
		defer timer.Stop()
		select {
		case <-c.done:
		case <-timer.C:
			t.Errorf("RunWhileHeld still running %s after its ctx was canceled", patience)
		}
	})
	return c
}

// notStarted fails the test if c's fn starts within contendWindow.
func notStarted(t *testing.T, c *contender, msg string) {
	t.Helper()
	timer := time.NewTimer(contendWindow)
	defer timer.Stop()
	select {
	case <-c.started:
		t.Fatal(msg)
	case <-c.done:
		t.Fatalf("RunWhileHeld returned while waiting for the lock: %v", c.err)
	case <-timer.C:
	}
}

// Recv waits for ch, failing the test after a generous bound (30s); lock
// tests elsewhere share it.
func Recv[T any](t *testing.T, ch <-chan T, msg string) T {
	t.Helper()
	timer := time.NewTimer(patience)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("%s (waited %s)", msg, patience)
		var zero T
		return zero
	}
}

// TestContext bounds one call by the same generous bound.
func TestContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	t.Cleanup(cancel)
	return ctx
}
