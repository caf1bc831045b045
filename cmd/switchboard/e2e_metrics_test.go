package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestE2E_Metrics sends one request through the embedded stack and reads
// both services' metrics from the gateway's /metrics: the dev mode shares
// one registry.
func TestE2E_Metrics(t *testing.T) {
	e := startE2E(t, e2eOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := testModels[1] // qwen3-30b
	if err := e.chat(ctx, m.name, m.served, "metrics, please", false); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d: %s", resp.StatusCode, b)
	}
	body := string(b)
	for _, want := range []string{
		`switchboard_orchestrator_switches_total{key="anonymous",outcome="ok",to_model="qwen3-30b"} 1`,
		`switchboard_gateway_requests_total{model="qwen3-30b",route="/v1/chat/completions",status="200"} 1`,
		`switchboard_orchestrator_jobs_total{model="qwen3-30b",outcome="succeeded"} 1`,
		`switchboard_orchestrator_active_model{model="qwen3-30b"} 1`,
		`switchboard_orchestrator_leader 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, phase := range []string{"start", "total"} {
		re := regexp.MustCompile(`switchboard_orchestrator_switch_phase_seconds_count\{phase="` + phase + `"\} (\d+)`)
		match := re.FindStringSubmatch(body)
		if match == nil {
			t.Errorf("/metrics lacks switch_phase_seconds_count for %s", phase)
			continue
		}
		if n, _ := strconv.Atoi(match[1]); n < 1 {
			t.Errorf("switch_phase_seconds_count{phase=%q} = %d, want > 0", phase, n)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// The orchestrator's metrics server answers /health and /metrics and
// shuts down when its context ends.
func TestMetricsServer_ServesAndStops(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := startMetricsServer(ctx, addr, newRegistry(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, path, want string }{
		{"health", "/health", "ok"},
		{"metrics", "/metrics", "process_start_time_seconds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get("http://" + addr + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), tt.want) {
				t.Fatalf("GET %s: %d, body lacks %q:\n%s", tt.path, resp.StatusCode, tt.want, b)
			}
		})
	}
	cancel()
	select {
	case <-c.done:
		if c.err != nil {
			t.Fatalf("metrics server: %v", c.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("metrics server did not stop")
	}
}
