package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/redistest"
)

func testConfig(listen string, user, admin []config.Secret) *config.Config {
	cfg := config.Default()
	cfg.Gateway.Listen = listen
	cfg.Gateway.UserKeys, cfg.Gateway.AdminKeys = user, admin
	cfg.Models = []*config.Model{{Name: "m", ServedName: "m", MaxConcurrency: 1}}
	return cfg
}

func TestCheckExposure(t *testing.T) {
	tests := []struct {
		name    string
		listen  string
		keys    []config.Secret
		wantErr bool
	}{
		{"loopback v4 without keys", "127.0.0.1:8000", nil, false},
		{"loopback v6 without keys", "[::1]:8000", nil, false},
		{"localhost without keys", "localhost:8000", nil, false},
		{"all interfaces without keys", "0.0.0.0:8000", nil, true},
		{"empty host without keys", ":8000", nil, true},
		{"lan address without keys", "192.0.2.7:8000", nil, true},
		{"all interfaces with keys", "0.0.0.0:8000", []config.Secret{"k"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckExposure(testConfig(tt.listen, tt.keys, nil))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestKeyring_Lookup(t *testing.T) {
	k := newKeyring(testConfig("127.0.0.1:0", []config.Secret{"u1", "u2"}, []config.Secret{"a1"}).Gateway.AllKeys())
	tests := []struct {
		name      string
		key       string
		wantOK    bool
		wantAdmin bool
	}{
		{"user key", "u2", true, false},
		{"admin key", "a1", true, true},
		{"unknown", "nope", false, false},
		{"empty", "", false, false},
		{"prefix of a key", "u", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := k.lookup(tt.key)
			if ok != tt.wantOK || p.admin != tt.wantAdmin {
				t.Fatalf("lookup(%q) = %+v, %v", tt.key, p, ok)
			}
			if ok && (strings.Contains(p.id, tt.key) || !strings.HasPrefix(p.id, "env-")) {
				t.Fatalf("key id %q reveals the key or has the wrong form", p.id)
			}
		})
	}
}

// A key presented to the gateway never shows up in its logs, even when
// the request fails.
func TestServer_KeysNeverLogged(t *testing.T) {
	srv := redistest.Start(t)
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace})
	cfg := testConfig("127.0.0.1:0", []config.Secret{"sk-user-secret"}, []config.Secret{"sk-admin-secret"})
	s, err := New(Options{Config: cfg, Store: jobstore.New(srv.Client(), jobstore.Options{Prefix: "t:"}), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"sk-user-secret", "sk-admin-secret", "sk-wrong-secret"} {
		for _, path := range []string{"/status", "/v1/models", "/jobs/job_x"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("Authorization", "Bearer "+key)
			s.Handler().ServeHTTP(httptest.NewRecorder(), req)
		}
	}
	if strings.Contains(logs.String(), "secret") {
		t.Fatalf("a key reached the logs:\n%s", logs.String())
	}
}

// With no orchestrator to answer, a held request ends with a 504 that
// says why, once the leader's own bounds would have answered it, and its
// job is canceled rather than left queued.
func TestServer_NoLeaderGivesUp(t *testing.T) {
	srv := redistest.Start(t)
	cfg := testConfig("127.0.0.1:0", nil, nil)
	cfg.Scheduler.QueueTimeout = 100 * time.Millisecond
	cfg.Orchestrator.SwitchTimeout = 100 * time.Millisecond
	cfg.Orchestrator.InferenceTimeout = 100 * time.Millisecond
	store := jobstore.New(srv.Client(), jobstore.Options{Prefix: "t:"})
	s, err := New(Options{Config: cfg, Store: store, Log: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusGatewayTimeout || !strings.Contains(rec.Body.String(), "no_answer") {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	j, err := store.Get(context.Background(), rec.Header().Get("X-Switchboard-Job-Id"))
	if err != nil || j.Status != jobstore.StatusCanceled {
		t.Fatalf("job = %+v, %v; want canceled", j, err)
	}
}

// /health is open by default and needs a key when health_open is off.
func TestServer_HealthOpen(t *testing.T) {
	srv := redistest.Start(t)
	for _, open := range []bool{true, false} {
		cfg := testConfig("127.0.0.1:0", []config.Secret{"sk-u"}, nil)
		cfg.Gateway.HealthOpen = open
		s, err := New(Options{Config: cfg, Store: jobstore.New(srv.Client(), jobstore.Options{Prefix: "t:"}), Log: hclog.NewNullLogger()})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
		want := http.StatusOK
		if !open {
			want = http.StatusUnauthorized
		}
		if rec.Code != want {
			t.Fatalf("health_open=%v: %d, want %d", open, rec.Code, want)
		}
	}
}
