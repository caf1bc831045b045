package orchestrator_test

// Switch overhead: how much time the orchestrator adds to a switch beyond
// what the runtime itself needs to stop the old model and to start the new
// one until it is healthy. Each benchmark alternates two models for a
// number of switches through the gateway, on real Redis, and times every
// Runtime call with a wrapper around the real runtime. Run:
//
//	go test -run '^$' -bench Switch -benchtime 1x ./orchestrator/
//
// Per switch:
//
//   - switch (client): latency of the request that caused the switch minus
//     the median latency of a request to the loaded model, from the same
//     run. This is the switch as a client sees it, from the enqueue to the
//     first dispatch, with the job's own cost taken out.
//   - switch (record): the orchestrator's own SwitchRecord.Total (preflight
//     + drain + stop .. canary), as /status shows it.
//   - runtime stop: time inside Runtime.Stop + Runtime.WaitStopped.
//   - runtime start: time inside Runtime.Start + Runtime.WaitHealthy (for
//     Nomad this includes the allocation starting and Consul's health check
//     passing; for the local runtime, its /health probes).
//   - overhead = switch (client) - runtime stop - runtime start. Everything
//     else counts as the orchestrator's: the wake-up and decision, the
//     preflight (a Nomad parse and plan, while the old model still
//     serves), the memory barrier (host-stats reads), the canary completion
//     (one backend request: it pays the backend's TTFT), publishing state,
//     listing what runs, lock checks and the dispatch. preflight, memory and
//     canary are also reported on their own, and so is stop-other: the
//     record's stop phase less Stop and WaitStopped, i.e. closing the
//     gateways' direct route and waiting for their leases to be released
//     (closeDirect), listing what runs (Runtime.Running) and lock checks. "rest" is the overhead without
//     these four.
//
// The fake backends have a load time (--load-delay), a time to first token
// and a token rate, so the canary and the health waits are not free.

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomad "github.com/hashicorp/nomad/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-switchboard/llm-switchboard/gateway"
	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/consulsvc"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/mockllm"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakenomad"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/redistest"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/consullock"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/nomadrt"
)

const (
	benchSwitches = 20 // switches per benchmark (b.N when larger)
	benchHits     = 3  // requests to the loaded model after each switch
)

// benchBackendFlags pace every fake backend of the switch benchmarks.
var benchBackendFlags = []string{"--load-delay", "100ms", "--ttft", "20ms", "--tokens-per-second", "200"}

// span is one Runtime call.
type span struct {
	op         string
	begin, end time.Time
}

// runtimeClock times the Runtime calls the orchestrator makes.
type runtimeClock struct {
	rt orchestrator.Runtime
	mu sync.Mutex
	sp []span
}

func (c *runtimeClock) record(op string, begin time.Time) {
	end := time.Now()
	c.mu.Lock()
	c.sp = append(c.sp, span{op, begin, end})
	c.mu.Unlock()
}

// since returns the total time of the calls named ops that began at or
// after t.
func (c *runtimeClock) since(t time.Time, ops ...string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d time.Duration
	for _, s := range c.sp {
		if !s.begin.Before(t) && slices.Contains(ops, s.op) {
			d += s.end.Sub(s.begin)
		}
	}
	return d
}

func (c *runtimeClock) Start(ctx context.Context, m *config.Model) error {
	defer c.record("start", time.Now())
	return c.rt.Start(ctx, m)
}

func (c *runtimeClock) WaitHealthy(ctx context.Context, m *config.Model) (orchestrator.Backend, error) {
	defer c.record("wait_healthy", time.Now())
	return c.rt.WaitHealthy(ctx, m)
}

func (c *runtimeClock) Stop(ctx context.Context, model string) error {
	defer c.record("stop", time.Now())
	return c.rt.Stop(ctx, model)
}

func (c *runtimeClock) WaitStopped(ctx context.Context, model string) error {
	defer c.record("wait_stopped", time.Now())
	return c.rt.WaitStopped(ctx, model)
}

func (c *runtimeClock) Running(ctx context.Context) ([]string, error) {
	defer c.record("running", time.Now())
	return c.rt.Running(ctx)
}

// nomadClock has every optional capability of the Nomad runtime, so the
// orchestrator takes the same path as with the bare runtime.
type nomadClock struct{ *runtimeClock }

func (c nomadClock) Preflight(ctx context.Context, m *config.Model, running []string) error {
	defer c.record("preflight", time.Now())
	return c.rt.(orchestrator.Preflighter).Preflight(ctx, m, running)
}

func (c nomadClock) WaitMemory(ctx context.Context, m *config.Model) error {
	defer c.record("memory", time.Now())
	return c.rt.(orchestrator.MemoryWaiter).WaitMemory(ctx, m)
}

func (c nomadClock) Adoptable(ctx context.Context, m *config.Model) (bool, error) {
	return c.rt.(orchestrator.AdoptionChecker).Adoptable(ctx, m)
}

func (c nomadClock) Describe(ctx context.Context, model string) (map[string]string, error) {
	return c.rt.(orchestrator.Describer).Describe(ctx, model)
}

var (
	_ orchestrator.Preflighter     = nomadClock{}
	_ orchestrator.MemoryWaiter    = nomadClock{}
	_ orchestrator.AdoptionChecker = nomadClock{}
	_ orchestrator.Describer       = nomadClock{}
	_ orchestrator.Preflighter     = (*nomadrt.Runtime)(nil)
	_ orchestrator.MemoryWaiter    = (*nomadrt.Runtime)(nil)
	_ orchestrator.AdoptionChecker = (*nomadrt.Runtime)(nil)
	_ orchestrator.Describer       = (*nomadrt.Runtime)(nil)
)

// switchBench is a gateway and one orchestrator over real Redis, with a
// timed runtime.
type switchBench struct {
	b      *testing.B
	cfg    *config.Config
	store  *jobstore.Store
	clock  *runtimeClock
	client openai.Client
	logs   *syncBuffer
}

// startSwitchBench starts the gateway and an orchestrator leading with rt
// (a *runtimeClock, possibly wrapped) under lock.
func startSwitchBench(b *testing.B, cfg *config.Config, clock *runtimeClock, rt orchestrator.Runtime,
	lock orchestrator.Lock, sink orchestrator.StateSink, logs *syncBuffer) *switchBench {
	b.Helper()
	redis := redistest.Start(b)
	store := jobstore.New(redis.Client(), jobstore.Options{Prefix: "sb:", ResultTTL: time.Minute})
	gw, err := gateway.New(gateway.Options{Config: cfg, Store: store, Log: hclog.NewNullLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gwDone := make(chan struct{})
	go func() { defer close(gwDone); _ = gw.Run(ctx) }()
	srv := httptest.NewServer(gw.Handler())
	log := hclog.New(&hclog.LoggerOptions{Name: "bench", Output: logs, Level: hclog.Info})
	o, err := orchestrator.New(orchestrator.Options{Config: cfg, Store: store, Runtime: rt, Lock: lock, Log: log,
		ID: "bench", StateSink: sink, HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	oDone := make(chan struct{})
	go func() { defer close(oDone); _ = o.Run(ctx) }()
	b.Cleanup(func() { srv.Close(); cancel(); <-oDone; <-gwDone })
	return &switchBench{b: b, cfg: cfg, store: store, clock: clock, logs: logs,
		client: openai.NewClient(option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey("x"), option.WithMaxRetries(0))}
}

// chat asks model through the gateway and checks its backend answered.
func (s *switchBench) chat(ctx context.Context, model, prompt string) error {
	resp, err := s.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		MaxTokens: openai.Int(4),
	})
	if err != nil {
		return err
	}
	if want := mockllm.ReplyText("served/"+model, prompt, 4); resp.Choices[0].Message.Content != want {
		return fmt.Errorf("%s answered %q, want %q", model, resp.Choices[0].Message.Content, want)
	}
	return nil
}

// run alternates models a and b for n switches and reports the measures
// of the file comment.
func (s *switchBench) run(b *testing.B, a, bb string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := s.chat(ctx, a, "first load"); err != nil {
		b.Fatalf("first load: %v\nlogs:\n%s", err, s.logs.String())
	}
	n := max(b.N, benchSwitches)
	type sample struct {
		miss, recTotal, rtStop, rtStart, preflight, memory, canary, stopOther time.Duration
	}
	var samples []sample
	var hits []time.Duration
	b.ResetTimer()
	for i := range n {
		to := []string{bb, a}[i%2]
		begin := time.Now()
		if err := s.chat(ctx, to, fmt.Sprintf("switch %d", i)); err != nil {
			b.Fatalf("switch %d to %s: %v\nlogs:\n%s", i, to, err, s.logs.String())
		}
		miss := time.Since(begin)
		st, err := s.store.State(ctx, s.cfg.Orchestrator.Slot)
		if err != nil || st == nil || st.LastSwitch == nil || st.LastSwitch.To != to || st.LastSwitch.Error != "" {
			b.Fatalf("switch %d: state %+v, %v", i, st, err)
		}
		rec := st.LastSwitch
		samples = append(samples, sample{miss: miss, recTotal: rec.Total,
			rtStop:    s.clock.since(begin, "stop", "wait_stopped"),
			rtStart:   s.clock.since(begin, "start", "wait_healthy"),
			preflight: s.clock.since(begin, "preflight"),
			memory:    s.clock.since(begin, "memory"),
			canary:    rec.Canary,
			// The record's stop phase less the runtime's stop calls:
			// closing the gateways' direct route and waiting for
			// their leases (closeDirect), listing what runs, lock checks.
			stopOther: rec.Stop - s.clock.since(begin, "stop", "wait_stopped")})
		for k := range benchHits {
			hb := time.Now()
			if err := s.chat(ctx, to, fmt.Sprintf("hit %d.%d", i, k)); err != nil {
				b.Fatal(err)
			}
			hits = append(hits, time.Since(hb))
		}
	}
	b.StopTimer()
	slices.Sort(hits)
	hit := hits[len(hits)/2]
	var e2e, rec, stop, start, over, overRec, pre, mem, can, stopOther, rest []time.Duration
	for _, x := range samples {
		sw := x.miss - hit
		o := sw - x.rtStop - x.rtStart
		e2e, rec, stop, start = append(e2e, sw), append(rec, x.recTotal), append(stop, x.rtStop), append(start, x.rtStart)
		over, overRec = append(over, o), append(overRec, x.recTotal-x.rtStop-x.rtStart)
		pre, mem, can = append(pre, x.preflight), append(mem, x.memory), append(can, x.canary)
		stopOther = append(stopOther, x.stopOther)
		rest = append(rest, o-x.preflight-x.memory-x.canary-x.stopOther)
	}
	report := func(name string, v []time.Duration, p99 bool) {
		slices.Sort(v)
		b.ReportMetric(benchMS(v[(len(v)-1)/2]), name+"-p50-ms")
		if p99 {
			b.ReportMetric(benchMS(v[int(float64(len(v)-1)*0.99)]), name+"-p99-ms")
		}
	}
	report("switch", e2e, true)
	report("switch-rec", rec, true)
	report("rt-stop", stop, true)
	report("rt-start", start, true)
	report("overhead", over, true)
	report("overhead-rec", overRec, true)
	report("preflight", pre, false)
	report("memory", mem, false)
	report("canary", can, false)
	report("stop-other", stopOther, true)
	report("rest", rest, true)
	b.ReportMetric(benchMS(hit), "hit-p50-ms")
	b.ReportMetric(float64(len(samples)), "switches")
	b.ReportMetric(float64(over[(len(over)-1)/2])/float64(e2e[(len(e2e)-1)/2]), "overhead/switch-p50")
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkSwitchNomad switches on the production path: the Nomad runtime
// and the Consul lock on the Nomad and Consul fakes (the same settings as
// production_test.go's newProd), each model a raw_exec mockllm process.
func BenchmarkSwitchNomad(b *testing.B) {
	logs := &syncBuffer{}
	fc := fakeconsul.New(b, fakeconsul.Options{MinSessionTTL: time.Second, MinCheckInterval: 20 * time.Millisecond})
	fn := fakenomad.New(b, fakenomad.Options{Consul: fc})

	cfg := config.Default()
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Orchestrator.Runtime = config.RuntimeNomad
	cfg.Orchestrator.Slot = "bench"
	cfg.Orchestrator.SwitchTimeout = 30 * time.Second
	cfg.Orchestrator.StopTimeout = 20 * time.Second
	cfg.Orchestrator.DrainTimeout = 10 * time.Second
	cfg.Orchestrator.CanaryTimeout = 2 * time.Second
	cfg.Nomad.JobPrefix = "sbb-"
	cfg.Nomad.MemoryHeadroom = 0
	cfg.Nomad.MemoryTimeout = 2 * time.Second
	cfg.Consul.SessionTTL = time.Second
	cfg.Consul.LockDelay = 300 * time.Millisecond
	spec, err := filepath.Abs("nomadrt/testdata/mockllm.nomad.hcl")
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		cfg.Models = append(cfg.Models, &config.Model{Name: name, ServedName: "served/" + name, Jobspec: spec, MaxConcurrency: 4,
			Backend:     config.Backend{Port: 8000, VLLMArgs: benchBackendFlags},
			Variables:   map[string]string{"switchboard_bin": os.Args[0], "check_interval": "50ms", "kill_timeout": "1s"},
			MemoryBytes: 1 << 30})
	}

	nc, err := nomad.NewClient(fn.Config())
	if err != nil {
		b.Fatal(err)
	}
	cc, err := consul.NewClient(fc.Config())
	if err != nil {
		b.Fatal(err)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "bench", Output: logs, Level: hclog.Info})
	rt, err := nomadrt.New(nomadrt.Options{Client: nc, Health: &consulsvc.Health{Client: cc, Wait: 5 * time.Second},
		Nomad: cfg.Nomad, Slot: cfg.Orchestrator.Slot, Log: log, MemoryPoll: 20 * time.Millisecond, BlockingWait: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	lock, err := consullock.New(consullock.Options{Client: cc, Key: cfg.Consul.LockKey, SessionTTL: cfg.Consul.SessionTTL,
		LockDelay: cfg.Consul.LockDelay, Holder: "bench", Log: log, RetryMax: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	clock := &runtimeClock{rt: rt}
	s := startSwitchBench(b, cfg, clock, nomadClock{clock}, lock, &consulsvc.StateKV{Client: cc, Prefix: cfg.Consul.KVPrefix}, logs)
	s.run(b, "a", "b")
}
