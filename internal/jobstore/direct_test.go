package jobstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
)

// The direct route's lease lifecycle: a lease is granted only while
// admission is open, extends after a close only to the drain deadline,
// and the leader sees it until it is released or expires.
func TestDirect_LeaseLifecycle(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const slot = "s"
	a := jobstore.Admission{Open: true, Model: "m", Backend: "http://b"}

	// Nothing open: no lease.
	g, err := s.RenewLease(ctx, slot, "gw1", time.Second, false, nil)
	if err != nil || g.Open || g.Granted != 0 {
		t.Fatalf("renew before any admission = %+v, %v", g, err)
	}

	if _, _, err := s.SetAdmission(ctx, slot, 3, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	g, err = s.RenewLease(ctx, slot, "gw1", 2*time.Second, true, nil)
	if err != nil || !g.Open || g.Epoch <= 0 || g.Model != "m" || g.Backend != "http://b" || g.Granted != 2*time.Second {
		t.Fatalf("renew on open admission = %+v, %v", g, err)
	}
	epoch := g.Epoch
	if n, left, err := s.LiveLeases(ctx, slot); err != nil || n != 1 || left <= 0 || left > 2*time.Second {
		t.Fatalf("live leases = %d, %s, %v", n, left, err)
	}
	if used, err := s.LastDirectUse(ctx, slot); err != nil || time.Since(used) > time.Minute {
		t.Fatalf("last use = %s, %v", used, err)
	}

	// A paused older leader cannot reopen or close a newer admission.
	if _, _, err := s.SetAdmission(ctx, slot, 2, jobstore.Admission{}, time.Minute); !errors.Is(err, jobstore.ErrStaleLeader) {
		t.Fatalf("stale close = %v, want ErrStaleLeader", err)
	}

	// Closed with a short drain: the held lease extends to the drain
	// deadline at most, and no new one is granted.
	n, _, err := s.SetAdmission(ctx, slot, 3, jobstore.Admission{Model: "m", Backend: "http://b"}, 300*time.Millisecond)
	if err != nil || n != 1 {
		t.Fatalf("close = %d, %v", n, err)
	}
	g, err = s.RenewLease(ctx, slot, "gw1", 10*time.Second, false, []int64{epoch})
	if err != nil || g.Open || g.Granted != 0 {
		t.Fatalf("renew after close = %+v, %v", g, err)
	}
	if left := g.Held[epoch]; left <= 0 || left > 2*time.Second {
		t.Fatalf("held lease after close has %s left; want at most the earlier grant", left)
	}
	g2, err := s.RenewLease(ctx, slot, "gw2", 10*time.Second, false, []int64{epoch})
	if err != nil || g2.Held[epoch] != 0 {
		t.Fatalf("a gateway without a lease got %+v, %v", g2, err)
	}

	// Released: the leader sees none.
	if err := s.ReleaseLease(ctx, slot, jobstore.LeaseMember("gw1", epoch)); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.LiveLeases(ctx, slot); err != nil || n != 0 {
		t.Fatalf("live leases after release = %d, %v", n, err)
	}

	// A lease nobody renews expires by itself.
	if _, _, err := s.SetAdmission(ctx, slot, 4, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RenewLease(ctx, slot, "gw3", 100*time.Millisecond, false, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, _, err := s.LiveLeases(ctx, slot)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an unrenewed lease never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Gateways hear admission changes; the leader hears releases. A renewal
// that changes nothing publishes nothing.
func TestDirect_Notifications(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	sub := s.SubscribeAdmission(ctx, "s")
	defer sub.Close()
	rel := s.SubscribeReleases(ctx, "s")
	defer rel.Close()
	for _, x := range []*jobstore.Subscriber{sub, rel} {
		if ev, err := x.Receive(ctx); err != nil || !ev.Resync {
			t.Fatalf("first event = %+v, %v", ev, err)
		}
	}
	a := jobstore.Admission{Open: true, Model: "m", Backend: "http://b"}
	for range 3 { // the same admission again is no change
		if _, _, err := s.SetAdmission(ctx, "s", 1, a, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.SetAdmission(ctx, "s", 1, jobstore.Admission{}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if ev, err := sub.Receive(ctx); err != nil || ev.Kind != 'a' {
			t.Fatalf("admission event = %+v, %v", ev, err)
		}
	}
	if err := s.ReleaseLease(ctx, "s", jobstore.LeaseMember("gw", 1)); err != nil {
		t.Fatal(err)
	}
	if ev, err := rel.Receive(ctx); err != nil || ev.Kind != 'r' {
		t.Fatalf("release event = %+v, %v", ev, err)
	}
	// A new generation is a change.
	if _, _, err := s.SetAdmission(ctx, "s", 2, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ev, err := sub.Receive(ctx); err != nil || ev.Kind != 'a' {
		t.Fatalf("third admission event = %+v, %v", ev, err)
	}
}

// A Redis that restarted may have lost the last lease renewals: the
// leader is told how long ago it first saw the new Redis, so it can wait
// out a whole lease. A fresh Redis under the first leader is no restart.
func TestDirect_RestartSeen(t *testing.T) {
	s, srv := newStore(t)
	if !srv.Real {
		t.Skip("needs a real redis-server to restart (miniredis fallback in use)")
	}
	ctx := ctxT(t)
	a := jobstore.Admission{Open: true, Model: "m", Backend: "http://b"}
	if _, since, err := s.SetAdmission(ctx, "s", 1, a, time.Minute); err != nil || since < time.Hour {
		t.Fatalf("fresh Redis: since restart = %s, %v; want long ago", since, err)
	}
	srv.Restart()
	_, since, err := s.SetAdmission(ctx, "s", 1, jobstore.Admission{}, time.Minute)
	for err != nil && ctx.Err() == nil { // the client reconnects
		time.Sleep(50 * time.Millisecond)
		_, since, err = s.SetAdmission(ctx, "s", 1, jobstore.Admission{}, time.Minute)
	}
	if err != nil || since > time.Second {
		t.Fatalf("after a restart: since restart = %s, %v; want just now", since, err)
	}
}
