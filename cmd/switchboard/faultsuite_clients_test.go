package main

// Faults that come from clients and from the gateway: hostile requests,
// slowloris connections, and a gateway SIGKILLed under its clients.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hostileRequest returns the i-th of a deterministic stream of malformed or
// hostile requests: bad JSON, huge and deeply nested bodies, wrong types,
// unknown models, bad or missing keys, wrong methods and routes.
func hostileRequest(r *rand.Rand, i int) (method, path, key, body, what string) {
	method, path, key = http.MethodPost, "/v1/chat/completions", fsUserKey
	garbage := func(n int) string {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.IntN(256))
		}
		return string(b)
	}
	model := fsModels[r.IntN(len(fsModels))].alias
	switch i % 14 {
	case 0:
		what, body = "garbage", garbage(1+r.IntN(300))
	case 1:
		what, body = "truncated JSON", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"x`, model)
	case 2:
		d := 70 + r.IntN(2000)
		what, body = "deep nesting", fmt.Sprintf(`{"model":%q,"x":%s%s}`, model, strings.Repeat("[", d), strings.Repeat("]", d))
	case 3:
		if i%(14*25) == 3 { // over max_request_bytes (1 MiB); a few suffice
			what, body = "huge body", fmt.Sprintf(`{"model":%q,"prompt":"%s"}`, model, strings.Repeat("a", 2<<20))
			path = "/v1/completions"
		} else {
			// Valid JSON, but fields the backend reads have the wrong type.
			what = "wrong type"
			body = fmt.Sprintf([]string{
				`{"model":%q,"messages":"hello"}`,
				`{"model":%q,"messages":[1,2,3]}`,
				`{"model":%q,"messages":{"role":"user","content":"x"}}`,
				`{"model":%q,"messages":[{"role":"user","content":"x"}],"max_tokens":"many"}`,
			}[r.IntN(4)], model)
		}
	case 4:
		what, body = "model not a string", fmt.Sprintf(`{"model":%d,"messages":[]}`, r.IntN(1000))
	case 5:
		what, body = "stream not a boolean", fmt.Sprintf(`{"model":%q,"stream":"yes","messages":[]}`, model)
	case 6:
		what, body = "async not a boolean", fmt.Sprintf(`{"model":%q,"async":1,"messages":[]}`, model)
	case 7:
		what, body = "unknown model", fmt.Sprintf(`{"model":"nope-%d","messages":[{"role":"user","content":"x"}]}`, r.IntN(1000))
	case 8:
		what, key, body = "bad key", fmt.Sprintf("sk-bad-%d", r.IntN(1000)), fmt.Sprintf(`{"model":%q,"messages":[]}`, model)
	case 9:
		what, key, body = "no key", "", fmt.Sprintf(`{"model":%q,"messages":[]}`, model)
	case 10:
		what = "wrong method"
		method = []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch}[r.IntN(4)]
		body = fmt.Sprintf(`{"model":%q}`, model)
	case 11:
		what = "unknown route"
		path = "/v1/" + strings.Map(func(c rune) rune {
			if c < 0x21 || c > 0x7e || c == '?' || c == '#' || c == '%' {
				return 'x'
			}
			return c
		}, garbage(1+r.IntN(12)))
		body = `{}`
	case 12:
		what, body = "stream and async", fmt.Sprintf(`{"model":%q,"stream":true,"async":true,"messages":[]}`, model)
	case 13:
		switch r.IntN(4) {
		case 0:
			what, body = "duplicate model key", fmt.Sprintf(`{"model":%q,"model":"other","messages":[]}`, model)
		case 1:
			what, body = "not an object", `[{"model":"`+model+`"}]`
		case 2:
			what, body = "empty model", `{"model":"","messages":[]}`
		default:
			what, body = "streamed embeddings", fmt.Sprintf(`{"model":%q,"input":"x","stream":true}`, model)
			path = "/v1/embeddings"
		}
	}
	return method, path, key, body, what
}

// 10,000 (1,000 in the short form) malformed or hostile requests over both
// gateways, beside a normal load: every one is answered 4xx in OpenAI's
// shape, no process crashes and no job is created (verify finds every job
// in Redis a request of the normal load).
func faultHostile(t *testing.T) {
	start := time.Now()
	c := startFaultCluster(t, "hostile", fsOptions{})
	load := c.startLoad("main", fsLoadOpts{workers: 2})
	warm(t, c, load, 2)
	n := 1000
	if faultsLong() {
		n = 10_000
	}
	c.fault("%d malformed or hostile requests", n)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		bad     []string
		byWhat  = map[string]int{}
		statusN = map[int]int{}
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("hostile seed %d", seed)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				method, path, key, body, what := hostileRequest(rand.New(rand.NewPCG(seed, uint64(i))), i)
				addr := c.gateway(i % 2).addr
				req, err := http.NewRequest(method, "http://"+addr+"/", strings.NewReader(body))
				if err != nil {
					panic(err)
				}
				req.URL.Path = path
				req.Header.Set("Content-Type", "application/json")
				if key != "" {
					req.Header.Set("Authorization", "Bearer "+key)
				}
				resp, err := fsHTTP.Do(req)
				var problem string
				status := 0
				if err != nil {
					problem = fmt.Sprintf("no answer: %v", err)
				} else {
					status = resp.StatusCode
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
					resp.Body.Close()
					var env struct {
						Error *struct {
							Message string `json:"message"`
						} `json:"error"`
					}
					switch {
					case resp.StatusCode < 400 || resp.StatusCode > 499:
						problem = fmt.Sprintf("answered %d: %.200s", resp.StatusCode, b)
					case json.Unmarshal(b, &env) != nil || env.Error == nil || env.Error.Message == "":
						problem = fmt.Sprintf("answered %d without OpenAI's error shape: %.200s", resp.StatusCode, b)
					}
				}
				mu.Lock()
				byWhat[what]++
				statusN[status]++
				if problem != "" {
					bad = append(bad, fmt.Sprintf("request %d (%s: %s %s, %d bytes) %s", i, what, method, path, len(body), problem))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("hostile requests by kind: %v; by status: %v", byWhat, statusN)
	for i, b := range bad {
		if i == 20 {
			c.violate("bad input gets a 4xx", "... and %d more", len(bad)-20)
			break
		}
		c.violate("bad input gets a 4xx", "%s", b)
	}
	recovered(t, c, load, 4)
	load.halt()
	c.finish(start)
}

// Slowloris: many connections send their headers (or bodies) a byte at a
// time. Normal clients are served meanwhile, and the gateways close the
// header-dribbling connections (ReadHeaderTimeout) instead of holding them.
func faultSlowloris(t *testing.T) {
	start := time.Now()
	c := startFaultCluster(t, "slowloris", fsOptions{})
	load := c.startLoad("main", fsLoadOpts{workers: 3})
	warm(t, c, load, 2)
	const headerConns, bodyConns = 60, 10
	c.fault("slowloris client: %d header-dribbling and %d body-dribbling connections per gateway", headerConns, bodyConns)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var closedByServer, stillOpen atomic.Int64
	var longest atomic.Int64
	for gi := range 2 {
		addr := c.gateway(gi).addr
		for k := range headerConns + bodyConns {
			body := k >= headerConns
			wg.Go(func() {
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Errorf("slowloris dial %s: %v", addr, err)
					return
				}
				defer conn.Close()
				opened := time.Now()
				head := "POST /v1/chat/completions HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + fsUserKey + "\r\n"
				var drip string
				if body {
					// Whole headers, then the body one byte at a time.
					head += "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + `{"model":"qwen3","messages":[{"role":"user","content":"`
					drip = "a"
				} else {
					drip = "X"
					head += "X-Slow: "
				}
				if _, err := conn.Write([]byte(head)); err != nil {
					return
				}
				gone := make(chan struct{})
				go func() { // the server closing the connection ends the read
					_, _ = io.Copy(io.Discard, bufio.NewReader(conn))
					close(gone)
				}()
				tick := time.NewTicker(500 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-gone:
						closedByServer.Add(1)
						d := time.Since(opened)
						for {
							old := longest.Load()
							if int64(d) <= old || longest.CompareAndSwap(old, int64(d)) {
								break
							}
						}
						if !body && d > time.Minute {
							c.violate("no hang", "a header-dribbling connection to %s was held for %s", addr, d)
						}
						return
					case <-stop:
						if !body {
							c.violate("no hang", "a header-dribbling connection to %s is still open after %s", addr, time.Since(opened))
						}
						stillOpen.Add(1)
						return
					case <-tick.C:
						_, _ = conn.Write([]byte(drip))
					}
				}
			})
		}
	}
	// Normal clients are served while the slow connections hang on.
	recovered(t, c, load, 10)
	// The gateways' ReadHeaderTimeout is 10s; give them well over that.
	waitFor(time.Minute, func() bool { return closedByServer.Load() >= 2*headerConns })
	close(stop)
	wg.Wait()
	t.Logf("slowloris: %d connections closed by the gateways (longest held %s), %d closed by us",
		closedByServer.Load(), time.Duration(longest.Load()).Round(time.Millisecond), stillOpen.Load())
	recovered(t, c, load, 3)
	load.halt()
	c.finish(start)
}

// A gateway is SIGKILLed with sync and streaming clients in flight: each
// gets a connection error promptly (not a hang), new connections are
// refused, the other gateway keeps serving, and the jobs of the killed
// gateway's clients still end.
func faultGatewayKill(t *testing.T) {
	start := time.Now()
	slow := []string{"--tokens-per-second", "20"}
	c := startFaultCluster(t, "gateway-kill", fsOptions{flags: map[string][]string{
		fsModels[0].name: slow, fsModels[1].name: slow, fsModels[2].name: slow}})
	onKilled := c.startLoad("gw0", fsLoadOpts{workers: 6, gateways: []int{0}, maxTokens: 24, kinds: []string{"sync", "stream", "async"}})
	other := c.startLoad("gw1", fsLoadOpts{workers: 2, gateways: []int{1}})
	warm(t, c, onKilled, 2)
	if !waitFor(time.Minute, func() bool { return onKilled.inStream.Load() > 0 && onKilled.inFlight.Load() >= 4 }) {
		t.Logf("killing without a stream in flight")
	}
	gw := c.gateway(0)
	killedAt := time.Now()
	gw.kill()
	c.fault("SIGKILL gateway %s with %d requests in flight (%d streaming)", gw.name, onKilled.inFlight.Load(), onKilled.inStream.Load())
	if !dialRefused(gw.addr) {
		t.Errorf("the killed gateway's address %s still accepts connections", gw.addr)
	}
	// Every request that was in flight on the killed gateway ends promptly.
	const bound = 30 * time.Second
	ok := waitFor(bound, func() bool {
		c.resMu.Lock()
		defer c.resMu.Unlock()
		for _, r := range c.results {
			if r.gwProc == gw && r.start.Before(killedAt) && r.kind != "async" && r.end.IsZero() {
				return false
			}
		}
		return true
	})
	c.resMu.Lock()
	inFlight, connErrs := 0, 0
	for _, r := range c.results {
		if r.gwProc != gw || !r.start.Before(killedAt) || r.kind == "async" || (!r.end.IsZero() && r.end.Before(killedAt)) {
			continue
		}
		inFlight++
		if r.end.IsZero() {
			c.violate("no hang", "request %d (%s) to the killed gateway got nothing within %s of the kill", r.idx, r.kind, bound)
			continue
		}
		if r.transport != nil {
			connErrs++
		}
	}
	c.resMu.Unlock()
	t.Logf("%d requests were in flight on the killed gateway; %d ended with a connection error (all within %s: %t)", inFlight, connErrs, bound, ok)
	// A new gateway 0 takes its place; the load on it goes on.
	c.startGateway(0)
	recovered(t, c, onKilled, 4)
	recovered(t, c, other, 2)
	onKilled.halt()
	other.halt()
	c.finish(start)
}
