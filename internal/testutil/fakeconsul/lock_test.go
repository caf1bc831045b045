package fakeconsul_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
)

// lockOpts is what a leader election with the official client looks like,
// with the fake's lowered session minimum keeping renewals fast.
func lockOpts(key string) *api.LockOptions {
	return &api.LockOptions{Key: key, Value: []byte("leader"), SessionTTL: "1s", LockWaitTime: 2 * time.Second}
}

func lockNow(t *testing.T, l *api.Lock) <-chan struct{} {
	t.Helper()
	lost, err := l.Lock(nil)
	if err != nil || lost == nil {
		t.Fatalf("lock = %v, %v", lost, err)
	}
	return lost
}

func unlock(t *testing.T, l *api.Lock) {
	t.Helper()
	if err := l.Unlock(); err != nil {
		t.Fatalf("unlock: %v", err)
	}
}

func TestLock_ContenderWaitsForUnlock(t *testing.T) {
	t.Parallel()
	const key = "switchboard/leader"
	srv := fakeconsul.New(t, fakeconsul.Options{MinSessionTTL: time.Second})
	parked := parks(srv)
	c := newClient(t, srv)

	first, err := c.LockOpts(lockOpts(key))
	if err != nil {
		t.Fatalf("lock opts: %v", err)
	}
	lost1 := lockNow(t, first)
	p, _ := getKV(t, c, key)
	if p == nil || p.Session == "" || p.Flags != api.LockFlagValue || p.LockIndex != 1 || string(p.Value) != "leader" {
		t.Fatalf("lock key = %+v, want held with the lock flag", p)
	}

	second, err := c.LockOpts(lockOpts(key))
	if err != nil {
		t.Fatalf("lock opts: %v", err)
	}
	type result struct {
		lost <-chan struct{}
		err  error
	}
	got := make(chan result, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		lost, err := second.Lock(stop)
		got <- result{lost, err}
	}()
	// The contender parks on the key (the holder's monitor reads it with
	// ?consistent; the contender does not).
	awaitPark(t, parked, "/v1/kv/"+key, func(r *http.Request) bool { return !r.URL.Query().Has("consistent") })
	select {
	case r := <-got:
		t.Fatalf("contender got the lock while it was held: %v, %v", r.lost, r.err)
	default:
	}

	unlock(t, first)
	var r result
	select {
	case r = <-got:
	case <-time.After(5 * time.Second):
		t.Fatalf("contender did not get the lock after unlock")
	}
	if r.err != nil || r.lost == nil {
		t.Fatalf("contender lock = %v, %v", r.lost, r.err)
	}
	select {
	case <-lost1:
	case <-time.After(5 * time.Second):
		t.Fatalf("first holder's channel still open after it unlocked")
	}
	p, _ = getKV(t, c, key)
	if p.LockIndex != 2 {
		t.Fatalf("LockIndex = %d after the second holder took over, want 2", p.LockIndex)
	}

	// A one-shot contender gives up after LockWaitTime with (nil, nil).
	opts := lockOpts(key)
	opts.LockTryOnce, opts.LockWaitTime = true, 300*time.Millisecond
	third, err := c.LockOpts(opts)
	if err != nil {
		t.Fatalf("lock opts: %v", err)
	}
	start := time.Now()
	lost3, err := third.Lock(nil)
	if lost3 != nil || err != nil || time.Since(start) < opts.LockWaitTime {
		t.Fatalf("one-shot contender = %v, %v after %v; want nil, nil after >= %v", lost3, err, time.Since(start), opts.LockWaitTime)
	}
	unlock(t, second)
}

func TestLock_Lost(t *testing.T) {
	tests := []struct {
		name string
		// lose makes the holder lose the lock; it gets the lock's session.
		lose func(srv *fakeconsul.Server, session string)
		// released: the key is free afterwards (the session is gone).
		released bool
	}{
		{name: "session invalidated", released: true,
			lose: func(srv *fakeconsul.Server, session string) { srv.InvalidateSession(session) }},
		{name: "agent unreachable", released: false,
			lose: func(srv *fakeconsul.Server, _ string) { srv.SetDown(true) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const key = "switchboard/leader"
			srv := fakeconsul.New(t, fakeconsul.Options{MinSessionTTL: time.Second})
			parked := parks(srv)
			c := newClient(t, srv)

			l, err := c.LockOpts(lockOpts(key))
			if err != nil {
				t.Fatalf("lock opts: %v", err)
			}
			lost := lockNow(t, l)
			_, session, ok := srv.KV(key)
			if !ok || session == "" {
				t.Fatalf("lock key not held after Lock")
			}
			// The holder's monitor is waiting on the key.
			awaitPark(t, parked, "/v1/kv/"+key, func(r *http.Request) bool { return r.URL.Query().Has("consistent") })

			tt.lose(srv, session)
			select {
			case <-lost:
			case <-time.After(5 * time.Second):
				t.Fatalf("lost channel still open")
			}
			srv.SetDown(false)
			p, _ := getKV(t, c, key)
			if p == nil || (p.Session == "") != tt.released || p.LockIndex != 1 {
				t.Fatalf("key after loss = %+v, want released=%v with LockIndex 1", p, tt.released)
			}
			// As recorded: Unlock after a loss is not an error.
			unlock(t, l)
			if tt.released && slices.Contains(srv.Sessions(), session) {
				t.Fatalf("invalidated session %s still listed", session)
			}
		})
	}
}
