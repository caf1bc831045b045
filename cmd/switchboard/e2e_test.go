package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/mockllm"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/redistest"
)

// The test binary doubles as the switchboard binary: the local runtime
// starts it as `switchboard mockllm ...` with this variable set.
const asMainEnv = "SWITCHBOARD_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// testModels are the dev config's model names, their served names and an
// alias each.
var testModels = []struct{ name, served, alias string }{
	{"gpt-oss120", "openai/gpt-oss-120b", "gpt-oss-120b"},
	{"qwen3-30b", "Qwen/Qwen3-30B-A3B", "qwen3"},
	{"qwen3-235b-4bit", "Qwen/Qwen3-235B-A22B-GPTQ-Int4", "qwen3-235b"},
}

type e2e struct {
	t      testing.TB
	redis  *redistest.Server
	stack  *stack
	url    string
	client openai.Client
}

// e2eOptions vary the stack a test starts.
type e2eOptions struct {
	// env is the environment the config sees (REDIS_URL is set for you).
	env map[string]string
	// flags are extra mockllm flags per model name.
	flags map[string][]string
	// binary replaces the switchboard binary in a model's command.
	binary map[string]string
	// gatewayHCL is appended to gateway.hcl (e.g. a scheduler block).
	gatewayHCL string
	// files are written next to gateway.hcl (e.g. a keys file).
	files map[string]string
	// maxConcurrency of every model; default 4.
	maxConcurrency int
}

// startE2E writes a config with free ports and fast fake backends, and
// starts the embedded stack against a real redis-server.
func startE2E(t testing.TB, opts e2eOptions) *e2e {
	t.Helper()
	redis := redistest.Start(t)
	dir := t.TempDir()
	var models strings.Builder
	conc := opts.maxConcurrency
	if conc == 0 {
		conc = 4
	}
	for _, m := range testModels {
		flags := `"--load-delay", "200ms", "--ttft", "5ms", "--tokens-per-second", "500"`
		for _, f := range opts.flags[m.name] {
			flags += fmt.Sprintf(", %q", f)
		}
		bin := "switchboard"
		if b, ok := opts.binary[m.name]; ok {
			bin = fmt.Sprintf("%q", b)
		}
		fmt.Fprintf(&models, `model %q {
  aliases     = [%q]
  served_name = %q
  backend {
    port = %d
  }
  max_concurrency = %d
  command = [%s, "mockllm", "--port", model.port, "--model", model.served_name, %s]
  env = { %s = "1" }
}
`, m.name, m.alias, m.served, freePort(t), conc, bin, flags, asMainEnv)
	}
	gatewayHCL := `
orchestrator {
  runtime           = "local"
  slot              = "e2e"
  switch_timeout    = "30s"
  inference_timeout = "30s"
  drain_timeout     = "10s"
  stop_timeout      = "10s"
  stop_grace        = "2s"
  canary_timeout    = "2s"
}
`
	if err := os.WriteFile(filepath.Join(dir, "gateway.hcl"), []byte(gatewayHCL+opts.gatewayHCL), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "models.hcl"), []byte(models.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, content := range opts.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"REDIS_URL": redis.URL}
	for k, v := range opts.env {
		env[k] = v
	}
	cfg, err := config.Load(filepath.Join(dir, "gateway.hcl"), config.LoadOptions{
		SwitchboardBin: os.Args[0],
		LookupEnv:      func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "e2e", Level: hclog.Warn, Output: testWriter{t}})
	st, err := startStack(context.Background(), cfg, ln, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := st.shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	url := "http://" + st.Addr
	key := env["GATEWAY_API_KEY"]
	if key == "" {
		key = "unused"
	}
	return &e2e{t: t, redis: redis, stack: st, url: url,
		client: openai.NewClient(option.WithBaseURL(url+"/v1"), option.WithAPIKey(key), option.WithMaxRetries(0))}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// chat sends one chat completion and checks the answer is the one the
// requested model's backend (and no other) produces for this prompt.
func (e *e2e) chat(ctx context.Context, model, served, prompt string, stream bool) error {
	params := openai.ChatCompletionNewParams{
		Model:     model,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		MaxTokens: openai.Int(12),
	}
	want := mockllm.ReplyText(served, prompt, 12)
	if !stream {
		resp, err := e.client.Chat.Completions.New(ctx, params)
		if err != nil {
			return fmt.Errorf("%s: %w", model, err)
		}
		if resp.Model != model {
			return fmt.Errorf("%s: response names model %q", model, resp.Model)
		}
		if got := resp.Choices[0].Message.Content; got != want {
			return fmt.Errorf("%s: got %q, want %q (wrong backend?)", model, got, want)
		}
		return nil
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := e.client.Chat.Completions.NewStreaming(ctx, params)
	var got strings.Builder
	sawUsage := false
	for s.Next() {
		c := s.Current()
		if c.Model != model {
			return fmt.Errorf("%s: chunk names model %q", model, c.Model)
		}
		for _, ch := range c.Choices {
			got.WriteString(ch.Delta.Content)
		}
		if c.Usage.CompletionTokens > 0 {
			sawUsage = true
		}
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("%s stream: %w", model, err)
	}
	if got.String() != want {
		return fmt.Errorf("%s stream: got %q, want %q", model, got.String(), want)
	}
	if !sawUsage {
		return fmt.Errorf("%s stream: no usage chunk despite include_usage", model)
	}
	return nil
}

// TestE2E_SwitchesModels drives the embedded stack with concurrent sync and
// streaming clients, round after round for each model in turn, then for
// all models at once. Every answer must come from the right backend, and
// the runtime must never have had two backends alive.
func TestE2E_SwitchesModels(t *testing.T) {
	e := startE2E(t, e2eOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const clients = 6
	runRound := func(round string, pick func(i int) int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, clients*len(testModels))
		for i := range clients {
			m := testModels[pick(i)]
			name := m.name
			if i%3 == 2 {
				name = m.alias // aliases resolve to the same model
			}
			wg.Go(func() {
				errs <- e.chat(ctx, name, m.served, fmt.Sprintf("%s client %d says hello", round, i), i%2 == 1)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("round %s: %v", round, err)
			}
		}
	}
	for r := range 2 {
		for mi, m := range testModels {
			runRound(fmt.Sprintf("%d-%s", r, m.name), func(int) int { return mi })
		}
	}
	runRound("mixed", func(i int) int { return i % len(testModels) })

	if o := e.stack.Runtime.Overlaps(); len(o) != 0 {
		t.Fatalf("two backends were alive at once: %v", o)
	}
	if n := e.stack.Runtime.MaxAlive(); n != 1 {
		t.Fatalf("max backends alive = %d, want 1", n)
	}

	var status struct {
		State struct {
			Phase  string `json:"phase"`
			Active string `json:"active_model"`
		} `json:"state"`
		LastSwitch *struct {
			To       string  `json:"to"`
			TotalSec float64 `json:"total_seconds"`
		} `json:"last_switch"`
	}
	getJSON(t, e.url+"/status", "", http.StatusOK, &status)
	if status.State.Phase != "ready" || status.LastSwitch == nil || status.LastSwitch.To != status.State.Active {
		t.Fatalf("status after the run = %+v", status)
	}
	var health map[string]any
	getJSON(t, e.url+"/health", "", http.StatusOK, &health)
	if health["status"] != "ok" || health["leader_present"] != true {
		t.Fatalf("health = %v", health)
	}
}

// TestE2E_Auth checks keys: Bearer and X-API-Key work, a missing or wrong
// key is a 401 in OpenAI's shape, a user key cannot read /status.
func TestE2E_Auth(t *testing.T) {
	e := startE2E(t, e2eOptions{env: map[string]string{
		"GATEWAY_API_KEY": "user-key-1, user-key-2", "GATEWAY_ADMIN_API_KEY": "admin-key"}})
	body := `{"model":"qwen3","messages":[{"role":"user","content":"hi"}],"max_tokens":3}`
	tests := []struct {
		name   string
		header string
		value  string
		path   string
		want   int
	}{
		{"no key", "", "", "/v1/chat/completions", http.StatusUnauthorized},
		{"wrong key", "Authorization", "Bearer nope", "/v1/chat/completions", http.StatusUnauthorized},
		{"bearer user key", "Authorization", "Bearer user-key-2", "/v1/chat/completions", http.StatusOK},
		{"x-api-key user key", "X-API-Key", "user-key-1", "/v1/chat/completions", http.StatusOK},
		{"admin key serves users' routes", "Authorization", "Bearer admin-key", "/v1/chat/completions", http.StatusOK},
		{"user key on admin route", "X-API-Key", "user-key-1", "/status", http.StatusForbidden},
		{"admin key on admin route", "X-API-Key", "admin-key", "/status", http.StatusOK},
		{"health is open", "", "", "/health", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, rd := http.MethodPost, io.Reader(strings.NewReader(body))
			if tt.path != "/v1/chat/completions" {
				method, rd = http.MethodGet, nil
			}
			req, _ := http.NewRequest(method, e.url+tt.path, rd)
			if tt.header != "" {
				req.Header.Set(tt.header, tt.value)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.want, b)
			}
			if tt.want >= 400 {
				assertErrorShape(t, b)
			}
		})
	}
}

// TestE2E_ClientMistakes checks that bad requests get a clear 4xx in
// OpenAI's shape and create no job.
func TestE2E_ClientMistakes(t *testing.T) {
	e := startE2E(t, e2eOptions{})
	tests := []struct {
		name, path, body string
		want             int
		wantIn           string
	}{
		{"invalid json", "/v1/chat/completions", `{"model":`, 400, "not valid JSON"},
		{"not an object", "/v1/chat/completions", `[1,2]`, 400, "JSON object"},
		{"missing model", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, 400, "model"},
		{"model not a string", "/v1/chat/completions", `{"model":5}`, 400, "model"},
		{"stream not a bool", "/v1/chat/completions", `{"model":"qwen3","stream":"yes"}`, 400, "stream"},
		{"unknown model lists the available ones", "/v1/chat/completions", `{"model":"llama"}`, 404, "qwen3-30b"},
		{"deep nesting", "/v1/chat/completions", `{"model":"qwen3","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, 400, "nested"},
		{"too large", "/v1/completions", `{"model":"qwen3","prompt":"` + strings.Repeat("a", 17<<20) + `"}`, 413, "larger"},
		{"streamed embeddings", "/v1/embeddings", `{"model":"qwen3","input":"x","stream":true}`, 400, "stream"},
		{"unknown route", "/v1/nope", `{}`, 404, "unknown route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(e.url+tt.path, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.want, b)
			}
			msg := assertErrorShape(t, b)
			if !strings.Contains(msg, tt.wantIn) {
				t.Fatalf("message %q does not mention %q", msg, tt.wantIn)
			}
		})
	}
	keys, err := e.stack.Store.Client().Keys(context.Background(), "sb:job:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("bad requests created jobs: %v", keys)
	}
}

// assertErrorShape checks OpenAI's error envelope and returns the message.
func assertErrorShape(t *testing.T, body []byte) string {
	t.Helper()
	var env struct {
		Error *struct {
			Message *string         `json:"message"`
			Type    *string         `json:"type"`
			Param   json.RawMessage `json:"param"`
			Code    json.RawMessage `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Error == nil || env.Error.Message == nil || env.Error.Type == nil ||
		env.Error.Param == nil || env.Error.Code == nil {
		t.Fatalf("not an OpenAI error envelope (message, type, param, code): %s", body)
	}
	return *env.Error.Message
}

func getJSON(t *testing.T, url, key string, want int, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s = %d, want %d: %s", url, resp.StatusCode, want, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}
