package mockllm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

func TestServer_HealthTransitions(t *testing.T) {
	opts := testOptions()
	opts.LoadDelay = time.Hour // ended by finishLoad, never by time
	s, url := start(t, opts)

	resp, body := do(t, http.MethodGet, url+"/health", "")
	if resp.StatusCode != http.StatusServiceUnavailable || len(body) != 0 {
		t.Fatalf("health while loading = %d %q, want 503 with an empty body", resp.StatusCode, body)
	}
	if s.Ready() {
		t.Fatalf("Ready while loading")
	}
	resp, body = do(t, http.MethodPost, url+"/v1/chat/completions", chatBody(testModel, "early", ""))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"type":"ServiceUnavailableError"`) {
		t.Fatalf("chat while loading = %d %s, want a 503 envelope", resp.StatusCode, body)
	}
	if resp, _ := do(t, http.MethodGet, url+"/metrics", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics while loading = %d, want 200", resp.StatusCode)
	}

	s.finishLoad()
	select {
	case <-s.Loaded():
	case <-waitCtx(t).Done():
		t.Fatalf("never loaded")
	}
	resp, body = do(t, http.MethodGet, url+"/health", "")
	if resp.StatusCode != http.StatusOK || len(body) != 0 || !s.Ready() {
		t.Fatalf("health when loaded = %d %q (ready %v), want 200 with an empty body", resp.StatusCode, body, s.Ready())
	}
}

func TestServer_LoadDelay(t *testing.T) {
	tests := []struct {
		name    string
		delay   time.Duration
		refuse  bool
		wantMin time.Duration
	}{
		{name: "503 while loading", delay: 100 * time.Millisecond, wantMin: 100 * time.Millisecond},
		{name: "refused while loading", delay: 100 * time.Millisecond, refuse: true, wantMin: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.LoadDelay, opts.RefuseWhileLoading = tt.delay, tt.refuse
			begin := time.Now()
			s := newServer(t, opts)
			run(t, s)
			select {
			case <-s.Loaded():
			case <-waitCtx(t).Done():
				t.Fatalf("never loaded")
			}
			if elapsed := time.Since(begin); elapsed < tt.wantMin {
				t.Fatalf("loaded after %s, want at least %s", elapsed, tt.wantMin)
			}
			addr, err := s.Addr(waitCtx(t))
			if err != nil {
				t.Fatalf("Addr: %v", err)
			}
			if resp, _ := do(t, http.MethodGet, "http://"+addr+"/health", ""); resp.StatusCode != http.StatusOK {
				t.Fatalf("health = %d, want 200", resp.StatusCode)
			}
		})
	}
}

func TestServer_RefuseWhileLoading(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	opts := testOptions()
	opts.Port, opts.RefuseWhileLoading, opts.LoadDelay = port, true, time.Hour
	s := newServer(t, opts)
	run(t, s)
	want := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if conn, err := net.Dial("tcp", want); err == nil {
		conn.Close()
		t.Fatalf("connected to %s while loading, want connection refused", want)
	}

	s.finishLoad()
	addr, err := s.Addr(waitCtx(t))
	if err != nil || addr != want {
		t.Fatalf("Addr = %q, %v; want %q", addr, err, want)
	}
	if resp, body := do(t, http.MethodGet, "http://"+addr+"/health", ""); resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Fatalf("health = %d %q, want 200 with an empty body", resp.StatusCode, body)
	}
}

func TestServer_ExitDuringLoad(t *testing.T) {
	const msg = "RuntimeError: CUDA out of memory"
	tests := []struct {
		name   string
		refuse bool
	}{
		{name: "while answering 503"},
		{name: "while refusing connections", refuse: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.ExitDuringLoad, opts.ExitMessage, opts.RefuseWhileLoading = true, msg, tt.refuse
			opts.LoadDelay = time.Hour
			s := newServer(t, opts)
			result, _ := run(t, s)
			if !tt.refuse {
				addr, err := s.Addr(waitCtx(t))
				if err != nil {
					t.Fatalf("Addr: %v", err)
				}
				if resp, _ := do(t, http.MethodGet, "http://"+addr+"/health", ""); resp.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("health while loading = %d, want 503", resp.StatusCode)
				}
			}
			s.finishLoad()
			var err error
			select {
			case err = <-result:
			case <-waitCtx(t).Done():
				t.Fatalf("Run did not return after the crash")
			}
			if !errors.Is(err, ErrExitDuringLoad) || !strings.Contains(err.Error(), msg) {
				t.Fatalf("Run = %v, want ErrExitDuringLoad with %q", err, msg)
			}
			if s.Ready() {
				t.Fatalf("Ready after a crash")
			}
			addr, err := s.Addr(waitCtx(t))
			switch {
			case tt.refuse && !errors.Is(err, errNotListening):
				t.Fatalf("Addr = %q, %v; want errNotListening", addr, err)
			case !tt.refuse && err != nil:
				t.Fatalf("Addr: %v", err)
			case !tt.refuse:
				if conn, err := net.Dial("tcp", addr); err == nil {
					conn.Close()
					t.Fatalf("still listening on %s after the crash", addr)
				}
			}
		})
	}
}

func TestServer_HangLoad(t *testing.T) {
	opts := testOptions()
	opts.HangLoad = true
	s := newServer(t, opts)
	result, stop := run(t, s)
	addr, err := s.Addr(waitCtx(t))
	if err != nil {
		t.Fatalf("Addr: %v", err)
	}
	if resp, _ := do(t, http.MethodGet, "http://"+addr+"/health", ""); resp.StatusCode != http.StatusServiceUnavailable || s.Ready() {
		t.Fatalf("health = %d (ready %v), want 503", resp.StatusCode, s.Ready())
	}
	stop()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("Run = %v, want nil when stopped during a hung load", err)
		}
	case <-waitCtx(t).Done():
		t.Fatalf("Run did not return")
	}
}

func TestServer_InjectedErrors(t *testing.T) {
	const want500 = `{"error":{"message":"EngineCore encountered an issue. See stack trace (above) for the root cause.","type":"InternalServerError","param":null,"code":500}}`
	tests := []struct {
		name       string
		errorRate  float64
		failAfter  int
		path, body string
		want       []int
	}{
		{name: "error rate one", errorRate: 1, path: "/v1/chat/completions", body: chatBody(testModel, "x", ""), want: []int{500, 500}},
		{name: "error rate one on embeddings", errorRate: 1, path: "/v1/embeddings", body: `{"input":"x"}`, want: []int{500}},
		{name: "error rate zero", path: "/v1/completions", body: `{"prompt":"x"}`, want: []int{200, 200}},
		{name: "fail after two", failAfter: 2, path: "/v1/chat/completions", body: chatBody(testModel, "x", ""), want: []int{200, 200, 500, 500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.ErrorRate, opts.FailAfter = tt.errorRate, tt.failAfter
			s, url := startLoaded(t, opts)
			var failed int64
			for i, want := range tt.want {
				resp, body := do(t, http.MethodPost, url+tt.path, tt.body)
				if resp.StatusCode != want {
					t.Fatalf("request %d: status %d, want %d: %s", i, resp.StatusCode, want, body)
				}
				if want == 500 {
					failed++
					if string(body) != want500 {
						t.Fatalf("request %d: body %s, want %s", i, body, want500)
					}
				}
			}
			if st := s.Stats(); st.Failed != failed || st.Requests != int64(len(tt.want)) || st.Running != 0 {
				t.Fatalf("stats = %+v, want %d failed of %d", st, failed, len(tt.want))
			}
		})
	}
}

func TestServer_StreamCut(t *testing.T) {
	const cutAfter = 3
	tests := []struct {
		name       string
		path, body string
		stream     bool
		wantEvents int // events received before the cut
	}{
		{name: "chat stream", path: "/v1/chat/completions", body: chatBody(testModel, "cut", `"stream":true`), stream: true, wantEvents: 1 + cutAfter},
		{name: "completion stream", path: "/v1/completions", body: `{"prompt":"cut","stream":true}`, stream: true, wantEvents: cutAfter},
		{name: "chat without stream", path: "/v1/chat/completions", body: chatBody(testModel, "cut", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.StreamCutAfter = cutAfter
			s, url := startLoaded(t, opts)
			req, err := http.NewRequestWithContext(waitCtx(t), http.MethodPost, url+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			resp, err := http.DefaultClient.Do(req)
			if !tt.stream {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got status %d, want the connection dropped", resp.StatusCode)
				}
			} else {
				if err != nil {
					t.Fatalf("request: %v", err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Fatalf("stream ended cleanly, want it cut: %q", body)
				}
				events := sseEvents(t, body)
				if len(events) != tt.wantEvents {
					t.Fatalf("got %d events before the cut, want %d: %q", len(events), tt.wantEvents, events)
				}
				for _, ev := range events {
					if ev == "[DONE]" || strings.Contains(ev, `"finish_reason":"`) {
						t.Fatalf("event %q sent before the cut", ev)
					}
				}
			}
			if err := s.WaitFor(waitCtx(t), func(st Stats) bool { return st.Failed == 1 && st.Running == 0 }); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("sdk sees an error", func(t *testing.T) {
		opts := testOptions()
		opts.StreamCutAfter = cutAfter
		_, url := startLoaded(t, opts)
		client := newClient(url)
		stream := client.Chat.Completions.NewStreaming(waitCtx(t), openai.ChatCompletionNewParams{
			Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("cut")},
		})
		n := 0
		for stream.Next() {
			n++
		}
		if stream.Err() == nil {
			t.Fatalf("stream of %d chunks ended without error, want the cut reported", n)
		}
	})
}

func TestServer_HangGeneration(t *testing.T) {
	tests := []struct {
		name, path, body string
	}{
		{name: "chat", path: "/v1/chat/completions", body: chatBody(testModel, "hang", "")},
		{name: "chat stream", path: "/v1/chat/completions", body: chatBody(testModel, "hang", `"stream":true`)},
		{name: "completion", path: "/v1/completions", body: `{"prompt":"hang"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.HangGeneration = true
			s, url := startLoaded(t, opts)

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- post(ctx, url+tt.path, tt.body) }()
			if err := s.WaitFor(waitCtx(t), func(st Stats) bool { return st.Running == 1 }); err != nil {
				t.Fatal(err)
			}
			cancel()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("hung request completed")
				}
			case <-waitCtx(t).Done():
				t.Fatalf("client did not give up")
			}
			if err := s.WaitFor(waitCtx(t), func(st Stats) bool { return st.Aborted == 1 && st.Running == 0 }); err != nil {
				t.Fatal(err)
			}
			_, body := do(t, http.MethodGet, url+"/metrics", "")
			if want := fmt.Sprintf("mockllm_requests_aborted_total{engine=\"0\",model_name=%q} 1.0\n", testModel); !strings.Contains(string(body), want) {
				t.Fatalf("metrics lack %q:\n%s", want, body)
			}
		})
	}
}

// post sends a request and reads its whole body, returning any error.
func post(ctx context.Context, url, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func TestServer_Timing(t *testing.T) {
	tests := []struct {
		name      string
		ttft      time.Duration
		tps       float64
		maxTokens int
		stream    bool
	}{
		{name: "ttft", ttft: 150 * time.Millisecond},
		{name: "ttft streaming", ttft: 150 * time.Millisecond, stream: true},
		{name: "tokens per second", tps: 100, maxTokens: 6},
		{name: "ttft and tokens per second streaming", ttft: 50 * time.Millisecond, tps: 100, maxTokens: 6, stream: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.TTFT, opts.TokensPerSecond = tt.ttft, tt.tps
			_, url := startLoaded(t, opts)
			tokens, _ := Reply(testModel, "timing", tt.maxTokens)
			wantTotal := tt.ttft
			if tt.tps > 0 {
				wantTotal += time.Duration(float64(len(tokens)-1) / tt.tps * float64(time.Second))
			}
			params := openai.ChatCompletionNewParams{Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("timing")}}
			if tt.maxTokens > 0 {
				params.MaxTokens = openai.Int(int64(tt.maxTokens))
			}
			client := newClient(url)
			begin := time.Now()
			if tt.stream {
				stream := client.Chat.Completions.NewStreaming(waitCtx(t), params)
				var first time.Duration
				for stream.Next() {
					if first == 0 {
						first = time.Since(begin)
					}
				}
				if err := stream.Err(); err != nil {
					t.Fatalf("stream: %v", err)
				}
				if first < tt.ttft {
					t.Fatalf("first chunk after %s, want at least %s", first, tt.ttft)
				}
			} else if _, err := client.Chat.Completions.New(waitCtx(t), params); err != nil {
				t.Fatalf("chat: %v", err)
			}
			if elapsed := time.Since(begin); elapsed < wantTotal {
				t.Fatalf("request took %s, want at least %s", elapsed, wantTotal)
			}
		})
	}
}

func TestServer_Shutdown(t *testing.T) {
	t.Run("drains in-flight requests", func(t *testing.T) {
		opts := testOptions()
		opts.TTFT = 100 * time.Millisecond
		s := newServer(t, opts)
		result, stop := run(t, s)
		addr, err := s.Addr(waitCtx(t))
		if err != nil {
			t.Fatalf("Addr: %v", err)
		}
		done := make(chan error, 1)
		go func() {
			done <- post(t.Context(), "http://"+addr+"/v1/chat/completions", chatBody(testModel, "drain", ""))
		}()
		if err := s.WaitFor(waitCtx(t), func(st Stats) bool { return st.Running == 1 }); err != nil {
			t.Fatal(err)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatalf("in-flight request during shutdown: %v", err)
		}
		if err := <-result; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if st := s.Stats(); st.Succeeded != 1 || st.Aborted != 0 {
			t.Fatalf("stats = %+v, want the request to succeed", st)
		}
	})
	t.Run("aborts generations at the deadline", func(t *testing.T) {
		opts := testOptions()
		opts.HangGeneration = true
		s := newServer(t, opts)
		s.shutdownTimeout = 50 * time.Millisecond
		result, stop := run(t, s)
		addr, err := s.Addr(waitCtx(t))
		if err != nil {
			t.Fatalf("Addr: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- post(t.Context(), "http://"+addr+"/v1/completions", `{"prompt":"hang","stream":true}`) }()
		if err := s.WaitFor(waitCtx(t), func(st Stats) bool { return st.Running == 1 }); err != nil {
			t.Fatal(err)
		}
		stop()
		if err := <-result; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if err := <-done; err == nil {
			t.Fatalf("hung stream ended cleanly at shutdown")
		}
		if st := s.Stats(); st.Aborted != 1 || st.Running != 0 {
			t.Fatalf("stats = %+v, want one aborted request", st)
		}
	})
	t.Run("run twice", func(t *testing.T) {
		s := newServer(t, testOptions())
		run(t, s)
		if _, err := s.Addr(waitCtx(t)); err != nil {
			t.Fatalf("Addr: %v", err)
		}
		if err := s.Run(t.Context()); err == nil {
			t.Fatalf("second Run = nil, want an error")
		}
	})
}

func TestServer_Metrics(t *testing.T) {
	s, url := startLoaded(t, testOptions())
	for _, body := range []string{chatBody(testModel, "m1", ""), chatBody(testModel, "m2", `"max_tokens":1`)} {
		if resp, b := do(t, http.MethodPost, url+"/v1/chat/completions", body); resp.StatusCode != http.StatusOK {
			t.Fatalf("chat: %d %s", resp.StatusCode, b)
		}
	}
	resp, body := do(t, http.MethodGet, url+"/metrics", "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("metrics = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	labels := fmt.Sprintf(`engine="0",model_name=%q`, testModel)
	st := s.Stats()
	tests := []struct {
		name string
		line string
	}{
		{name: "running", line: "vllm:num_requests_running{" + labels + "} 0.0"},
		{name: "waiting", line: "vllm:num_requests_waiting{" + labels + "} 0.0"},
		{name: "success stop", line: `vllm:request_success_total{finished_reason="stop",` + labels + "} 1.0"},
		{name: "success length", line: `vllm:request_success_total{finished_reason="length",` + labels + "} 1.0"},
		{name: "success type", line: "# TYPE vllm:request_success_total counter"},
		{name: "generation tokens", line: fmt.Sprintf("vllm:generation_tokens_total{%s} %d.0", labels, st.GenerationTokens)},
		{name: "aborted", line: "mockllm_requests_aborted_total{" + labels + "} 0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(string(body), tt.line+"\n") {
				t.Fatalf("metrics lack %q:\n%s", tt.line, body)
			}
		})
	}
	t.Run("text format", func(t *testing.T) {
		sample := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\} [0-9]+\.[0-9]+$`)
		for line := range strings.SplitSeq(strings.TrimSuffix(string(body), "\n"), "\n") {
			if !strings.HasPrefix(line, "# HELP ") && !strings.HasPrefix(line, "# TYPE ") && !sample.MatchString(line) {
				t.Fatalf("malformed metrics line %q", line)
			}
		}
	})
}
