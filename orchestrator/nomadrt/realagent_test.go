package nomadrt_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/consulsvc"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/nomadrt"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/runtimetest"
)

// The conformance suite against real Nomad and Consul agents (dev agents
// with raw_exec enabled; see the README's "Contract tests" section). The
// backends are this test binary acting as `switchboard mockllm`.
func TestRuntime_RealAgents(t *testing.T) {
	if os.Getenv("NOMAD_ADDR") == "" || os.Getenv("CONSUL_HTTP_ADDR") == "" {
		t.Skip("set NOMAD_ADDR and CONSUL_HTTP_ADDR to Nomad and Consul dev agents to run the contract tests against them (make test-real)")
	}
	nc, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cc, err := consul.NewClient(consul.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "sbc-"
	t.Cleanup(func() { purgeJobs(t, nc, prefix) })
	runtimetest.Run(t, func(t *testing.T) runtimetest.Harness {
		rt, err := nomadrt.New(nomadrt.Options{
			Client: nc, Health: &consulsvc.Health{Client: cc, Wait: 10 * time.Second},
			Nomad: config.Nomad{Namespace: "default", Region: "global", JobPrefix: prefix},
			Slot:  "contract", Log: hclog.New(&hclog.LoggerOptions{Name: "contract", Level: hclog.Info, Output: os.Stderr}),
			BlockingWait: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		e := &env{rt: rt, bin: os.Args[0]}
		return runtimetest.Harness{Runtime: rt, Model: e.model, Timeout: 2 * time.Minute}
	})
}

// purgeJobs removes every job the contract tests made, so a real cluster
// is left as it was found.
func purgeJobs(t *testing.T, nc *api.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := (&api.QueryOptions{Prefix: prefix}).WithContext(ctx)
	stubs, _, err := nc.Jobs().List(q)
	if err != nil {
		t.Errorf("list jobs to clean up: %v", err)
		return
	}
	for _, s := range stubs {
		if !strings.HasPrefix(s.ID, prefix) {
			continue
		}
		if _, _, err := nc.Jobs().Deregister(s.ID, true, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			t.Errorf("purge job %s: %v", s.ID, err)
		}
	}
}
