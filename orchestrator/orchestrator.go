package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
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
}

// Orchestrator competes for the lock and, while it holds it, leads.
type Orchestrator struct {
	opts Options
	log  hclog.Logger
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
	return &Orchestrator{opts: opts, log: opts.Log.Named("orchestrator")}, nil
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
		cancels:  make(chan string, 256),
		finished: make(chan jobDone, 256),
		progress: make(chan switchProgress, 16),
		running:  make(map[string]*runningJob),
		state: jobstore.SlotState{
			Slot: cfg.Orchestrator.Slot, Leader: o.opts.ID, Generation: gen, Phase: jobstore.PhaseIdle,
		},
	}
	l.log.Info("leading", "slot", cfg.Orchestrator.Slot, "id", o.opts.ID)
	return l.run(ctx)
}

// jobDone is an executor's report that a job left the backend.
type jobDone struct {
	id    string
	model string
}

// runningJob is a job the executor is serving.
type runningJob struct {
	model  string
	cancel context.CancelCauseFunc
}

// switchProgress is the switcher's report of its phase, or its end.
type switchProgress struct {
	phase   jobstore.Phase
	done    bool
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
	cancels  chan string
	finished chan jobDone
	progress chan switchProgress
	wg       sync.WaitGroup

	state       jobstore.SlotState
	backend     Backend
	running     map[string]*runningJob
	switching   bool
	target      string
	drainTimer  *time.Timer
	drainStart  time.Time
	unavailable map[string]bool
	decisions   []string
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
	for {
		if err := l.step(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.log.Error("scheduling step failed", "error", err)
		}
		var drain <-chan time.Time
		if l.drainTimer != nil {
			drain = l.drainTimer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.wake:
		case id := <-l.cancels:
			if rj, ok := l.running[id]; ok {
				l.log.Info("aborting job on request", "job_id", id, "model", rj.model)
				rj.cancel(errCanceled)
			}
		case d := <-l.finished:
			delete(l.running, d.id)
			l.state.InFlight = len(l.running)
		case p := <-l.progress:
			l.onProgress(ctx, p)
		case <-drain:
			l.log.Warn("drain timeout: aborting in-flight requests",
				"model", l.state.Active, "in_flight", len(l.running), "drain_timeout", cfg.Orchestrator.DrainTimeout)
			for _, rj := range l.running {
				rj.cancel(errDrainTimeout)
			}
			l.drainTimer = nil
		case <-heartbeat.C:
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
		switch {
		case ev.Resync, ev.Kind == 'w':
			select {
			case l.wake <- struct{}{}:
			default: // a wake-up is already pending
			}
		case ev.Kind == 'x':
			select {
			case l.cancels <- ev.JobID:
			case <-ctx.Done():
				return
			}
		}
	}
}

// step asks the scheduler what to do and does it, until it says wait.
func (l *leader) step(ctx context.Context) error {
	cfg := l.o.opts.Config
	if l.switching && l.state.Phase == jobstore.PhaseDraining && len(l.running) == 0 {
		l.startSwitch(ctx)
		return nil
	}
	for range 64 { // bounded: each dispatch consumes queue or capacity
		queues, err := l.o.opts.Store.Snapshot(ctx, cfg.ModelNames())
		if err != nil {
			return err
		}
		in := l.input(queues)
		d := scheduler.Decide(in, l.o.opts.Now())
		switch d.Kind {
		case scheduler.Dispatch:
			if err := l.dispatch(ctx, d.Model, d.N); err != nil {
				return err
			}
		case scheduler.Switch:
			l.decide(ctx, d.Model, d.Reason)
			return nil
		default:
			return nil
		}
	}
	return nil
}

// decide begins a switch to model: stop admitting to the active model and
// drain it; the switch itself starts when nothing is in flight.
func (l *leader) decide(ctx context.Context, model, reason string) {
	msg := fmt.Sprintf("%s switching to %s: %s", l.o.opts.Now().Format(time.RFC3339), model, reason)
	l.decisions = append(l.decisions, msg)
	if len(l.decisions) > 20 {
		l.decisions = l.decisions[len(l.decisions)-20:]
	}
	l.log.Info("switch decided", "from_model", l.state.Active, "to_model", model, "reason", reason)
	l.switching, l.target = true, model
	l.drainStart = l.o.opts.Now()
	l.state.Target = model
	l.state.Phase = jobstore.PhaseDraining
	l.state.LastSwitch = &jobstore.SwitchRecord{From: l.state.Active, To: model, Reason: reason,
		StartedAt: l.drainStart, Generation: l.gen}
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
	m := l.o.opts.Config.Model(l.target)
	rec := *l.state.LastSwitch
	rec.Drain = l.o.opts.Now().Sub(l.drainStart)
	from := l.state.Active
	l.state.Active, l.backend = "", Backend{}
	l.state.Backend = ""
	l.state.Phase = jobstore.PhaseStopping
	l.publish(ctx)
	l.wg.Go(func() { l.switchModel(ctx, from, m, rec) })
}

// onProgress applies the switcher's reports.
func (l *leader) onProgress(ctx context.Context, p switchProgress) {
	if !p.done {
		l.state.Phase = p.phase
		l.publish(ctx)
		return
	}
	l.switching = false
	l.state.Target = ""
	rec := p.record
	l.state.LastSwitch = &rec
	if p.err != nil {
		l.state.Phase = jobstore.PhaseFailed
		l.state.LastError = p.err.Error()
		l.log.Error("switch failed", "to_model", rec.To, "error", p.err)
		if l.unavailable == nil {
			l.unavailable = map[string]bool{}
		}
		l.unavailable[rec.To] = true
		n, err := l.o.opts.Store.FailQueued(ctx, rec.To, modelFailedError(rec.To, p.err))
		if err != nil {
			l.log.Error("failing jobs of a model that did not start", "model", rec.To, "error", err)
		} else if n > 0 {
			l.log.Warn("failed waiting jobs", "model", rec.To, "jobs", n)
		}
	} else {
		delete(l.unavailable, rec.To)
		l.state.Phase = jobstore.PhaseReady
		l.state.Active, l.backend = rec.To, p.backend
		l.state.Backend = p.backend.URL
		l.state.LastError = ""
		l.log.Info("model active", "model", rec.To, "backend", p.backend.URL,
			"drain", rec.Drain, "stop", rec.Stop, "start", rec.Start, "total", rec.Total)
	}
	l.publish(ctx)
}

// beat refreshes the leader's liveness key and the published state.
func (l *leader) beat(ctx context.Context) {
	ttl := 3 * l.o.opts.HeartbeatInterval
	if err := l.o.opts.Store.Heartbeat(ctx, l.state.Slot, l.o.opts.ID, ttl); err != nil && ctx.Err() == nil {
		l.log.Warn("heartbeat failed", "error", err)
	}
	l.publish(ctx)
}

func (l *leader) publish(ctx context.Context) {
	l.state.InFlight = len(l.running)
	l.state.Decisions = l.decisions
	l.state.UpdatedAt = l.o.opts.Now()
	if err := l.o.opts.Store.PutState(ctx, &l.state); err != nil && ctx.Err() == nil {
		l.log.Warn("publishing state failed", "error", err)
	}
}

// shutdown aborts in-flight jobs when the term ends; their executors
// record why, so no job is left running.
func (l *leader) shutdown() {
	for _, rj := range l.running {
		rj.cancel(errLeaderStopping)
	}
}
