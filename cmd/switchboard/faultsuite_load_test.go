package main

// The fault suite's clients: sync, streaming and async chat completions
// over plain HTTP (so every header, status and SSE line is visible), each
// recording what its client saw.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/mockllm"
)

// fsHTTP is the clients' transport: no overall timeout (each call has a
// context bounded by fsClientBound), enough idle connections for the load.
var fsHTTP = &http.Client{Transport: &http.Transport{
	Proxy: nil, MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
	DisableCompression: true,
}}

// fsResult is what one client request saw.
type fsResult struct {
	idx                        int
	kind                       string // sync, stream or async
	model, served, clientModel string
	prompt                     string
	maxTokens                  int
	gw                         int
	gwProc                     *fsProc

	jobID         string
	route         string // X-Switchboard-Route: "direct" (no job record) or "queue"
	status        int
	ok            bool   // the whole, right answer
	errCode       string // OpenAI error code of an error answer or event
	errMsg        string
	errBody       string // an error answer not in OpenAI's shape
	transport     error  // connection error, or a body cut mid-way
	hung          bool   // no answer within fsClientBound
	cut           bool   // a stream that ended without [DONE] or an error event
	wrong         string // an answer from the wrong backend, or otherwise wrong
	streamStarted bool   // the SSE response began (the job was enqueued)
	async202      bool   // the async job was accepted
	gatewayKilled bool   // the gateway was SIGKILLed while the request ran
	start, end    time.Time
}

// accepted reports whether the gateway told the client its job exists.
// Requests served on the direct route have no job.
func (r *fsResult) accepted() bool {
	return r.route != "direct" && (r.ok || r.streamStarted || r.async202)
}

func (r *fsResult) outcome() string {
	switch {
	case r.hung:
		return "hung"
	case r.wrong != "":
		return "wrong"
	case r.ok:
		return "ok"
	case r.errCode != "" || r.errMsg != "":
		code := r.errCode
		if code == "" {
			code = "uncoded"
		}
		return "error:" + code
	case r.cut:
		return "cut"
	case r.transport != nil:
		return "conn-error"
	}
	return "other"
}

// fsLoadOpts shape a load.
type fsLoadOpts struct {
	workers int
	// max bounds the requests; 0 runs until halt.
	max int
	// models are indices into fsModels; default all three.
	models []int
	// kinds are drawn uniformly; default sync, stream, stream, sync, async.
	kinds []string
	// maxTokens of each request; default 16.
	maxTokens int
	// gateways the requests alternate over; default both.
	gateways []int
}

// fsLoad is a running load.
type fsLoad struct {
	c        *fsCluster
	name     string
	opts     fsLoadOpts
	seed     uint64
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	next     atomic.Int64
	oks      atomic.Int64 // whole, right answers so far
	inStream atomic.Int64 // streams that got content and are still open
	inFlight atomic.Int64
}

// startLoad starts o.workers clients, each sending one request after the
// other until o.max requests were sent or halt is called.
func (c *fsCluster) startLoad(name string, o fsLoadOpts) *fsLoad {
	if o.workers == 0 {
		o.workers = 4
	}
	if o.models == nil {
		o.models = []int{0, 1, 2}
	}
	if o.kinds == nil {
		o.kinds = []string{"sync", "stream", "stream", "sync", "async"}
	}
	if o.maxTokens == 0 {
		o.maxTokens = 16
	}
	if o.gateways == nil {
		o.gateways = []int{0, 1}
	}
	l := &fsLoad{c: c, name: name, opts: o, seed: uint64(time.Now().UnixNano()), stop: make(chan struct{})}
	c.t.Logf("load %s: %d workers, seed %d", name, o.workers, l.seed)
	for range o.workers {
		l.wg.Go(l.worker)
	}
	return l
}

func (l *fsLoad) worker() {
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		i := int(l.next.Add(1) - 1)
		if l.opts.max > 0 && i >= l.opts.max {
			return
		}
		rng := rand.New(rand.NewPCG(l.seed, uint64(i)))
		m := fsModels[l.opts.models[rng.IntN(len(l.opts.models))]]
		kind := l.opts.kinds[rng.IntN(len(l.opts.kinds))]
		r := l.c.newResult(l.name, i, m.name, kind, l.opts.gateways[i%len(l.opts.gateways)], l.opts.maxTokens)
		if rng.IntN(3) == 0 {
			r.clientModel = m.alias
		}
		l.inFlight.Add(1)
		l.c.do(r, l)
		l.inFlight.Add(-1)
		if r.ok {
			l.oks.Add(1)
		}
		if r.transport != nil && !r.accepted() {
			// Its gateway is gone: do not spin on refused connections.
			select {
			case <-l.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// halt stops the load after the requests in flight and waits for them.
func (l *fsLoad) halt() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// waitOK waits until n more requests than now got whole, right answers;
// it reports whether they did within bound.
func (l *fsLoad) waitOK(n int, bound time.Duration) bool {
	target := l.oks.Load() + int64(n)
	return waitFor(bound, func() bool { return l.oks.Load() >= target })
}

// newResult registers a request of this run (every prompt is unique, so
// jobs in Redis map back to their request).
func (c *fsCluster) newResult(load string, i int, model, kind string, gw, maxTokens int) *fsResult {
	var served string
	for _, m := range fsModels {
		if m.name == model {
			served = m.served
		}
	}
	r := &fsResult{idx: i, kind: kind, model: model, served: served, clientModel: model, gw: gw, maxTokens: maxTokens,
		prompt: fmt.Sprintf("fault suite %s %s request %d", c.name, load, i)}
	c.resMu.Lock()
	r.idx = len(c.results)
	c.results = append(c.results, r)
	c.resMu.Unlock()
	return r
}

// do sends one request and records what its client saw.
func (c *fsCluster) do(r *fsResult, l *fsLoad) {
	gw := c.gateway(r.gw)
	c.resMu.Lock()
	r.gwProc, r.start = gw, time.Now()
	c.resMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), fsClientBound)
	defer cancel()
	switch r.kind {
	case "sync":
		c.doSync(ctx, r, gw.addr)
	case "stream":
		c.doStream(ctx, r, gw.addr, l)
	case "async":
		c.doAsync(ctx, r)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.hung = true
	}
	if (r.transport != nil || r.cut) && gw.killed.Load() {
		r.gatewayKilled = true
	}
	c.resMu.Lock()
	r.end = time.Now()
	c.resMu.Unlock()
}

func (r *fsResult) body(extra string) []byte {
	return fmt.Appendf(nil, `{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":%d%s}`,
		r.clientModel, r.prompt, r.maxTokens, extra)
}

func fsPost(ctx context.Context, addr, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+fsUserKey)
	return fsHTTP.Do(req)
}

func fsGet(ctx context.Context, addr, path string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+fsUserKey)
	resp, err := fsHTTP.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// recordError records an error answer: its OpenAI code and message, or
// the body when it is not in OpenAI's shape.
func (r *fsResult) recordError(status int, body []byte) {
	r.status = status
	var env struct {
		Error *struct {
			Message string  `json:"message"`
			Code    *string `json:"code"`
			Type    string  `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &env) != nil || env.Error == nil || env.Error.Message == "" {
		r.errBody = string(body)
		r.errMsg = fmt.Sprintf("status %d", status)
		return
	}
	r.errMsg = env.Error.Message
	r.errCode = env.Error.Type
	if env.Error.Code != nil && *env.Error.Code != "" {
		r.errCode = *env.Error.Code
	}
}

// checkAnswer checks a non-streaming chat completion: the model the client
// named, and the text the requested model's backend gives for the prompt.
func (r *fsResult) checkAnswer(body []byte) {
	var resp struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || len(resp.Choices) == 0 {
		r.wrong = fmt.Sprintf("200 answer is not a chat completion: %.200s", body)
		return
	}
	if resp.Model != r.clientModel {
		r.wrong = fmt.Sprintf("answer names model %q, want %q", resp.Model, r.clientModel)
		return
	}
	if want := mockllm.ReplyText(r.served, r.prompt, r.maxTokens); resp.Choices[0].Message.Content != want {
		r.wrong = fmt.Sprintf("answer %q is not %s's answer %q (served by another backend?)", resp.Choices[0].Message.Content, r.served, want)
		return
	}
	r.ok = true
}

func (c *fsCluster) doSync(ctx context.Context, r *fsResult, addr string) {
	resp, err := fsPost(ctx, addr, "/v1/chat/completions", r.body(""))
	if err != nil {
		r.transport = err
		return
	}
	defer resp.Body.Close()
	r.jobID, r.route = resp.Header.Get("X-Switchboard-Job-Id"), resp.Header.Get("X-Switchboard-Route")
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.transport = err
		return
	}
	r.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		r.recordError(resp.StatusCode, b)
		return
	}
	r.checkAnswer(b)
}

func (c *fsCluster) doStream(ctx context.Context, r *fsResult, addr string, l *fsLoad) {
	resp, err := fsPost(ctx, addr, "/v1/chat/completions", r.body(`,"stream":true,"stream_options":{"include_usage":true}`))
	if err != nil {
		r.transport = err
		return
	}
	defer resp.Body.Close()
	r.jobID, r.route = resp.Header.Get("X-Switchboard-Job-Id"), resp.Header.Get("X-Switchboard-Route")
	r.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			r.transport = err
			return
		}
		r.recordError(resp.StatusCode, b)
		return
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		r.wrong = fmt.Sprintf("200 stream answer with Content-Type %q: %.200s", resp.Header.Get("Content-Type"), b)
		return
	}
	r.streamStarted = true
	var text strings.Builder
	done, counted := false, false
	defer func() {
		if counted && l != nil {
			l.inStream.Add(-1)
		}
	}()
	err = sseLines(resp.Body, func(data []byte) bool {
		if bytes.Equal(data, []byte("[DONE]")) {
			done = true
			return false
		}
		var ev struct {
			Model   string `json:"model"`
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Error *struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Code    *string `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &ev) != nil {
			r.wrong = fmt.Sprintf("SSE event is not JSON: %.200s", data)
			return true
		}
		if ev.Error != nil {
			r.errMsg, r.errCode = ev.Error.Message, ev.Error.Type
			if ev.Error.Code != nil && *ev.Error.Code != "" {
				r.errCode = *ev.Error.Code
			}
			if r.errMsg == "" {
				r.errBody = string(data)
			}
			return true
		}
		if ev.Model != r.clientModel && r.wrong == "" {
			r.wrong = fmt.Sprintf("chunk names model %q, want %q", ev.Model, r.clientModel)
		}
		for _, ch := range ev.Choices {
			text.WriteString(ch.Delta.Content)
		}
		if !counted && text.Len() > 0 && l != nil {
			counted = true
			l.inStream.Add(1)
		}
		return true
	})
	if err != nil {
		r.transport = err
	}
	switch {
	case r.errMsg != "" || r.errCode != "":
		// A failure with a reason; its job must not have succeeded.
	case !done:
		if r.transport == nil {
			r.transport = io.ErrUnexpectedEOF
		}
		r.cut = true
	case r.wrong != "":
	default:
		if want := mockllm.ReplyText(r.served, r.prompt, r.maxTokens); text.String() != want {
			r.wrong = fmt.Sprintf("stream text %q is not %s's answer %q (served by another backend?)", text.String(), r.served, want)
			return
		}
		r.ok = true
	}
}

// doAsync submits an async job, polls it until it ends (through its
// gateway, or the other one when that one is gone) and checks its result.
func (c *fsCluster) doAsync(ctx context.Context, r *fsResult) {
	addr := c.gateway(r.gw).addr
	resp, err := fsPost(ctx, addr, "/v1/chat/completions", r.body(`,"async":true`))
	if err != nil {
		r.transport = err
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		r.transport = err
		return
	}
	r.status = resp.StatusCode
	if resp.StatusCode != http.StatusAccepted {
		r.jobID = resp.Header.Get("X-Switchboard-Job-Id")
		r.recordError(resp.StatusCode, b)
		return
	}
	var view struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if json.Unmarshal(b, &view) != nil || view.ID == "" {
		r.wrong = fmt.Sprintf("202 answer without a job id: %.200s", b)
		return
	}
	r.jobID, r.async202 = view.ID, true
	gw := r.gw
	for {
		if ctx.Err() != nil {
			return
		}
		resp, b, err := fsGet(ctx, c.gateway(gw).addr, "/jobs/"+r.jobID)
		if err != nil {
			gw = 1 - gw // that gateway is gone: ask the other one
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		var v struct {
			Status string `json:"status"`
			Error  *struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Code    *string `json:"code"`
			} `json:"error"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &v) != nil {
			// Redis may be restarting: the gateway says so; ask again.
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		switch v.Status {
		case "queued", "running":
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		case "succeeded":
			resp, b, err := fsGet(ctx, c.gateway(gw).addr, "/jobs/"+r.jobID+"/result")
			if err != nil {
				r.transport = err
				return
			}
			if resp.StatusCode != http.StatusOK {
				r.wrong = fmt.Sprintf("succeeded job's result answered %d: %.200s", resp.StatusCode, b)
				return
			}
			r.checkAnswer(b)
			return
		default:
			if v.Error == nil || v.Error.Message == "" {
				r.errMsg = "job " + v.Status + " without a reason"
				r.errBody = string(b)
				return
			}
			r.errMsg, r.errCode = v.Error.Message, v.Error.Type
			if v.Error.Code != nil && *v.Error.Code != "" {
				r.errCode = *v.Error.Code
			}
			return
		}
	}
}
