package mockllm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

const testModel = "test-org/test-model"

// eventTimeout bounds every wait on an event; tests never sleep.
const eventTimeout = 5 * time.Second

func testOptions() Options {
	return Options{Host: "127.0.0.1", Port: 0, Model: testModel}
}

func testLogger(t *testing.T) hclog.Logger {
	t.Helper()
	return hclog.New(&hclog.LoggerOptions{Name: "mockllm", Output: t.Output(), Level: hclog.Debug})
}

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), eventTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := New(opts, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// run starts s.Run and returns its result channel and a stop function; the
// test's cleanup stops it and waits for it to return.
func run(t *testing.T, s *Server) (result <-chan error, stop context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(eventTimeout):
			t.Errorf("Run did not return after cancel")
		}
	})
	return errc, cancel
}

// start runs a server for opts and returns it with its base URL once it
// listens.
func start(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s := newServer(t, opts)
	run(t, s)
	addr, err := s.Addr(waitCtx(t))
	if err != nil {
		t.Fatalf("Addr: %v", err)
	}
	return s, "http://" + addr
}

// startLoaded is start, then waits for the load to finish.
func startLoaded(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s, url := start(t, opts)
	select {
	case <-s.Loaded():
	case <-waitCtx(t).Done():
		t.Fatalf("model never loaded")
	}
	return s, url
}

func newClient(url string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(url + "/v1"),
		option.WithAPIKey("unused"),
		option.WithMaxRetries(0),
	}, opts...)...)
}

// do sends a raw request and returns the response with its whole body.
func do(t *testing.T, method, url, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(waitCtx(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, url, err)
	}
	return resp, b
}

// sseEvents splits an SSE body into its data payloads, failing on anything
// but "data: <payload>\n\n" events.
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	if len(body) == 0 {
		return nil
	}
	if !bytes.HasSuffix(body, []byte("\n\n")) {
		t.Fatalf("SSE body does not end with a blank line: %q", body)
	}
	var out []string
	for ev := range strings.SplitSeq(strings.TrimSuffix(string(body), "\n\n"), "\n\n") {
		payload, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(payload, "\n") {
			t.Fatalf("malformed SSE event %q", ev)
		}
		out = append(out, payload)
	}
	return out
}

func decodeMap(t *testing.T, data string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
	return m
}

// assertKeys fails unless m has exactly the keys in want.
func assertKeys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	if len(m) != len(want) {
		t.Fatalf("%s has keys %v, want exactly %v", what, keysOf(m), want)
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Fatalf("%s has keys %v, want exactly %v", what, keysOf(m), want)
		}
	}
}

func keysOf(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func chatBody(model, content string, extra string) string {
	b, _ := json.Marshal(content)
	s := `{"model":"` + model + `","messages":[{"role":"user","content":` + string(b) + `}]`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}
