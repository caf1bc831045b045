package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/redistest"
)

// Requests are counted by route pattern and status, refused ones too,
// and /metrics serves them to admins only.
func TestServer_Metrics(t *testing.T) {
	srv := redistest.Start(t)
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})
	cfg := testConfig("127.0.0.1:0", []config.Secret{"sk-user"}, []config.Secret{"sk-admin"})
	s, err := New(Options{Config: cfg, Store: jobstore.New(srv.Client(), jobstore.Options{Prefix: "t:"}),
		Log: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(method, path, key, body string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec
	}

	tests := []struct {
		name       string
		method     string
		path, key  string
		body       string
		wantStatus int
		route      string
	}{
		{"unknown model", http.MethodPost, "/v1/chat/completions", "sk-user", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, http.StatusNotFound, "/v1/chat/completions"},
		{"missing key", http.MethodPost, "/v1/chat/completions", "", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, http.StatusUnauthorized, "/v1/chat/completions"},
		{"job by pattern", http.MethodGet, "/jobs/job_x", "sk-user", "", http.StatusNotFound, "/jobs/:id"},
		{"unmatched path", http.MethodGet, "/no/such/route", "", "", http.StatusNotFound, "unmatched"},
		{"metrics needs admin", http.MethodGet, "/metrics", "sk-user", "", http.StatusForbidden, "/metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.metrics.requests.WithLabelValues("", tt.route, strconv.Itoa(tt.wantStatus))
			before := testutil.ToFloat64(c)
			if rec := serve(tt.method, tt.path, tt.key, tt.body); rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := testutil.ToFloat64(c) - before; got != 1 {
				t.Fatalf("requests_total{route=%q,status=%d} moved by %v, want 1", tt.route, tt.wantStatus, got)
			}
		})
	}

	rec := serve(http.MethodGet, "/metrics", "sk-admin", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics with the admin key: %d: %s", rec.Code, rec.Body)
	}
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`switchboard_gateway_requests_total{model="",route="/v1/chat/completions",status="401"} 1`,
		`switchboard_gateway_requests_total{model="",route="/v1/chat/completions",status="404"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("GET /metrics lacks %s:\n%s", want, body)
		}
	}
	if n := testutil.CollectAndCount(reg, "switchboard_gateway_requests_total"); n < 5 {
		t.Fatalf("requests_total has %d series, want at least 5", n)
	}

	// One debug line per inference request, naming the key by its id.
	if n := strings.Count(logs.String(), "request finished"); n != 2 {
		t.Fatalf("%d request lines logged, want 2 (the inference requests):\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "key_id=env-user-1") || strings.Contains(logs.String(), "sk-user") {
		t.Fatalf("request log lacks the key id or shows the key:\n%s", logs.String())
	}
}

// A full queue counts as queue_full for its model.
func TestServer_QueueFullMetric(t *testing.T) {
	srv := redistest.Start(t)
	cfg := testConfig("127.0.0.1:0", nil, nil)
	cfg.Scheduler.MaxPending = 1
	s, err := New(Options{Config: cfg, Store: jobstore.New(srv.Client(), jobstore.Options{Prefix: "t:"}),
		Log: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{http.StatusAccepted, http.StatusTooManyRequests} {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}],"async":true}`))
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Fatalf("request %d: status = %d, want %d: %s", i, rec.Code, want, rec.Body)
		}
	}
	if got := testutil.ToFloat64(s.metrics.queueFull.WithLabelValues("m")); got != 1 {
		t.Fatalf("queue_full_total{model=m} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues("m", "/v1/chat/completions", "429")); got != 1 {
		t.Fatalf(`requests_total{model="m",status="429"} = %v, want 1`, got)
	}
}
