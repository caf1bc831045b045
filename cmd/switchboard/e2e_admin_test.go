package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
)

// waitPhase polls /status until the slot shows cond (there is no push
// channel for an observer).
func (e *e2e) waitState(t *testing.T, what string, cond func(*jobstore.SlotState) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := e.stack.Store.State(context.Background(), "e2e")
		if err == nil && st != nil && cond(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never %s; last %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Operators load, pin, unload and hold the slot through admin routes;
// the leader acts on them in its loop.
func TestE2E_AdminControls(t *testing.T) {
	e := startE2E(t, e2eOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if resp, _ := post(t, e.url+"/admin/models/qwen3/load", "", nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("admin load = %d", resp.StatusCode)
	}
	e.waitState(t, "with qwen3-30b loaded", func(s *jobstore.SlotState) bool {
		return s.Active == "qwen3-30b" && s.Phase == jobstore.PhaseReady
	})

	// Pinned: a request for another model waits; the pinned one serves.
	if resp, _ := post(t, e.url+"/admin/models/qwen3-30b/pin", "", nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("pin = %d", resp.StatusCode)
	}
	other := make(chan error, 1)
	go func() { other <- e.chat(ctx, "gpt-oss120", "openai/gpt-oss-120b", "waits for the pin", false) }()
	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "pinned serves", false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-other:
		t.Fatalf("a request for another model was served while qwen3-30b was pinned: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if resp, _ := post(t, e.url+"/admin/unpin", "", nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("unpin = %d", resp.StatusCode)
	}
	if err := <-other; err != nil {
		t.Fatalf("after unpin: %v", err)
	}

	// Unload frees the slot.
	if resp, _ := post(t, e.url+"/admin/unload", "", nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("unload = %d", resp.StatusCode)
	}
	e.waitState(t, "empty", func(s *jobstore.SlotState) bool { return s.Active == "" && s.Phase == jobstore.PhaseIdle })
	if running, _ := e.stack.Runtime.Running(ctx); len(running) != 0 {
		t.Fatalf("running after unload: %v", running)
	}

	// Maintenance holds new work until it ends.
	if resp, _ := post(t, e.url+"/admin/maintenance", `{"enabled":true}`, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("maintenance on = %d", resp.StatusCode)
	}
	held := make(chan error, 1)
	go func() { held <- e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "held", false) }()
	select {
	case err := <-held:
		t.Fatalf("served during maintenance: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if resp, _ := post(t, e.url+"/admin/maintenance", `{"enabled":false}`, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("maintenance off = %d", resp.StatusCode)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if resp, body := post(t, e.url+"/admin/models/nope/load", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("load of an unknown model = %d %v", resp.StatusCode, body)
	}
}

// A model that fails to start is quarantined: the next request fails
// fast with the reason and Retry-After instead of another doomed load.
func TestE2E_Quarantine(t *testing.T) {
	e := startE2E(t, e2eOptions{flags: map[string][]string{
		"qwen3-235b-4bit": {"--exit-during-load", "--exit-message", "out of memory (test)"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ask := func() *openai.Error {
		_, err := e.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "qwen3-235b-4bit", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("err = %v", err)
		}
		return apiErr
	}
	if first := ask(); first.Code != "model_failed_to_start" {
		t.Fatalf("first = %s %q", first.Code, first.Message)
	}
	began := time.Now()
	second := ask()
	if second.Code != "model_quarantined" || !strings.Contains(second.Message, "out of memory (test)") {
		t.Fatalf("second = %s %q", second.Code, second.Message)
	}
	if ra, err := strconv.Atoi(second.Response.Header.Get("Retry-After")); err != nil || ra <= 0 {
		t.Fatalf("Retry-After = %q", second.Response.Header.Get("Retry-After"))
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("the quarantined model's request took %s: it must fail fast", took)
	}
}

// A hard cancel of a running job aborts it and restarts the backend (the
// answer to a generation that hangs); a plain cancel of a finished job is
// a 409, and a bad hard value a 400.
func TestE2E_HardCancel(t *testing.T) {
	e := startE2E(t, e2eOptions{flags: map[string][]string{"qwen3-30b": {"--tokens-per-second", "1"}}})
	resp, job := post(t, e.url+"/v1/chat/completions",
		`{"model":"qwen3-30b","async":true,"messages":[{"role":"user","content":"slow"}],"max_tokens":50}`, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submit = %d", resp.StatusCode)
	}
	id := job["id"].(string)
	waitJob(t, e, id, func(j *jobstore.Job) bool { return j.Status == jobstore.StatusRunning })
	if resp, body := post(t, e.url+"/jobs/"+id+"/cancel?hard=maybe", "", nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad hard value = %d %v", resp.StatusCode, body)
	}
	if resp, body := post(t, e.url+"/jobs/"+id+"/cancel?hard=true", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("hard cancel = %d %v", resp.StatusCode, body)
	}
	final := waitJob(t, e, id, func(j *jobstore.Job) bool { return j.Status.Terminal() })
	if final.Status != jobstore.StatusCanceled {
		t.Fatalf("job = %s", final.Status)
	}
	e.waitState(t, "restarted", func(s *jobstore.SlotState) bool {
		return s.Phase == jobstore.PhaseReady && s.LastSwitch != nil && s.LastSwitch.From == "qwen3-30b" &&
			s.LastSwitch.To == "qwen3-30b" && strings.Contains(s.LastSwitch.Reason, "hard cancel")
	})
	if resp, _ := post(t, e.url+"/jobs/"+id+"/cancel", "", nil); resp.StatusCode != http.StatusConflict {
		t.Fatalf("cancel of a finished job = %d, want 409", resp.StatusCode)
	}
	if n := e.stack.Runtime.MaxAlive(); n != 1 {
		t.Fatalf("max alive = %d", n)
	}
}

// killBackend kills the fake backend listening on port, as a crash would
// (found by its command line in /proc).
func killBackend(t *testing.T, port int) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc to find the backend process: %v", err)
	}
	needle := "--port\x00" + strconv.Itoa(port) + "\x00"
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), needle) && strings.Contains(string(cmdline), "mockllm") {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no backend process with --port %d", port)
}

// The active backend crashes: the next request is not failed against a
// dead address; the model is reloaded and the request served.
func TestE2E_BackendCrashReloads(t *testing.T) {
	e := startE2E(t, e2eOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "before the crash", false); err != nil {
		t.Fatal(err)
	}
	st, _ := e.stack.Store.State(ctx, "e2e")
	port, _ := strconv.Atoi(st.Backend[strings.LastIndex(st.Backend, ":")+1:])
	killBackend(t, port)
	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "after the crash", false); err != nil {
		t.Fatalf("request after the backend crashed: %v", err)
	}
	if n := e.stack.Runtime.MaxAlive(); n != 1 {
		t.Fatalf("max alive = %d", n)
	}
}

// Every waiter of a slow load went away and another model has work: the
// load is abandoned instead of finishing for nobody.
func TestE2E_AbandonedLoad(t *testing.T) {
	e := startE2E(t, e2eOptions{flags: map[string][]string{"qwen3-235b-4bit": {"--load-delay", "20s"}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reqCtx, leave := context.WithCancel(ctx)
	go func() { _ = e.chat(reqCtx, "qwen3-235b-4bit", "Qwen/Qwen3-235B-A22B-GPTQ-Int4", "never mind", false) }()
	e.waitState(t, "loading the big model", func(s *jobstore.SlotState) bool {
		return s.Target == "qwen3-235b-4bit" && s.Phase == jobstore.PhaseStarting
	})
	leave()
	began := time.Now()
	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "me instead", false); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 15*time.Second {
		t.Fatalf("the other model waited %s: the abandoned 20s load was not abandoned", took)
	}
}

// A hard cancel obeys the switch budget like any switch: past it, the job
// is aborted but the shared backend is not restarted.
func TestE2E_HardCancelRespectsBudget(t *testing.T) {
	e := startE2E(t, e2eOptions{
		flags:      map[string][]string{"qwen3-30b": {"--tokens-per-second", "1"}},
		gatewayHCL: "scheduler {\n  max_switches_per_hour = 1\n}\n",
	})
	resp, job := post(t, e.url+"/v1/chat/completions",
		`{"model":"qwen3-30b","async":true,"messages":[{"role":"user","content":"slow"}],"max_tokens":50}`, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submit = %d", resp.StatusCode)
	}
	id := job["id"].(string)
	waitJob(t, e, id, func(j *jobstore.Job) bool { return j.Status == jobstore.StatusRunning })
	if resp, body := post(t, e.url+"/jobs/"+id+"/cancel?hard=true", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("hard cancel = %d %v", resp.StatusCode, body)
	}
	if final := waitJob(t, e, id, func(j *jobstore.Job) bool { return j.Status.Terminal() }); final.Status != jobstore.StatusCanceled {
		t.Fatalf("job = %s", final.Status)
	}
	e.waitState(t, "saying why it did not restart", func(s *jobstore.SlotState) bool {
		for _, d := range s.Decisions {
			if strings.Contains(d, "switch budget exhausted") {
				return true
			}
		}
		return false
	})
	st, _ := e.stack.Store.State(context.Background(), "e2e")
	if st.Phase != jobstore.PhaseReady || st.LastSwitch.From != "" || len(st.RecentSwitches) != 1 {
		t.Fatalf("the backend was restarted past the budget: %+v", st.LastSwitch)
	}
}
