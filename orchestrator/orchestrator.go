package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/openai"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/scheduler"
)

// Options are the orchestrator's dependencies.
type Options struct {
	Config  *config.Config
	Store   *jobstore.Store
	Runtime Runtime
	Lock    Lock
	Log     hclog.Logger
	// ID names this orchestrator instance in /status and logs; default
	// hostname:pid.
	ID string
	// HTTPClient talks to backends; default a client with pooled
	// connections and no overall timeout (inference_timeout bounds jobs).
	HTTPClient *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// HeartbeatInterval is how often the leader refreshes its liveness
	// key and state; default 2s.
	HeartbeatInterval time.Duration
	// StateSink, when set, also receives every published slot state
	// (Consul KV, so the Consul UI shows it).
	StateSink StateSink
	// Registerer receives the orchestrator's metrics; default a private
	// registry, so tests and embedders never share the global one.
	Registerer prometheus.Registerer
}

// StateSink receives the slot state the leader publishes.
type StateSink interface {
	PublishState(ctx context.Context, st *jobstore.SlotState) error
}

// Orchestrator competes for the lock and, while it holds it, leads.
type Orchestrator struct {
	opts    Options
	log     hclog.Logger
	metrics *metrics
}

// New checks opts and returns an Orchestrator.
func New(opts Options) (*Orchestrator, error) {
	switch {
	case opts.Config == nil:
		return nil, errors.New("orchestrator: no config")
	case opts.Store == nil:
		return nil, errors.New("orchestrator: no job store")
	case opts.Runtime == nil:
		return nil, errors.New("orchestrator: no runtime")
	case opts.Lock == nil:
		return nil, errors.New("orchestrator: no lock")
	case opts.Log == nil:
		return nil, errors.New("orchestrator: no logger")
	}
	if opts.ID == "" {
		host, _ := os.Hostname()
		opts.ID = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:               nil, // backends are local: never through a proxy
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = 2 * time.Second
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Orchestrator{opts: opts, log: opts.Log.Named("orchestrator"), metrics: m}, nil
}

// Run waits for the lock and leads while holding it; when the lock is
// lost it goes back to waiting. It returns when ctx ends.
func (o *Orchestrator) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		o.log.Info("waiting for leadership", "id", o.opts.ID)
		err := o.opts.Lock.RunWhileHeld(ctx, o.lead)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			o.log.Error("leadership ended", "error", err)
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		} else {
			backoff = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// lead is one leadership term.
func (o *Orchestrator) lead(ctx context.Context, held Held) error {
	cfg := o.opts.Config
	gen, err := o.opts.Store.NextGeneration(ctx, cfg.Orchestrator.Slot)
	if err != nil {
		return err
	}
	l := &leader{
		o:        o,
		held:     held,
		gen:      gen,
		log:      o.log.With("generation", gen),
		wake:     make(chan struct{}, 1),
		cancels:  make(chan cancelRequest, 256),
		finished: make(chan jobDone, 256),
		progress: make(chan switchProgress, 16),
		lost:     make(chan string, 1),
		running:  make(map[string]*runningJob),
		state: jobstore.SlotState{
			Slot: cfg.Orchestrator.Slot, Leader: o.opts.ID, LeaderSince: o.opts.Now(), Generation: gen,
			Phase: jobstore.PhaseIdle,
		},
	}
	// What earlier terms learned about switch and job times carries over.
	if prev, err := o.opts.Store.State(ctx, cfg.Orchestrator.Slot); err == nil && prev != nil {
		l.state.SwitchAvg, l.state.JobAvg, l.state.RecentSwitches = prev.SwitchAvg, prev.JobAvg, prev.RecentSwitches
	}
	l.log.Info("leading", "slot", cfg.Orchestrator.Slot, "id", o.opts.ID)
	o.metrics.leader.Set(1)
	defer func() { o.metrics.termEnded(&l.clock, o.opts.Now()) }()
	return l.run(ctx)
}

// jobDone is an executor's report that a job left the backend.
type jobDone struct {
	id    string
	model string
	took  time.Duration
}

// runningJob is a job the executor is serving.
type runningJob struct {
	model  string
	cancel context.CancelCauseFunc
}

// cancelRequest asks to abort a running job; hard also restarts its
// backend (a hung generation).
type cancelRequest struct {
	id   string
	hard bool
}

// preflightTimeout bounds a preflight (a jobspec parse and a plan).
const preflightTimeout = 2 * time.Minute

// progressKind says what a switchProgress reports.
type progressKind int

const (
	progressPhase     progressKind = iota // the switcher entered phase
	progressPreflight                     // the preflight ended (err says how)
	progressDone                          // the switch ended (err says how)
)

// switchProgress is the switcher's report to the loop.
type switchProgress struct {
	kind    progressKind
	phase   jobstore.Phase
	backend Backend
	err     error
	record  jobstore.SwitchRecord
}

// leader is the state of one leadership term. Only its run goroutine
// touches the fields below wg; the rest is immutable or channels.
type leader struct {
	o    *Orchestrator
	held Held
	gen  int64
	log  hclog.Logger

	wake     chan struct{}
	cancels  chan cancelRequest
	finished chan jobDone
	progress chan switchProgress
	lost     chan string // URL of a backend an executor could not reach
	wg       sync.WaitGroup

	state   jobstore.SlotState
	backend Backend
	running map[string]*runningJob
	// switching is set from the decision to switch until the switch ends;
	// preflighting while the target is checked and the active model
	// still serves.
	switching    bool
	preflighting bool
	target       string
	drainTimer   *time.Timer
	drainStart   time.Time
	decisions    []string
	// switchCancel aborts the switch goroutine (an abandoned load).
	switchCancel context.CancelCauseFunc
	// sweep fires when the oldest queued job reaches queue_timeout;
	// recheck when the policy's answer may change without an event.
	sweep, recheck *time.Timer

	// Policy memory (see policy.go).
	admin        jobstore.AdminState
	adminDirty   atomic.Bool
	resynced     atomic.Bool
	activeSince  time.Time
	lastActivity time.Time
	turnEnded    map[string]time.Time
	quarantine   map[string]time.Time
	failures     map[string]int
	lastFailure  map[string]error
	lastGood     string
	lastWaitWhy  string
	// backlog is set when the last look left queued work for lack of
	// capacity (or could not tell): a finished job then calls for a step.
	backlog bool
	// fullStep asks for a full look at every queue: set by wake-ups for
	// another model than the active one, resyncs and every non-job event.
	fullStep atomic.Bool
	// activeName mirrors state.Active for the listener goroutine.
	activeName atomic.Pointer[string]

	// clock splits the term's wall time into switching and serving.
	clock slotClock
	// resign, once set, ends the term with this error.
	resign error
}

// Causes with which the leader aborts running jobs.
var (
	errCanceled       = errors.New("canceled by request")
	errDrainTimeout   = errors.New("drain timeout before a model switch")
	errLeaderStopping = errors.New("orchestrator stopping")
	errInferenceLimit = errors.New("inference timeout")
)

func (l *leader) run(ctx context.Context) error {
	cfg := l.o.opts.Config
	store := l.o.opts.Store
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer l.wg.Wait()

	// Subscribe before reading anything, so no wake-up is missed.
	sub := store.SubscribeOrchestrator(ctx)
	defer sub.Close()
	l.wg.Go(func() { l.listen(ctx, sub) })

	if err := l.recoverOrphans(ctx); err != nil {
		return err
	}
	if err := l.reconcile(ctx); err != nil {
		return err
	}

	heartbeat := time.NewTicker(l.o.opts.HeartbeatInterval)
	defer heartbeat.Stop()
	l.beat(ctx)

	defer l.shutdown()
	needStep := true
	for {
		if needStep {
			if err := l.step(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				l.log.Error("scheduling step failed", "error", err)
			}
		}
		needStep = true
		var drain, sweep, recheck <-chan time.Time
		if l.drainTimer != nil {
			drain = l.drainTimer.C
		}
		if l.sweep != nil {
			sweep = l.sweep.C
		}
		if l.recheck != nil {
			recheck = l.recheck.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-recheck:
			l.recheck = nil
			l.fullStep.Store(true)
		case <-sweep:
			l.sweep = nil
			l.fullStep.Store(true)
			l.expireQueued(ctx)
		case <-l.wake:
		case c := <-l.cancels:
			if rj, ok := l.running[c.id]; ok {
				l.log.Info("aborting job on request", "job_id", c.id, "model", rj.model, "hard", c.hard)
				rj.cancel(errCanceled)
				if c.hard && rj.model == l.state.Active && !l.switching {
					l.hardRestart(ctx, c.id)
				}
			}
		case d := <-l.finished:
			l.lastActivity = l.o.opts.Now()
			// A finish frees capacity: worth a look only if work was left
			// waiting for it, or a drain waits for it. New work wakes
			// the loop by itself.
			needStep = l.backlog || l.switching
			delete(l.running, d.id)
			l.state.InFlight = len(l.running)
			l.state.JobAvg = learn(l.state.JobAvg, d.model, d.took)
		case p := <-l.progress:
			l.fullStep.Store(true)
			l.onProgress(ctx, p)
			if l.resign != nil {
				return l.resign
			}
		case url := <-l.lost:
			l.fullStep.Store(true)
			l.backendLost(ctx, url)
		case <-drain:
			l.fullStep.Store(true)
			l.log.Warn("drain timeout: aborting in-flight requests",
				"model", l.state.Active, "in_flight", len(l.running), "drain_timeout", cfg.Orchestrator.DrainTimeout)
			for _, rj := range l.running {
				rj.cancel(errDrainTimeout)
			}
			l.drainTimer = nil
		case <-heartbeat.C:
			l.fullStep.Store(true)
			l.beat(ctx)
		}
	}
}

// listen turns Redis notifications into loop events.
func (l *leader) listen(ctx context.Context, sub *jobstore.Subscriber) {
	for {
		ev, err := sub.Receive(ctx)
		if err != nil {
			return
		}
		if ev.Resync || (ev.Kind == 'w' && ev.Model == jobstore.AdminWake) {
			l.adminDirty.Store(true)
		}
		if ev.Resync {
			l.resynced.Store(true) // cancels may have been missed meanwhile
		}
		if ev.Resync || (ev.Kind == 'w' && (l.activeName.Load() == nil || ev.Model != *l.activeName.Load())) {
			l.fullStep.Store(true)
		}
		switch {
		case ev.Resync, ev.Kind == 'w':
			select {
			case l.wake <- struct{}{}:
			default: // a wake-up is already pending
			}
		case ev.Kind == 'x':
			select {
			case l.cancels <- cancelRequest{id: ev.JobID, hard: ev.Hard}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// step asks the scheduler what to do and does it, until it says wait.
func (l *leader) step(ctx context.Context) error {
	cfg := l.o.opts.Config
	if l.adminDirty.Swap(false) {
		a, err := l.o.opts.Store.Admin(ctx, cfg.Orchestrator.Slot)
		if err != nil {
			l.adminDirty.Store(true)
			return err
		}
		l.admin = a
	}
	if l.resynced.Swap(false) {
		for id, rj := range l.running {
			if yes, err := l.o.opts.Store.CancelRequested(ctx, id); err == nil && yes {
				rj.cancel(errCanceled)
			}
		}
	}
	if l.switching && !l.preflighting && l.state.Phase == jobstore.PhaseDraining && len(l.running) == 0 {
		l.startSwitch(ctx)
		return nil
	}
	if l.admin.Unload && !l.switching {
		l.consumeAdmin(ctx, "unload", "1")
		if l.state.Active != "" {
			l.unload(ctx, "admin unload")
			return nil
		}
	}
	if l.fastDispatch(ctx) {
		return nil
	}
	for range 64 { // bounded: each dispatch consumes queue or capacity
		queues, err := l.o.opts.Store.Snapshot(ctx, cfg.ModelNames())
		if err != nil {
			return err
		}
		for m, q := range queues {
			l.o.metrics.queueDepth.WithLabelValues(m).Set(float64(q.Pending))
		}
		l.armSweep(queues)
		l.failQuarantined(ctx, queues)
		l.noteDirectUse(ctx)
		in := l.input(queues)
		if l.preflighting {
			// The active model serves on while its successor is checked.
			in.Switching, in.Loading = false, ""
		}
		now := l.o.opts.Now()
		d := scheduler.Decide(in, now)
		l.backlog = true
		if d.Kind == scheduler.Wait {
			pending := 0
			for _, q := range queues {
				pending += q.Pending
			}
			l.backlog = pending > 0
		}
		l.armRecheck(scheduler.NextCheck(in, now))
		if in.AdminLoad != "" && !in.Switching && !in.Maintenance && !l.preflighting {
			// One-shot: Decide weighed it just now, acting on it or
			// refusing it with a reason; otherwise it stays pending.
			l.consumeAdmin(ctx, "load", in.AdminLoad)
		}
		switch d.Kind {
		case scheduler.Dispatch:
			if _, err := l.dispatch(ctx, d.Model, d.N); err != nil {
				return err
			}
			l.noteWait(d.Reason)
			if d.N >= queues[d.Model].Pending {
				// The queue is drained: no need to look again until the
				// next event (saves a Redis round trip per job).
				l.backlog = false
				for m, q := range queues {
					if m != d.Model && q.Pending > 0 {
						l.backlog = true
					}
				}
				return nil
			}
		case scheduler.Switch:
			if !l.preflighting {
				l.decide(ctx, d.Model, d.Reason)
			}
			return nil
		case scheduler.Unload:
			l.unload(ctx, d.Reason)
			return nil
		case scheduler.Abandon:
			l.abandon(ctx, d)
			return nil
		default:
			l.noteWait(d.Reason)
			return nil
		}
	}
	return nil
}

// hardRestart restarts the active backend for a hard cancel, within the
// limits every switch obeys: not in maintenance, not against the switch
// budget. The job itself is aborted either way.
func (l *leader) hardRestart(ctx context.Context, jobID string) {
	sc := l.o.opts.Config.Scheduler
	recent := 0
	for _, t := range l.state.RecentSwitches {
		if l.o.opts.Now().Sub(t) < time.Hour {
			recent++
		}
	}
	switch {
	case l.admin.Maintenance:
		l.noteWait(fmt.Sprintf("hard cancel of job %s: no backend restart during maintenance", jobID))
	case sc.MaxSwitchesPerHour > 0 && recent >= sc.MaxSwitchesPerHour:
		l.noteWait(fmt.Sprintf("hard cancel of job %s: no backend restart, switch budget exhausted (%d in the last hour)", jobID, recent))
	default:
		l.decide(ctx, l.state.Active, fmt.Sprintf("hard cancel of job %s: restarting the backend", jobID))
	}
}

// fastDispatch serves new work for the ready active model without a full
// look at every queue: when the only news since the last step is work for
// the active model, the policy's answer is "dispatch it" (time-driven
// rules come with their own timer, other models' work with its own
// wake-up, admin changes with theirs). It reports whether it handled the
// step.
func (l *leader) fastDispatch(ctx context.Context) bool {
	if l.fullStep.Swap(false) || l.switching || l.preflighting || l.backend.URL == "" || l.admin.Maintenance ||
		(l.admin.Pinned != "" && l.admin.Pinned != l.state.Active) || l.admin.Load != "" {
		return false
	}
	free := l.o.opts.Config.Model(l.state.Active).MaxConcurrency - len(l.running)
	if free <= 0 {
		l.backlog = true
		return true
	}
	n, err := l.dispatch(ctx, l.state.Active, free)
	if err != nil {
		l.fullStep.Store(true)
		return false
	}
	l.noteDispatch(n)
	// A full batch may have left more behind: look again on the next
	// finish. A short one drained the queue.
	l.backlog = n == free
	return true
}

// noteDirectUse counts the gateways' direct requests as activity, for
// the idle-unload rule (they report it with their lease renewals).
func (l *leader) noteDirectUse(ctx context.Context) {
	if l.o.opts.Config.Scheduler.IdleUnloadAfter <= 0 || l.state.Active == "" {
		return
	}
	if used, err := l.o.opts.Store.LastDirectUse(ctx, l.state.Slot); err == nil && used.After(l.lastActivity) {
		l.lastActivity = used
	}
}

// noteDispatch records activity for the idle-unload rule.
func (l *leader) noteDispatch(n int) {
	if n > 0 {
		l.lastActivity = l.o.opts.Now()
	}
}

// armSweep sets the sweep timer for when the oldest queued job reaches
// queue_timeout: nothing stays queued forever, and nothing polls.
func (l *leader) armSweep(queues map[string]jobstore.QueueInfo) {
	var oldest time.Time
	for _, q := range queues {
		if q.Pending > 0 && (oldest.IsZero() || q.HeadSince.Before(oldest)) {
			oldest = q.HeadSince
		}
	}
	if l.sweep != nil {
		l.sweep.Stop()
		l.sweep = nil
	}
	if oldest.IsZero() {
		return
	}
	wait := oldest.Add(l.o.opts.Config.Scheduler.QueueTimeout).Sub(l.o.opts.Now())
	l.sweep = time.NewTimer(max(wait, 0) + time.Millisecond)
}

// expireQueued fails the jobs queued longer than queue_timeout.
func (l *leader) expireQueued(ctx context.Context) {
	qt := l.o.opts.Config.Scheduler.QueueTimeout
	cutoff := l.o.opts.Now().Add(-qt)
	e := openai.Errorf(http.StatusGatewayTimeout, openai.TypeTimeout, "queue_timeout", "",
		"the request waited longer than queue_timeout %s for its model; retry later or raise scheduler.queue_timeout", qt)
	for _, m := range l.o.opts.Config.ModelNames() {
		n, err := l.o.opts.Store.ExpireQueued(ctx, m, cutoff, e)
		if err != nil {
			l.log.Error("expiring queued jobs failed", "model", m, "error", err)
			continue
		}
		if n > 0 {
			l.log.Warn("expired jobs queued past queue_timeout", "model", m, "jobs", n, "queue_timeout", qt)
		}
	}
}

// decide begins a switch to model. With a runtime that can preflight, the
// target is checked first while the active model keeps serving; then the
// active model stops taking work and drains, and the switch itself starts
// when nothing is in flight.
func (l *leader) decide(ctx context.Context, model, reason string) {
	// Every switch is attributed to the key whose request it is for, and
	// counts against that key's switches-per-hour budget.
	owner, err := l.o.opts.Store.HeadOwner(ctx, model)
	if err != nil {
		l.log.Warn("reading who a switch is for failed", "model", model, "error", err)
	}
	if owner != "" {
		reason += fmt.Sprintf(" (for key %s)", owner)
		if err := l.o.opts.Store.RecordSwitch(ctx, owner, l.o.opts.Now()); err != nil {
			l.log.Warn("recording a key's switch failed", "key", owner, "error", err)
		}
	}
	l.remember(fmt.Sprintf("%s switching to %s: %s", l.o.opts.Now().Format(time.RFC3339), model, reason))
	l.lastWaitWhy = ""
	l.log.Info("switch decided", "from_model", l.state.Active, "to_model", model, "reason", reason)
	l.state.RecentSwitches = append(l.state.RecentSwitches, l.o.opts.Now())
	l.switching, l.target = true, model
	l.state.Target = model
	l.state.LastSwitch = &jobstore.SwitchRecord{From: l.state.Active, To: model, Reason: reason,
		StartedAt: l.o.opts.Now(), Generation: l.gen, RequestedBy: owner}

	if pf, ok := l.o.opts.Runtime.(Preflighter); ok {
		l.preflighting = true
		prevPhase := l.state.Phase
		l.state.Phase = jobstore.PhasePreflight
		l.publish(ctx)
		m := l.o.opts.Config.Model(model)
		begin := l.o.opts.Now()
		l.wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, preflightTimeout)
			defer cancel()
			// Whatever runs holds resources the switch frees: the active
			// model, or a stray one a failed stop left behind.
			holding, err := l.o.opts.Runtime.Running(pctx)
			if err == nil {
				err = pf.Preflight(pctx, m, holding)
			}
			rec := jobstore.SwitchRecord{Preflight: l.o.opts.Now().Sub(begin)}
			l.report(ctx, switchProgress{kind: progressPreflight, err: err, record: rec, phase: prevPhase})
		})
		return
	}
	l.drain(ctx)
}

// drain stops admitting work to the active model; the switch starts once
// nothing is in flight (or drain_timeout aborts what is).
func (l *leader) drain(ctx context.Context) {
	l.drainStart = l.o.opts.Now()
	l.state.Phase = jobstore.PhaseDraining
	if len(l.running) > 0 {
		l.drainTimer = time.NewTimer(l.o.opts.Config.Orchestrator.DrainTimeout)
		l.publish(ctx)
		return
	}
	l.startSwitch(ctx)
}

// startSwitch launches the switcher once the active model is drained.
func (l *leader) startSwitch(ctx context.Context) {
	if l.drainTimer != nil {
		l.drainTimer.Stop()
		l.drainTimer = nil
	}
	var m *config.Model
	if l.target != "" {
		m = l.o.opts.Config.Model(l.target)
	}
	rec := *l.state.LastSwitch
	rec.Drain = l.o.opts.Now().Sub(l.drainStart)
	from := l.state.Active
	if from != "" {
		l.turnEnded = setTime(l.turnEnded, from, l.o.opts.Now())
	}
	l.state.Active, l.backend = "", Backend{}
	l.state.Backend = ""
	l.state.Runtime = nil
	l.state.Phase = jobstore.PhaseStopping
	l.publish(ctx)
	sctx, cancel := context.WithCancelCause(ctx)
	l.switchCancel = cancel
	l.wg.Go(func() {
		defer cancel(nil)
		l.switchModel(ctx, sctx, from, m, rec, false)
	})
}

// report hands a switcher event to the loop.
func (l *leader) report(ctx context.Context, p switchProgress) {
	select {
	case l.progress <- p:
	case <-ctx.Done():
	}
}

// onProgress applies the switcher's reports.
func (l *leader) onProgress(ctx context.Context, p switchProgress) {
	switch p.kind {
	case progressPhase:
		l.state.Phase = p.phase
		l.publish(ctx)
		return
	case progressPreflight:
		l.preflighting = false
		l.state.LastSwitch.Preflight = p.record.Preflight
		if p.err == nil {
			l.drain(ctx)
			return
		}
		// A broken target never leaves the box empty: the active model
		// keeps serving and the target's waiters learn why.
		target := l.target
		l.switching, l.target, l.state.Target = false, "", ""
		l.state.Phase = p.phase
		l.state.LastSwitch.Error = p.err.Error()
		l.state.LastError = fmt.Sprintf("preflight of %s failed: %v", target, p.err)
		l.log.Error("preflight failed; keeping the active model", "to_model", target, "active", l.state.Active, "error", p.err)
		l.o.metrics.preflightFailed(target, l.state.LastSwitch.RequestedBy, p.record.Preflight)
		l.failModel(ctx, target, p.err, "model_preflight_failed")
		l.publish(ctx)
		return
	}

	if errors.Is(p.err, errNotLeader) {
		// Not the model's fault, nor the waiters': keep them queued and
		// end the term; the next leader (maybe this process again, once
		// the lock is confirmed) reconciles what runs.
		l.log.Error("leadership not confirmed during a switch; ending the term", "to_model", p.record.To, "error", p.err)
		l.resign = p.err
		return
	}
	l.switching, l.switchCancel = false, nil
	l.state.Target = ""
	rec := p.record
	l.state.LastSwitch = &rec
	l.o.metrics.switchEnded(rec, switchOutcome(rec, p.err))
	now := l.o.opts.Now()
	switch {
	case errors.Is(p.err, errAbandoned):
		l.state.Phase = jobstore.PhaseIdle
		l.log.Info("load abandoned", "model", rec.To)
	case p.err != nil:
		l.state.Phase = jobstore.PhaseFailed
		if errors.Is(p.err, ErrWedged) {
			l.state.Phase = jobstore.PhaseWedged
		}
		l.state.LastError = p.err.Error()
		l.log.Error("switch failed", "to_model", rec.To, "phase", l.state.Phase, "error", p.err)
		switch {
		case rec.To == "":
			// An unload that could not stop: nothing waits for it.
		case errors.Is(p.err, ErrWedged):
			// The slot, not the model, is at fault: no quarantine (each
			// try is bounded by memory_timeout, so there is no storm).
			l.failWaiters(ctx, rec.To, modelFailedError(rec.To, "slot_wedged", p.err))
		case errors.Is(p.err, errStopFailed):
			l.failWaiters(ctx, rec.To, modelFailedError(rec.To, "stop_failed", p.err))
		default:
			l.failModel(ctx, rec.To, p.err, "model_failed_to_start")
		}
	case rec.To == "":
		l.state.Phase = jobstore.PhaseIdle
		l.state.LastError = ""
		l.log.Info("model unloaded", "model", rec.From, "reason", rec.Reason, "stop", rec.Stop)
	default:
		l.release(rec.To)
		l.lastGood, l.activeSince, l.lastActivity = rec.To, now, now
		if !rec.Adopted {
			l.state.SwitchAvg = learn(l.state.SwitchAvg, rec.To, rec.Total)
		}
		l.state.Phase = jobstore.PhaseReady
		l.state.Active, l.backend = rec.To, p.backend
		l.state.Backend = p.backend.URL
		l.state.LastError = ""
		l.describe(ctx)
		l.log.Info("model active", "model", rec.To, "backend", p.backend.URL, "adopted", rec.Adopted,
			"preflight", rec.Preflight, "drain", rec.Drain, "stop", rec.Stop, "memory", rec.Memory,
			"start", rec.Start, "canary", rec.Canary, "total", rec.Total)
	}
	l.publish(ctx)
}

// failModel quarantines model with a growing backoff (no retry storms)
// and fails the jobs waiting for it with err, telling them when to retry.
func (l *leader) failModel(ctx context.Context, model string, err error, code string) {
	sc := l.o.opts.Config.Scheduler
	if l.failures == nil {
		l.failures, l.quarantine, l.lastFailure = map[string]int{}, map[string]time.Time{}, map[string]error{}
	}
	l.failures[model]++
	backoff := sc.QuarantineBase << min(l.failures[model]-1, 16)
	if backoff <= 0 || backoff > sc.QuarantineMax {
		backoff = sc.QuarantineMax
	}
	l.quarantine[model] = l.o.opts.Now().Add(backoff)
	l.lastFailure[model] = err
	l.log.Warn("model quarantined", "model", model, "backoff", backoff, "failures", l.failures[model])
	e := modelFailedError(model, code, err)
	e.RetryAfter = int(backoff.Seconds()) + 1
	l.failWaiters(ctx, model, e)
}

// failWaiters fails the jobs queued for model with e.
func (l *leader) failWaiters(ctx context.Context, model string, e *openai.Error) {
	n, err := l.o.opts.Store.FailQueued(ctx, model, e)
	if err != nil {
		l.log.Error("failing jobs of a model that cannot start", "model", model, "error", err)
	} else if n > 0 {
		l.log.Warn("failed waiting jobs", "model", model, "jobs", n)
	}
}

// describe asks the runtime about the active model's backend.
func (l *leader) describe(ctx context.Context) {
	d, ok := l.o.opts.Runtime.(Describer)
	if !ok || l.state.Active == "" {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := d.Describe(dctx, l.state.Active)
	if err != nil {
		l.log.Warn("describing the active model failed", "model", l.state.Active, "error", err)
		return
	}
	l.state.Runtime = info
}

// beat refreshes the leader's liveness key and the published state.
func (l *leader) beat(ctx context.Context) {
	ttl := 3 * l.o.opts.HeartbeatInterval
	if err := l.o.opts.Store.Heartbeat(ctx, l.state.Slot, l.o.opts.ID, ttl); err != nil && ctx.Err() == nil {
		l.log.Warn("heartbeat failed", "error", err)
	}
	if l.state.Phase == jobstore.PhaseReady {
		l.describe(ctx)
		l.noteDirectUse(ctx)
	}
	l.settleStray(ctx)
	l.publish(ctx)
}

// strayGrace is how long a job may be running under this term without an
// executor before it is settled (a claim whose reply was lost, an outcome
// that could not be recorded while Redis was away).
const strayGrace = 30 * time.Second

// settleStray requeues (or fails) jobs running under this term that no
// executor serves: nothing stays running forever.
func (l *leader) settleStray(ctx context.Context) {
	store := l.o.opts.Store
	running, err := store.Running(ctx)
	if err != nil {
		return
	}
	now := l.o.opts.Now()
	for _, j := range running {
		if j.Generation != l.gen || l.running[j.ID] != nil || now.Sub(j.Started) < strayGrace {
			continue
		}
		r, err := store.RecoverOrphan(ctx, j.ID, l.gen, true)
		if err != nil {
			continue
		}
		if done, err := store.StreamComplete(ctx, j.ID); (r == jobstore.Sent || r == jobstore.Exhausted) && err == nil && done {
			_, _ = store.Finish(ctx, j.ID, jobstore.Outcome{Status: jobstore.StatusSucceeded, Generation: l.gen,
				ResultStatus: http.StatusOK, ResultType: "text/event-stream"})
		} else if r == jobstore.Sent || r == jobstore.Exhausted {
			_, _ = store.Finish(ctx, j.ID, jobstore.Outcome{Status: jobstore.StatusFailed, Generation: l.gen,
				Error: openai.Errorf(http.StatusServiceUnavailable, openai.TypeServer, "executor_lost", "",
					"the request lost its executor after part of the answer was sent; retry the request")})
		}
		l.log.Warn("settled a running job without executor", "job_id", j.ID, "outcome", r)
	}
}

// backendLost handles an executor's report that the active backend
// cannot be reached: it crashed or moved. The slot is marked failed and
// the scheduler reloads the model for its waiting work.
func (l *leader) backendLost(ctx context.Context, url string) {
	if l.switching || l.backend.URL != url {
		return // already handled, or a previous backend
	}
	model := l.state.Active
	l.log.Error("active backend unreachable; reloading it for its waiting work", "model", model, "backend", url)
	l.remember(fmt.Sprintf("%s backend of %s at %s unreachable", l.o.opts.Now().Format(time.RFC3339), model, url))
	l.state.Active, l.backend, l.state.Backend = "", Backend{}, ""
	l.state.Phase = jobstore.PhaseFailed
	l.state.LastError = fmt.Sprintf("backend of %s at %s became unreachable", model, url)
	l.lastGood = model
	l.publish(ctx)
}

func (l *leader) publish(ctx context.Context) {
	active := l.state.Active
	l.activeName.Store(&active)
	l.state.InFlight = len(l.running)
	l.state.Decisions = l.decisions
	l.state.UpdatedAt = l.o.opts.Now()
	l.o.metrics.observeState(&l.clock, &l.state, l.o.opts.Config.ModelNames(), l.state.UpdatedAt)
	if err := l.o.opts.Store.PutState(ctx, &l.state); err != nil && ctx.Err() == nil {
		l.log.Warn("publishing state failed", "error", err)
	}
	// The direct route is open exactly while the active model serves:
	// ready, or ready and checking its successor. Every stop closes it
	// again first (closeDirect), so a failed write here is caught there.
	serving := (l.state.Phase == jobstore.PhaseReady || l.state.Phase == jobstore.PhasePreflight) &&
		l.state.Active != "" && l.backend.URL != ""
	adm := jobstore.Admission{Open: serving, Model: l.state.Active, Backend: l.backend.URL}
	if _, _, err := l.o.opts.Store.SetAdmission(ctx, l.state.Slot, l.gen, adm, l.o.opts.Config.Orchestrator.DrainTimeout); err != nil && ctx.Err() == nil {
		l.log.Warn("publishing the direct route's admission failed", "error", err)
	}
	if sink := l.o.opts.StateSink; sink != nil {
		if err := sink.PublishState(ctx, &l.state); err != nil && ctx.Err() == nil {
			l.log.Warn("publishing state to the state sink failed", "error", err)
		}
	}
}

// shutdown aborts in-flight jobs when the term ends; their executors
// record why, so no job is left running.
func (l *leader) shutdown() {
	for _, rj := range l.running {
		rj.cancel(errLeaderStopping)
	}
}

// learn folds a new sample into a model's moving average.
func learn(avg map[string]time.Duration, model string, sample time.Duration) map[string]time.Duration {
	if avg == nil {
		avg = map[string]time.Duration{}
	}
	if old, ok := avg[model]; ok {
		avg[model] = (7*old + 3*sample) / 10
	} else {
		avg[model] = sample
	}
	return avg
}
