package localrt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/localrt"
)

// testGrace is the stop grace of most tests: short, so a backend that
// ignores SIGTERM costs little, and long enough that a healthy one always
// exits on SIGTERM first.
const testGrace = 300 * time.Millisecond

func TestRuntime_StartWaitHealthy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		loadDelay string
	}{
		{name: "ready at once", loadDelay: ""},
		{name: "loads for a while", loadDelay: "200ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t, testGrace)
			m := newModel(t, "m1", modeNormal, tt.loadDelay)
			ctx := testContext(t, 10*time.Second)

			if err := r.Start(ctx, m); err != nil {
				t.Fatalf("Start: %v", err)
			}
			b, err := r.WaitHealthy(ctx, m)
			if err != nil {
				t.Fatalf("WaitHealthy: %v", err)
			}
			want := orchestrator.Backend{Model: "m1", URL: "http://127.0.0.1:" + strconv.Itoa(m.Backend.Port)}
			if b != want {
				t.Fatalf("WaitHealthy = %+v, want %+v", b, want)
			}
			if code, _ := get(t, b.URL+"/health"); code != http.StatusOK {
				t.Fatalf("GET /health = %d after WaitHealthy, want 200", code)
			}
			code, body := get(t, b.URL+"/v1/models")
			var list struct {
				Data []struct{ ID string } `json:"data"`
			}
			if err := json.Unmarshal(body, &list); code != http.StatusOK || err != nil ||
				len(list.Data) != 1 || list.Data[0].ID != m.ServedName {
				t.Fatalf("GET /v1/models = %d %s (decode error %v), want a list of %q", code, body, err, m.ServedName)
			}
			requireRunning(t, r, "m1")
			if n := r.MaxAlive(); n != 1 {
				t.Fatalf("MaxAlive = %d, want 1", n)
			}
		})
	}
}

func TestRuntime_Stop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mode string
		// killed is set when the backend survives SIGTERM, so it can only
		// be gone after the grace period, by SIGKILL.
		killed bool
	}{
		{name: "exits on SIGTERM", mode: modeNormal},
		{name: "ignores SIGTERM", mode: modeIgnoreTerm, killed: true},
		// The worker keeps the backend's output open, so the backend is
		// not reaped before the grace period's SIGKILL reaches the group.
		{name: "worker in its group ignores SIGTERM", mode: modeWorkers, killed: true},
		// The backend is reaped at once; WaitStopped's sweep of its group
		// must kill the worker.
		{name: "quiet worker in its group ignores SIGTERM", mode: modeQuietWorkers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t, testGrace)
			m := newModel(t, "m1", tt.mode, "")
			b := startHealthy(t, r, m)
			pids := backendPIDs(t, b)
			if (tt.mode == modeWorkers || tt.mode == modeQuietWorkers) && len(pids.Workers) == 0 {
				t.Fatalf("backend reports no worker")
			}

			ctx := testContext(t, 10*time.Second)
			began := time.Now()
			if err := r.Stop(ctx, "m1"); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if err := r.WaitStopped(ctx, "m1"); err != nil {
				t.Fatalf("WaitStopped: %v", err)
			}
			if took := time.Since(began); tt.killed && took < testGrace {
				t.Fatalf("WaitStopped returned after %s, before the %s grace: the backend cannot have been killed", took, testGrace)
			}

			requireRunning(t, r)
			requireRefused(t, m.Backend.Port)
			// The backend is our child and was reaped: it is gone now.
			if !processGone(pid(pids.PID)) {
				t.Fatalf("backend pid %d still exists after WaitStopped", pids.PID)
			}
			// Workers hold the model's memory: WaitStopped returns only
			// once they are gone too.
			for _, w := range pids.Workers {
				if !processGone(pid(w)) {
					t.Fatalf("worker pid %d still runs after WaitStopped", w)
				}
			}
			if err := r.Stop(ctx, "m1"); err != nil {
				t.Fatalf("second Stop: %v", err)
			}
			if err := r.WaitStopped(ctx, "m1"); err != nil {
				t.Fatalf("second WaitStopped: %v", err)
			}
		})
	}
}

func TestRuntime_WaitHealthyFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mode      string
		loadDelay string
		timeout   time.Duration
		// wantDeadline is whether the error wraps context.DeadlineExceeded;
		// when not, WaitHealthy must fail before its deadline.
		wantDeadline bool
		wantInError  []string
		// wantRunning is whether the backend is still alive afterwards.
		wantRunning bool
	}{
		{
			name: "exits while loading", mode: modeCrash, loadDelay: "100ms", timeout: 10 * time.Second,
			wantInError: []string{"exit status " + strconv.Itoa(crashStatus), crashLine, "loading weights"},
		},
		{
			name: "exits at once", mode: modeCrash, loadDelay: "0s", timeout: 10 * time.Second,
			wantInError: []string{"exit status " + strconv.Itoa(crashStatus), crashLine},
		},
		{
			name: "serves another model", mode: modeWrongName, timeout: 500 * time.Millisecond,
			wantDeadline: true, wantInError: []string{`"served-m1"`}, wantRunning: true,
		},
		{
			// Fails while localrt.WaitHealthy drops the informative probe
			// error once the deadline cuts a later probe short.
			name: "serves another model, then hangs", mode: modeWrongNameThenHang, timeout: 500 * time.Millisecond,
			wantDeadline: true, wantInError: []string{`"served-m1"`}, wantRunning: true,
		},
		{
			name: "loads forever", mode: modeNormal, loadDelay: "forever", timeout: 300 * time.Millisecond,
			wantDeadline: true, wantInError: []string{"m1", "loading weights"}, wantRunning: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t, testGrace)
			m := newModel(t, "m1", tt.mode, tt.loadDelay)
			if err := r.Start(testContext(t, 10*time.Second), m); err != nil {
				t.Fatalf("Start: %v", err)
			}

			b, err := r.WaitHealthy(testContext(t, tt.timeout), m)
			if err == nil {
				t.Fatalf("WaitHealthy = %+v, want an error", b)
			}
			if got := errors.Is(err, context.DeadlineExceeded); got != tt.wantDeadline {
				t.Fatalf("WaitHealthy error wraps DeadlineExceeded = %v, want %v; error:\n%v", got, tt.wantDeadline, err)
			}
			for _, s := range tt.wantInError {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("WaitHealthy error does not mention %q:\n%v", s, err)
				}
			}
			if tt.wantRunning {
				requireRunning(t, r, "m1")
			} else {
				requireRunning(t, r)
			}
		})
	}
}

func TestRuntime_NotStarted(t *testing.T) {
	t.Parallel()
	r := newRuntime(t, testGrace)
	ctx := testContext(t, 10*time.Second)
	m := newModel(t, "m1", modeNormal, "")

	if b, err := r.WaitHealthy(ctx, m); err == nil {
		t.Fatalf("WaitHealthy of a model never started = %+v, want an error", b)
	}
	if err := r.Stop(ctx, "m1"); err != nil {
		t.Fatalf("Stop of a model never started: %v", err)
	}
	if err := r.WaitStopped(ctx, "m1"); err != nil {
		t.Fatalf("WaitStopped of a model never started: %v", err)
	}
	requireRunning(t, r)
}

func TestRuntime_StartErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExecutable := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatalf("write %s: %v", notExecutable, err)
	}
	tests := []struct {
		name    string
		command []string
	}{
		{name: "no command", command: nil},
		{name: "path does not exist", command: []string{filepath.Join(dir, "missing")}},
		{name: "not on PATH", command: []string{"localrt-test-no-such-backend"}},
		{name: "not executable", command: []string{notExecutable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t, testGrace)
			m := newModel(t, "m1", modeNormal, "")
			m.Command = tt.command

			if err := r.Start(testContext(t, 10*time.Second), m); err == nil {
				t.Fatalf("Start with command %q succeeded, want an error", tt.command)
			}
			requireRunning(t, r)
			if n := r.MaxAlive(); n != 0 {
				t.Fatalf("MaxAlive = %d after a failed start, want 0", n)
			}
		})
	}
}

func TestRuntime_Preflight(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExecutable := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatalf("write %s: %v", notExecutable, err)
	}
	tests := []struct {
		name    string
		command []string // nil keeps the test backend's
		wantErr bool
	}{
		{name: "runnable command"},
		{name: "no command", command: []string{}, wantErr: true},
		{name: "path does not exist", command: []string{filepath.Join(dir, "missing")}, wantErr: true},
		{name: "not on PATH", command: []string{"localrt-test-no-such-backend"}, wantErr: true},
		{name: "not executable", command: []string{notExecutable}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t, testGrace)
			m := newModel(t, "m1", modeNormal, "")
			if tt.command != nil {
				m.Command = tt.command
			}

			err := r.Preflight(testContext(t, 10*time.Second), m, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Preflight with command %q = %v, want error %v", m.Command, err, tt.wantErr)
			}
			requireRunning(t, r)
			if n := r.MaxAlive(); n != 0 {
				t.Fatalf("MaxAlive = %d after Preflight, want 0: it must start nothing", n)
			}
		})
	}
}

func TestRuntime_StartTwice(t *testing.T) {
	t.Parallel()
	r := newRuntime(t, testGrace)
	m := newModel(t, "m1", modeNormal, "")
	b := startHealthy(t, r, m)
	first := backendPIDs(t, b).PID

	if err := r.Start(testContext(t, 10*time.Second), m); err == nil {
		t.Fatalf("second Start of a running model succeeded, want an error")
	}
	requireRunning(t, r, "m1")
	if n, o := r.MaxAlive(), r.Overlaps(); n != 1 || len(o) != 0 {
		t.Fatalf("MaxAlive = %d, Overlaps = %q after a refused start, want 1 and none", n, o)
	}
	if b2, err := r.WaitHealthy(testContext(t, 10*time.Second), m); err != nil || b2 != b {
		t.Fatalf("WaitHealthy after a refused start = %+v, %v; want %+v", b2, err, b)
	}
	if pid := backendPIDs(t, b).PID; pid != first {
		t.Fatalf("backend pid = %d after a refused start, want the first backend's %d", pid, first)
	}
}

func TestRuntime_StartAfterCrash(t *testing.T) {
	t.Parallel()
	r := newRuntime(t, testGrace)
	m := newModel(t, "m1", modeCrash, "")
	ctx := testContext(t, 10*time.Second)
	if err := r.Start(ctx, m); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := r.WaitHealthy(ctx, m); err == nil {
		t.Fatalf("WaitHealthy of a crashing backend succeeded")
	}

	m.Env[envBackend] = modeNormal
	startHealthy(t, r, m)
	requireRunning(t, r, "m1")
	if n, o := r.MaxAlive(), r.Overlaps(); n != 1 || len(o) != 0 {
		t.Fatalf("MaxAlive = %d, Overlaps = %q after a restart, want 1 and none", n, o)
	}
}

func TestRuntime_Overlaps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		firstMode string
		stop      bool
		wait      bool
		// wantOverlap is whether starting m2 violated the one-model
		// invariant, which the runtime must record.
		wantOverlap bool
	}{
		{name: "first stopped and gone", firstMode: modeNormal, stop: true, wait: true},
		{name: "first left running", firstMode: modeNormal, wantOverlap: true},
		{name: "first stopped but not waited for", firstMode: modeIgnoreTerm, stop: true, wantOverlap: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			grace := testGrace
			if tt.stop && !tt.wait {
				// m1 ignores SIGTERM and must outlive m2's start, however
				// slow a loaded machine makes it, to still count as
				// running below.
				grace = 5 * time.Second
			}
			r := newRuntime(t, grace)
			ctx := testContext(t, 10*time.Second)
			startHealthy(t, r, newModel(t, "m1", tt.firstMode, ""))
			if tt.stop {
				if err := r.Stop(ctx, "m1"); err != nil {
					t.Fatalf("Stop m1: %v", err)
				}
			}
			if tt.wait {
				if err := r.WaitStopped(ctx, "m1"); err != nil {
					t.Fatalf("WaitStopped m1: %v", err)
				}
			}
			startHealthy(t, r, newModel(t, "m2", modeNormal, ""))

			overlaps, maxAlive := r.Overlaps(), r.MaxAlive()
			if !tt.wantOverlap {
				if len(overlaps) != 0 || maxAlive != 1 {
					t.Fatalf("Overlaps = %q, MaxAlive = %d; want none and 1", overlaps, maxAlive)
				}
				requireRunning(t, r, "m2")
				return
			}
			if len(overlaps) != 1 || maxAlive != 2 {
				t.Fatalf("Overlaps = %q, MaxAlive = %d; want exactly one and 2", overlaps, maxAlive)
			}
			if !strings.Contains(overlaps[0], "m1") || !strings.Contains(overlaps[0], "m2") {
				t.Fatalf("overlap %q does not name both models", overlaps[0])
			}
			requireRunning(t, r, "m1", "m2")
		})
	}
}

func TestRuntime_Close(t *testing.T) {
	t.Parallel()
	r := localrt.New(localrt.Options{StopGrace: testGrace, Log: hclog.NewNullLogger()})
	models := []*config.Model{
		newModel(t, "m1", modeNormal, ""),
		newModel(t, "m2", modeIgnoreTerm, ""),
		newModel(t, "m3", modeNormal, "forever"),
	}
	var pids []int
	for _, m := range models[:2] {
		pids = append(pids, backendPIDs(t, startHealthy(t, r, m)).PID)
	}
	if err := r.Start(testContext(t, 10*time.Second), models[2]); err != nil {
		t.Fatalf("Start m3: %v", err)
	}
	requireRunning(t, r, "m1", "m2", "m3")

	if err := r.Close(testContext(t, 10*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	requireRunning(t, r)
	for _, p := range pids {
		if !processGone(pid(p)) {
			t.Fatalf("backend pid %d still exists after Close", p)
		}
	}
	for _, m := range models {
		requireRefused(t, m.Backend.Port)
	}
	if err := r.Close(testContext(t, 10*time.Second)); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// newRuntime returns a runtime that is closed, with every backend gone,
// when the test ends.
func newRuntime(t *testing.T, grace time.Duration) *localrt.Runtime {
	t.Helper()
	r := localrt.New(localrt.Options{StopGrace: grace, Log: hclog.NewNullLogger()})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// newModel returns a model named name whose command runs this test binary
// as a backend in mode, on a free port, serving "served-<name>".
func newModel(t *testing.T, name, mode, loadDelay string) *config.Model {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	port := freePort(t)
	served := "served-" + name
	return &config.Model{
		Name:       name,
		ServedName: served,
		Backend:    config.Backend{Port: port},
		Command:    []string{exe},
		Env: map[string]string{
			envBackend:   mode,
			envPort:      strconv.Itoa(port),
			envServed:    served,
			envLoadDelay: loadDelay,
			envLifeline:  strconv.Itoa(os.Getpid()),
		},
	}
}

// freePort returns a loopback port nothing listened on a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// testContext is canceled after d or when the test ends.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startHealthy starts m and waits until it is healthy.
func startHealthy(t *testing.T, r *localrt.Runtime, m *config.Model) orchestrator.Backend {
	t.Helper()
	ctx := testContext(t, 10*time.Second)
	if err := r.Start(ctx, m); err != nil {
		t.Fatalf("Start %s: %v", m.Name, err)
	}
	b, err := r.WaitHealthy(ctx, m)
	if err != nil {
		t.Fatalf("WaitHealthy %s: %v", m.Name, err)
	}
	return b
}

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t, 5*time.Second), http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, body.Bytes()
}

// backendPIDs asks the backend for its own pid and its workers'.
func backendPIDs(t *testing.T, b orchestrator.Backend) pidsReply {
	t.Helper()
	code, body := get(t, b.URL+"/pids")
	var p pidsReply
	if err := json.Unmarshal(body, &p); code != http.StatusOK || err != nil || p.PID <= 0 {
		t.Fatalf("GET /pids = %d %s (decode error %v)", code, body, err)
	}
	return p
}

// requireRunning asserts that Running lists exactly want.
func requireRunning(t *testing.T, r *localrt.Runtime, want ...string) {
	t.Helper()
	got, err := r.Running(context.Background())
	if err != nil {
		t.Fatalf("Running: %v", err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("Running = %q, want %q", got, want)
	}
}

// requireRefused asserts that nothing listens on port any more.
func requireRefused(t *testing.T, port int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 2*time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("port %d still accepts connections", port)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial port %d: %v, want connection refused", port, err)
	}
}

// pid is a process id, for processGone.
type pid int

// processGone reports whether p no longer runs: no such process, or a
// zombie (dead, waiting for a parent that is not ours to reap it).
func processGone(p pid) bool {
	err := syscall.Kill(int(p), 0)
	if errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
	if rerr != nil {
		return errors.Is(rerr, os.ErrNotExist) && err != nil
	}
	// The state follows the parenthesized command name.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	state := stat[i+2]
	return state == 'Z' || state == 'X'
}
