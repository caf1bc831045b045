package jobstore_test

import (
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
)

// A stream whose log ends with [DONE] reached its client whole: a new
// leader settles its orphaned job as succeeded, not failed.
func TestStore_StreamComplete(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	j := newJob("a", time.Now())
	j.Mode = jobstore.ModeStream
	if err := s.Enqueue(ctx, j); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.Claim(ctx, "slot", "a", 1, 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	if done, err := s.StreamComplete(ctx, j.ID); err != nil || done {
		t.Fatalf("empty log complete = %v, %v", done, err)
	}
	if err := s.AppendChunk(ctx, claimed[0], []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	if done, err := s.StreamComplete(ctx, j.ID); err != nil || done {
		t.Fatalf("partial log complete = %v, %v", done, err)
	}
	if err := s.AppendChunk(ctx, claimed[0], []byte("[DONE]")); err != nil {
		t.Fatal(err)
	}
	if done, err := s.StreamComplete(ctx, j.ID); err != nil || !done {
		t.Fatalf("whole log complete = %v, %v", done, err)
	}
}

// An append repeated after its reply was lost (go-redis retries a script
// when Redis restarts under it) is not logged twice: the client would see
// a token twice.
func TestStore_AppendChunkRetryLogsOnce(t *testing.T) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	j := newJob("a", time.Now())
	j.Mode = jobstore.ModeStream
	if err := s.Enqueue(ctx, j); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.Claim(ctx, "slot", "a", 1, 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	before := *claimed[0] // the executor's copy as it was when the call was sent
	if err := s.AppendChunk(ctx, claimed[0], []byte(`{"t":"autumn"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendChunk(ctx, &before, []byte(`{"t":"autumn"}`)); err != nil {
		t.Fatalf("the repeated append = %v, want it accepted (and ignored)", err)
	}
	if err := s.AppendChunk(ctx, claimed[0], []byte(`{"t":"signal"}`)); err != nil {
		t.Fatal(err)
	}
	chunks, err := s.Chunks(ctx, j.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range chunks {
		got = append(got, string(c.Data))
	}
	if len(got) != 2 || got[0] != `{"t":"autumn"}` || got[1] != `{"t":"signal"}` {
		t.Fatalf("chunk log = %q, want autumn then signal once each", got)
	}
}
