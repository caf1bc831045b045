// Package nomadrt is the production Runtime: each model is a Nomad job
// rendered from its HCL2 jobspec by Nomad itself (/v1/jobs/parse, the
// model's settings passed as variables, never spliced into HCL text),
// registered with check-and-set, watched with blocking queries until its
// allocation runs and its Consul health check passes, and deregistered and
// watched until every allocation is terminal.
//
// It is the only package that talks to Nomad. Failures are explained in
// Nomad's own words (task events, placement metrics) with a next step.
package nomadrt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
)

var (
	_ orchestrator.Runtime         = (*Runtime)(nil)
	_ orchestrator.Preflighter     = (*Runtime)(nil)
	_ orchestrator.MemoryWaiter    = (*Runtime)(nil)
	_ orchestrator.AdoptionChecker = (*Runtime)(nil)
	_ orchestrator.Describer       = (*Runtime)(nil)
)

// Meta keys stamped on every job the switchboard registers.
const (
	MetaManagedBy  = "managed-by"
	ManagedByValue = "llm-switchboard"
	MetaModel      = "switchboard_model"
	MetaConfigHash = "switchboard_config_hash"
	MetaSlot       = "switchboard_slot"
)

// HealthWatcher reports when Nomad's Consul registration of an allocation's
// service passes its checks.
type HealthWatcher interface {
	// WaitPassing blocks until an instance of service whose id starts
	// with idPrefix has all checks passing, and returns its host:port.
	WaitPassing(ctx context.Context, service, idPrefix string) (string, error)
}

// Options are the runtime's dependencies and settings.
type Options struct {
	Client *api.Client
	Health HealthWatcher
	Nomad  config.Nomad
	Slot   string
	Log    hclog.Logger
	// HTTPClient probes backends' /v1/models; default a short-timeout client.
	HTTPClient *http.Client
	// ReadFile reads jobspecs; default os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// MemoryPoll is the interval between two host-stats reads of the
	// memory barrier (Nomad offers no blocking query on them); default 1s.
	MemoryPoll time.Duration
	// BlockingWait is the wait of each blocking query; default 5m.
	BlockingWait time.Duration
}

// Runtime runs models as Nomad jobs.
type Runtime struct {
	opts Options
	log  hclog.Logger

	mu     sync.Mutex
	models map[string]*modelState
}

// modelState is what the runtime remembers of a model's job.
type modelState struct {
	jobID   string
	evalID  string // of the last registration; "" after adoption
	service string // Consul service name of the job
	hash    string
	nodeID  string // node of the last allocation
}

// New checks opts and returns a runtime.
func New(opts Options) (*Runtime, error) {
	if opts.Client == nil {
		return nil, errors.New("nomadrt: no Nomad client")
	}
	if opts.Health == nil {
		return nil, errors.New("nomadrt: no health watcher")
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	}
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	if opts.MemoryPoll <= 0 {
		opts.MemoryPoll = time.Second
	}
	if opts.BlockingWait <= 0 {
		opts.BlockingWait = 5 * time.Minute
	}
	return &Runtime{opts: opts, log: opts.Log.Named("nomadrt"), models: make(map[string]*modelState)}, nil
}

// NewClient connects to the configured Nomad. Token and TLS come from the
// usual NOMAD_* environment variables, as for the nomad CLI.
func NewClient(cfg config.Nomad) (*api.Client, error) {
	nc := api.DefaultConfig()
	nc.Address, nc.Namespace, nc.Region = cfg.Address, cfg.Namespace, cfg.Region
	c, err := api.NewClient(nc)
	if err != nil {
		return nil, fmt.Errorf("nomad client for %s: %w", cfg.Address, err)
	}
	return c, nil
}

// JobID is the Nomad job id of a model.
func (r *Runtime) JobID(model string) string {
	var b strings.Builder
	b.WriteString(r.opts.Nomad.JobPrefix)
	for _, c := range model {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

func (r *Runtime) query(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{Namespace: r.opts.Nomad.Namespace, Region: r.opts.Nomad.Region}).WithContext(ctx)
}

func (r *Runtime) write(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{Namespace: r.opts.Nomad.Namespace, Region: r.opts.Nomad.Region}).WithContext(ctx)
}

func (r *Runtime) state(model string) *modelState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.models[model]
	if !ok {
		st = &modelState{jobID: r.JobID(model)}
		r.models[model] = st
	}
	return st
}

// variables renders the model's settings as the text of a variables file,
// each value a literal built by hclwrite: nothing from the model config is
// ever parsed as HCL.
func (r *Runtime) variables(m *config.Model) []byte {
	f := hclwrite.NewEmptyFile()
	b := f.Body()
	b.SetAttributeValue("job_name", cty.StringVal(r.JobID(m.Name)))
	b.SetAttributeValue("model", cty.StringVal(m.Name))
	b.SetAttributeValue("served_name", cty.StringVal(m.ServedName))
	if m.Backend.Image != "" {
		b.SetAttributeValue("image", cty.StringVal(m.Backend.Image))
	}
	b.SetAttributeValue("port", cty.NumberIntVal(int64(m.Backend.Port)))
	switch m.Source.Type {
	case config.SourceHuggingFaceRepo:
		b.SetAttributeValue("hf_repo", cty.StringVal(m.Source.Value))
	case config.SourceLocalPath:
		b.SetAttributeValue("source_path", cty.StringVal(m.Source.Value))
	}
	args := make([]cty.Value, len(m.Backend.VLLMArgs))
	for i, a := range m.Backend.VLLMArgs {
		args[i] = cty.StringVal(a)
	}
	if len(args) == 0 {
		b.SetAttributeValue("vllm_args", cty.ListValEmpty(cty.String))
	} else {
		b.SetAttributeValue("vllm_args", cty.ListVal(args))
	}
	if m.Quantization != "" {
		b.SetAttributeValue("quantization", cty.StringVal(m.Quantization))
	}
	for _, k := range slices.Sorted(maps.Keys(m.Variables)) {
		b.SetAttributeValue(k, cty.StringVal(m.Variables[k]))
	}
	return f.Bytes()
}

// Render has Nomad parse the model's jobspec with its variables and stamps
// the result: Meta (managed-by, model, config hash, slot), namespace and
// region. It returns the job and the config hash.
func (r *Runtime) Render(ctx context.Context, m *config.Model) (*api.Job, string, error) {
	src, err := r.opts.ReadFile(m.Jobspec)
	if err != nil {
		return nil, "", fmt.Errorf("read jobspec of %s: %w", m.Name, err)
	}
	vars := r.variables(m)
	hash := configHash(src, vars)
	job, err := r.opts.Client.Jobs().ParseHCLOpts(&api.JobsParseRequest{
		JobHCL: string(src), Variables: string(vars), Canonicalize: true,
	})
	if err != nil {
		return nil, "", fmt.Errorf("nomad could not parse the jobspec %s of %s: %s; fix the jobspec or the model's settings in models.hcl",
			m.Jobspec, m.Name, nomadMessage(err))
	}
	want := r.JobID(m.Name)
	if job.ID == nil || *job.ID != want {
		got := "<none>"
		if job.ID != nil {
			got = *job.ID
		}
		return nil, "", fmt.Errorf("jobspec %s of %s gives job id %q, want %q: set id = var.job_name in the job block",
			m.Jobspec, m.Name, got, want)
	}
	if job.Meta == nil {
		job.Meta = map[string]string{}
	}
	job.Meta[MetaManagedBy] = ManagedByValue
	job.Meta[MetaModel] = m.Name
	job.Meta[MetaConfigHash] = hash
	job.Meta[MetaSlot] = r.opts.Slot
	ns, region := r.opts.Nomad.Namespace, r.opts.Nomad.Region
	job.Namespace, job.Region = &ns, &region
	return job, hash, nil
}

// configHash identifies what a job was rendered from: the jobspec and the
// variables.
func configHash(src, vars []byte) string {
	h := sha256.New()
	h.Write(src)
	h.Write([]byte{0})
	h.Write(vars)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// serviceOf finds the name of the job's first service.
func serviceOf(job *api.Job) string {
	for _, tg := range job.TaskGroups {
		for _, s := range tg.Services {
			return s.Name
		}
		for _, t := range tg.Tasks {
			for _, s := range t.Services {
				return s.Name
			}
		}
	}
	return ""
}

// Start implements orchestrator.Runtime: render and register with
// check-and-set on the job modify index.
func (r *Runtime) Start(ctx context.Context, m *config.Model) error {
	job, hash, err := r.Render(ctx, m)
	if err != nil {
		return err
	}
	service := serviceOf(job)
	if service == "" {
		return fmt.Errorf("jobspec %s of %s registers no service: the switchboard needs its Consul health check", m.Jobspec, m.Name)
	}
	jobs := r.opts.Client.Jobs()
	var index uint64
	existing, _, err := jobs.Info(*job.ID, r.query(ctx))
	switch {
	case err == nil && existing.JobModifyIndex != nil:
		index = *existing.JobModifyIndex
	case err != nil && !isNotFound(err):
		return fmt.Errorf("read job %s: %w", *job.ID, err)
	}
	resp, _, err := jobs.RegisterOpts(job, &api.RegisterOptions{EnforceIndex: true, ModifyIndex: index}, r.write(ctx))
	if err != nil {
		return fmt.Errorf("register job %s (check-and-set at index %d): %s", *job.ID, index, nomadMessage(err))
	}
	if resp.Warnings != "" {
		r.log.Warn("nomad warnings on register", "job_id", *job.ID, "warnings", resp.Warnings)
	}
	r.log.Info("job registered", "model", m.Name, "job_id", *job.ID, "eval_id", resp.EvalID, "job_modify_index", resp.JobModifyIndex)
	st := r.state(m.Name)
	r.mu.Lock()
	st.evalID, st.service, st.hash = resp.EvalID, service, hash
	r.mu.Unlock()
	return nil
}

// Stop implements orchestrator.Runtime: deregister (purge only when
// configured, so `nomad job status` keeps the history).
func (r *Runtime) Stop(ctx context.Context, model string) error {
	id := r.JobID(model)
	evalID, _, err := r.opts.Client.Jobs().Deregister(id, r.opts.Nomad.PurgeOnStop, r.write(ctx))
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("deregister job %s: %s", id, nomadMessage(err))
	}
	r.log.Info("job deregistered", "model", model, "job_id", id, "eval_id", evalID, "purge", r.opts.Nomad.PurgeOnStop)
	return nil
}

// WaitStopped implements orchestrator.Runtime: it blocks (Nomad blocking
// queries) until every allocation of the model's job is terminal.
func (r *Runtime) WaitStopped(ctx context.Context, model string) error {
	id := r.JobID(model)
	var last []*api.AllocationListStub
	err := r.watchAllocs(ctx, id, true, func(allocs []*api.AllocationListStub) (bool, error) {
		last = allocs
		for _, a := range allocs {
			if !terminal(a.ClientStatus) {
				return false, nil
			}
			r.rememberNode(model, a.NodeID)
		}
		return true, nil
	})
	if err != nil {
		var live []string
		for _, a := range last {
			if !terminal(a.ClientStatus) {
				live = append(live, fmt.Sprintf("%s (%s, desired %s)", a.ID[:8], a.ClientStatus, a.DesiredStatus))
			}
		}
		return fmt.Errorf("job %s still has live allocations %v: %w; see `nomad alloc status` and the task's kill_timeout",
			id, live, err)
	}
	return nil
}

func (r *Runtime) rememberNode(model, node string) {
	if node == "" {
		return
	}
	st := r.state(model)
	r.mu.Lock()
	st.nodeID = node
	r.mu.Unlock()
}

func terminal(clientStatus string) bool {
	switch clientStatus {
	case api.AllocClientStatusComplete, api.AllocClientStatusFailed, api.AllocClientStatusLost:
		return true
	}
	return false
}

// Running implements orchestrator.Runtime: the models whose managed jobs
// (of this slot) are not dead or still have a live allocation.
func (r *Runtime) Running(ctx context.Context) ([]string, error) {
	q := r.query(ctx)
	q.Prefix = r.opts.Nomad.JobPrefix
	q.Params = map[string]string{"meta": "true"}
	stubs, _, err := r.opts.Client.Jobs().List(q)
	if err != nil {
		return nil, fmt.Errorf("list nomad jobs: %s", nomadMessage(err))
	}
	var models []string
	for _, s := range stubs {
		if s.Meta[MetaManagedBy] != ManagedByValue || s.Meta[MetaSlot] != r.opts.Slot || s.Meta[MetaModel] == "" {
			continue
		}
		alive := s.Status != "dead"
		if !alive {
			// Nomad marks a stopped job dead as soon as its allocations
			// are told to stop, while the task may still be inside its
			// kill_timeout holding memory: ask the allocations.
			if alive, err = r.hasLiveAllocs(ctx, s.ID); err != nil {
				return nil, err
			}
		}
		if alive {
			models = append(models, s.Meta[MetaModel])
		}
	}
	return models, nil
}

// hasLiveAllocs reports whether any allocation of the job is not terminal
// on its client.
func (r *Runtime) hasLiveAllocs(ctx context.Context, jobID string) (bool, error) {
	allocs, _, err := r.opts.Client.Jobs().Allocations(jobID, true, r.query(ctx))
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("list allocations of %s: %s", jobID, nomadMessage(err))
	}
	for _, a := range allocs {
		if !terminal(a.ClientStatus) {
			return true, nil
		}
	}
	return false, nil
}

// Adoptable implements orchestrator.AdoptionChecker: a running job may be
// adopted when it was rendered from the current jobspec and settings and
// is not already being stopped.
func (r *Runtime) Adoptable(ctx context.Context, m *config.Model) (bool, error) {
	src, err := r.opts.ReadFile(m.Jobspec)
	if err != nil {
		return false, fmt.Errorf("read jobspec of %s: %w", m.Name, err)
	}
	want := configHash(src, r.variables(m))
	job, _, err := r.opts.Client.Jobs().Info(r.JobID(m.Name), r.query(ctx))
	if err != nil {
		return false, fmt.Errorf("read job of %s: %s", m.Name, nomadMessage(err))
	}
	if job.Stop != nil && *job.Stop {
		return false, nil // deregistered, still shutting down
	}
	return job.Meta[MetaConfigHash] == want, nil
}

// Describe implements orchestrator.Describer.
func (r *Runtime) Describe(ctx context.Context, model string) (map[string]string, error) {
	id := r.JobID(model)
	job, _, err := r.opts.Client.Jobs().Info(id, r.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("read job %s: %s", id, nomadMessage(err))
	}
	out := map[string]string{"nomad_job_id": id}
	if job.Status != nil {
		out["nomad_job_status"] = *job.Status
	}
	if job.Version != nil {
		out["nomad_job_version"] = strconv.FormatUint(*job.Version, 10)
	}
	allocs, _, err := r.opts.Client.Jobs().Allocations(id, false, r.query(ctx))
	if err == nil {
		for _, a := range allocs {
			if a.DesiredStatus == api.AllocDesiredStatusRun {
				out["nomad_alloc_id"], out["nomad_alloc_status"], out["nomad_node"] = a.ID, a.ClientStatus, a.NodeName
			}
		}
	}
	return out, nil
}

// WaitHealthy implements orchestrator.Runtime: follow the evaluation (a
// placement failure ends the wait with Nomad's reason), wait for a running
// allocation, then for its Consul check to pass and for the backend's
// /v1/models to list the served name — failing early, with the task's
// events, if the allocation dies meanwhile.
func (r *Runtime) WaitHealthy(ctx context.Context, m *config.Model) (orchestrator.Backend, error) {
	st := r.state(m.Name)
	r.mu.Lock()
	evalID, service := st.evalID, st.service
	r.mu.Unlock()
	if service == "" {
		// Adopted: learn the service from the job itself.
		job, _, err := r.opts.Client.Jobs().Info(st.jobID, r.query(ctx))
		if err != nil {
			return orchestrator.Backend{}, fmt.Errorf("read job %s: %s", st.jobID, nomadMessage(err))
		}
		service = serviceOf(job)
		r.mu.Lock()
		st.service = service
		r.mu.Unlock()
	}
	if evalID != "" {
		if err := r.followEval(ctx, evalID); err != nil {
			return orchestrator.Backend{}, err
		}
	}
	alloc, err := r.waitRunning(ctx, st.jobID)
	if err != nil {
		return orchestrator.Backend{}, err
	}
	r.rememberNode(m.Name, alloc.NodeID)

	// From here the allocation may still die while the model loads:
	// watch it and end the wait with its events if it does.
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		err := r.watchAllocs(hctx, st.jobID, false, func(allocs []*api.AllocationListStub) (bool, error) {
			for _, a := range allocs {
				if a.ID == alloc.ID && terminal(a.ClientStatus) {
					return true, r.explainAlloc(hctx, a.ID, fmt.Sprintf("allocation %s of %s %s while the model loaded", a.ID[:8], st.jobID, a.ClientStatus))
				}
			}
			return false, nil
		})
		if err != nil && hctx.Err() == nil {
			cancel(err)
		}
	}()
	defer func() { cancel(nil); <-watchDone }()

	addr, err := r.opts.Health.WaitPassing(hctx, service, "_nomad-task-"+alloc.ID)
	if err != nil {
		if cause := context.Cause(hctx); cause != nil && ctx.Err() == nil && !errors.Is(cause, context.Canceled) {
			return orchestrator.Backend{}, cause
		}
		return orchestrator.Backend{}, fmt.Errorf("consul check of service %q (allocation %s) never passed: %w", service, alloc.ID[:8], err)
	}
	url := "http://" + addr
	if err := r.waitModels(hctx, url, m.ServedName); err != nil {
		if cause := context.Cause(hctx); cause != nil && ctx.Err() == nil && !errors.Is(cause, context.Canceled) {
			return orchestrator.Backend{}, cause
		}
		return orchestrator.Backend{}, err
	}
	// The evaluation is followed: a later adoption must not follow it
	// again (Nomad garbage-collects evaluations).
	r.mu.Lock()
	st.evalID = ""
	r.mu.Unlock()
	return orchestrator.Backend{Model: m.Name, URL: url}, nil
}

// followEval waits for the registration's evaluation; a job Nomad cannot
// place comes back as an error in Nomad's words. An evaluation Nomad
// already garbage-collected has nothing left to tell.
func (r *Runtime) followEval(ctx context.Context, evalID string) error {
	var index uint64
	backoff := time.Duration(0)
	for {
		q := r.query(ctx)
		q.WaitIndex, q.WaitTime = index, r.opts.BlockingWait
		ev, meta, err := r.opts.Client.Evaluations().Info(evalID, q)
		switch {
		case err != nil && isNotFound(err):
			return nil
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("follow evaluation %s: %w", evalID, context.Cause(ctx))
		case err != nil:
			// Transient (a leader election, a restart): retry.
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			r.log.Warn("evaluation query failed; retrying", "eval_id", evalID, "error", nomadMessage(err), "backoff", backoff)
			index = 0
			select {
			case <-ctx.Done():
				return fmt.Errorf("follow evaluation %s: %w", evalID, context.Cause(ctx))
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if len(ev.FailedTGAllocs) > 0 {
			return &PlacementError{JobID: ev.JobID, Failures: ev.FailedTGAllocs}
		}
		switch ev.Status {
		case "complete":
			return nil
		case "failed", "canceled":
			return fmt.Errorf("evaluation %s of job %s %s: %s", evalID[:8], ev.JobID, ev.Status, ev.StatusDescription)
		}
		index = nextIndex(index, meta.LastIndex)
	}
}

// nextIndex applies the blocking-query rules: keep a higher index; reset
// to 0 when the index went backwards (a restore or leader change); never
// 0 after an answer, or the next query would not block.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	}
	return got
}

// watchAllocs runs blocking queries on a job's allocations until check
// says done or fails. A missing job counts as no allocations.
func (r *Runtime) watchAllocs(ctx context.Context, jobID string, all bool, check func([]*api.AllocationListStub) (bool, error)) error {
	var index uint64
	backoff := time.Duration(0)
	for {
		q := r.query(ctx)
		q.WaitIndex, q.WaitTime = index, r.opts.BlockingWait
		allocs, meta, err := r.opts.Client.Jobs().Allocations(jobID, all, q)
		if err != nil && isNotFound(err) {
			allocs, err = nil, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			r.log.Warn("allocation query failed; retrying", "job_id", jobID, "error", err, "backoff", backoff)
			index = 0
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		done, cerr := check(allocs)
		if cerr != nil || done {
			return cerr
		}
		if meta == nil {
			// A missing job gives no index to block on; its creation
			// will show as a change of the jobs index.
			index = 0
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(r.opts.MemoryPoll):
			}
			continue
		}
		index = nextIndex(index, meta.LastIndex)
	}
}

// waitRunning waits until the job has a running allocation that Nomad
// wants running; an allocation that fails first ends the wait with its
// events.
func (r *Runtime) waitRunning(ctx context.Context, jobID string) (*api.AllocationListStub, error) {
	var found *api.AllocationListStub
	err := r.watchAllocs(ctx, jobID, false, func(allocs []*api.AllocationListStub) (bool, error) {
		var newest *api.AllocationListStub
		for _, a := range allocs {
			if a.DesiredStatus != api.AllocDesiredStatusRun {
				continue
			}
			if newest == nil || a.CreateIndex > newest.CreateIndex {
				newest = a
			}
		}
		if newest == nil {
			return false, nil
		}
		switch {
		case newest.ClientStatus == api.AllocClientStatusRunning:
			found = newest
			return true, nil
		case terminal(newest.ClientStatus):
			return true, r.explainAlloc(ctx, newest.ID, fmt.Sprintf("allocation %s of %s %s before it ran", newest.ID[:8], jobID, newest.ClientStatus))
		}
		return false, nil
	})
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Cause(ctx)) {
			return nil, fmt.Errorf("waiting for job %s to run: %w", jobID, err)
		}
		return nil, err
	}
	return found, nil
}

// waitModels probes /v1/models until it lists name.
func (r *Runtime) waitModels(ctx context.Context, url, name string) error {
	delay := 50 * time.Millisecond
	var lastErr error
	for {
		err := r.probeModels(ctx, url, name)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("backend at %s healthy but /v1/models never listed %q (last: %v): %w", url, name, lastErr, context.Cause(ctx))
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

func (r *Runtime) probeModels(ctx context.Context, url, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/models", nil)
	if err != nil {
		return err
	}
	resp, err := r.opts.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/v1/models answered %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil {
		return fmt.Errorf("/v1/models: %w", err)
	}
	var ids []string
	for _, d := range list.Data {
		if d.ID == name {
			return nil
		}
		ids = append(ids, d.ID)
	}
	return fmt.Errorf("/v1/models lists %q, not %q", ids, name)
}

// isNotFound reports a 404 from Nomad.
func isNotFound(err error) bool {
	var ure api.UnexpectedResponseError
	if errors.As(err, &ure) {
		return ure.StatusCode() == http.StatusNotFound
	}
	return false
}

// nomadMessage renders a Nomad error with its status and body text.
func nomadMessage(err error) string {
	var ure api.UnexpectedResponseError
	if errors.As(err, &ure) {
		body := strings.TrimSpace(ure.Body())
		if body == "" {
			body = ure.StatusText()
		}
		return fmt.Sprintf("%s (HTTP %d)", body, ure.StatusCode())
	}
	return err.Error()
}
