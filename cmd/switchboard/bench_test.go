package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Gateway overhead: the same chat completion sent to the fake backend
// directly and through the switchboard, in the same run, at 1, 16 and 128
// concurrent clients, on both routes: direct (gateway -> backend under
// the gateway's lease) and queue (gateway -> Redis -> orchestrator ->
// backend -> Redis -> gateway). The backend answers instantly (no TTFT,
// no pacing), so the difference is the switchboard's own cost. Run: make
// bench.

const benchBody = `{"model":"qwen3-30b","messages":[{"role":"user","content":"bench"}],"max_tokens":4}`

func benchStack(b *testing.B, route string) (gatewayURL, backendURL string) {
	b.Helper()
	e := startE2E(b, e2eOptions{maxConcurrency: 256,
		gatewayHCL: fmt.Sprintf("gateway {\n  direct_route = %v\n}\n", route == "direct"),
		flags:      map[string][]string{"qwen3-30b": {"--ttft", "0s", "--tokens-per-second", "0"}}})
	// Load the model once; every measured request is a hit.
	if err := e.chat(context.Background(), "qwen3-30b", "Qwen/Qwen3-30B-A3B", "warm", false); err != nil {
		b.Fatal(err)
	}
	st, err := e.stack.Store.State(context.Background(), "e2e")
	if err != nil || st == nil {
		b.Fatal(err)
	}
	// The gateway takes its lease on the direct route within a second.
	for deadline := time.Now().Add(10 * time.Second); route == "direct"; {
		resp, err := http.Post(e.url+"/v1/chat/completions", "application/json", strings.NewReader(benchBody))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Switchboard-Route") == "direct" {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("requests never took the direct route")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return e.url, st.Backend
}

// run sends n requests from c clients to url and returns the sorted
// latencies.
func runLoad(b *testing.B, url, body string, n, c int) []time.Duration {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, Proxy: nil}}
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var mu sync.Mutex
	var firstErr error
	for range c {
		wg.Go(func() {
			for i := range next {
				begin := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader([]byte(body)))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = http.ErrNotSupported
					}
				}
				lat[i] = time.Since(begin)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("load on %s: %v", url, firstErr)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat
}

func pct(lat []time.Duration, p float64) time.Duration { return lat[int(float64(len(lat)-1)*p)] }

func BenchmarkOverhead(b *testing.B) {
	for _, route := range []string{"direct", "queue"} {
		b.Run("route="+route, func(b *testing.B) {
			gw, backend := benchStack(b, route)
			for _, c := range []int{1, 16, 128} {
				b.Run("clients="+itoa(c), func(b *testing.B) {
					n := max(b.N, 3000) // a bounded sample, whatever -benchtime says
					// Direct and through the gateway, one after the other in
					// one run.
					begin := time.Now()
					direct := runLoad(b, backend+"/v1/chat/completions",
						`{"model":"Qwen/Qwen3-30B-A3B","messages":[{"role":"user","content":"bench"}],"max_tokens":4}`, n, c)
					directElapsed := time.Since(begin)
					b.ResetTimer()
					begin = time.Now()
					via := runLoad(b, gw+"/v1/chat/completions", benchBody, n, c)
					elapsed := time.Since(begin)
					b.StopTimer()
					b.ReportMetric(float64(pct(direct, 0.5).Microseconds()), "direct-p50-us")
					b.ReportMetric(float64(pct(direct, 0.99).Microseconds()), "direct-p99-us")
					b.ReportMetric(float64(pct(via, 0.5).Microseconds()), "gw-p50-us")
					b.ReportMetric(float64(pct(via, 0.99).Microseconds()), "gw-p99-us")
					b.ReportMetric(float64((pct(via, 0.5) - pct(direct, 0.5)).Microseconds()), "added-p50-us")
					b.ReportMetric(float64((pct(via, 0.99) - pct(direct, 0.99)).Microseconds()), "added-p99-us")
					b.ReportMetric(float64(n)/directElapsed.Seconds(), "direct-req/s")
					b.ReportMetric(float64(n)/elapsed.Seconds(), "gw-req/s")
				})
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
