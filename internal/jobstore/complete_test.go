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
