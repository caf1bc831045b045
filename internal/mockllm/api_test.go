package mockllm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func TestServer_ChatCompletion(t *testing.T) {
	_, url := startLoaded(t, testOptions())
	client := newClient(url)
	tests := []struct {
		name       string
		messages   []openai.ChatCompletionMessageParamUnion
		prompt     string // ChatPrompt of messages
		maxTokens  int64
		maxCompl   int64
		wantLimit  int
		wantFinish string
	}{
		{name: "natural stop", messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there")}, prompt: "hello there", wantFinish: FinishStop},
		{
			name:       "system and user",
			messages:   []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("what is up")},
			prompt:     "be brief\nwhat is up",
			wantFinish: FinishStop,
		},
		{name: "max_tokens cuts", messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("count")}, prompt: "count", maxTokens: 3, wantLimit: 3, wantFinish: FinishLength},
		{name: "max_completion_tokens cuts", messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("count")}, prompt: "count", maxCompl: 2, wantLimit: 2, wantFinish: FinishLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := openai.ChatCompletionNewParams{Model: testModel, Messages: tt.messages}
			if tt.maxTokens > 0 {
				params.MaxTokens = openai.Int(tt.maxTokens)
			}
			if tt.maxCompl > 0 {
				params.MaxCompletionTokens = openai.Int(tt.maxCompl)
			}
			resp, err := client.Chat.Completions.New(waitCtx(t), params)
			if err != nil {
				t.Fatalf("chat completion: %v", err)
			}
			tokens, finish := Reply(testModel, tt.prompt, tt.wantLimit)
			if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Model != testModel || resp.Created == 0 {
				t.Fatalf("id %q, model %q, created %d", resp.ID, resp.Model, resp.Created)
			}
			if len(resp.Choices) != 1 {
				t.Fatalf("got %d choices, want 1", len(resp.Choices))
			}
			c := resp.Choices[0]
			if c.Message.Content != strings.Join(tokens, "") || c.Message.Role != "assistant" {
				t.Fatalf("message = %q (%s), want %q", c.Message.Content, c.Message.Role, strings.Join(tokens, ""))
			}
			if c.FinishReason != finish || finish != tt.wantFinish {
				t.Fatalf("finish reason = %q, Reply says %q, want %q", c.FinishReason, finish, tt.wantFinish)
			}
			want := openai.CompletionUsage{PromptTokens: int64(CountTokens(tt.prompt)), CompletionTokens: int64(len(tokens))}
			want.TotalTokens = want.PromptTokens + want.CompletionTokens
			if resp.Usage.PromptTokens != want.PromptTokens || resp.Usage.CompletionTokens != want.CompletionTokens || resp.Usage.TotalTokens != want.TotalTokens {
				t.Fatalf("usage = %+v, want %+v", resp.Usage, want)
			}
		})
	}
}

func TestServer_ChatCompletionStreaming(t *testing.T) {
	_, url := startLoaded(t, testOptions())
	client := newClient(url)
	tests := []struct {
		name         string
		maxTokens    int64
		includeUsage bool
	}{
		{name: "with usage", includeUsage: true},
		{name: "without usage"},
		{name: "cut by max_tokens", maxTokens: 4, includeUsage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prompt := "stream " + tt.name
			params := openai.ChatCompletionNewParams{
				Model:    testModel,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
			}
			if tt.maxTokens > 0 {
				params.MaxTokens = openai.Int(tt.maxTokens)
			}
			if tt.includeUsage {
				params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			}
			stream := client.Chat.Completions.NewStreaming(waitCtx(t), params)
			var chunks []openai.ChatCompletionChunk
			for stream.Next() {
				chunks = append(chunks, stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			tokens, finish := Reply(testModel, prompt, int(tt.maxTokens))
			wantChunks := 1 + len(tokens) + 1 // role, tokens, finish
			if tt.includeUsage {
				wantChunks++
			}
			if len(chunks) != wantChunks {
				t.Fatalf("got %d chunks, want %d", len(chunks), wantChunks)
			}
			first := chunks[0]
			if len(first.Choices) != 1 || first.Choices[0].Delta.Role != "assistant" || first.Choices[0].Delta.Content != "" {
				t.Fatalf("first chunk = %s, want the assistant role with empty content", first.RawJSON())
			}
			var content strings.Builder
			for i, c := range chunks {
				if c.ID != first.ID || !strings.HasPrefix(c.ID, "chatcmpl-") || c.Model != testModel {
					t.Fatalf("chunk %d: id %q model %q, want %q %q", i, c.ID, c.Model, first.ID, testModel)
				}
				for _, ch := range c.Choices {
					content.WriteString(ch.Delta.Content)
				}
			}
			if content.String() != strings.Join(tokens, "") {
				t.Fatalf("streamed content = %q, want %q", content.String(), strings.Join(tokens, ""))
			}
			last := chunks[1+len(tokens)]
			if len(last.Choices) != 1 || last.Choices[0].FinishReason != finish {
				t.Fatalf("finish chunk = %s, want finish reason %q", last.RawJSON(), finish)
			}
			if tt.includeUsage {
				u := chunks[len(chunks)-1]
				if len(u.Choices) != 0 || u.Usage.CompletionTokens != int64(len(tokens)) || u.Usage.PromptTokens != int64(CountTokens(prompt)) {
					t.Fatalf("usage chunk = %s", u.RawJSON())
				}
			}
		})
	}
}

func TestServer_Completions(t *testing.T) {
	_, url := startLoaded(t, testOptions())
	client := newClient(url)
	tests := []struct {
		name      string
		prompt    openai.CompletionNewParamsPromptUnion
		texts     []string // prompt texts, one per choice
		maxTokens int64
		wantLimit int
	}{
		{name: "string uses vLLM's default max_tokens", prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("once upon a time")}, texts: []string{"once upon a time"}, wantLimit: DefaultCompletionMaxTokens},
		{name: "explicit max_tokens", prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("once")}, texts: []string{"once"}, maxTokens: 100, wantLimit: 100},
		{name: "batch of strings", prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: []string{"a b", "c"}}, texts: []string{"a b", "c"}, maxTokens: 5, wantLimit: 5},
		{name: "token ids", prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: []int64{7, 8, 9}}, texts: []string{"7 8 9"}, maxTokens: 30, wantLimit: 30},
	}
	for _, tt := range tests {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tt.name, stream), func(t *testing.T) {
				params := openai.CompletionNewParams{Model: testModel, Prompt: tt.prompt}
				if tt.maxTokens > 0 {
					params.MaxTokens = openai.Int(tt.maxTokens)
				}
				texts := make([]string, len(tt.texts))
				finishes := make([]string, len(tt.texts))
				var usage openai.CompletionUsage
				if stream {
					params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
					s := client.Completions.NewStreaming(waitCtx(t), params)
					for s.Next() {
						c := s.Current()
						if !strings.HasPrefix(c.ID, "cmpl-") {
							t.Fatalf("chunk id %q", c.ID)
						}
						for _, ch := range c.Choices {
							texts[ch.Index] += ch.Text
							if ch.FinishReason != "" {
								finishes[ch.Index] = string(ch.FinishReason)
							}
						}
						if len(c.Choices) == 0 {
							usage = c.Usage
						}
					}
					if err := s.Err(); err != nil {
						t.Fatalf("stream: %v", err)
					}
				} else {
					resp, err := client.Completions.New(waitCtx(t), params)
					if err != nil {
						t.Fatalf("completion: %v", err)
					}
					if !strings.HasPrefix(resp.ID, "cmpl-") || resp.Model != testModel || len(resp.Choices) != len(tt.texts) {
						t.Fatalf("response %s", resp.RawJSON())
					}
					for _, ch := range resp.Choices {
						texts[ch.Index], finishes[ch.Index] = ch.Text, string(ch.FinishReason)
					}
					usage = resp.Usage
				}
				var promptTokens, completionTokens int64
				for i, text := range tt.texts {
					tokens, finish := Reply(testModel, text, tt.wantLimit)
					if texts[i] != strings.Join(tokens, "") || finishes[i] != finish {
						t.Fatalf("choice %d = %q (%s), want %q (%s)", i, texts[i], finishes[i], strings.Join(tokens, ""), finish)
					}
					promptTokens += int64(CountTokens(text))
					completionTokens += int64(len(tokens))
				}
				if usage.PromptTokens != promptTokens || usage.CompletionTokens != completionTokens || usage.TotalTokens != promptTokens+completionTokens {
					t.Fatalf("usage = %+v, want prompt %d completion %d", usage, promptTokens, completionTokens)
				}
			})
		}
	}
}

func TestServer_Embeddings(t *testing.T) {
	opts := testOptions()
	opts.EmbeddingDim = 12
	_, url := startLoaded(t, opts)
	client := newClient(url)
	tests := []struct {
		name   string
		input  openai.EmbeddingNewParamsInputUnion
		texts  []string
		format openai.EmbeddingNewParamsEncodingFormat
	}{
		{name: "string, default format", input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("the cat sat")}, texts: []string{"the cat sat"}},
		{name: "strings as float", input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"one", "two words"}}, texts: []string{"one", "two words"}, format: openai.EmbeddingNewParamsEncodingFormatFloat},
		{name: "strings as base64", input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"one", "two words"}}, texts: []string{"one", "two words"}, format: openai.EmbeddingNewParamsEncodingFormatBase64},
		{name: "token arrays", input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokenArrays: [][]int64{{1, 2}, {3}}}, texts: []string{"1 2", "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Embeddings.New(waitCtx(t), openai.EmbeddingNewParams{Model: testModel, Input: tt.input, EncodingFormat: tt.format})
			if err != nil {
				t.Fatalf("embeddings: %v", err)
			}
			if resp.Model != testModel || len(resp.Data) != len(tt.texts) {
				t.Fatalf("response %s", resp.RawJSON())
			}
			var tokens int64
			for i, text := range tt.texts {
				d := resp.Data[i]
				want := Embedding(testModel, text, opts.EmbeddingDim)
				if d.Index != int64(i) || len(d.Embedding) != len(want) {
					t.Fatalf("data[%d]: index %d, %d floats, want %d", i, d.Index, len(d.Embedding), len(want))
				}
				for j := range want {
					if float32(d.Embedding[j]) != want[j] {
						t.Fatalf("data[%d][%d] = %v, want %v", i, j, d.Embedding[j], want[j])
					}
				}
				tokens += int64(len(strings.Fields(text)))
			}
			if resp.Usage.PromptTokens != tokens || resp.Usage.TotalTokens != tokens {
				t.Fatalf("usage = %+v, want %d tokens", resp.Usage, tokens)
			}
		})
	}
}

func TestServer_WireShapes(t *testing.T) {
	opts := testOptions()
	opts.MaxModelLen = 4096
	_, url := startLoaded(t, opts)

	t.Run("models", func(t *testing.T) {
		resp, body := do(t, http.MethodGet, url+"/v1/models", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		list := decodeMap(t, string(body))
		assertKeys(t, "model list", list, "object", "data")
		data, _ := list["data"].([]any)
		if list["object"] != "list" || len(data) != 1 {
			t.Fatalf("model list = %s", body)
		}
		card, _ := data[0].(map[string]any)
		assertKeys(t, "model card", card, "id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission")
		if card["id"] != testModel || card["object"] != "model" || card["owned_by"] != "vllm" || card["root"] != testModel ||
			card["parent"] != nil || card["max_model_len"] != float64(4096) || card["created"].(float64) <= 0 {
			t.Fatalf("model card = %v", card)
		}
		perms, _ := card["permission"].([]any)
		if len(perms) != 1 {
			t.Fatalf("permission = %v", card["permission"])
		}
		perm, _ := perms[0].(map[string]any)
		assertKeys(t, "permission", perm, "id", "object", "created", "allow_create_engine", "allow_sampling", "allow_logprobs",
			"allow_search_indices", "allow_view", "allow_fine_tuning", "organization", "group", "is_blocking")
		if !strings.HasPrefix(perm["id"].(string), "modelperm-") || perm["object"] != "model_permission" || perm["allow_sampling"] != true ||
			perm["allow_create_engine"] != false || perm["organization"] != "*" || perm["group"] != nil || perm["is_blocking"] != false {
			t.Fatalf("permission = %v", perm)
		}
	})

	t.Run("chat completion", func(t *testing.T) {
		resp, body := do(t, http.MethodPost, url+"/v1/chat/completions", chatBody(testModel, "shape", ""))
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		m := decodeMap(t, string(body))
		assertKeys(t, "response", m, "id", "object", "created", "model", "choices", "service_tier", "system_fingerprint", "usage", "prompt_logprobs", "kv_transfer_params")
		if m["object"] != "chat.completion" {
			t.Fatalf("object = %v", m["object"])
		}
		choice := m["choices"].([]any)[0].(map[string]any)
		assertKeys(t, "choice", choice, "index", "message", "logprobs", "finish_reason", "stop_reason")
		if choice["logprobs"] != nil || choice["stop_reason"] != nil || choice["finish_reason"] != FinishStop {
			t.Fatalf("choice = %v", choice)
		}
		usage := m["usage"].(map[string]any)
		assertKeys(t, "usage", usage, "prompt_tokens", "total_tokens", "completion_tokens", "prompt_tokens_details")
		if usage["prompt_tokens_details"] != nil {
			t.Fatalf("usage = %v", usage)
		}
	})

	t.Run("chat stream", func(t *testing.T) {
		resp, body := do(t, http.MethodPost, url+"/v1/chat/completions",
			chatBody(testModel, "shape", `"stream":true,"stream_options":{"include_usage":true},"max_tokens":2`))
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
			t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		events := sseEvents(t, body)
		tokens, _ := Reply(testModel, "shape", 2)
		if len(events) != 1+len(tokens)+1+1+1 || events[len(events)-1] != "[DONE]" {
			t.Fatalf("events = %q", events)
		}
		wantChoices := []string{
			`[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null,"stop_reason":null}]`,
			`[{"index":0,"delta":{"content":"` + tokens[0] + `"},"logprobs":null,"finish_reason":null,"stop_reason":null}]`,
			`[{"index":0,"delta":{"content":"` + tokens[1] + `"},"logprobs":null,"finish_reason":null,"stop_reason":null}]`,
			`[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"length","stop_reason":null}]`,
		}
		for i, want := range wantChoices {
			m := decodeMap(t, events[i])
			assertKeys(t, "chunk", m, "id", "object", "created", "model", "choices")
			got, _ := json.Marshal(m["choices"])
			var w any
			_ = json.Unmarshal([]byte(want), &w)
			wantJSON, _ := json.Marshal(w)
			if m["object"] != "chat.completion.chunk" || string(got) != string(wantJSON) {
				t.Fatalf("chunk %d = %s, want choices %s", i, events[i], want)
			}
		}
		u := decodeMap(t, events[4])
		assertKeys(t, "usage chunk", u, "id", "object", "created", "model", "choices", "usage")
		assertKeys(t, "streamed usage", u["usage"].(map[string]any), "prompt_tokens", "total_tokens", "completion_tokens")
		if len(u["choices"].([]any)) != 0 {
			t.Fatalf("usage chunk = %s", events[4])
		}
	})

	t.Run("completion stream", func(t *testing.T) {
		resp, body := do(t, http.MethodPost, url+"/v1/completions", `{"model":"`+testModel+`","prompt":"p","stream":true,"max_tokens":1}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		events := sseEvents(t, body)
		if len(events) != 3 || events[2] != "[DONE]" {
			t.Fatalf("events = %q", events)
		}
		m := decodeMap(t, events[0])
		choice := m["choices"].([]any)[0].(map[string]any)
		assertKeys(t, "completion chunk choice", choice, "index", "text", "logprobs", "finish_reason", "stop_reason")
		if m["object"] != "text_completion" || choice["text"] != ReplyText(testModel, "p", 1) {
			t.Fatalf("chunk = %s", events[0])
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		resp, body := do(t, http.MethodPost, url+"/v1/embeddings", `{"model":"`+testModel+`","input":"x y"}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		m := decodeMap(t, string(body))
		assertKeys(t, "embedding response", m, "id", "object", "created", "model", "data", "usage")
		if !strings.HasPrefix(m["id"].(string), "embd-") || m["object"] != "list" {
			t.Fatalf("response = %s", body)
		}
		d := m["data"].([]any)[0].(map[string]any)
		assertKeys(t, "embedding", d, "index", "object", "embedding")
		if !strings.Contains(string(body), `"usage":{"prompt_tokens":2,"total_tokens":2,"completion_tokens":0,"prompt_tokens_details":null}`) {
			t.Fatalf("usage in %s", body)
		}
	})

	t.Run("health", func(t *testing.T) {
		resp, body := do(t, http.MethodGet, url+"/health", "")
		if resp.StatusCode != http.StatusOK || len(body) != 0 {
			t.Fatalf("health = %d %q, want 200 with an empty body", resp.StatusCode, body)
		}
	})
}

func TestServer_Errors(t *testing.T) {
	opts := testOptions()
	opts.MaxModelLen = 64
	_, url := startLoaded(t, opts)
	long := strings.Repeat("word ", 70)
	tests := []struct {
		name        string
		method      string
		path        string
		body        string
		wantStatus  int
		wantBody    string // exact, when set
		wantType    string // error envelope type, when set
		wantMessage string // substring of the envelope message
	}{
		{
			name: "chat with unknown model", method: http.MethodPost, path: "/v1/chat/completions", body: chatBody("other", "hi", ""),
			wantStatus: 404, wantBody: "{\"error\":{\"message\":\"The model `other` does not exist.\",\"type\":\"NotFoundError\",\"param\":\"model\",\"code\":404}}",
		},
		{name: "completion with unknown model", method: http.MethodPost, path: "/v1/completions", body: `{"model":"other","prompt":"x"}`, wantStatus: 404, wantType: "NotFoundError"},
		{name: "embeddings with unknown model", method: http.MethodPost, path: "/v1/embeddings", body: `{"model":"other","input":"x"}`, wantStatus: 404, wantType: "NotFoundError"},
		{name: "invalid JSON", method: http.MethodPost, path: "/v1/chat/completions", body: `{"model":`, wantStatus: 400, wantType: "BadRequestError"},
		{name: "body not an object", method: http.MethodPost, path: "/v1/chat/completions", body: `[1,2]`, wantStatus: 400, wantType: "BadRequestError"},
		{name: "missing messages", method: http.MethodPost, path: "/v1/chat/completions", body: `{"model":"` + testModel + `"}`, wantStatus: 400, wantType: "BadRequestError", wantMessage: "messages"},
		{name: "messages of wrong type", method: http.MethodPost, path: "/v1/chat/completions", body: `{"messages":"hi"}`, wantStatus: 400, wantType: "BadRequestError", wantMessage: "messages"},
		{name: "stream of wrong type", method: http.MethodPost, path: "/v1/chat/completions", body: chatBody(testModel, "hi", `"stream":"yes"`), wantStatus: 400, wantType: "BadRequestError", wantMessage: "stream"},
		{name: "max_tokens of wrong type", method: http.MethodPost, path: "/v1/chat/completions", body: chatBody(testModel, "hi", `"max_tokens":"many"`), wantStatus: 400, wantType: "BadRequestError", wantMessage: "max_tokens"},
		{name: "max_tokens fractional", method: http.MethodPost, path: "/v1/chat/completions", body: chatBody(testModel, "hi", `"max_tokens":2.5`), wantStatus: 400, wantType: "BadRequestError", wantMessage: "max_tokens"},
		{name: "max_tokens zero", method: http.MethodPost, path: "/v1/chat/completions", body: chatBody(testModel, "hi", `"max_tokens":0`), wantStatus: 400, wantType: "BadRequestError", wantMessage: "at least 1"},
		{name: "stream_options without stream", method: http.MethodPost, path: "/v1/chat/completions", body: chatBody(testModel, "hi", `"stream_options":{"include_usage":true}`), wantStatus: 400, wantMessage: "stream=True"},
		{name: "prompt over the context", method: http.MethodPost, path: "/v1/chat/completions", body: chatBody(testModel, long, ""), wantStatus: 400, wantMessage: "maximum context length is 64 tokens"},
		{name: "prompt plus max_tokens over the context", method: http.MethodPost, path: "/v1/chat/completions", body: chatBody(testModel, "a b c", `"max_tokens":62`), wantStatus: 400, wantMessage: "(3 in the messages, 62 in the completion)"},
		{name: "missing prompt", method: http.MethodPost, path: "/v1/completions", body: `{"model":"` + testModel + `"}`, wantStatus: 400, wantMessage: "prompt"},
		{name: "prompt of wrong type", method: http.MethodPost, path: "/v1/completions", body: `{"prompt":{"a":1}}`, wantStatus: 400, wantMessage: "prompt"},
		{name: "missing input", method: http.MethodPost, path: "/v1/embeddings", body: `{}`, wantStatus: 400, wantMessage: "input"},
		{name: "unknown encoding", method: http.MethodPost, path: "/v1/embeddings", body: `{"input":"x","encoding_format":"int8"}`, wantStatus: 400, wantMessage: "encoding_format"},
		{name: "unsupported dimensions", method: http.MethodPost, path: "/v1/embeddings", body: `{"input":"x","dimensions":3}`, wantStatus: 400, wantMessage: "matryoshka"},
		{name: "unknown route", method: http.MethodGet, path: "/v1/nope", wantStatus: 404, wantBody: `{"detail":"Not Found"}`},
		{name: "wrong method", method: http.MethodGet, path: "/v1/chat/completions", wantStatus: 405, wantBody: `{"detail":"Method Not Allowed"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, url+tt.path, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantBody != "" {
				if string(body) != tt.wantBody {
					t.Fatalf("body = %s, want %s", body, tt.wantBody)
				}
				return
			}
			var env struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    int     `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &env); err != nil {
				t.Fatalf("decode envelope %s: %v", body, err)
			}
			assertKeys(t, "error", decodeMap(t, string(body))["error"].(map[string]any), "message", "type", "param", "code")
			if env.Error.Code != tt.wantStatus {
				t.Fatalf("code = %d, want %d", env.Error.Code, tt.wantStatus)
			}
			if tt.wantType != "" && env.Error.Type != tt.wantType {
				t.Fatalf("type = %q, want %q", env.Error.Type, tt.wantType)
			}
			if !strings.Contains(env.Error.Message, tt.wantMessage) {
				t.Fatalf("message = %q, want it to contain %q", env.Error.Message, tt.wantMessage)
			}
		})
	}
	t.Run("405 lists the allowed method", func(t *testing.T) {
		resp, _ := do(t, http.MethodDelete, url+"/v1/models", "")
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" {
			t.Fatalf("status %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
	t.Run("sdk sees a 404 error", func(t *testing.T) {
		client := newClient(url)
		_, err := client.Chat.Completions.New(waitCtx(t), openai.ChatCompletionNewParams{
			Model: "other", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
			t.Fatalf("error = %v, want a 404 API error", err)
		}
	})
}

func TestServer_APIKey(t *testing.T) {
	opts := testOptions()
	opts.APIKey = "sekrit"
	_, url := startLoaded(t, opts)
	tests := []struct {
		name       string
		path       string
		auth       string
		wantStatus int
		wantBody   string
	}{
		{name: "no key", path: "/v1/models", wantStatus: 401, wantBody: `{"error":"Unauthorized"}`},
		{name: "wrong key", path: "/v1/models", auth: "Bearer nope", wantStatus: 401, wantBody: `{"error":"Unauthorized"}`},
		{name: "not a bearer", path: "/v1/models", auth: "sekrit", wantStatus: 401},
		{name: "right key", path: "/v1/models", auth: "Bearer sekrit", wantStatus: 200},
		{name: "unknown v1 route needs the key", path: "/v1/nope", wantStatus: 401},
		{name: "health stays open", path: "/health", wantStatus: 200, wantBody: ""},
		{name: "metrics stay open", path: "/metrics", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.auth != "" {
				header = []string{"Authorization", tt.auth}
			}
			resp, body := do(t, http.MethodGet, url+tt.path, "", header...)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus != 200 || tt.path == "/health" {
				if tt.wantBody != "" && string(body) != tt.wantBody {
					t.Fatalf("body = %s, want %s", body, tt.wantBody)
				}
			}
		})
	}
	t.Run("sdk with the key", func(t *testing.T) {
		client := newClient(url, option.WithAPIKey("sekrit"))
		resp, err := client.Chat.Completions.New(waitCtx(t), openai.ChatCompletionNewParams{
			Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("auth")},
		})
		if err != nil || resp.Choices[0].Message.Content != ReplyText(testModel, "auth", 0) {
			t.Fatalf("chat with key: %v", err)
		}
	})
}

func TestServer_Determinism(t *testing.T) {
	optsA, optsB := testOptions(), testOptions()
	optsA.Model, optsB.Model = "model-a", "model-b"
	_, urlA := startLoaded(t, optsA)
	_, urlB := startLoaded(t, optsB)
	ask := func(url, model string) string {
		t.Helper()
		client := newClient(url)
		resp, err := client.Chat.Completions.New(waitCtx(t), openai.ChatCompletionNewParams{
			Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("tell me a story")},
		})
		if err != nil {
			t.Fatalf("chat: %v", err)
		}
		return resp.Choices[0].Message.Content
	}
	a1, a2, b := ask(urlA, "model-a"), ask(urlA, "model-a"), ask(urlB, "model-b")
	if a1 != a2 {
		t.Fatalf("same request, different replies: %q vs %q", a1, a2)
	}
	if a1 == b {
		t.Fatalf("different models gave the same reply %q", a1)
	}
	if a1 != ReplyText("model-a", "tell me a story", 0) || b != ReplyText("model-b", "tell me a story", 0) {
		t.Fatalf("replies differ from Reply")
	}
}

// TestServer_HandlerWithHTTPTest is how other packages mount the fake: no
// Run, no load to simulate.
func TestServer_HandlerWithHTTPTest(t *testing.T) {
	s := newServer(t, testOptions())
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	if !s.Ready() {
		t.Fatalf("a server without a load delay is not ready")
	}
	client := newClient(ts.URL)
	resp, err := client.Completions.New(waitCtx(t), openai.CompletionNewParams{
		Model: testModel, Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hi")},
	})
	if err != nil || resp.Choices[0].Text != ReplyText(testModel, "hi", DefaultCompletionMaxTokens) {
		t.Fatalf("completion through httptest: %v", err)
	}
}
