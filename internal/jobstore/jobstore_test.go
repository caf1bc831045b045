package jobstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/openai"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/redistest"
)

func newStore(t *testing.T) (*jobstore.Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	return jobstore.New(srv.Client(), jobstore.Options{Prefix: "t:", ResultTTL: time.Minute}), srv
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newJob(model string, created time.Time) *jobstore.Job {
	return &jobstore.Job{ID: jobstore.NewID(), Model: model, ClientModel: model, Path: "/v1/chat/completions",
		Mode: jobstore.ModeSync, Owner: "key-1", Body: []byte(`{"model":"m"}`), Created: created}
}

func TestStore_EnqueueClaimFinish(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	base := time.Now().Add(-time.Minute)
	var ids []string
	for i := range 5 {
		j := newJob("a", base.Add(time.Duration(i)*time.Millisecond))
		if err := s.Enqueue(ctx, j); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	snap, err := s.Snapshot(ctx, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if snap["a"].Pending != 5 || snap["b"].Pending != 0 {
		t.Fatalf("snapshot = %+v, want a:5 b:0", snap)
	}
	if got := snap["a"].HeadSince.UnixMicro(); got != base.UnixMicro() {
		t.Fatalf("head since = %d, want %d", got, base.UnixMicro())
	}

	claimed, err := s.Claim(ctx, "slot", "a", 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 3 {
		t.Fatalf("claimed %d, want 3", len(claimed))
	}
	for i, j := range claimed {
		if j.ID != ids[i] {
			t.Fatalf("claim order: got %s at %d, want %s (FIFO)", j.ID, i, ids[i])
		}
		if string(j.Body) != `{"model":"m"}` || j.Path != "/v1/chat/completions" {
			t.Fatalf("claimed job lost its request: %+v", j)
		}
		got, err := s.Get(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != jobstore.StatusRunning || got.Generation != 7 || got.Started.IsZero() {
			t.Fatalf("claimed job state = %s gen %d started %v", got.Status, got.Generation, got.Started)
		}
	}

	ok, err := s.Finish(ctx, ids[0], jobstore.Outcome{Status: jobstore.StatusSucceeded, ResultStatus: 200,
		ResultType: "application/json", Result: []byte(`{"ok":true}`)})
	if err != nil || !ok {
		t.Fatalf("finish = %v, %v", ok, err)
	}
	// The first outcome wins; a second finish changes nothing.
	ok, err = s.Finish(ctx, ids[0], jobstore.Outcome{Status: jobstore.StatusFailed})
	if err != nil || ok {
		t.Fatalf("second finish = %v, %v; want false, nil", ok, err)
	}
	got, err := s.Get(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != jobstore.StatusSucceeded || string(got.Result) != `{"ok":true}` || got.ResultStatus != 200 || got.Finished.IsZero() {
		t.Fatalf("finished job = %+v", got)
	}
	ttl := s.Client().TTL(ctx, "t:job:"+ids[0]).Val()
	if ttl <= 0 || ttl > time.Minute {
		t.Fatalf("finished job ttl = %v, want (0, 1m]", ttl)
	}
	// Orphans: jobs 1 and 2 run under generation 7.
	orphans, err := s.Orphans(ctx, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(orphans) != 2 {
		t.Fatalf("orphans of gen < 8 = %v, want 2", orphans)
	}
	if o, _ := s.Orphans(ctx, 7); len(o) != 0 {
		t.Fatalf("orphans of gen < 7 = %v, want none", o)
	}
}

func TestStore_CancelQueuedAndRunning(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	queued, running := newJob("a", time.Now()), newJob("a", time.Now().Add(time.Millisecond))
	for _, j := range []*jobstore.Job{queued, running} {
		if err := s.Enqueue(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	// Claim the first, so "running" below is really the second: reorder.
	if err := s.Enqueue(ctx, &jobstore.Job{ID: "x", Model: "b", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	sub := s.SubscribeOrchestrator(ctx)
	defer sub.Close()
	if ev, err := sub.Receive(ctx); err != nil || !ev.Resync {
		t.Fatalf("first event = %+v, %v; want resync", ev, err)
	}

	st, err := s.Cancel(ctx, queued.ID, "by test")
	if err != nil || st != jobstore.StatusQueued {
		t.Fatalf("cancel queued = %s, %v", st, err)
	}
	got, _ := s.Get(ctx, queued.ID)
	if got.Status != jobstore.StatusCanceled || got.Error == nil {
		t.Fatalf("canceled job = %+v", got)
	}
	claimed, err := s.Claim(ctx, "slot", "a", 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 1 || claimed[0].ID != running.ID {
		t.Fatalf("claim after cancel = %v, want only %s", claimed, running.ID)
	}
	st, err = s.Cancel(ctx, running.ID, "by test")
	if err != nil || st != jobstore.StatusRunning {
		t.Fatalf("cancel running = %s, %v", st, err)
	}
	ev, err := sub.Receive(ctx)
	if err != nil || ev.Kind != 'x' || ev.JobID != running.ID {
		t.Fatalf("cancel event = %+v, %v", ev, err)
	}
	if _, err := s.Cancel(ctx, "job_missing", "by test"); !errors.Is(err, jobstore.ErrNotFound) {
		t.Fatalf("cancel missing = %v, want ErrNotFound", err)
	}
}

func TestStore_ChunksAndNotifications(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	sub := s.SubscribeGateway(ctx, "gw1")
	defer sub.Close()
	if ev, err := sub.Receive(ctx); err != nil || !ev.Resync {
		t.Fatalf("first event = %+v, %v; want resync", ev, err)
	}
	j := newJob("a", time.Now())
	j.Mode = jobstore.ModeStream
	j.Notify = s.GatewayChannel("gw1")
	if err := s.Enqueue(ctx, j); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.Claim(ctx, "slot", "a", 1, 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	payloads := []string{`{"a":1}`, `{"b":"x|y"}`, `[DONE]`}
	for _, p := range payloads {
		if err := s.AppendChunk(ctx, claimed[0], []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Finish(ctx, j.ID, jobstore.Outcome{Status: jobstore.StatusSucceeded, ResultStatus: 200}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, want := range payloads {
		ev, err := sub.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind != 'c' || ev.JobID != j.ID || string(ev.Data) != want {
			t.Fatalf("event %d = %+v, want chunk %s", i, ev, want)
		}
		if len(ids) > 0 && !jobstore.ChunkAfter(ev.ChunkID, ids[len(ids)-1]) {
			t.Fatalf("chunk ids not increasing: %s after %s", ev.ChunkID, ids[len(ids)-1])
		}
		ids = append(ids, ev.ChunkID)
	}
	ev, err := sub.Receive(ctx)
	if err != nil || ev.Kind != 'd' || ev.Status != jobstore.StatusSucceeded {
		t.Fatalf("done event = %+v, %v", ev, err)
	}
	// The log replays what a subscriber missed.
	all, err := s.Chunks(ctx, j.ID, "")
	if err != nil || len(all) != 3 {
		t.Fatalf("chunks = %v, %v", all, err)
	}
	rest, err := s.Chunks(ctx, j.ID, ids[0])
	if err != nil || len(rest) != 2 || string(rest[0].Data) != payloads[1] {
		t.Fatalf("chunks after first = %v, %v", rest, err)
	}
	if ttl := s.Client().TTL(ctx, "t:stream:"+j.ID).Val(); ttl <= 0 {
		t.Fatalf("chunk log ttl = %v, want set", ttl)
	}
}

func TestStore_FailQueued(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	var ids []string
	for i := range 300 { // more than one batch
		j := newJob("a", time.Now().Add(time.Duration(i)*time.Microsecond))
		if err := s.Enqueue(ctx, j); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	e := openai.Errorf(http.StatusServiceUnavailable, openai.TypeUnavailable, "model_failed_to_start", "model", "boom")
	n, err := s.FailQueued(ctx, "a", e)
	if err != nil || n != 300 {
		t.Fatalf("fail queued = %d, %v", n, err)
	}
	got, _ := s.Get(ctx, ids[299])
	if got.Status != jobstore.StatusFailed || got.Error == nil || got.Error.Message != "boom" || got.Error.Status != 503 {
		t.Fatalf("failed job = %+v err %+v", got, got.Error)
	}
	snap, _ := s.Snapshot(ctx, []string{"a"})
	if snap["a"].Pending != 0 {
		t.Fatalf("queue not empty: %+v", snap)
	}
}

// A Redis restart with the append-only file on loses no accepted job, and
// a subscriber is told to resync.
func TestStore_SurvivesRedisRestart(t *testing.T) {
	s, srv := newStore(t)
	if !srv.Real {
		t.Skip("needs a real redis-server to restart (miniredis fallback in use)")
	}
	ctx := ctxT(t)
	sub := s.SubscribeGateway(ctx, "gw")
	defer sub.Close()
	if ev, err := sub.Receive(ctx); err != nil || !ev.Resync {
		t.Fatalf("first event = %+v, %v", ev, err)
	}
	j := newJob("a", time.Now())
	if err := s.Enqueue(ctx, j); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	ev, err := sub.Receive(ctx)
	if err != nil || !ev.Resync {
		t.Fatalf("event after restart = %+v, %v; want resync", ev, err)
	}
	got, err := s.Get(ctx, j.ID)
	if err != nil || got.Status != jobstore.StatusQueued {
		t.Fatalf("job after restart = %+v, %v", got, err)
	}
	snap, err := s.Snapshot(ctx, []string{"a"})
	if err != nil || snap["a"].Pending != 1 {
		t.Fatalf("queue after restart = %+v, %v", snap, err)
	}
}

func TestStore_StateAndLeader(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	if st, err := s.State(ctx, "slot"); err != nil || st != nil {
		t.Fatalf("state before publish = %+v, %v", st, err)
	}
	want := &jobstore.SlotState{Slot: "slot", Leader: "me", Generation: 3, Phase: jobstore.PhaseReady, Active: "a",
		LastSwitch: &jobstore.SwitchRecord{From: "b", To: "a", Stop: time.Second}}
	if err := s.PutState(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.State(ctx, "slot")
	if err != nil || got.Active != "a" || got.LastSwitch.Stop != time.Second || got.Generation != 3 {
		t.Fatalf("state = %+v, %v", got, err)
	}
	if err := s.Heartbeat(ctx, "slot", "me", time.Minute); err != nil {
		t.Fatal(err)
	}
	if l, err := s.Leader(ctx, "slot"); err != nil || l != "me" {
		t.Fatalf("leader = %q, %v", l, err)
	}
	g1, _ := s.NextGeneration(ctx, "slot")
	g2, _ := s.NextGeneration(ctx, "slot")
	if g2 != g1+1 {
		t.Fatalf("generations %d then %d", g1, g2)
	}
}

func TestNewID_Unique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := jobstore.NewID()
		if len(id) != len("job_")+32 || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func TestChunkAfter(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1-0", "", true},
		{"", "", false},
		{"2-0", "1-5", true},
		{"10-0", "9-9", true},
		{"1-10", "1-9", true},
		{"1-1", "1-1", false},
		{"1-0", "1-1", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s_after_%s", tt.a, tt.b), func(t *testing.T) {
			if got := jobstore.ChunkAfter(tt.a, tt.b); got != tt.want {
				t.Fatalf("ChunkAfter(%q, %q) = %v", tt.a, tt.b, got)
			}
		})
	}
}

func TestStore_LimitsAndIdempotency(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	lim := jobstore.Limits{MaxPending: 2, MaxPendingTotal: 3, Models: []string{"a", "b"}}
	for i := range 2 {
		if _, err := s.EnqueueWith(ctx, newJob("a", time.Now().Add(time.Duration(i))), lim, ""); err != nil {
			t.Fatal(err)
		}
	}
	var full *jobstore.ErrQueueFull
	if _, err := s.EnqueueWith(ctx, newJob("a", time.Now()), lim, ""); !errors.As(err, &full) || full.Model != "a" || full.Limit != 2 {
		t.Fatalf("third job of a: %v, want model a full", err)
	}
	if _, err := s.EnqueueWith(ctx, newJob("b", time.Now()), lim, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnqueueWith(ctx, newJob("b", time.Now()), lim, ""); !errors.As(err, &full) || full.Model != "" || full.Pending != 3 {
		t.Fatalf("fourth job overall: %v, want the total limit", err)
	}
	if snap, _ := s.Snapshot(ctx, []string{"a", "b"}); snap["a"].Pending != 2 || snap["b"].Pending != 1 {
		t.Fatalf("a refused job changed the queues: %+v", snap)
	}

	// The same key from the same owner is the same job; another owner's
	// key is another job.
	first := newJob("c", time.Now())
	id1, err := s.EnqueueWith(ctx, first, jobstore.Limits{}, "k1")
	if err != nil || id1 != first.ID {
		t.Fatalf("first = %s, %v", id1, err)
	}
	again := newJob("c", time.Now())
	id2, err := s.EnqueueWith(ctx, again, jobstore.Limits{}, "k1")
	if err != nil || id2 != first.ID {
		t.Fatalf("repeat = %s, %v; want %s", id2, err, first.ID)
	}
	if _, err := s.Get(ctx, again.ID); !errors.Is(err, jobstore.ErrNotFound) {
		t.Fatalf("the duplicate was stored: %v", err)
	}
	other := newJob("c", time.Now())
	other.Owner = "key-2"
	if id3, err := s.EnqueueWith(ctx, other, jobstore.Limits{}, "k1"); err != nil || id3 != other.ID {
		t.Fatalf("other owner = %s, %v; want its own job", id3, err)
	}
	if pos, _ := s.QueuePosition(ctx, other); pos != 2 {
		t.Fatalf("position = %d, want 2", pos)
	}
}

func TestStore_RecoverOrphan(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	quiet, talked := newJob("a", time.Now().Add(-time.Second)), newJob("a", time.Now())
	for _, j := range []*jobstore.Job{quiet, talked} {
		if err := s.Enqueue(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	claimed, err := s.Claim(ctx, "slot", "a", 2, 1)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	if err := s.AppendChunk(ctx, claimed[1], []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	if r, err := s.RecoverOrphan(ctx, quiet.ID, 1, false); err != nil || r != jobstore.Gone {
		t.Fatalf("'below 1' must not touch a job of generation 1: %s, %v", r, err)
	}
	if r, err := s.RecoverOrphan(ctx, quiet.ID, 2, false); err != nil || r != jobstore.Requeued {
		t.Fatalf("quiet job: %s, %v", r, err)
	}
	if r, err := s.RecoverOrphan(ctx, talked.ID, 2, false); err != nil || r != jobstore.Sent {
		t.Fatalf("job that sent a chunk: %s, %v", r, err)
	}
	got, _ := s.Get(ctx, quiet.ID)
	if got.Status != jobstore.StatusQueued || !got.Started.IsZero() {
		t.Fatalf("requeued job = %+v", got)
	}
	if snap, _ := s.Snapshot(ctx, []string{"a"}); snap["a"].Pending != 1 || snap["a"].HeadSince.UnixMicro() != quiet.Created.UnixMicro() {
		t.Fatalf("queue after requeue = %+v: the job must keep its place", snap)
	}
	// A job that keeps orphaning is not requeued forever.
	for i := range 3 {
		if _, err := s.Claim(ctx, "slot", "a", 1, int64(2+i)); err != nil {
			t.Fatal(err)
		}
		want := jobstore.Requeued
		if i == 2 {
			want = jobstore.Exhausted
		}
		if r, _ := s.RecoverOrphan(ctx, quiet.ID, int64(2+i), true); r != want {
			t.Fatalf("recovery %d = %s, want %s", i+2, r, want)
		}
	}
	if r, _ := s.RecoverOrphan(ctx, "job_gone", 9, false); r != jobstore.Gone {
		t.Fatalf("missing job: %s", r)
	}
}

func TestStore_ExpireQueuedAndFailures(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	old, fresh := newJob("a", time.Now().Add(-time.Hour)), newJob("a", time.Now())
	for _, j := range []*jobstore.Job{old, fresh} {
		if err := s.Enqueue(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	e := openai.Errorf(http.StatusGatewayTimeout, openai.TypeTimeout, "queue_timeout", "", "queued too long")
	n, err := s.ExpireQueued(ctx, "a", time.Now().Add(-time.Minute), e)
	if err != nil || n != 1 {
		t.Fatalf("expired %d, %v; want 1", n, err)
	}
	if got, _ := s.Get(ctx, fresh.ID); got.Status != jobstore.StatusQueued {
		t.Fatalf("fresh job = %s", got.Status)
	}
	fails, err := s.RecentFailures(ctx, 10)
	if err != nil || len(fails) != 1 || fails[0].ID != old.ID || fails[0].Error.Code == nil || *fails[0].Error.Code != "queue_timeout" {
		t.Fatalf("recent failures = %+v, %v", fails, err)
	}
	if _, err := s.Claim(ctx, "slot", "a", 1, 9); err != nil {
		t.Fatal(err)
	}
	running, err := s.Running(ctx)
	if err != nil || len(running) != 1 || running[0].ID != fresh.ID || running[0].Generation != 9 || running[0].Model != "a" {
		t.Fatalf("running = %+v, %v", running, err)
	}
}

// A leader term that a newer one replaced is fenced off: it claims
// nothing, and its executors can neither finish nor stream into a job the
// new term runs.
func TestStore_GenerationFencing(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	old, err := s.NextGeneration(ctx, "slot")
	if err != nil {
		t.Fatal(err)
	}
	j := newJob("a", time.Now())
	j.Mode = jobstore.ModeStream
	if err := s.Enqueue(ctx, j); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.Claim(ctx, "slot", "a", 1, old)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	cur, _ := s.NextGeneration(ctx, "slot") // a new leader
	if r, _ := s.RecoverOrphan(ctx, j.ID, cur, false); r != jobstore.Requeued {
		t.Fatalf("recovery by the new term = %s", r)
	}
	if got, _ := s.Claim(ctx, "slot", "a", 1, old); len(got) != 0 {
		t.Fatalf("the old term claimed %v", got)
	}
	mine, err := s.Claim(ctx, "slot", "a", 1, cur)
	if err != nil || len(mine) != 1 {
		t.Fatalf("new term claim = %v, %v", mine, err)
	}
	// The old executor wakes up: everything it tries is refused.
	if err := s.AppendChunk(ctx, claimed[0], []byte("stale")); !errors.Is(err, jobstore.ErrFenced) {
		t.Fatalf("stale append = %v, want ErrFenced", err)
	}
	if ok, err := s.Finish(ctx, j.ID, jobstore.Outcome{Status: jobstore.StatusFailed, Generation: old}); err != nil || ok {
		t.Fatalf("stale finish = %v, %v; want refused", ok, err)
	}
	if r, _ := s.RecoverOrphan(ctx, j.ID, old, true); r != jobstore.Gone {
		t.Fatalf("stale handover = %s, want gone", r)
	}
	if err := s.AppendChunk(ctx, mine[0], []byte("fresh")); err != nil {
		t.Fatalf("the owner's append: %v", err)
	}
	if ok, err := s.Finish(ctx, j.ID, jobstore.Outcome{Status: jobstore.StatusSucceeded, Generation: cur}); err != nil || !ok {
		t.Fatalf("the owner's finish = %v, %v", ok, err)
	}
}
