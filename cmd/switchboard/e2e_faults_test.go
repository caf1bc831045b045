package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Redis restarts (append-only file on) in the middle of a mixed load:
// every request gets an answer (success or a clear error, never a hang),
// and every accepted job ends in a terminal state.
func TestE2E_RedisRestartMidLoad(t *testing.T) {
	e := startE2E(t, e2eOptions{maxConcurrency: 8,
		flags: map[string][]string{"qwen3-30b": {"--tokens-per-second", "20"}}})
	if !e.redis.Real {
		t.Skip("needs a real redis-server to restart (miniredis fallback in use)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "warm", false); err != nil {
		t.Fatal(err)
	}
	const clients = 12
	var wg sync.WaitGroup
	results := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			results <- e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", fmt.Sprintf("during restart %d", i), i%2 == 0)
		})
	}
	waitRunning(t, e, "qwen3-30b")
	e.redis.Restart()
	wg.Wait()
	close(results)
	ok, failed := 0, 0
	for err := range results {
		if err == nil {
			ok++
		} else {
			failed++
			t.Logf("answered with an error: %v", err)
		}
	}
	t.Logf("%d succeeded, %d failed with a reason", ok, failed)
	// Nothing stays queued or running. A streaming client has its answer
	// ([DONE]) a moment before the executor records the outcome, so
	// allow that moment.
	deadline := time.Now().Add(15 * time.Second)
	for {
		running, err := e.stack.Store.Running(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(running) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs still running 15s after the load: %+v", running)
		}
		time.Sleep(20 * time.Millisecond)
	}
	snap, err := e.stack.Store.Snapshot(ctx, []string{"qwen3-30b", "gpt-oss120", "qwen3-235b-4bit"})
	if err != nil {
		t.Fatal(err)
	}
	for m, q := range snap {
		if q.Pending != 0 {
			t.Fatalf("%d jobs still queued for %s", q.Pending, m)
		}
	}
	// The switchboard still serves.
	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "after the restart", false); err != nil {
		t.Fatal(err)
	}
}
