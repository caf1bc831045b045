package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-switchboard/llm-switchboard/internal/mockllm"
)

// The official SDK against the switchboard, as users point it: models,
// completions, embeddings, typed errors for an unknown model and a bad
// key, and the headers the switchboard adds.
func TestE2E_OpenAISDK(t *testing.T) {
	e := startE2E(t, e2eOptions{env: map[string]string{"GATEWAY_API_KEY": "sk-user"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := openai.NewClient(option.WithBaseURL(e.url+"/v1"), option.WithAPIKey("sk-user"), option.WithMaxRetries(0))

	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range page.Data {
		ids[m.ID] = true
	}
	for _, want := range []string{"qwen3-30b", "qwen3", "gpt-oss120", "gpt-oss-120b", "qwen3-235b-4bit"} {
		if !ids[want] {
			t.Fatalf("model list %v lacks %s", ids, want)
		}
	}
	if m, err := client.Models.Get(ctx, "qwen3"); err != nil || m.ID != "qwen3" {
		t.Fatalf("get model = %+v, %v", m, err)
	}

	var hdr http.Header
	comp, err := client.Completions.New(ctx, openai.CompletionNewParams{
		Model: "qwen3-30b", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("once upon")},
		MaxTokens: openai.Int(4),
	}, option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		resp, err := next(r)
		if resp != nil {
			hdr = resp.Header
		}
		return resp, err
	}))
	if err != nil {
		t.Fatal(err)
	}
	if want := mockllm.ReplyText("Qwen/Qwen3-30B-A3B", "once upon", 4); comp.Choices[0].Text != want || comp.Model != "qwen3-30b" {
		t.Fatalf("completion = %q (model %s), want %q", comp.Choices[0].Text, comp.Model, want)
	}
	if hdr.Get("X-Switchboard-Model-State") != "switched" || !strings.HasPrefix(hdr.Get("X-Request-Id"), "job_") ||
		hdr.Get("X-Switchboard-Job-Id") != hdr.Get("X-Request-Id") {
		t.Fatalf("headers = %v", hdr)
	}

	emb, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "qwen3", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) != 2 || len(emb.Data[0].Embedding) == 0 {
		t.Fatalf("embeddings = %+v", emb)
	}

	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "llama-99", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" || apiErr.Type != "not_found_error" {
		t.Fatalf("unknown model err = %v", err)
	}
	bad := openai.NewClient(option.WithBaseURL(e.url+"/v1"), option.WithAPIKey("sk-wrong"), option.WithMaxRetries(0))
	_, err = bad.Models.List(ctx)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || apiErr.Code != "invalid_api_key" {
		t.Fatalf("bad key err = %v", err)
	}

	// A client's own request id is echoed. The model is loaded, so the
	// request took the direct route: no job record, so no job id.
	req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/completions", strings.NewReader(`{"model":"qwen3","prompt":"x","max_tokens":1}`))
	req.Header.Set("Authorization", "Bearer sk-user")
	req.Header.Set("X-Request-Id", "trace-abc.123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Request-Id") != "trace-abc.123" || resp.Header.Get("X-Switchboard-Job-Id") != "" ||
		resp.Header.Get("X-Switchboard-Route") != "direct" || resp.Header.Get("X-Switchboard-Model-State") != "hit" {
		t.Fatalf("headers = %v", resp.Header)
	}
}
