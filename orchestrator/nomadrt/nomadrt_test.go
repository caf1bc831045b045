package nomadrt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/consulsvc"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakenomad"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/nomadrt"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/runtimetest"
)

func TestMain(m *testing.M) {
	runtimetest.BackendMain()
	os.Exit(m.Run())
}

// env is one Nomad runtime on fakes (or, in the real-agent test, agents).
type env struct {
	rt     *nomadrt.Runtime
	nomad  *fakenomad.Server // nil against real agents
	consul *fakeconsul.Server
	bin    string // what raw_exec runs as `switchboard`
	fast   bool   // fakes: short check intervals
}

func newFakeEnv(t *testing.T, opts fakenomad.Options) *env {
	t.Helper()
	fc := fakeconsul.New(t, fakeconsul.Options{MinCheckInterval: 20 * time.Millisecond})
	opts.Consul = fc
	fn := fakenomad.New(t, opts)
	nc, err := api.NewClient(fn.Config())
	if err != nil {
		t.Fatal(err)
	}
	cc, err := consul.NewClient(fc.Config())
	if err != nil {
		t.Fatal(err)
	}
	rt, err := nomadrt.New(nomadrt.Options{
		Client: nc, Health: &consulsvc.Health{Client: cc, Wait: 5 * time.Second},
		Nomad: config.Nomad{Namespace: "default", Region: "global", JobPrefix: "sbt-", MemoryHeadroom: 0},
		Slot:  "test", Log: hclog.NewNullLogger(), MemoryPoll: 20 * time.Millisecond, BlockingWait: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{rt: rt, nomad: fn, consul: fc, bin: os.Args[0], fast: true}
}

var modelSeq atomic.Int32

// model is a config for the raw_exec stand-in jobspec in testdata.
func (e *env) model(t *testing.T, flags ...string) *config.Model {
	t.Helper()
	n := modelSeq.Add(1)
	spec, err := filepath.Abs("testdata/mockllm.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"switchboard_bin": e.bin}
	if e.fast {
		vars["check_interval"] = "50ms"
		vars["kill_timeout"] = "1s"
	}
	return &config.Model{
		Name:       fmt.Sprintf("m%d-%d", os.Getpid()%1000, n),
		ServedName: fmt.Sprintf("served/m-%d", n),
		Jobspec:    spec, MaxConcurrency: 1,
		Backend:   config.Backend{Port: 8000, VLLMArgs: flags},
		Variables: vars,
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// The Nomad runtime on the fakes passes the suite every runtime must.
func TestRuntime_Conformance(t *testing.T) {
	runtimetest.Run(t, func(t *testing.T) runtimetest.Harness {
		e := newFakeEnv(t, fakenomad.Options{})
		return runtimetest.Harness{Runtime: e.rt, Model: e.model, Timeout: 30 * time.Second}
	})
}

// Model settings reach the jobspec as variables, never as HCL: a served
// name full of HCL syntax arrives verbatim in the task's arguments.
func TestRender_NoInjection(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{})
	m := e.model(t)
	m.ServedName = `evil" } ${file("/etc/passwd")} "`
	job, hash, err := e.rt.Render(ctxT(t, 10*time.Second), m)
	if err != nil {
		t.Fatal(err)
	}
	args := job.TaskGroups[0].Tasks[0].Config["args"]
	if !strings.Contains(fmt.Sprint(args), m.ServedName) {
		t.Fatalf("served name did not arrive verbatim: %v", args)
	}
	if job.Meta[nomadrt.MetaManagedBy] != nomadrt.ManagedByValue || job.Meta[nomadrt.MetaModel] != m.Name ||
		job.Meta[nomadrt.MetaConfigHash] != hash || hash == "" {
		t.Fatalf("meta = %v", job.Meta)
	}
	if *job.ID != e.rt.JobID(m.Name) || *job.Namespace != "default" {
		t.Fatalf("job id %q namespace %q", *job.ID, *job.Namespace)
	}
}

func TestRender_Errors(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{})
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.nomad.hcl")
	if err := os.WriteFile(broken, []byte("job \"x\" {\n  group \"g\" {\n    bogus\n  }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongID := filepath.Join(dir, "wrong-id.nomad.hcl")
	if err := os.WriteFile(wrongID, []byte("job \"fixed\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n    }\n  }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		jobspec string
		want    string
	}{
		{"syntax error is Nomad's", broken, "could not parse"},
		{"job id must come from job_name", wrongID, "set id = var.job_name"},
		{"missing file", filepath.Join(dir, "nope.hcl"), "read jobspec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := e.model(t)
			m.Jobspec = tt.jobspec
			_, _, err := e.rt.Render(ctxT(t, 10*time.Second), m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// A model killed for memory at start fails with Nomad's own words.
func TestWaitHealthy_ExplainsOOM(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{})
	ctx := ctxT(t, 30*time.Second)
	m := e.model(t, "--load-delay", "2s")
	e.nomad.OOMKillOnStart(e.rt.JobID(m.Name))
	if err := e.rt.Start(ctx, m); err != nil {
		t.Fatal(err)
	}
	_, err := e.rt.WaitHealthy(ctx, m)
	if err == nil || !strings.Contains(err.Error(), "OOM") || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("err = %v, want the OOM kill explained", err)
	}
	if err := e.rt.Stop(ctx, m.Name); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.WaitStopped(ctx, m.Name); err != nil {
		t.Fatal(err)
	}
}

// The production jobspec on a node without a GPU: the preflight says so
// (make before break) and nothing is registered.
func TestPreflight_MissingDevice(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{Devices: []string{}})
	m := productionModel(t)
	err := e.rt.Preflight(ctxT(t, 10*time.Second), m, nil)
	if err == nil || !strings.Contains(err.Error(), "missing devices") || !strings.Contains(err.Error(), "device plugin") {
		t.Fatalf("err = %v, want missing devices with a hint", err)
	}
	if regs := e.nomad.Registrations(); len(regs) != 0 {
		t.Fatalf("preflight registered jobs: %v", regs)
	}
}

// Memory the running model holds is not a preflight failure: the switch
// frees it. Without a running model, it is.
func TestPreflight_MemoryHeldByRunningModel(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{MemoryTotalMB: 1024})
	ctx := ctxT(t, 30*time.Second)
	a, b := e.model(t), e.model(t)
	a.Variables["memory_mb"], b.Variables["memory_mb"] = "600", "600"
	if err := e.rt.Start(ctx, a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.rt.Stop(context.Background(), a.Name) })
	if _, err := e.rt.WaitHealthy(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Preflight(ctx, b, []string{a.Name}); err != nil {
		t.Fatalf("with the running model holding the memory: %v", err)
	}
	if err := e.rt.Preflight(ctx, b, nil); err == nil || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("without a running model: err = %v, want memory exhausted", err)
	}
}

// The memory barrier waits for memory that comes back slowly, and gives
// up with numbers a person can act on when it never does.
func TestWaitMemory(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{MemoryTotalMB: 4096})
	m := e.model(t)
	m.MemoryBytes = 2 << 30
	e.nomad.SetMemoryHeld(3000)
	ctx := ctxT(t, 20*time.Second)
	done := make(chan error, 1)
	go func() { done <- e.rt.WaitMemory(ctx, m) }()
	select {
	case err := <-done:
		t.Fatalf("WaitMemory returned while memory was held: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	e.nomad.SetMemoryHeld(0)
	if err := <-done; err != nil {
		t.Fatalf("WaitMemory after release: %v", err)
	}

	e.nomad.SetMemoryHeld(4000)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err := e.rt.WaitMemory(short, m)
	if err == nil || !strings.Contains(err.Error(), "GiB available") || !strings.Contains(err.Error(), "needed") {
		t.Fatalf("err = %v, want available vs needed", err)
	}
}

// A running job rendered from the current settings may be adopted; one
// from other settings may not.
func TestAdoptable(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{})
	ctx := ctxT(t, 30*time.Second)
	m := e.model(t)
	if err := e.rt.Start(ctx, m); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.rt.Stop(context.Background(), m.Name) })
	if _, err := e.rt.WaitHealthy(ctx, m); err != nil {
		t.Fatal(err)
	}
	ok, err := e.rt.Adoptable(ctx, m)
	if err != nil || !ok {
		t.Fatalf("adoptable = %v, %v; want true", ok, err)
	}
	changed := *m
	changed.Backend.VLLMArgs = []string{"--ttft", "1ms"}
	if ok, err := e.rt.Adoptable(ctx, &changed); err != nil || ok {
		t.Fatalf("adoptable after a settings change = %v, %v; want false", ok, err)
	}
	info, err := e.rt.Describe(ctx, m.Name)
	if err != nil || info["nomad_job_id"] != e.rt.JobID(m.Name) || info["nomad_alloc_status"] != "running" {
		t.Fatalf("describe = %v, %v", info, err)
	}
}

// productionModel is a model on the real vLLM jobspec (docker driver).
func productionModel(t *testing.T) *config.Model {
	t.Helper()
	spec, err := filepath.Abs("../../jobs.nomad.d/vllm.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	return &config.Model{
		Name: "qwen3-30b", ServedName: "Qwen/Qwen3-30B-A3B", Jobspec: spec, MaxConcurrency: 8,
		Source:  config.Source{Type: config.SourceHuggingFaceRepo, Value: "Qwen/Qwen3-30B-A3B"},
		Backend: config.Backend{Image: "nvcr.io/nvidia/vllm:25.10-py3", Port: 8000, VLLMArgs: []string{"--max-model-len", "32768"}},
	}
}

// The production jobspec renders through the same path the orchestrator
// uses, and an image that cannot be pulled fails with Nomad's words.
func TestProductionJobspec_ImagePullFailure(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{})
	m := productionModel(t)
	ctx := ctxT(t, 30*time.Second)
	e.nomad.FailImagePull(m.Backend.Image)
	if err := e.rt.Preflight(ctx, m, nil); err != nil {
		t.Fatalf("preflight of the production jobspec: %v", err)
	}
	if err := e.rt.Start(ctx, m); err != nil {
		t.Fatal(err)
	}
	_, err := e.rt.WaitHealthy(ctx, m)
	if err == nil || !strings.Contains(err.Error(), "pull") || !strings.Contains(err.Error(), "image") {
		t.Fatalf("err = %v, want the image pull failure explained", err)
	}
	_ = e.rt.Stop(ctx, m.Name)
	if err := e.rt.WaitStopped(ctx, m.Name); err != nil {
		t.Fatal(err)
	}
}
