package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

// ErrWedged marks a switch that stopped because the old model's memory
// did not come back: the slot is wedged and nothing was started.
var ErrWedged = errors.New("slot wedged")

// errStopFailed marks a switch that could not stop what ran: the target
// is not at fault (no quarantine) and nothing was started.
var errStopFailed = errors.New("could not stop the running model")

// errNotLeader marks a step refused because the lock could not be
// confirmed (lost, or Consul out of reach): nobody is at fault, and the
// term ends; the next leader reconciles and serves the queue.
var errNotLeader = errors.New("leadership not confirmed")

// switchModel runs one switch off the loop goroutine: stop everything that
// runs (the drained active model and any stray one), wait until it is
// gone, wait until its memory is back, start the target, wait until it is
// healthy and a canary completion answers. With adopt the target is
// already running (a new leader took it over): only the health and canary
// checks run. Every mutating step first checks that the lock is held.
//
// ctx is the term's context; sctx, canceled when the load is abandoned,
// bounds the waits. With to nil the switch only stops (an unload).
func (l *leader) switchModel(ctx, sctx context.Context, from string, to *config.Model, rec jobstore.SwitchRecord, adopt bool) {
	rt := l.o.opts.Runtime
	cfg := l.o.opts.Config
	ocfg := cfg.Orchestrator
	now := l.o.opts.Now
	begin := now()
	phase := func(p jobstore.Phase) { l.report(ctx, switchProgress{kind: progressPhase, phase: p}) }
	finish := func(b Backend, err error) {
		rec.Total = rec.Preflight + rec.Drain + now().Sub(begin)
		if err != nil {
			rec.Error = err.Error()
		}
		l.report(ctx, switchProgress{kind: progressDone, backend: b, err: err, record: rec})
	}

	if !adopt {
		// The stop runs under the term's context: an abandoned load
		// still waits until the old model is gone.
		direct, err := l.stopAll(ctx, from)
		// Waiting for the gateways' direct requests is part of the drain.
		rec.Drain += direct
		if err != nil {
			finish(Backend{}, fmt.Errorf("%w: %w", errStopFailed, err))
			return
		}
		rec.Stop = now().Sub(begin) - direct
		if to == nil {
			finish(Backend{}, nil)
			return
		}

		if mw, ok := rt.(MemoryWaiter); ok {
			phase(jobstore.PhaseWaitingMemory)
			memBegin := now()
			mctx, cancel := context.WithTimeout(sctx, cfg.Nomad.MemoryTimeout)
			err := mw.WaitMemory(mctx, to)
			cancel()
			rec.Memory = now().Sub(memBegin)
			if err != nil && sctx.Err() != nil && ctx.Err() == nil {
				finish(Backend{}, context.Cause(sctx))
				return
			}
			if err != nil {
				finish(Backend{}, fmt.Errorf("%w: memory for %s did not come back within memory_timeout %s: %v; "+
					"check what still holds memory on the node (a leftover container, the page cache: `sync; echo 1 > /proc/sys/vm/drop_caches`), then send a request to retry",
					ErrWedged, to.Name, cfg.Nomad.MemoryTimeout, err))
				return
			}
		}
	}

	// Start and wait healthy, bounded by switch_timeout.
	phase(jobstore.PhaseStarting)
	startBegin := now()
	startCtx, cancelStart := context.WithTimeout(sctx, ocfg.SwitchTimeout)
	defer cancelStart()
	b, err := l.startAndWait(startCtx, to, adopt)
	rec.Start = now().Sub(startBegin)
	if err == nil && ocfg.Canary {
		phase(jobstore.PhaseCanary)
		canaryBegin := now()
		cctx, cancel := context.WithTimeout(startCtx, ocfg.CanaryTimeout)
		err = l.canary(cctx, b, to)
		cancel()
		rec.Canary = now().Sub(canaryBegin)
	}
	if err != nil {
		if cause := context.Cause(sctx); sctx.Err() != nil && ctx.Err() == nil {
			err = cause // abandoned: not the model's fault
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && startCtx.Err() != nil {
			err = fmt.Errorf("%s did not become ready within switch_timeout %s: %w", to.Name, ocfg.SwitchTimeout, err)
		}
		if ctx.Err() == nil {
			// Free what the failed start holds, so the box is never left
			// with a half-loaded model.
			err = errors.Join(err, l.stopOne(ctx, to.Name))
		}
		finish(Backend{}, err)
		return
	}
	finish(b, nil)
}

// stopAll stops the drained model and every other model the runtime runs,
// and waits until all are gone, bounded by stop_timeout. First the direct
// route closes and its requests finish; it returns how long that took.
func (l *leader) stopAll(ctx context.Context, from string) (time.Duration, error) {
	direct, err := l.closeDirect(ctx)
	if err != nil {
		return direct, err
	}
	rt := l.o.opts.Runtime
	ocfg := l.o.opts.Config.Orchestrator
	stopCtx, cancel := context.WithTimeout(ctx, ocfg.StopTimeout)
	defer cancel()
	running, err := rt.Running(stopCtx)
	if err != nil {
		return direct, fmt.Errorf("list running models: %w", err)
	}
	if from != "" && !slices.Contains(running, from) {
		running = append(running, from)
	}
	for _, m := range running {
		if err := l.held.Check(stopCtx); err != nil {
			return direct, fmt.Errorf("%w before stopping %s: %w", errNotLeader, m, err)
		}
		l.log.Info("stopping model", "model", m)
		if err := rt.Stop(stopCtx, m); err != nil {
			return direct, fmt.Errorf("stop %s: %w", m, err)
		}
	}
	for _, m := range running {
		if err := rt.WaitStopped(stopCtx, m); err != nil {
			return direct, fmt.Errorf("wait for %s to stop (stop_timeout %s): %w", m, ocfg.StopTimeout, err)
		}
	}
	return direct, nil
}

// stopOne stops a model whose start failed and waits until it is gone.
func (l *leader) stopOne(ctx context.Context, model string) error {
	// An adopted model may still have direct requests of the term before.
	if _, err := l.closeDirect(ctx); err != nil {
		return err
	}
	rt := l.o.opts.Runtime
	sctx, cancel := context.WithTimeout(ctx, l.o.opts.Config.Orchestrator.StopTimeout)
	defer cancel()
	if err := l.held.Check(sctx); err != nil {
		return fmt.Errorf("%w before stopping the failed model: %w", errNotLeader, err)
	}
	if err := rt.Stop(sctx, model); err != nil {
		return fmt.Errorf("stop failed model: %w", err)
	}
	if err := rt.WaitStopped(sctx, model); err != nil {
		return fmt.Errorf("wait for failed model to stop: %w", err)
	}
	return nil
}

func (l *leader) startAndWait(ctx context.Context, m *config.Model, adopt bool) (Backend, error) {
	if !adopt {
		if err := l.held.Check(ctx); err != nil {
			return Backend{}, fmt.Errorf("%w before starting %s: %w", errNotLeader, m.Name, err)
		}
		l.log.Info("starting model", "model", m.Name)
		if err := l.o.opts.Runtime.Start(ctx, m); err != nil {
			return Backend{}, fmt.Errorf("start %s: %w", m.Name, err)
		}
	}
	b, err := l.o.opts.Runtime.WaitHealthy(ctx, m)
	if err != nil {
		return Backend{}, fmt.Errorf("wait for %s to be healthy: %w", m.Name, err)
	}
	return b, nil
}

// canary sends one tiny completion: vLLM's /health can be green while
// decoding is stuck, so a model serves only once it has answered.
func (l *leader) canary(ctx context.Context, b Backend, m *config.Model) error {
	body, _ := json.Marshal(map[string]any{"model": m.ServedName, "prompt": "ping", "max_tokens": 1, "temperature": 0})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL+"/v1/completions", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.o.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("canary completion to %s got no answer: %w", m.Name, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("canary completion to %s: read answer: %w", m.Name, err)
	}
	var parsed struct {
		Choices []json.RawMessage `json:"choices"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(out, &parsed) != nil || len(parsed.Choices) == 0 {
		return fmt.Errorf("canary completion to %s answered %d: %s", m.Name, resp.StatusCode, truncate(out, 300))
	}
	return nil
}

// modelFailedError is what the jobs waiting for a model that cannot start
// are failed with.
func modelFailedError(model, code string, err error) *openai.Error {
	return openai.Errorf(http.StatusServiceUnavailable, openai.TypeUnavailable, code, "model",
		"model %s failed to start: %v", model, err)
}

// recoverOrphans settles the jobs an earlier leadership term was running
// when it ended (their executor is gone): a job of which nothing reached
// the client goes back to its place in the queue; the others fail with a
// reason, since their client saw part of an answer.
func (l *leader) recoverOrphans(ctx context.Context) error {
	store := l.o.opts.Store
	ids, err := store.Orphans(ctx, l.gen)
	if err != nil {
		return err
	}
	for _, id := range ids {
		r, err := store.RecoverOrphan(ctx, id, l.gen, false)
		if err != nil {
			return err
		}
		switch r {
		case jobstore.Requeued:
			l.log.Info("requeued a job orphaned by an earlier leader", "job_id", id)
		case jobstore.Sent, jobstore.Exhausted:
			if done, err := store.StreamComplete(ctx, id); err == nil && done {
				// The leader died between relaying [DONE] and recording
				// the outcome: the client has the whole answer.
				if _, err := store.Finish(ctx, id, jobstore.Outcome{Status: jobstore.StatusSucceeded,
					ResultStatus: http.StatusOK, ResultType: "text/event-stream"}); err != nil {
					return err
				}
				l.log.Info("settled a stream the earlier leader had fully relayed", "job_id", id)
				continue
			}
			msg := "the orchestrator serving this request stopped after part of the answer was sent; retry the request"
			if r == jobstore.Exhausted {
				msg = "the orchestrator stopped while serving this request several times; it was not retried again"
			}
			if _, err := store.Finish(ctx, id, jobstore.Outcome{Status: jobstore.StatusFailed,
				Error: openai.Errorf(http.StatusServiceUnavailable, openai.TypeServer, "orchestrator_restarted", "", "%s", msg)}); err != nil {
				return err
			}
			l.log.Warn("failed a job orphaned by an earlier leader", "job_id", id, "reason", r)
		}
	}
	return nil
}

// reconcile makes the runtime hold at most one model when a term begins:
// one running model of the current configuration is adopted (a restarted
// orchestrator must not cost a multi-minute reload); every other model
// is stopped, and the adoption waits until they are gone.
func (l *leader) reconcile(ctx context.Context) error {
	rt := l.o.opts.Runtime
	cfg := l.o.opts.Config
	running, err := rt.Running(ctx)
	if err != nil {
		return fmt.Errorf("list running models: %w", err)
	}
	if len(running) == 0 {
		return nil
	}
	keep := l.pickAdoptee(ctx, running)
	var stop []string
	for _, m := range running {
		if m != keep {
			stop = append(stop, m)
		}
	}
	if len(stop) > 0 {
		l.log.Warn("stopping models left running by an earlier leader", "models", stop, "adopting", keep)
		if _, err := l.closeDirect(ctx); err != nil {
			return err
		}
		stopCtx, cancel := context.WithTimeout(ctx, cfg.Orchestrator.StopTimeout)
		defer cancel()
		for _, m := range stop {
			if err := l.held.Check(stopCtx); err != nil {
				return err
			}
			if err := rt.Stop(stopCtx, m); err != nil {
				return fmt.Errorf("stop %s: %w", m, err)
			}
		}
		for _, m := range stop {
			if err := rt.WaitStopped(stopCtx, m); err != nil {
				return fmt.Errorf("wait for %s to stop: %w", m, err)
			}
		}
	}
	if keep == "" {
		return nil
	}
	l.log.Info("adopting running model", "model", keep)
	l.switching, l.target = true, keep
	l.state.Target = keep
	l.state.Phase = jobstore.PhaseStarting
	rec := jobstore.SwitchRecord{To: keep, Reason: "adopting the model an earlier leader left running",
		StartedAt: l.o.opts.Now(), Generation: l.gen, Adopted: true}
	l.state.LastSwitch = &rec
	m := cfg.Model(keep)
	sctx, cancel := context.WithCancelCause(ctx)
	l.switchCancel = cancel
	l.wg.Go(func() {
		defer cancel(nil)
		l.switchModel(ctx, sctx, "", m, rec, true)
	})
	return nil
}

// pickAdoptee chooses which running model to keep: one of the current
// configuration, preferring one that is healthy right now, then the
// configuration order. "" means stop them all.
func (l *leader) pickAdoptee(ctx context.Context, running []string) string {
	cfg := l.o.opts.Config
	var candidates []*config.Model
	for _, name := range cfg.ModelNames() {
		if !slices.Contains(running, name) {
			continue
		}
		m := cfg.Model(name)
		if ac, ok := l.o.opts.Runtime.(AdoptionChecker); ok {
			adoptable, err := ac.Adoptable(ctx, m)
			if err != nil {
				l.log.Warn("cannot tell whether a running model is adoptable; stopping it", "model", name, "error", err)
				continue
			}
			if !adoptable {
				l.log.Info("running model was started from another configuration; stopping it", "model", name)
				continue
			}
		}
		candidates = append(candidates, m)
	}
	if len(candidates) <= 1 {
		if len(candidates) == 1 {
			return candidates[0].Name
		}
		return ""
	}
	for _, m := range candidates {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := l.o.opts.Runtime.WaitHealthy(pctx, m)
		cancel()
		if err == nil {
			return m.Name
		}
	}
	return candidates[0].Name
}

// closeDirect closes the direct route and waits until no gateway holds a
// lease on it, so nothing is in flight to a backend about to be stopped
// (invariant 2). Gateways finish their direct requests and let go; past
// the drain deadline their leases run out on their own, and a gateway
// cancels its requests before its lease does. It returns how long it
// waited.
func (l *leader) closeDirect(ctx context.Context) (time.Duration, error) {
	store := l.o.opts.Store
	slot := l.state.Slot
	begin := time.Now()
	var events chan struct{}
	wctx, stop := context.WithCancel(ctx)
	defer stop() // ends the subscription, if any
	for {
		n, sinceRestart, err := store.SetAdmission(ctx, slot, l.gen, jobstore.Admission{}, l.o.opts.Config.Orchestrator.DrainTimeout)
		if errors.Is(err, jobstore.ErrStaleLeader) {
			return time.Since(begin), fmt.Errorf("%w: close the direct route: %w", errNotLeader, err)
		}
		if err != nil {
			return time.Since(begin), fmt.Errorf("close the direct route: %w", err)
		}
		if forgotten := jobstore.LeaseTTL + jobstore.LeaseRenew; n == 0 && sinceRestart < forgotten {
			// Redis restarted (or lost the admission) a moment ago: a
			// lease renewed just before may be missing from the count,
			// while its gateway still counts on it. Wait it out.
			l.log.Info("Redis restarted recently; waiting out the direct route's leases it may have lost", "wait", forgotten-sinceRestart)
			select {
			case <-ctx.Done():
				return time.Since(begin), ctx.Err()
			case <-time.After(forgotten - sinceRestart):
			}
			continue
		}
		if n == 0 {
			return time.Since(begin), nil
		}
		if events == nil {
			// Subscribe, then look again (its first event is the
			// resync): a release in between is not missed.
			l.log.Info("waiting for gateways to finish their direct requests", "leases", n)
			events = make(chan struct{}, 1)
			sub := store.SubscribeReleases(wctx, slot)
			go func() {
				for {
					if _, err := sub.Receive(wctx); err != nil {
						return
					}
					select {
					case events <- struct{}{}:
					default: // a look is already due
					}
				}
			}()
			select {
			case <-events:
			case <-ctx.Done():
				return time.Since(begin), ctx.Err()
			}
			continue
		}
		_, longest, err := store.LiveLeases(ctx, slot)
		if err != nil {
			return time.Since(begin), err
		}
		wait := time.NewTimer(longest + 10*time.Millisecond)
		select {
		case <-ctx.Done():
			wait.Stop()
			return time.Since(begin), ctx.Err()
		case <-wait.C:
		case <-events:
			wait.Stop()
		}
	}
}
