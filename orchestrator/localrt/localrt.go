// Package localrt is the Runtime of the embedded dev mode: each model's
// backend is a child process of the switchboard, in its own process group,
// started from the model's configured command.
//
// It keeps its own count of live backends and records any instant at which
// more than one was alive, so tests can assert the one-model invariant
// against what the operating system saw, not what the orchestrator meant.
package localrt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
)

var (
	_ orchestrator.Runtime     = (*Runtime)(nil)
	_ orchestrator.Preflighter = (*Runtime)(nil)
)

// Options tune the runtime.
type Options struct {
	// StopGrace is how long a backend has between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// Log receives lifecycle events and, at debug level, backend output.
	Log hclog.Logger
	// HealthInterval caps the wait between two health probes; default 50ms.
	HealthInterval time.Duration
}

// Runtime runs backends as child processes.
type Runtime struct {
	opts   Options
	log    hclog.Logger
	client *http.Client

	mu       sync.Mutex
	procs    map[string]*proc
	alive    int
	maxAlive int
	overlaps []string
	wg       sync.WaitGroup
}

// proc is one backend process.
type proc struct {
	model  string
	pid    int
	port   int
	out    *tail
	exited chan struct{} // closed once the process is reaped
	err    error         // the exit error, set before exited closes
}

// New returns an empty runtime.
func New(opts Options) *Runtime {
	if opts.StopGrace <= 0 {
		opts.StopGrace = 10 * time.Second
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 50 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	return &Runtime{
		opts:   opts,
		log:    opts.Log.Named("localrt"),
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}},
		procs:  make(map[string]*proc),
	}
}

// Start implements orchestrator.Runtime.
func (r *Runtime) Start(ctx context.Context, m *config.Model) error {
	if len(m.Command) == 0 {
		return fmt.Errorf("model %s has no command for the local runtime", m.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.procs[m.Name]; ok {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("model %s is already running (pid %d)", m.Name, p.pid)
		}
	}
	cmd := exec.Command(m.Command[0], m.Command[1:]...)
	cmd.Env = os.Environ()
	for k, v := range m.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := newTail(64, r.log.Named("backend").With("model", m.Name))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	// Output pipes of grandchildren that outlive the backend must not
	// keep Wait from reporting the exit.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	p := &proc{model: m.Name, pid: cmd.Process.Pid, port: m.Backend.Port, out: out, exited: make(chan struct{})}
	r.procs[m.Name] = p
	r.alive++
	if r.alive > r.maxAlive {
		r.maxAlive = r.alive
	}
	if r.alive > 1 {
		var others []string
		for name, q := range r.procs {
			if name != m.Name && !isClosed(q.exited) {
				others = append(others, name)
			}
		}
		msg := fmt.Sprintf("%s started while %s alive", m.Name, strings.Join(others, ", "))
		r.overlaps = append(r.overlaps, msg)
		r.log.Error("one-model invariant violated", "detail", msg)
	}
	r.log.Info("backend started", "model", m.Name, "pid", p.pid, "command", strings.Join(m.Command, " "))
	r.wg.Go(func() {
		err := cmd.Wait()
		r.mu.Lock()
		p.err = err
		r.alive--
		r.mu.Unlock()
		close(p.exited)
		r.log.Info("backend exited", "model", p.model, "pid", p.pid, "status", exitString(err))
	})
	return nil
}

// Preflight implements orchestrator.Preflighter: the command must be
// there to run, so a typo in a model's command never costs the active
// model its place.
func (r *Runtime) Preflight(_ context.Context, m *config.Model, _ []string) error {
	if len(m.Command) == 0 {
		return fmt.Errorf("model %s has no command for the local runtime", m.Name)
	}
	if _, err := exec.LookPath(m.Command[0]); err != nil {
		return fmt.Errorf("model %s: command %q: %w", m.Name, m.Command[0], err)
	}
	return nil
}

// WaitHealthy implements orchestrator.Runtime: it probes /health until it
// answers 200, then requires /v1/models to list the served name.
func (r *Runtime) WaitHealthy(ctx context.Context, m *config.Model) (orchestrator.Backend, error) {
	p := r.proc(m.Name)
	if p == nil {
		return orchestrator.Backend{}, fmt.Errorf("model %s is not running", m.Name)
	}
	url := "http://127.0.0.1:" + strconv.Itoa(p.port)
	delay := time.Millisecond
	var lastErr error // the last probe error not caused by ctx ending
	for {
		ok, err := r.probe(ctx, url, m.ServedName)
		if ok {
			return orchestrator.Backend{Model: m.Name, URL: url}, nil
		}
		if err != nil && ctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-p.exited:
			return orchestrator.Backend{}, fmt.Errorf("backend of %s exited while loading (%s); last output:\n%s",
				m.Name, exitString(p.err), p.out.String())
		case <-ctx.Done():
			detail := ""
			if lastErr != nil {
				detail = "; last probe: " + lastErr.Error()
			}
			return orchestrator.Backend{}, fmt.Errorf("backend of %s not healthy%s; last output:\n%s: %w",
				m.Name, detail, p.out.String(), context.Cause(ctx))
		case <-time.After(delay):
		}
		delay = min(2*delay, r.opts.HealthInterval)
	}
}

// probe reports whether the backend at url is ready and serves name.
func (r *Runtime) probe(ctx context.Context, url, name string) (bool, error) {
	get := func(path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
		if err != nil {
			return nil, err
		}
		return r.client.Do(req)
	}
	resp, err := get("/health")
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("/health answered %d", resp.StatusCode)
	}
	resp, err = get("/v1/models")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil {
		return false, fmt.Errorf("/v1/models: %w", err)
	}
	var ids []string
	for _, d := range list.Data {
		if d.ID == name {
			return true, nil
		}
		ids = append(ids, d.ID)
	}
	return false, fmt.Errorf("/v1/models lists %q, not the served name %q", ids, name)
}

// Stop implements orchestrator.Runtime: SIGTERM to the backend's process
// group now, SIGKILL after the grace period if it is still there.
func (r *Runtime) Stop(_ context.Context, model string) error {
	p := r.proc(model)
	if p == nil || isClosed(p.exited) {
		return nil
	}
	r.log.Info("stopping backend", "model", model, "pid", p.pid, "grace", r.opts.StopGrace)
	if err := syscall.Kill(-p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", model, p.pid, err)
	}
	r.wg.Go(func() {
		select {
		case <-p.exited:
		case <-time.After(r.opts.StopGrace):
			r.log.Warn("backend ignored SIGTERM; killing it", "model", model, "pid", p.pid, "grace", r.opts.StopGrace)
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		}
	})
	return nil
}

// WaitStopped implements orchestrator.Runtime: it returns once the process
// is reaped, and sweeps any process left in its group.
func (r *Runtime) WaitStopped(ctx context.Context, model string) error {
	p := r.proc(model)
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return fmt.Errorf("backend of %s (pid %d) still running: %w", model, p.pid, context.Cause(ctx))
	}
	// Workers left in the group (vLLM's hold the GPU memory) must be gone
	// too before the next model starts: kill them and wait.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // ESRCH when none
	for delay := time.Millisecond; groupAlive(p.pid); delay = min(2*delay, 50*time.Millisecond) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("workers of %s (process group %d) still running after SIGKILL: %w", model, p.pid, context.Cause(ctx))
		case <-time.After(delay):
		}
	}
	r.mu.Lock()
	if r.procs[model] == p {
		delete(r.procs, model)
	}
	r.mu.Unlock()
	return nil
}

// Running implements orchestrator.Runtime.
func (r *Runtime) Running(context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for name, p := range r.procs {
		if !isClosed(p.exited) {
			names = append(names, name)
		}
	}
	return names, nil
}

// Close stops every backend and waits until all are gone, bounded by ctx.
func (r *Runtime) Close(ctx context.Context) error {
	names, _ := r.Running(ctx)
	var errs error
	for _, n := range names {
		if err := r.Stop(ctx, n); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	for _, n := range names {
		if err := r.WaitStopped(ctx, n); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = errors.Join(errs, ctx.Err())
	}
	return errs
}

// MaxAlive is the largest number of backends ever alive at once.
func (r *Runtime) MaxAlive() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxAlive
}

// Overlaps describes every start that happened while another backend was
// alive; empty when the one-model invariant always held.
func (r *Runtime) Overlaps() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.overlaps...)
}

func (r *Runtime) proc(model string) *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.procs[model]
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
