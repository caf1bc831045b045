// Package runtimetest is the conformance suite every orchestrator.Runtime
// must pass, against fakes in `make test` and against real Nomad and
// Consul agents in `make test-real`. Backends are the switchboard's fake
// vLLM server: a test binary acts as `switchboard mockllm` through
// BackendMain.
package runtimetest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/mockllm"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
)

// AsMainEnv, set to 1, makes a test binary run as `switchboard mockllm`.
const AsMainEnv = "SWITCHBOARD_TEST_AS_MAIN"

// BackendMain runs the fake vLLM server and exits when the test binary was
// started as a backend (AsMainEnv=1, arguments `mockllm ...`). Call it
// first thing in TestMain.
func BackendMain() {
	if os.Getenv(AsMainEnv) != "1" || len(os.Args) < 2 || os.Args[1] != "mockllm" {
		return
	}
	fs := flag.NewFlagSet("mockllm", flag.ContinueOnError)
	var opts mockllm.Options
	opts.RegisterFlags(fs)
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	sigs := []os.Signal{os.Interrupt}
	if opts.IgnoreSIGTERM {
		signal.Ignore(syscall.SIGTERM)
	} else {
		sigs = append(sigs, syscall.SIGTERM)
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	defer stop()
	srv, err := mockllm.New(opts, hclog.New(&hclog.LoggerOptions{Name: "mockllm", Output: os.Stderr}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Harness is what a runtime under test provides.
type Harness struct {
	Runtime orchestrator.Runtime
	// Model returns a model (new name each call) whose backend is the
	// fake vLLM server started with the given extra flags.
	Model func(t *testing.T, flags ...string) *config.Model
	// Timeout bounds each wait; real agents need more than fakes.
	Timeout time.Duration
}

// Run runs the suite. newHarness is called once per case.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("start, healthy, stop, gone", func(t *testing.T) { testLifecycle(t, newHarness(t)) })
	t.Run("backend dies while loading", func(t *testing.T) { testDiesLoading(t, newHarness(t)) })
	t.Run("backend ignores SIGTERM", func(t *testing.T) { testIgnoresTerm(t, newHarness(t)) })
	t.Run("stop of a model never started", func(t *testing.T) { testStopUnknown(t, newHarness(t)) })
}

func ctxFor(t *testing.T, h Harness) context.Context {
	t.Helper()
	d := h.Timeout
	if d <= 0 {
		d = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// cleanupModel stops m at the end of the test whatever happened.
func cleanupModel(t *testing.T, h Harness, m *config.Model) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := h.Runtime.Stop(ctx, m.Name); err != nil {
			t.Errorf("cleanup stop %s: %v", m.Name, err)
		}
		if err := h.Runtime.WaitStopped(ctx, m.Name); err != nil {
			t.Errorf("cleanup wait %s: %v", m.Name, err)
		}
	})
}

func running(t *testing.T, ctx context.Context, rt orchestrator.Runtime) []string {
	t.Helper()
	names, err := rt.Running(ctx)
	if err != nil {
		t.Fatalf("Running: %v", err)
	}
	return names
}

func testLifecycle(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	m := h.Model(t)
	cleanupModel(t, h, m)
	if err := h.Runtime.Start(ctx, m); err != nil {
		t.Fatalf("Start: %v", err)
	}
	b, err := h.Runtime.WaitHealthy(ctx, m)
	if err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
	if b.Model != m.Name || !strings.HasPrefix(b.URL, "http://") {
		t.Fatalf("backend = %+v", b)
	}
	resp, err := http.Get(b.URL + "/v1/models")
	if err != nil {
		t.Fatalf("backend does not answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"`+m.ServedName+`"`) {
		t.Fatalf("/v1/models = %s, want %s", body, m.ServedName)
	}
	if got := running(t, ctx, h.Runtime); !slices.Contains(got, m.Name) {
		t.Fatalf("Running = %v, want %s in it", got, m.Name)
	}
	if err := h.Runtime.Stop(ctx, m.Name); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := h.Runtime.WaitStopped(ctx, m.Name); err != nil {
		t.Fatalf("WaitStopped: %v", err)
	}
	if got := running(t, ctx, h.Runtime); slices.Contains(got, m.Name) {
		t.Fatalf("Running after stop = %v", got)
	}
	// Gone means gone: nothing answers where the backend was.
	c := &http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Get(b.URL + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("backend still answers after WaitStopped: %d", resp.StatusCode)
	}
}

func testDiesLoading(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	m := h.Model(t, "--load-delay", "300ms", "--exit-during-load", "--exit-message", "contract-test-oom")
	cleanupModel(t, h, m)
	if err := h.Runtime.Start(ctx, m); err != nil {
		t.Fatalf("Start: %v", err)
	}
	_, err := h.Runtime.WaitHealthy(ctx, m)
	if err == nil {
		t.Fatal("WaitHealthy succeeded for a backend that exits while loading")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitHealthy waited until the deadline instead of reporting the exit: %v", err)
	}
	t.Logf("the runtime explains: %v", err)
}

func testIgnoresTerm(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	m := h.Model(t, "--ignore-sigterm")
	cleanupModel(t, h, m)
	if err := h.Runtime.Start(ctx, m); err != nil {
		t.Fatalf("Start: %v", err)
	}
	b, err := h.Runtime.WaitHealthy(ctx, m)
	if err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
	if err := h.Runtime.Stop(ctx, m.Name); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := h.Runtime.WaitStopped(ctx, m.Name); err != nil {
		t.Fatalf("WaitStopped of a backend ignoring SIGTERM: %v", err)
	}
	c := &http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Get(b.URL + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("backend still answers after WaitStopped (it ignored SIGTERM; it must have been killed)")
	}
}

func testStopUnknown(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	m := h.Model(t)
	if err := h.Runtime.Stop(ctx, m.Name); err != nil {
		t.Fatalf("Stop of a model never started: %v", err)
	}
	if err := h.Runtime.WaitStopped(ctx, m.Name); err != nil {
		t.Fatalf("WaitStopped of a model never started: %v", err)
	}
}
