package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/mockllm"
)

// Streaming overhead: the same streamed chat completions sent to the fake
// backend directly and through the switchboard, interleaved in one run,
// with a time to first token and a token rate set on the backend. Then
// 1,000 streams at once through the switchboard, each checked chunk by
// chunk against the backend's deterministic reply. Run:
//
//	go test -run '^$' -bench Stream -benchtime 1x ./cmd/switchboard/
//
// What is measured, per stream (times are taken by the client when a
// `data:` line is read):
//
//   - ttft: request sent until the first content token.
//   - gap: between two consecutive content tokens (what a reader sees).
//   - chunk latency: how long after the backend emitted token i the client
//     read it. The backend emits token i at its request start + TTFT +
//     i/tokens-per-second (mockllm paces on an absolute schedule), so
//     latency = arrival - anchor - TTFT - i/rate. Directly and on the
//     gateway's direct route, the anchor is when the client sent the
//     request; on the queue route it is the job's started_us (when the
//     leader claimed it), so the executor's connection to the backend is
//     counted in, making this an upper bound of the relay's per-chunk cost
//     (backend -> executor -> Redis -> gateway -> client).
//
// Both routes are measured, each on its own stack (gateway.direct_route).
// "added" = switchboard quantile - direct quantile, in the same run.

const (
	streamTTFT      = 20 * time.Millisecond
	streamRate      = 200.0 // tokens per second after the first
	streamMaxTokens = 16
	// The 1,000-stream run uses a slower model, so that the streams are
	// really open at the same time: 24 tokens at 10/s take 2.3 s each.
	heldStreams = 1000
	heldRate    = 10.0
	heldTokens  = 24
)

// streamTrace is what one client saw of one stream.
type streamTrace struct {
	jobID   string
	route   string // X-Switchboard-Route: direct or queue ("" from a backend)
	sent    time.Time
	tokens  []string
	arrived []time.Time // per token
	done    bool        // data: [DONE] came last
	finish  string      // finish_reason of the stream
}

// readStream sends body to url and reads the SSE answer to its end;
// onFirst, when set, is called when the first token arrives.
func readStream(ctx context.Context, client *http.Client, url string, body []byte, onFirst func()) (*streamTrace, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	tr := &streamTrace{sent: time.Now()}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	tr.jobID = resp.Header.Get("X-Switchboard-Job-Id")
	tr.route = resp.Header.Get("X-Switchboard-Route")
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		now := time.Now()
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return tr, nil
		}
		if err != nil {
			return tr, fmt.Errorf("read stream: %w", err)
		}
		data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data: "))
		if !ok {
			continue // blank separator or ": keep-alive" comment
		}
		if tr.done {
			return tr, errors.New("data after [DONE]")
		}
		if string(data) == "[DONE]" {
			tr.done = true
			continue
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			return tr, fmt.Errorf("decode chunk %q: %w", data, err)
		}
		if ev.Error != nil {
			return tr, fmt.Errorf("error event: %s", ev.Error.Message)
		}
		for _, c := range ev.Choices {
			if c.Delta.Content != "" {
				tr.tokens = append(tr.tokens, c.Delta.Content)
				tr.arrived = append(tr.arrived, now)
				if len(tr.tokens) == 1 && onFirst != nil {
					onFirst()
				}
			}
			if c.FinishReason != nil {
				tr.finish = *c.FinishReason
			}
		}
	}
}

// check reports a stream that lost, reordered or altered a chunk: its
// tokens must be exactly the backend's reply, then the finish reason,
// then [DONE].
func (tr *streamTrace) check(served, prompt string, maxTokens int) error {
	want, finish := mockllm.Reply(served, prompt, maxTokens)
	switch {
	case !slices.Equal(tr.tokens, want):
		return fmt.Errorf("tokens %q, want %q", tr.tokens, want)
	case tr.finish != finish:
		return fmt.Errorf("finish_reason %q, want %q", tr.finish, finish)
	case !tr.done:
		return errors.New("no [DONE]")
	}
	return nil
}

// firstErr keeps the first error of many goroutines.
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// streamStats collects the samples of many streams.
type streamStats struct {
	ttft, gap, lat []time.Duration
}

// add records tr; anchor is when the backend's request began (see the
// file comment), rate its tokens per second.
func (s *streamStats) add(tr *streamTrace, anchor time.Time, ttft time.Duration, rate float64) {
	if len(tr.arrived) == 0 {
		return
	}
	s.ttft = append(s.ttft, tr.arrived[0].Sub(tr.sent))
	for i, at := range tr.arrived {
		due := anchor.Add(ttft + time.Duration(float64(i)/rate*float64(time.Second)))
		s.lat = append(s.lat, at.Sub(due))
		if i > 0 {
			s.gap = append(s.gap, at.Sub(tr.arrived[i-1]))
		}
	}
}

func (s *streamStats) sort() {
	slices.Sort(s.ttft)
	slices.Sort(s.gap)
	slices.Sort(s.lat)
}

// quantile of sorted samples; 0 when there are none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*q)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// reportPair reports p50/p99 of a measure direct, through the switchboard,
// and the difference.
func reportPair(b *testing.B, name string, direct, via []time.Duration) {
	for _, q := range []struct {
		tag string
		q   float64
	}{{"p50", 0.5}, {"p99", 0.99}} {
		d, v := quantile(direct, q.q), quantile(via, q.q)
		b.ReportMetric(ms(d), name+"-direct-"+q.tag+"-ms")
		b.ReportMetric(ms(v), name+"-gw-"+q.tag+"-ms")
		b.ReportMetric(ms(v-d), name+"-added-"+q.tag+"-ms")
	}
}

// streamPrompts returns n prompts whose natural reply from served has at
// least minTokens tokens, so every stream has as many chunks.
func streamPrompts(served, tag string, n, minTokens int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		p := fmt.Sprintf("%s prompt %d", tag, i)
		if toks, _ := mockllm.Reply(served, p, 0); len(toks) >= minTokens {
			out = append(out, p)
		}
	}
	return out
}

func chatStreamBody(model, prompt string, maxTokens int) []byte {
	b, _ := json.Marshal(map[string]any{
		"model": model, "stream": true, "max_tokens": maxTokens,
		"messages": []map[string]string{{"role": "user", "content": prompt}},
	})
	return b
}

func streamClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2 * heldStreams,
		MaxIdleConns: 2 * heldStreams, DisableCompression: true}}
}

// BenchmarkStream runs the streaming benchmarks on both of the gateway's
// routes: direct (the gateway relays the active backend's stream itself,
// under its lease) and queue (gateway -> Redis -> orchestrator -> backend
// -> Redis -> gateway).
func BenchmarkStream(b *testing.B) {
	for _, route := range []string{"direct", "queue"} {
		b.Run("route="+route, func(b *testing.B) { benchStreamRoute(b, route) })
	}
}

func benchStreamRoute(b *testing.B, route string) {
	const fast, slow = "qwen3-30b", "gpt-oss120"
	fastServed, slowServed := "Qwen/Qwen3-30B-A3B", "openai/gpt-oss-120b"
	rate := fmt.Sprint(streamRate)
	e := startE2E(b, e2eOptions{maxConcurrency: heldStreams,
		gatewayHCL: fmt.Sprintf("gateway {\n  direct_route = %v\n}\n", route == "direct") +
			"scheduler {\n  max_pending = 2000\n  max_pending_total = 4000\n}\n",
		flags: map[string][]string{
			fast: {"--ttft", streamTTFT.String(), "--tokens-per-second", rate},
			slow: {"--ttft", streamTTFT.String(), "--tokens-per-second", fmt.Sprint(heldRate)},
		}})
	ctx := context.Background()
	backendOf := func(model, served string) string {
		b.Helper()
		if err := e.chat(ctx, model, served, "warm", true); err != nil {
			b.Fatal(err)
		}
		st, err := e.stack.Store.State(ctx, "e2e")
		if err != nil || st == nil || st.Active != model {
			b.Fatalf("state after warming %s: %+v, %v", model, st, err)
		}
		// The gateway takes its lease on the direct route within a
		// second of the model becoming ready.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			tr, err := readStream(ctx, streamClient(), e.url+"/v1/chat/completions", chatStreamBody(model, "warm", 4), nil)
			if err != nil {
				b.Fatal(err)
			}
			if tr.route == route {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("streams for %s take route %q, want %q", model, tr.route, route)
			}
		}
		return st.Backend
	}
	client := streamClient()
	// anchor is when the backend's request began, as the client can tell:
	// when it sent its own request (directly, or through the gateway's
	// direct route, a relay of the same request), or when the leader
	// claimed the job (queue route).
	anchor := func(tr *streamTrace, viaGW bool) (time.Time, error) {
		if !viaGW {
			return tr.sent, nil
		}
		if tr.route != route {
			return time.Time{}, fmt.Errorf("stream took route %q, want %q", tr.route, route)
		}
		if route == "direct" {
			return tr.sent, nil
		}
		j, err := e.stack.Store.Get(ctx, tr.jobID)
		if err != nil {
			return time.Time{}, fmt.Errorf("job %s: %w", tr.jobID, err)
		}
		return j.Started, nil
	}

	backend := backendOf(fast, fastServed)
	for _, c := range []int{1, 16} {
		b.Run("clients="+itoa(c), func(b *testing.B) {
			n := max(b.N, 40*max(c/4, 1)) // pairs: 40 at 1 client, 160 at 16
			prompts := streamPrompts(fastServed, "stream", n, streamMaxTokens)
			var direct, via streamStats
			var mu sync.Mutex
			var failed firstErr
			next := make(chan int, n)
			for i := range n {
				next <- i
			}
			close(next)
			var wg sync.WaitGroup
			b.ResetTimer()
			for range c {
				wg.Go(func() {
					for i := range next {
						// Alternate which path goes first.
						paths := []bool{i%2 == 0, i%2 != 0}
						for _, viaGW := range paths {
							url, body := backend+"/v1/chat/completions", chatStreamBody(fastServed, prompts[i], streamMaxTokens)
							if viaGW {
								url, body = e.url+"/v1/chat/completions", chatStreamBody(fast, prompts[i], streamMaxTokens)
							}
							tr, err := readStream(ctx, client, url, body, nil)
							if err == nil {
								err = tr.check(fastServed, prompts[i], streamMaxTokens)
							}
							var at time.Time
							if err == nil {
								at, err = anchor(tr, viaGW)
							}
							if err != nil {
								failed.set(fmt.Errorf("stream %d (via gateway %v): %w", i, viaGW, err))
								return
							}
							mu.Lock()
							if viaGW {
								via.add(tr, at, streamTTFT, streamRate)
							} else {
								direct.add(tr, at, streamTTFT, streamRate)
							}
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if err := failed.get(); err != nil {
				b.Fatal(err)
			}
			direct.sort()
			via.sort()
			reportPair(b, "ttft", direct.ttft, via.ttft)
			reportPair(b, "gap", direct.gap, via.gap)
			reportPair(b, "chunk", direct.lat, via.lat)
			b.ReportMetric(float64(n), "streams/path")
			b.ReportMetric(float64(len(via.gap)), "gaps/path")
		})
	}

	// 1,000 streams at once, directly and then through the switchboard.
	// Every stream must arrive whole and in order; open counts the
	// streams between their first token and their end.
	slowBackend := backendOf(slow, slowServed)
	b.Run("streams="+itoa(heldStreams), func(b *testing.B) {
		prompts := streamPrompts(slowServed, "held", heldStreams, heldTokens)
		run := func(viaGW bool) (stats streamStats, peak int64, wall time.Duration) {
			var open atomic.Int64
			var mu sync.Mutex
			errs := make(chan error, heldStreams)
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			begin := time.Now()
			for i, p := range prompts {
				wg.Go(func() {
					url, body := slowBackend+"/v1/chat/completions", chatStreamBody(slowServed, p, heldTokens)
					if viaGW {
						url, body = e.url+"/v1/chat/completions", chatStreamBody(slow, p, heldTokens)
					}
					counted := false
					tr, err := readStream(rctx, client, url, body, func() {
						counted = true
						n := open.Add(1)
						mu.Lock()
						peak = max(peak, n)
						mu.Unlock()
					})
					if counted {
						open.Add(-1)
					}
					if err == nil {
						err = tr.check(slowServed, p, heldTokens)
					}
					var at time.Time
					if err == nil {
						at, err = anchor(tr, viaGW)
					}
					if err != nil {
						errs <- fmt.Errorf("stream %d (via gateway %v): %w", i, viaGW, err)
						return
					}
					mu.Lock()
					stats.add(tr, at, streamTTFT, heldRate)
					mu.Unlock()
				})
			}
			wg.Wait()
			wall = time.Since(begin)
			close(errs)
			var all []error
			for err := range errs {
				all = append(all, err)
			}
			if len(all) > 0 {
				b.Fatalf("%d of %d streams failed; first: %v", len(all), heldStreams, all[0])
			}
			stats.sort()
			return stats, peak, wall
		}
		b.ResetTimer()
		direct, directPeak, directWall := run(false)
		via, viaPeak, viaWall := run(true)
		b.StopTimer()
		reportPair(b, "ttft", direct.ttft, via.ttft)
		reportPair(b, "gap", direct.gap, via.gap)
		reportPair(b, "chunk", direct.lat, via.lat)
		b.ReportMetric(float64(directPeak), "direct-peak-open")
		b.ReportMetric(float64(viaPeak), "gw-peak-open")
		b.ReportMetric(directWall.Seconds(), "direct-wall-s")
		b.ReportMetric(viaWall.Seconds(), "gw-wall-s")
		b.ReportMetric(float64(len(via.lat)), "gw-chunks-checked")
	})
}
