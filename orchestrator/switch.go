package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/openai"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/scheduler"
)

// input assembles the scheduler's view of the slot.
func (l *leader) input(queues map[string]jobstore.QueueInfo) scheduler.Input {
	cfg := l.o.opts.Config
	in := scheduler.Input{
		Switching:    l.switching,
		InFlight:     len(l.running),
		Queues:       make(map[string]scheduler.Queue, len(queues)),
		Order:        cfg.ModelNames(),
		MaxWait:      cfg.Scheduler.MaxWait,
		DefaultModel: cfg.Scheduler.DefaultModel,
		Unavailable:  l.unavailable,
	}
	if l.state.Phase == jobstore.PhaseReady {
		in.Active = l.state.Active
		in.Capacity = cfg.Model(l.state.Active).MaxConcurrency
	}
	for m, q := range queues {
		in.Queues[m] = scheduler.Queue{Pending: q.Pending, HeadSince: q.HeadSince}
		// Work that arrived after a failed start (whose waiters were
		// failed) earns the model another try; only an idle default
		// model stays unavailable, so it is not reloaded in a loop.
		if q.Pending > 0 {
			delete(l.unavailable, m)
		}
	}
	return in
}

// switchModel runs one switch off the loop goroutine: stop everything that
// runs (the drained active model and any stray one), wait until it is
// gone, start the target and wait until it is healthy. Every mutating step
// first checks that the lock is still held.
func (l *leader) switchModel(ctx context.Context, from string, to *config.Model, rec jobstore.SwitchRecord) {
	rt := l.o.opts.Runtime
	ocfg := l.o.opts.Config.Orchestrator
	now := l.o.opts.Now
	begin := now()
	report := func(p switchProgress) {
		select {
		case l.progress <- p:
		case <-ctx.Done():
		}
	}
	finish := func(b Backend, err error) {
		rec.Total = rec.Drain + now().Sub(begin)
		if err != nil {
			rec.Error = err.Error()
		}
		report(switchProgress{done: true, backend: b, err: err, record: rec})
	}

	// Stop: the drained model and anything else the runtime still runs.
	stopCtx, cancelStop := context.WithTimeout(ctx, ocfg.StopTimeout)
	defer cancelStop()
	running, err := rt.Running(stopCtx)
	if err != nil {
		finish(Backend{}, fmt.Errorf("list running models: %w", err))
		return
	}
	if from != "" && !slices.Contains(running, from) {
		running = append(running, from)
	}
	for _, m := range running {
		if err := l.held.Check(stopCtx); err != nil {
			finish(Backend{}, fmt.Errorf("lost leadership before stopping %s: %w", m, err))
			return
		}
		l.log.Info("stopping model", "model", m)
		if err := rt.Stop(stopCtx, m); err != nil {
			finish(Backend{}, fmt.Errorf("stop %s: %w", m, err))
			return
		}
	}
	for _, m := range running {
		if err := rt.WaitStopped(stopCtx, m); err != nil {
			finish(Backend{}, fmt.Errorf("wait for %s to stop (stop_timeout %s): %w", m, ocfg.StopTimeout, err))
			return
		}
	}
	rec.Stop = now().Sub(begin)

	// Start and wait healthy, bounded by switch_timeout.
	report(switchProgress{phase: jobstore.PhaseStarting})
	startBegin := now()
	startCtx, cancelStart := context.WithTimeout(ctx, ocfg.SwitchTimeout)
	defer cancelStart()
	if err := l.held.Check(startCtx); err != nil {
		finish(Backend{}, fmt.Errorf("lost leadership before starting %s: %w", to.Name, err))
		return
	}
	l.log.Info("starting model", "model", to.Name)
	b, err := l.startAndWait(startCtx, to)
	rec.Start = now().Sub(startBegin)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("%s did not become healthy within switch_timeout %s: %w", to.Name, ocfg.SwitchTimeout, err)
		}
		// Free what the failed start holds, so the box is never left
		// with a half-loaded model.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), ocfg.StopTimeout)
		defer cancel()
		if serr := rt.Stop(cleanup, to.Name); serr != nil {
			err = errors.Join(err, fmt.Errorf("stop failed model: %w", serr))
		} else if werr := rt.WaitStopped(cleanup, to.Name); werr != nil {
			err = errors.Join(err, fmt.Errorf("wait for failed model to stop: %w", werr))
		}
		finish(Backend{}, err)
		return
	}
	finish(b, nil)
}

func (l *leader) startAndWait(ctx context.Context, m *config.Model) (Backend, error) {
	if err := l.o.opts.Runtime.Start(ctx, m); err != nil {
		return Backend{}, fmt.Errorf("start %s: %w", m.Name, err)
	}
	b, err := l.o.opts.Runtime.WaitHealthy(ctx, m)
	if err != nil {
		return Backend{}, fmt.Errorf("wait for %s to be healthy: %w", m.Name, err)
	}
	return b, nil
}

// modelFailedError is what the jobs waiting for a model that could not
// start are failed with.
func modelFailedError(model string, err error) *openai.Error {
	return openai.Errorf(http.StatusServiceUnavailable, openai.TypeUnavailable, "model_failed_to_start", "model",
		"model %s failed to start: %v", model, err)
}

// recoverOrphans finishes the jobs an earlier leadership term was running
// when it ended: their executor is gone, so nobody else will.
func (l *leader) recoverOrphans(ctx context.Context) error {
	store := l.o.opts.Store
	ids, err := store.Orphans(ctx, l.gen)
	if err != nil {
		return err
	}
	for _, id := range ids {
		_, err := store.Finish(ctx, id, jobstore.Outcome{
			Status: jobstore.StatusFailed,
			Error: openai.Errorf(http.StatusServiceUnavailable, openai.TypeServer, "orchestrator_restarted", "",
				"the orchestrator serving this request stopped before it finished; retry the request"),
		})
		if err != nil {
			return err
		}
		l.log.Warn("failed job orphaned by an earlier leader", "job_id", id)
	}
	return nil
}

// reconcile makes the runtime match what this leader believes: nothing is
// loaded. Any model still running from an earlier term is stopped.
// (Adopting a healthy running model instead is the Nomad runtime's job.)
func (l *leader) reconcile(ctx context.Context) error {
	rt := l.o.opts.Runtime
	running, err := rt.Running(ctx)
	if err != nil {
		return fmt.Errorf("list running models: %w", err)
	}
	if len(running) == 0 {
		return nil
	}
	stopCtx, cancel := context.WithTimeout(ctx, l.o.opts.Config.Orchestrator.StopTimeout)
	defer cancel()
	for _, m := range running {
		if err := l.held.Check(stopCtx); err != nil {
			return err
		}
		l.log.Info("stopping model left running by an earlier leader", "model", m)
		if err := rt.Stop(stopCtx, m); err != nil {
			return fmt.Errorf("stop %s: %w", m, err)
		}
		if err := rt.WaitStopped(stopCtx, m); err != nil {
			return fmt.Errorf("wait for %s to stop: %w", m, err)
		}
	}
	return nil
}
