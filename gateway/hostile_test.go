package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/redistest"
)

var hugeBody = `{"model":"qwen3","prompt":"` + strings.Repeat("a", 2<<20) + `"}`

// hostile returns the i-th of a deterministic stream of bad requests:
// broken JSON, huge or deep bodies, wrong types, unknown models, bad or
// missing keys, wrong methods and paths.
func hostile(r *rand.Rand, i int) (method, path, key, body string) {
	method, path, key = http.MethodPost, "/v1/chat/completions", "sk-good"
	garbage := func(n int) string {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.IntN(256))
		}
		return string(b)
	}
	switch i % 12 {
	case 0:
		body = garbage(r.IntN(200))
	case 1:
		body = `{"model":` + garbage(r.IntN(20))
	case 2:
		body = `{"model":"qwen3","x":` + strings.Repeat("[", 65+r.IntN(1000)) + strings.Repeat("]", 65+r.IntN(1000)) + `}`
	case 3:
		if i%120 == 3 { // over the 1 MiB limit below; a few of them suffice
			body = hugeBody
		} else {
			body = `{"model":"qwen3","prompt":` + garbage(r.IntN(50)) + `}`
		}
	case 4:
		body = fmt.Sprintf(`{"model":%d,"messages":[{"role":"user","content":"x"}]}`, r.IntN(1000))
	case 5:
		body = `{"model":"qwen3","stream":"yes"}`
	case 6:
		body = fmt.Sprintf(`{"model":"nope-%d","messages":[{"role":"user","content":"x"}]}`, r.IntN(1000))
	case 7:
		key = "sk-bad-" + fmt.Sprint(r.IntN(1000))
		body = `{"model":"qwen3","messages":[{"role":"user","content":"x"}]}`
	case 8:
		key = ""
		body = `{"model":"qwen3","messages":[{"role":"user","content":"x"}]}`
	case 9:
		method = []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch}[r.IntN(4)]
		body = `{"model":"qwen3"}`
	case 10:
		path = "/v1/" + garbage(r.IntN(10))
		path = strings.Map(func(c rune) rune {
			if c < 0x21 || c > 0x7e || c == '?' || c == '#' || c == '%' {
				return 'x'
			}
			return c
		}, path)
		body = `{}`
	case 11:
		body = `{"model":"qwen3","stream":true,"async":true,"messages":[{"role":"user","content":"x"}]}`
	}
	return method, path, key, body
}

// TestServer_HostileRequests sends 10,000 malformed or hostile requests:
// every answer is a 4xx in OpenAI's error shape, nothing panics, and no
// job is created.
func TestServer_HostileRequests(t *testing.T) {
	srv := redistest.Start(t)
	cfg := testConfig("127.0.0.1:0", []config.Secret{"sk-good"}, nil)
	cfg.Gateway.MaxRequestBytes = 1 << 20
	cfg.Models = []*config.Model{{Name: "qwen3-30b", Aliases: []string{"qwen3"}, ServedName: "Qwen/Qwen3-30B-A3B", MaxConcurrency: 1}}
	store := jobstore.New(srv.Client(), jobstore.Options{Prefix: "h:"})
	s, err := New(Options{Config: cfg, Store: store, Log: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	r := rand.New(rand.NewPCG(7, 7))
	const n = 10_000
	for i := range n {
		method, path, key, body := hostile(r, i)
		req := httptest.NewRequest(method, "/", strings.NewReader(body))
		req.URL.Path = path
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 400 || rec.Code >= 500 {
			t.Fatalf("request %d (%s %q, %d bytes) answered %d: %.200s", i, method, path, len(body), rec.Code, rec.Body.String())
		}
		var env struct {
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error == nil || env.Error.Message == "" {
			t.Fatalf("request %d answered %d without OpenAI's error shape: %.200s", i, rec.Code, rec.Body.String())
		}
	}
	keys, err := srv.Client().Keys(context.Background(), "h:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("%d hostile requests left keys in Redis: %v", n, keys)
	}
}
