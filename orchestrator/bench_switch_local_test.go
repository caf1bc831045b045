package orchestrator_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/localrt"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/memlock"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/runtimetest"
)

// localClock has the local runtime's one optional capability.
type localClock struct{ *runtimeClock }

func (c localClock) Preflight(ctx context.Context, m *config.Model, running []string) error {
	defer c.record("preflight", time.Now())
	return c.rt.(orchestrator.Preflighter).Preflight(ctx, m, running)
}

var _ orchestrator.Preflighter = localClock{}

// BenchmarkSwitchLocal switches on the embedded mode's path: the local
// runtime (each model a child process of this test binary acting as
// mockllm) and the in-process lock. See bench_switch_test.go for what is
// measured.
func BenchmarkSwitchLocal(b *testing.B) {
	logs := &syncBuffer{}
	cfg := config.Default()
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Orchestrator.Runtime = config.RuntimeLocal
	cfg.Orchestrator.Slot = "bench"
	cfg.Orchestrator.SwitchTimeout = 30 * time.Second
	cfg.Orchestrator.StopTimeout = 20 * time.Second
	cfg.Orchestrator.StopGrace = 2 * time.Second
	cfg.Orchestrator.DrainTimeout = 10 * time.Second
	cfg.Orchestrator.CanaryTimeout = 2 * time.Second
	for _, name := range []string{"a", "b"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		served := "served/" + name
		cmd := append([]string{os.Args[0], "mockllm", "--port", fmt.Sprint(port), "--model", served}, benchBackendFlags...)
		cfg.Models = append(cfg.Models, &config.Model{Name: name, ServedName: served, MaxConcurrency: 4,
			Backend: config.Backend{Port: port}, Command: cmd, Env: map[string]string{runtimetest.AsMainEnv: "1"}})
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "bench", Output: logs, Level: hclog.Info})
	rt := localrt.New(localrt.Options{StopGrace: cfg.Orchestrator.StopGrace, Log: log})
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Close(ctx)
	})
	clock := &runtimeClock{rt: rt}
	s := startSwitchBench(b, cfg, clock, localClock{clock}, memlock.New(), nil, logs)
	s.run(b, "a", "b")
}
