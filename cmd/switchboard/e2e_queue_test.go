package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// post sends body to path and decodes the JSON answer.
func post(t *testing.T, url, body string, headers map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	return resp, out
}

// A model that takes long to load: async jobs show their queue position
// and an ETA, the same Idempotency-Key gives the same job, a full queue
// answers 429 with Retry-After, and /queue shows the waiting work.
func TestE2E_QueueLimitsIdempotencyETA(t *testing.T) {
	e := startE2E(t, e2eOptions{
		flags:      map[string][]string{"gpt-oss120": {"--load-delay", "3s"}},
		gatewayHCL: "scheduler {\n  max_pending = 2\n}\n",
	})
	body := `{"model":"gpt-oss120","async":true,"prompt":"q","max_tokens":2}`
	resp, first := post(t, e.url+"/v1/completions", body, map[string]string{"Idempotency-Key": "abc"})
	if resp.StatusCode != http.StatusAccepted || first["queue_position"] != 1.0 || first["eta_seconds"] == nil {
		t.Fatalf("first = %d %v", resp.StatusCode, first)
	}
	resp, again := post(t, e.url+"/v1/completions", body, map[string]string{"Idempotency-Key": "abc"})
	if resp.StatusCode != http.StatusAccepted || again["id"] != first["id"] {
		t.Fatalf("same idempotency key = %d %v, want job %v", resp.StatusCode, again, first["id"])
	}
	resp, second := post(t, e.url+"/v1/completions", body, nil)
	if resp.StatusCode != http.StatusAccepted || second["queue_position"] != 2.0 {
		t.Fatalf("second = %d %v", resp.StatusCode, second)
	}
	resp, full := post(t, e.url+"/v1/completions", body, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third = %d %v (Retry-After %q), want 429", resp.StatusCode, full, resp.Header.Get("Retry-After"))
	}
	var q struct {
		Models map[string]struct {
			Pending int    `json:"pending"`
			State   string `json:"state"`
		} `json:"models"`
	}
	getJSON(t, e.url+"/queue", "", http.StatusOK, &q)
	if q.Models["gpt-oss120"].Pending != 2 {
		t.Fatalf("/queue = %+v", q)
	}
}

// A job that waits longer than queue_timeout fails with 504 and says why.
func TestE2E_QueueTimeout(t *testing.T) {
	e := startE2E(t, e2eOptions{
		flags:      map[string][]string{"qwen3-235b-4bit": {"--load-delay", "5s"}},
		gatewayHCL: "scheduler {\n  queue_timeout = \"1s\"\n}\n",
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := e.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "qwen3-235b-4bit", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("slow")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusGatewayTimeout || apiErr.Code != "queue_timeout" {
		t.Fatalf("err = %v, want 504 queue_timeout", err)
	}
}

// The wait for a switch is reported on sync answers.
func TestE2E_WaitHeader(t *testing.T) {
	e := startE2E(t, e2eOptions{})
	req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"qwen3","messages":[{"role":"user","content":"x"}],"max_tokens":2}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ms, err := strconv.Atoi(resp.Header.Get("X-Switchboard-Wait-Ms"))
	if resp.StatusCode != http.StatusOK || err != nil || ms < 150 {
		t.Fatalf("status %d, X-Switchboard-Wait-Ms %q: want the ~200ms load counted", resp.StatusCode, resp.Header.Get("X-Switchboard-Wait-Ms"))
	}
}
