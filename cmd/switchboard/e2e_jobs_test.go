package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/mockllm"
)

// A model whose backend dies while loading: its waiters fail with the
// backend's own words, nothing stays loaded, and the next model works.
func TestE2E_ModelFailsToStart(t *testing.T) {
	e := startE2E(t, e2eOptions{flags: map[string][]string{
		"qwen3-235b-4bit": {"--exit-during-load", "--exit-message", "CUDA out of memory (test)"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "warm up", false); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "qwen3-235b-4bit",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want an API error", err)
	}
	if apiErr.StatusCode != http.StatusServiceUnavailable || apiErr.Code != "model_failed_to_start" ||
		!strings.Contains(apiErr.Message, "CUDA out of memory (test)") {
		t.Fatalf("error = %d %s %q; want 503 model_failed_to_start quoting the backend", apiErr.StatusCode, apiErr.Code, apiErr.Message)
	}
	if running, _ := e.stack.Runtime.Running(ctx); len(running) != 0 {
		t.Fatalf("after a failed start, still running: %v", running)
	}
	// The box is not stuck: another model loads and answers.
	if err := e.chat(ctx, "gpt-oss120", "openai/gpt-oss-120b", "after the failure", true); err != nil {
		t.Fatal(err)
	}
	if o := e.stack.Runtime.Overlaps(); len(o) != 0 {
		t.Fatalf("overlaps: %v", o)
	}
}

// Async jobs: 202 with a job, Location, then status and the result as the
// backend produced it (model name restored), visible to its owner only.
func TestE2E_AsyncJob(t *testing.T) {
	e := startE2E(t, e2eOptions{env: map[string]string{
		"GATEWAY_API_KEY": "alice,bob", "GATEWAY_ADMIN_API_KEY": "root"}})
	body := `{"model":"qwen3","async":true,"prompt":"tell me","max_tokens":5}`
	req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submit = %d: %s", resp.StatusCode, b)
	}
	var job struct {
		ID     string `json:"id"`
		Object string `json:"object"`
		Status string `json:"status"`
		Model  string `json:"model"`
	}
	if err := json.Unmarshal(b, &job); err != nil || job.Object != "job" || job.Status != "queued" || job.Model != "qwen3" {
		t.Fatalf("job = %+v, %v: %s", job, err, b)
	}
	if loc := resp.Header.Get("Location"); loc != "/jobs/"+job.ID || resp.Header.Get("X-Request-Id") != job.ID {
		t.Fatalf("Location %q, X-Request-Id %q for job %s", loc, resp.Header.Get("X-Request-Id"), job.ID)
	}

	// Another user's key sees nothing; the admin key sees it.
	var dummy map[string]any
	getJSON(t, e.url+"/jobs/"+job.ID, "bob", http.StatusNotFound, &dummy)
	getJSON(t, e.url+"/jobs/"+job.ID, "root", http.StatusOK, &dummy)

	// Wait for the job to finish: there is no push for async jobs, so poll
	// with a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct {
			Status string `json:"status"`
		}
		getJSON(t, e.url+"/jobs/"+job.ID, "alice", http.StatusOK, &st)
		if st.Status == string(jobstore.StatusSucceeded) {
			break
		}
		if st.Status == string(jobstore.StatusFailed) || time.Now().After(deadline) {
			t.Fatalf("job status %s", st.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var result struct {
		Model   string `json:"model"`
		Object  string `json:"object"`
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
	}
	getJSON(t, e.url+"/jobs/"+job.ID+"/result", "alice", http.StatusOK, &result)
	want := mockllm.ReplyText("Qwen/Qwen3-30B-A3B", "tell me", 5)
	if result.Model != "qwen3" || result.Object != "text_completion" || len(result.Choices) != 1 || result.Choices[0].Text != want {
		t.Fatalf("result = %+v, want text %q", result, want)
	}
	// A finished job cannot be canceled.
	req, _ = http.NewRequest(http.MethodPost, e.url+"/jobs/"+job.ID+"/cancel", nil)
	req.Header.Set("Authorization", "Bearer alice")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("cancel finished job = %d, want 409", resp.StatusCode)
	}
}

// A streaming client that waits for a slow model load gets keep-alive
// comments; one that goes away mid-generation has its job canceled and
// the backend request aborted.
func TestE2E_StreamKeepAliveAndDisconnect(t *testing.T) {
	e := startE2E(t, e2eOptions{flags: map[string][]string{
		"gpt-oss120": {"--load-delay", "1500ms", "--tokens-per-second", "1"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	reqCtx, abort := context.WithCancel(ctx)
	defer abort()
	body := `{"model":"gpt-oss120","stream":true,"messages":[{"role":"user","content":"slow"}]}`
	req, _ := http.NewRequestWithContext(reqCtx, http.MethodPost, e.url+"/v1/chat/completions", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("status %d content-type %q", resp.StatusCode, ct)
	}
	id := resp.Header.Get("X-Request-Id")
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, ": ") {
		t.Fatalf("first line %q, %v; want a keep-alive comment while the model loads", line, err)
	}

	// Wait until the job runs on the (slow) backend, then walk away.
	waitJob(t, e, id, func(j *jobstore.Job) bool { return j.Status == jobstore.StatusRunning })
	abort()
	final := waitJob(t, e, id, func(j *jobstore.Job) bool { return j.Status.Terminal() })
	if final.Status != jobstore.StatusCanceled {
		t.Fatalf("job after disconnect = %s (%+v), want canceled", final.Status, final.Error)
	}
}

// waitJob polls a job's record until cond holds (there is no push channel
// for an observer that is not the waiting gateway).
func waitJob(t *testing.T, e *e2e, id string, cond func(*jobstore.Job) bool) *jobstore.Job {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j, err := e.stack.Store.Get(ctx, id)
		if err == nil && cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not met in 30s (last: %+v, %v)", id, j, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A backend whose /health is green but which never decodes fails the
// canary: the switch fails with that reason and nothing stays loaded.
func TestE2E_CanaryHangFailsSwitch(t *testing.T) {
	e := startE2E(t, e2eOptions{flags: map[string][]string{"qwen3-30b": {"--hang-generation"}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := e.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "qwen3-30b",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable || !strings.Contains(apiErr.Message, "canary") {
		t.Fatalf("err = %v; want 503 naming the canary", err)
	}
	if running, _ := e.stack.Runtime.Running(ctx); len(running) != 0 {
		t.Fatalf("a model that failed its canary is still running: %v", running)
	}
}

// Make before break: a request for a model that cannot start (its command
// is missing) fails fast with the reason, and the active model is never
// stopped for it.
func TestE2E_PreflightKeepsActiveModel(t *testing.T) {
	e := startE2E(t, e2eOptions{binary: map[string]string{"qwen3-235b-4bit": "/nonexistent/switchboard"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "before", false); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "qwen3-235b-4bit",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable ||
		apiErr.Code != "model_preflight_failed" || !strings.Contains(apiErr.Message, "/nonexistent/switchboard") {
		t.Fatalf("err = %v; want 503 model_preflight_failed naming the missing command", err)
	}
	running, _ := e.stack.Runtime.Running(ctx)
	if len(running) != 1 || running[0] != "qwen3-30b" {
		t.Fatalf("running after a failed preflight = %v, want the active model qwen3-30b untouched", running)
	}
	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "after", true); err != nil {
		t.Fatal(err)
	}
	if n := e.stack.Runtime.MaxAlive(); n != 1 {
		t.Fatalf("max alive = %d", n)
	}
}

// A switch never cuts a stream: a request for another model waits until
// the stream of the active model has finished, then the switch happens.
// Both routes: straight to the backend under a lease, and through the
// queue.
func TestE2E_SwitchDrainsStreams(t *testing.T) {
	for _, route := range []string{"direct", "queue"} {
		t.Run(route, func(t *testing.T) {
			e := startE2E(t, e2eOptions{flags: map[string][]string{"qwen3-30b": {"--tokens-per-second", "20"}},
				gatewayHCL: fmt.Sprintf("gateway {\n  direct_route = %v\n}\n", route == "direct")})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "warm", false); err != nil {
				t.Fatal(err)
			}
			streamDone := make(chan error, 1)
			go func() { streamDone <- e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "long stream", true) }()
			waitBackendBusy(t, e, "qwen3-30b")
			if err := e.chat(ctx, "gpt-oss120", "openai/gpt-oss-120b", "other model", false); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-streamDone:
				if err != nil {
					t.Fatalf("the stream was cut by the switch: %v", err)
				}
			default:
				t.Fatal("the other model answered while the stream of the old one was still running")
			}
			if n := e.stack.Runtime.MaxAlive(); n != 1 {
				t.Fatalf("max alive = %d", n)
			}
		})
	}
}

// waitBackendBusy waits until model's backend reports a request in its
// batch (vllm:num_requests_running), whichever route sent it.
func waitBackendBusy(t *testing.T, e *e2e, model string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := e.stack.Store.State(context.Background(), "e2e")
		if err == nil && st != nil && st.Active == model && st.Backend != "" {
			if resp, err := http.Get(st.Backend + "/metrics"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for _, line := range strings.Split(string(b), "\n") {
					if strings.HasPrefix(line, "vllm:num_requests_running") && !strings.HasSuffix(line, " 0") {
						return
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backend of %s never had a request running", model)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRunning waits until a job of model runs.
func waitRunning(t *testing.T, e *e2e, model string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		running, err := e.stack.Store.Running(context.Background())
		if err == nil {
			for _, j := range running {
				if j.Model == model {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no job of %s ever ran", model)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
