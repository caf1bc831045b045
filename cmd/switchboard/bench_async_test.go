package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
)

// Async throughput: job submissions per second through the gateway
// (POST with "async": true, answered 202), status polls per second
// (GET /jobs/{id}), and a queue 100,000 jobs deep: Redis memory per queued
// job and the enqueue latency at that depth against an empty queue, in the
// same run. Run:
//
//	go test -run '^$' -bench Async -benchtime 1x ./cmd/switchboard/
//
// The slot is in maintenance from the start and nothing is loaded, so no
// job drains: this measures the gateway and Redis, not the executor. The
// backends would be paced by --ttft/--tokens-per-second, but none runs.

const (
	asyncSubmitJobs = 3000   // submissions per concurrency level
	asyncPolls      = 5000   // status polls
	asyncDepth      = 100000 // queued jobs for the depth measurement
	asyncProbe      = 1000   // enqueues timed at each depth
)

func asyncBody(model string, i int) []byte {
	return fmt.Appendf(nil, `{"model":%q,"async":true,"max_tokens":16,"messages":[{"role":"user","content":"async job %d"}]}`, model, i)
}

// asyncSubmit posts n async jobs from c clients and returns their ids and
// the sorted latencies, and the wall time.
func asyncSubmit(b *testing.B, client *http.Client, url, model string, n, c, offset int) ([]string, []time.Duration, time.Duration) {
	b.Helper()
	ids := make([]string, n)
	lat := make([]time.Duration, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var failed firstErr
	var wg sync.WaitGroup
	begin := time.Now()
	for range c {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				resp, err := client.Post(url+"/v1/chat/completions", "application/json", bytes.NewReader(asyncBody(model, offset+i)))
				if err != nil {
					failed.set(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != http.StatusAccepted {
					failed.set(fmt.Errorf("submit: status %d", resp.StatusCode))
					return
				}
				ids[i] = resp.Header.Get("X-Switchboard-Job-Id")
			}
		})
	}
	wg.Wait()
	wall := time.Since(begin)
	if err := failed.get(); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	return ids, lat, wall
}

// redisUsedMemory reads INFO memory's used_memory.
func redisUsedMemory(b *testing.B, store *jobstore.Store) int64 {
	b.Helper()
	info, err := store.Client().Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}

func BenchmarkAsync(b *testing.B) {
	e := startE2E(b, e2eOptions{
		gatewayHCL: fmt.Sprintf("scheduler {\n  max_pending = %d\n  max_pending_total = %d\n  queue_timeout = \"2h\"\n}\n",
			2*asyncDepth, 4*asyncDepth),
		flags: map[string][]string{"gpt-oss120": {"--ttft", "20ms", "--tokens-per-second", "200"}}})
	ctx := context.Background()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256}}
	resp, err := client.Post(e.url+"/admin/maintenance", "application/json", strings.NewReader(`{"enabled":true}`))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b.Fatalf("maintenance: status %d", resp.StatusCode)
	}
	b.Cleanup(func() {
		// Nothing may have run: the numbers are the gateway's and Redis's.
		if st, err := e.stack.Store.State(ctx, "e2e"); err == nil && st != nil && st.Active != "" {
			b.Errorf("a model was loaded during the async benchmark: %+v", st)
		}
	})

	var submitted []string
	offset := 0
	for _, c := range []int{1, 16, 64} {
		b.Run("submit/clients="+itoa(c), func(b *testing.B) {
			n := max(b.N, asyncSubmitJobs)
			b.ResetTimer()
			ids, lat, wall := asyncSubmit(b, client, e.url, "gpt-oss120", n, c, offset)
			b.StopTimer()
			offset += n
			submitted = append(submitted, ids...)
			b.ReportMetric(float64(n)/wall.Seconds(), "submits/s")
			b.ReportMetric(ms(quantile(lat, 0.5)), "p50-ms")
			b.ReportMetric(ms(quantile(lat, 0.99)), "p99-ms")
		})
	}

	b.Run("poll/clients=16", func(b *testing.B) {
		if len(submitted) == 0 {
			b.Skip("no jobs submitted")
		}
		n := max(b.N, asyncPolls)
		lat := make([]time.Duration, n)
		next := make(chan int, n)
		for i := range n {
			next <- i
		}
		close(next)
		var failed firstErr
		var wg sync.WaitGroup
		b.ResetTimer()
		begin := time.Now()
		for range 16 {
			wg.Go(func() {
				for i := range next {
					t0 := time.Now()
					resp, err := client.Get(e.url + "/jobs/" + submitted[i%len(submitted)])
					if err != nil {
						failed.set(err)
						return
					}
					var v struct {
						Status string `json:"status"`
					}
					err = json.NewDecoder(resp.Body).Decode(&v)
					resp.Body.Close()
					lat[i] = time.Since(t0)
					if err != nil || resp.StatusCode != http.StatusOK || v.Status != "queued" {
						failed.set(fmt.Errorf("poll: status %d, job %q, %v", resp.StatusCode, v.Status, err))
						return
					}
				}
			})
		}
		wg.Wait()
		wall := time.Since(begin)
		b.StopTimer()
		if err := failed.get(); err != nil {
			b.Fatal(err)
		}
		slices.Sort(lat)
		b.ReportMetric(float64(n)/wall.Seconds(), "polls/s")
		b.ReportMetric(ms(quantile(lat, 0.5)), "p50-ms")
		b.ReportMetric(ms(quantile(lat, 0.99)), "p99-ms")
	})

	// A queue 100,000 deep, on a model whose queue is empty so far.
	b.Run("depth="+itoa(asyncDepth), func(b *testing.B) {
		const model = "qwen3-235b-4bit"
		// Enqueue latency on the empty queue (it grows to asyncProbe).
		_, empty, _ := asyncSubmit(b, client, e.url, model, asyncProbe, 1, 0)

		// Fill to the depth with jobs shaped like the gateway's (a copy
		// of one it stored, new ids), straight into the store: HTTP is
		// measured above, the fill only has to be quick.
		proto, err := e.stack.Store.Get(ctx, mustSubmit(b, client, e.url, model))
		if err != nil {
			b.Fatal(err)
		}
		memBefore := redisUsedMemory(b, e.stack.Store)
		fill := asyncDepth - asyncProbe - 1
		next := make(chan int, fill)
		for i := range fill {
			next <- i
		}
		close(next)
		var failed firstErr
		var wg sync.WaitGroup
		fillBegin := time.Now()
		for range 16 {
			wg.Go(func() {
				for range next {
					j := *proto
					j.ID, j.Created, j.Status = jobstore.NewID(), time.Now(), ""
					if err := e.stack.Store.Enqueue(ctx, &j); err != nil {
						failed.set(err)
						return
					}
				}
			})
		}
		wg.Wait()
		fillTook := time.Since(fillBegin)
		if err := failed.get(); err != nil {
			b.Fatal(err)
		}
		memAfter := redisUsedMemory(b, e.stack.Store)
		snap, err := e.stack.Store.Snapshot(ctx, []string{model})
		depth := snap[model].Pending
		if err != nil || depth < asyncDepth {
			b.Fatalf("queue depth %d, want %d: %v", depth, asyncDepth, err)
		}

		b.ResetTimer()
		_, deep, _ := asyncSubmit(b, client, e.url, model, asyncProbe, 1, asyncProbe)
		b.StopTimer()
		b.ReportMetric(float64(memAfter-memBefore)/float64(fill), "redis-bytes/job")
		b.ReportMetric(float64(fill)/fillTook.Seconds(), "direct-enqueues/s")
		b.ReportMetric(float64(depth), "depth")
		reportDepth := func(tag string, q float64) {
			b.ReportMetric(ms(quantile(empty, q)), "empty-"+tag+"-ms")
			b.ReportMetric(ms(quantile(deep, q)), "deep-"+tag+"-ms")
			b.ReportMetric(float64(quantile(deep, q))/float64(quantile(empty, q)), "deep/empty-"+tag)
		}
		reportDepth("p50", 0.5)
		reportDepth("p99", 0.99)
	})
}

// mustSubmit posts one async job and returns its id.
func mustSubmit(b *testing.B, client *http.Client, url, model string) string {
	b.Helper()
	ids, _, _ := asyncSubmit(b, client, url, model, 1, 1, -1)
	return ids[0]
}
