package orchestrator_test

// The production control plane end to end, on the fakes: real Redis, the
// gateway, orchestrators with the Nomad runtime and the Consul lock, the
// Nomad and Consul fakes driven through the official clients, and the
// fake vLLM server as each model's raw_exec task. The Nomad fake records
// any moment two managed jobs were alive (invariant 1) and fails the test.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	"github.com/llm-switchboard/llm-switchboard/orchestrator/runtimetest"
)

func TestMain(m *testing.M) {
	runtimetest.BackendMain()
	os.Exit(m.Run())
}

// prodModel describes one model of a production test.
type prodModel struct {
	name  string
	flags []string          // mockllm flags
	vars  map[string]string // extra jobspec variables
	spec  string            // jobspec; default the raw_exec stand-in
	mem   int64             // memory footprint for the barrier
}

type prod struct {
	t      *testing.T
	cfg    *config.Config
	store  *jobstore.Store
	nomad  *fakenomad.Server
	consul *fakeconsul.Server
	client openai.Client
	url    string
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newProd(t *testing.T, nopts fakenomad.Options, models ...prodModel) *prod {
	t.Helper()
	redis := redistest.Start(t)
	fc := fakeconsul.New(t, fakeconsul.Options{MinSessionTTL: time.Second, MinCheckInterval: 20 * time.Millisecond})
	nopts.Consul = fc
	fn := fakenomad.New(t, nopts)

	cfg := config.Default()
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Orchestrator.Runtime = config.RuntimeNomad
	cfg.Orchestrator.Slot = "prod-test"
	cfg.Orchestrator.SwitchTimeout = 30 * time.Second
	cfg.Orchestrator.StopTimeout = 20 * time.Second
	cfg.Orchestrator.DrainTimeout = 10 * time.Second
	cfg.Orchestrator.CanaryTimeout = 2 * time.Second
	cfg.Nomad.JobPrefix = "sbp-"
	cfg.Nomad.MemoryHeadroom = 0
	cfg.Nomad.MemoryTimeout = 2 * time.Second
	cfg.Consul.SessionTTL = time.Second
	cfg.Consul.LockDelay = 300 * time.Millisecond
	spec, err := filepath.Abs("nomadrt/testdata/mockllm.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, pm := range models {
		vars := map[string]string{"switchboard_bin": os.Args[0], "check_interval": "50ms", "kill_timeout": "1s"}
		for k, v := range pm.vars {
			vars[k] = v
		}
		m := &config.Model{Name: pm.name, ServedName: "served/" + pm.name, Jobspec: spec, MaxConcurrency: 4,
			Backend:   config.Backend{Port: 8000, VLLMArgs: append([]string{"--load-delay", "100ms"}, pm.flags...)},
			Variables: vars, MemoryBytes: pm.mem}
		if pm.spec != "" {
			m.Jobspec = pm.spec
		}
		cfg.Models = append(cfg.Models, m)
	}
	rc := redis.Client()
	store := jobstore.New(rc, jobstore.Options{Prefix: "sb:", ResultTTL: time.Minute})
	p := &prod{t: t, cfg: cfg, store: store, nomad: fn, consul: fc, logs: &syncBuffer{}}

	gw, err := gateway.New(gateway.Options{Config: cfg, Store: store, Log: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = gw.Run(ctx) }()
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	p.url = srv.URL
	p.client = openai.NewClient(option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey("x"), option.WithMaxRetries(0))
	return p
}

// orch is one orchestrator process of a test.
type orch struct {
	cancel context.CancelFunc
	done   chan struct{}
	id     string
}

// startOrch starts an orchestrator (its own Nomad runtime and Consul lock
// on the shared fakes), stopped at cleanup or by stop.
func (p *prod) startOrch(id string) *orch {
	p.t.Helper()
	nc, err := nomad.NewClient(p.nomad.Config())
	if err != nil {
		p.t.Fatal(err)
	}
	cc, err := consul.NewClient(p.consul.Config())
	if err != nil {
		p.t.Fatal(err)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: id, Output: p.logs, Level: hclog.Info})
	rt, err := nomadrt.New(nomadrt.Options{Client: nc, Health: &consulsvc.Health{Client: cc, Wait: 5 * time.Second},
		Nomad: p.cfg.Nomad, Slot: p.cfg.Orchestrator.Slot, Log: log, MemoryPoll: 20 * time.Millisecond, BlockingWait: 5 * time.Second})
	if err != nil {
		p.t.Fatal(err)
	}
	lock, err := consullock.New(consullock.Options{Client: cc, Key: p.cfg.Consul.LockKey, SessionTTL: p.cfg.Consul.SessionTTL,
		LockDelay: p.cfg.Consul.LockDelay, Holder: id, Log: log, RetryMax: 200 * time.Millisecond})
	if err != nil {
		p.t.Fatal(err)
	}
	o, err := orchestrator.New(orchestrator.Options{Config: p.cfg, Store: p.store, Runtime: rt, Lock: lock, Log: log, ID: id,
		StateSink: &consulsvc.StateKV{Client: cc, Prefix: p.cfg.Consul.KVPrefix}, HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	oo := &orch{cancel: cancel, done: make(chan struct{}), id: id}
	go func() { defer close(oo.done); _ = o.Run(ctx) }()
	p.t.Cleanup(oo.stop)
	return oo
}

func (o *orch) stop() { o.cancel(); <-o.done }

func (p *prod) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	p.t.Cleanup(cancel)
	return ctx
}

// chat asks model and checks the answer came from its backend.
func (p *prod) chat(ctx context.Context, model, prompt string) error {
	resp, err := p.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		MaxTokens: openai.Int(6),
	})
	if err != nil {
		return err
	}
	if want := mockllm.ReplyText("served/"+model, prompt, 6); resp.Choices[0].Message.Content != want {
		return fmt.Errorf("%s answered %q, want %q", model, resp.Choices[0].Message.Content, want)
	}
	return nil
}

func (p *prod) state() *jobstore.SlotState {
	p.t.Helper()
	st, err := p.store.State(context.Background(), p.cfg.Orchestrator.Slot)
	if err != nil {
		p.t.Fatal(err)
	}
	return st
}

// waitState polls the published state until cond holds (the state has no
// push channel for observers).
func (p *prod) waitState(what string, cond func(*jobstore.SlotState) bool) *jobstore.SlotState {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st := p.state(); st != nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("state never %s; last: %+v\nlogs:\n%s", what, p.state(), p.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *prod) running() []string {
	p.t.Helper()
	var out []string
	nc, _ := nomad.NewClient(p.nomad.Config())
	stubs, _, err := nc.Jobs().List(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	for _, s := range stubs {
		if s.Status != "dead" {
			out = append(out, s.ID)
		}
	}
	slices.Sort(out)
	return out
}

func apiError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want an API error", err)
	}
	return apiErr
}

func TestProduction_SwitchCycle(t *testing.T) {
	p := newProd(t, fakenomad.Options{}, prodModel{name: "a"}, prodModel{name: "b"}, prodModel{name: "c"})
	p.startOrch("o1")
	ctx := p.ctx(2 * time.Minute)
	for i, m := range []string{"a", "b", "c", "a"} {
		if err := p.chat(ctx, m, fmt.Sprintf("step %d", i)); err != nil {
			t.Fatalf("step %d (%s): %v\nlogs:\n%s", i, m, err, p.logs.String())
		}
	}
	if got, want := p.nomad.Registrations(), []string{"sbp-a", "sbp-b", "sbp-c", "sbp-a"}; !slices.Equal(got, want) {
		t.Fatalf("registrations = %v, want %v", got, want)
	}
	if got := p.running(); !slices.Equal(got, []string{"sbp-a"}) {
		t.Fatalf("jobs alive = %v, want only sbp-a", got)
	}
	st := p.waitState("describing a's job", func(s *jobstore.SlotState) bool { return s.Runtime["nomad_job_id"] == "sbp-a" })
	if st.Phase != jobstore.PhaseReady || st.Leader != "o1" || st.LastSwitch == nil || st.LastSwitch.Start <= 0 ||
		st.LastSwitch.Stop <= 0 || st.Runtime["nomad_alloc_status"] != "running" {
		t.Fatalf("state = %+v, last switch %+v", st, st.LastSwitch)
	}
	// The Consul UI sees the same state.
	v, _, ok := p.consul.KV(p.cfg.Consul.KVPrefix + p.cfg.Orchestrator.Slot)
	var kv jobstore.SlotState
	if !ok || json.Unmarshal(v, &kv) != nil || kv.Active != "a" {
		t.Fatalf("consul kv state = %s", v)
	}
}

// Memory that comes back slowly is waited for; memory that never comes
// back wedges the slot with an actionable error, and nothing is started.
func TestProduction_MemoryBarrier(t *testing.T) {
	p := newProd(t, fakenomad.Options{MemoryTotalMB: 6144, MemoryReleaseDelay: 400 * time.Millisecond},
		prodModel{name: "a", mem: 4 << 30, vars: map[string]string{"memory_mb": "4096"}},
		prodModel{name: "b", mem: 4 << 30, vars: map[string]string{"memory_mb": "4096"}},
		prodModel{name: "c", mem: 4 << 30, vars: map[string]string{"memory_mb": "4096"}})
	p.startOrch("o1")
	ctx := p.ctx(time.Minute)
	if err := p.chat(ctx, "a", "one"); err != nil {
		t.Fatal(err)
	}
	if err := p.chat(ctx, "b", "two"); err != nil {
		t.Fatal(err)
	}
	st := p.state()
	if st.LastSwitch.Memory < 300*time.Millisecond {
		t.Fatalf("barrier waited %s; memory came back only after ~400ms", st.LastSwitch.Memory)
	}
	p.nomad.SetMemoryHeld(5000) // something else grabbed the memory
	err := p.chat(ctx, "c", "three")
	apiErr := apiError(t, err)
	if apiErr.StatusCode != http.StatusServiceUnavailable || !strings.Contains(apiErr.Message, "memory") {
		t.Fatalf("error = %d %q", apiErr.StatusCode, apiErr.Message)
	}
	p.waitState("wedged", func(s *jobstore.SlotState) bool { return s.Phase == jobstore.PhaseWedged })
	if regs := p.nomad.Registrations(); slices.Contains(regs, "sbp-c") {
		t.Fatalf("c was registered although its memory was not there: %v", regs)
	}
	if got := p.running(); len(got) != 0 {
		t.Fatalf("jobs alive while wedged = %v", got)
	}
	// Memory back: the next request succeeds.
	p.nomad.SetMemoryHeld(0)
	if err := p.chat(ctx, "c", "four"); err != nil {
		t.Fatal(err)
	}
}

// A target whose jobspec Nomad rejects never costs the active model.
func TestProduction_PreflightRejectsBadJobspec(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.nomad.hcl")
	if err := os.WriteFile(bad, []byte("job \"x\" {\n  group {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newProd(t, fakenomad.Options{}, prodModel{name: "a"}, prodModel{name: "broken", spec: bad})
	p.startOrch("o1")
	ctx := p.ctx(time.Minute)
	if err := p.chat(ctx, "a", "one"); err != nil {
		t.Fatal(err)
	}
	apiErr := apiError(t, p.chat(ctx, "broken", "two"))
	if apiErr.Code != "model_preflight_failed" || !strings.Contains(apiErr.Message, "could not parse") {
		t.Fatalf("error = %s %q", apiErr.Code, apiErr.Message)
	}
	if got := p.running(); !slices.Equal(got, []string{"sbp-a"}) {
		t.Fatalf("jobs alive = %v, want a untouched", got)
	}
	if err := p.chat(ctx, "a", "three"); err != nil {
		t.Fatal(err)
	}
	if regs := p.nomad.Registrations(); len(regs) != 1 {
		t.Fatalf("registrations = %v, want only the first", regs)
	}
}

// An old model that ignores SIGTERM takes kill_timeout to stop; the new
// job is registered only after it is terminal (the fake fails the test
// otherwise), and a model killed at start fails its waiters with Nomad's
// reason and is not left running.
func TestProduction_SlowStopAndStartFailure(t *testing.T) {
	p := newProd(t, fakenomad.Options{}, prodModel{name: "a", flags: []string{"--ignore-sigterm"}},
		prodModel{name: "b"}, prodModel{name: "c"})
	p.startOrch("o1")
	ctx := p.ctx(time.Minute)
	if err := p.chat(ctx, "a", "one"); err != nil {
		t.Fatal(err)
	}
	if err := p.chat(ctx, "b", "two"); err != nil {
		t.Fatal(err)
	}
	if st := p.state(); st.LastSwitch.Stop < 900*time.Millisecond {
		t.Fatalf("stop took %s; a ignores SIGTERM and kill_timeout is 1s", st.LastSwitch.Stop)
	}
	p.nomad.OOMKillOnStart("sbp-c")
	apiErr := apiError(t, p.chat(ctx, "c", "three"))
	if apiErr.Code != "model_failed_to_start" || !strings.Contains(apiErr.Message, "OOM") {
		t.Fatalf("error = %s %q", apiErr.Code, apiErr.Message)
	}
	if got := p.running(); len(got) != 0 {
		t.Fatalf("jobs alive after a failed start = %v", got)
	}
	if err := p.chat(ctx, "b", "four"); err != nil {
		t.Fatal(err)
	}
}

// A canary that hangs (health green, decoding stuck) fails the switch.
func TestProduction_CanaryHang(t *testing.T) {
	p := newProd(t, fakenomad.Options{}, prodModel{name: "a", flags: []string{"--hang-generation"}})
	p.startOrch("o1")
	apiErr := apiError(t, p.chat(p.ctx(time.Minute), "a", "one"))
	if !strings.Contains(apiErr.Message, "canary") {
		t.Fatalf("error = %q", apiErr.Message)
	}
	if got := p.running(); len(got) != 0 {
		t.Fatalf("jobs alive = %v", got)
	}
}

// The leader dies in the middle of a switch: the standby takes the lock
// once the lock-delay passes, adopts the model being loaded, and serves
// the request that waited for it.
func TestProduction_LeaderKilledMidSwitch(t *testing.T) {
	p := newProd(t, fakenomad.Options{}, prodModel{name: "a", flags: []string{"--load-delay", "1500ms"}})
	o1 := p.startOrch("o1")
	p.waitState("led by o1", func(s *jobstore.SlotState) bool { return s.Leader == "o1" })
	p.startOrch("o2")

	ctx := p.ctx(time.Minute)
	errs := make(chan error, 1)
	go func() { errs <- p.chat(ctx, "a", "survive") }()
	p.waitState("starting a", func(s *jobstore.SlotState) bool { return s.Phase == jobstore.PhaseStarting && s.Target == "a" })
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(p.nomad.Registrations(), "sbp-a") { // registered, still loading
		if time.Now().After(deadline) {
			t.Fatal("a never registered")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Kill o1: its session dies with it (so the lock-delay applies) and it
	// does nothing more.
	for _, id := range p.consul.Sessions() {
		p.consul.InvalidateSession(id)
	}
	o1.stop()
	if err := <-errs; err != nil {
		t.Fatalf("the waiting request: %v\nlogs:\n%s", err, p.logs.String())
	}
	st := p.state()
	if st.Leader != "o2" || !st.LastSwitch.Adopted {
		t.Fatalf("state = %+v; want o2 leading with a adopted", st)
	}
	if regs := p.nomad.Registrations(); !slices.Equal(regs, []string{"sbp-a"}) {
		t.Fatalf("registrations = %v: the new leader must adopt, not restart", regs)
	}
}

// Consul unreachable at start: a clear error in the log, retries, and
// service once Consul is back.
func TestProduction_ConsulDownAtStart(t *testing.T) {
	p := newProd(t, fakenomad.Options{}, prodModel{name: "a"})
	p.consul.SetDown(true)
	p.startOrch("o1")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.logs.String(), "unreachable") {
		if time.Now().After(deadline) {
			t.Fatalf("no clear error while consul is down; logs:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.consul.SetDown(false)
	if err := p.chat(p.ctx(time.Minute), "a", "back"); err != nil {
		t.Fatal(err)
	}
}

// Two managed jobs found running when a leader starts: one survives (and
// is adopted), the other is stopped.
func TestProduction_ReconcileTwoRunning(t *testing.T) {
	p := newProd(t, fakenomad.Options{}, prodModel{name: "a"}, prodModel{name: "b"})
	nc, _ := nomad.NewClient(p.nomad.Config())
	cc, _ := consul.NewClient(p.consul.Config())
	rt, err := nomadrt.New(nomadrt.Options{Client: nc, Health: &consulsvc.Health{Client: cc}, Nomad: p.cfg.Nomad, Slot: p.cfg.Orchestrator.Slot})
	if err != nil {
		t.Fatal(err)
	}
	ctx := p.ctx(time.Minute)
	for _, m := range p.cfg.Models { // a broken earlier deployment
		if err := rt.Start(ctx, m); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.WaitHealthy(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if v := p.nomad.Violations(); len(v) == 0 {
		t.Fatalf("the fake should have recorded the deliberate overlap: %v", v)
	}
	p.nomad.ClearViolations()
	p.startOrch("o1")
	st := p.waitState("ready", func(s *jobstore.SlotState) bool { return s.Phase == jobstore.PhaseReady })
	if got := p.running(); len(got) != 1 || got[0] != "sbp-"+st.Active {
		t.Fatalf("jobs alive = %v with %s active; want exactly the active one", got, st.Active)
	}
	if !st.LastSwitch.Adopted {
		t.Fatalf("the survivor was not adopted: %+v", st.LastSwitch)
	}
	if err := p.chat(ctx, st.Active, "adopted"); err != nil {
		t.Fatal(err)
	}
}

// The leader's session is invalidated while it waits for the old model to
// stop: that term makes no further change to Nomad; the next term (the
// same process, once the lock-delay passed) finishes the job, and the new
// model is registered once, after the old one is gone.
func TestProduction_SessionInvalidatedWhileSwitching(t *testing.T) {
	p := newProd(t, fakenomad.Options{}, prodModel{name: "a", flags: []string{"--ignore-sigterm"}}, prodModel{name: "b"})
	p.startOrch("o1")
	ctx := p.ctx(time.Minute)
	if err := p.chat(ctx, "a", "one"); err != nil {
		t.Fatal(err)
	}
	gen := p.state().Generation
	errs := make(chan error, 1)
	go func() { errs <- p.chat(ctx, "b", "two") }()
	p.waitState("stopping a", func(s *jobstore.SlotState) bool { return s.Phase == jobstore.PhaseStopping })
	for _, id := range p.consul.Sessions() {
		p.consul.InvalidateSession(id)
	}
	if err := <-errs; err != nil {
		t.Fatalf("the waiting request: %v\nlogs:\n%s", err, p.logs.String())
	}
	st := p.state()
	if st.Active != "b" || st.Generation <= gen {
		t.Fatalf("state = %+v; want b active under a later generation than %d", st, gen)
	}
	if regs := p.nomad.Registrations(); !slices.Equal(regs, []string{"sbp-a", "sbp-b"}) {
		t.Fatalf("registrations = %v", regs)
	}
}

// A leader that stops gracefully while serving hands its jobs over: a job
// of which the client saw nothing yet is requeued, and the next leader
// (adopting the running model) serves it. Nothing is lost.
func TestProduction_GracefulHandoverRequeues(t *testing.T) {
	p := newProd(t, fakenomad.Options{}, prodModel{name: "a", flags: []string{"--ttft", "1500ms"}})
	o1 := p.startOrch("o1")
	p.waitState("led by o1", func(s *jobstore.SlotState) bool { return s.Leader == "o1" })
	p.startOrch("o2")
	ctx := p.ctx(time.Minute)
	errs := make(chan error, 1)
	go func() { errs <- p.chat(ctx, "a", "handover") }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		running, err := p.store.Running(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(running) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job never ran")
		}
		time.Sleep(10 * time.Millisecond)
	}
	o1.stop()
	if err := <-errs; err != nil {
		t.Fatalf("the job in flight during the handover: %v\nlogs:\n%s", err, p.logs.String())
	}
	if st := p.state(); st.Leader != "o2" {
		t.Fatalf("leader = %s", st.Leader)
	}
	if !strings.Contains(p.logs.String(), "requeued a running job") {
		t.Fatalf("the job was not requeued; logs:\n%s", p.logs.String())
	}
}
