package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/scheduler"
)

// errAbandoned cancels a load every waiter of which went away.
var errAbandoned = errors.New("load abandoned: nobody waits for it any more")

// input assembles the scheduler's view of the slot.
func (l *leader) input(queues map[string]jobstore.QueueInfo) scheduler.Input {
	cfg := l.o.opts.Config
	sc := cfg.Scheduler
	now := l.o.opts.Now()
	in := scheduler.Input{
		Switching:          l.switching,
		InFlight:           len(l.running),
		Queues:             make(map[string]scheduler.Queue, len(queues)),
		Order:              cfg.ModelNames(),
		MaxWait:            sc.MaxWait,
		DefaultModel:       sc.DefaultModel,
		MinResidency:       sc.MinResidency,
		MaxSwitchesPerHour: sc.MaxSwitchesPerHour,
		IdleUnloadAfter:    sc.IdleUnloadAfter,
		LastActivity:       l.lastActivity,
		Pinned:             l.admin.Pinned,
		Maintenance:        l.admin.Maintenance,
		AdminLoad:          l.admin.Load,
		Quarantined:        l.quarantine,
		LastGood:           l.lastGood,
		TurnEnded:          l.turnEnded,
		MaxConcurrency:     make(map[string]int, len(cfg.Models)),
	}
	// Switches older than an hour no longer count against the budget.
	recent := l.state.RecentSwitches[:0]
	for _, t := range l.state.RecentSwitches {
		if now.Sub(t) < time.Hour {
			recent = append(recent, t)
		}
	}
	l.state.RecentSwitches = recent
	in.RecentSwitches = recent
	if l.backend.URL != "" && l.state.Active != "" {
		in.Active = l.state.Active
		in.Capacity = cfg.Model(l.state.Active).MaxConcurrency
		in.ActiveSince = l.activeSince
	}
	for _, m := range cfg.Models {
		in.MaxConcurrency[m.Name] = m.MaxConcurrency
	}
	for m, q := range queues {
		in.Queues[m] = scheduler.Queue{Pending: q.Pending, HeadSince: q.HeadSince}
	}
	if l.switching && l.target != "" {
		in.Loading = l.target
		in.LoadWaiters = queues[l.target].Pending
	}
	return in
}

// armRecheck sets the timer for when the policy's answer may change
// without any event (a head passing max_wait, residency ending, ...).
func (l *leader) armRecheck(at time.Time) {
	if l.recheck != nil {
		l.recheck.Stop()
		l.recheck = nil
	}
	if at.IsZero() {
		return
	}
	l.recheck = time.NewTimer(max(at.Sub(l.o.opts.Now()), 0) + time.Millisecond)
}

// noteWait records why a wanted switch is refused, once per reason, so
// /status can say why a queue waits.
func (l *leader) noteWait(reason string) {
	if reason == "" || reason == l.lastWaitWhy {
		return
	}
	l.lastWaitWhy = reason
	l.remember(fmt.Sprintf("%s holding: %s", l.o.opts.Now().Format(time.RFC3339), reason))
	l.log.Info("switch held", "reason", reason)
}

// remember keeps the last decisions for /status.
func (l *leader) remember(msg string) {
	l.decisions = append(l.decisions, msg)
	if len(l.decisions) > 20 {
		l.decisions = l.decisions[len(l.decisions)-20:]
	}
}

// consumeAdmin clears a one-shot admin request the leader took.
func (l *leader) consumeAdmin(ctx context.Context, field, was string) {
	switch field {
	case "load":
		l.admin.Load = ""
	case "unload":
		l.admin.Unload = false
	}
	if err := l.o.opts.Store.ClearAdmin(ctx, l.state.Slot, field, was); err != nil {
		l.log.Warn("clearing an admin request failed", "field", field, "error", err)
	}
}

// failQuarantined fails fast the jobs that wait for a quarantined model,
// with the reason it failed and when to retry.
func (l *leader) failQuarantined(ctx context.Context, queues map[string]jobstore.QueueInfo) {
	now := l.o.opts.Now()
	for m, until := range l.quarantine {
		if !now.Before(until) || queues[m].Pending == 0 {
			continue
		}
		e := modelFailedError(m, "model_quarantined", fmt.Errorf("it is quarantined for %s after failing to start: %v",
			until.Sub(now).Round(time.Second), l.lastFailure[m]))
		e.RetryAfter = int(until.Sub(now).Seconds()) + 1
		if n, err := l.o.opts.Store.FailQueued(ctx, m, e); err != nil {
			l.log.Error("failing jobs of a quarantined model", "model", m, "error", err)
		} else if n > 0 {
			l.log.Info("failed jobs of a quarantined model fast", "model", m, "jobs", n)
		}
	}
}

// release ends a model's quarantine after it loaded fine.
func (l *leader) release(model string) {
	delete(l.quarantine, model)
	delete(l.failures, model)
	delete(l.lastFailure, model)
}

// unload stops the active model and loads nothing (idle unload, admin).
func (l *leader) unload(ctx context.Context, reason string) {
	if l.state.Active == "" || l.switching {
		return
	}
	l.remember(fmt.Sprintf("%s unloading %s: %s", l.o.opts.Now().Format(time.RFC3339), l.state.Active, reason))
	l.log.Info("unload decided", "model", l.state.Active, "reason", reason)
	l.switching, l.target = true, ""
	l.state.LastSwitch = &jobstore.SwitchRecord{From: l.state.Active, Reason: reason, StartedAt: l.o.opts.Now(), Generation: l.gen}
	l.drain(ctx)
}

// abandon stops a load nobody waits for any more, for d.Model's work.
func (l *leader) abandon(ctx context.Context, d scheduler.Decision) {
	l.remember(fmt.Sprintf("%s abandoning the load of %s: %s", l.o.opts.Now().Format(time.RFC3339), l.target, d.Reason))
	l.log.Info("abandoning load", "model", l.target, "for", d.Model, "reason", d.Reason)
	if l.state.Phase == jobstore.PhaseDraining {
		// The old model still runs: keep it, or aim the switch elsewhere.
		if d.Model == l.state.Active {
			if l.drainTimer != nil {
				l.drainTimer.Stop()
				l.drainTimer = nil
			}
			l.switching, l.target, l.state.Target = false, "", ""
			l.state.Phase = jobstore.PhaseReady
		} else {
			l.target, l.state.Target = d.Model, d.Model
			l.state.LastSwitch.To = d.Model
		}
		l.publish(ctx)
		return
	}
	if l.switchCancel != nil {
		l.switchCancel(errAbandoned)
	}
}

func setTime(m map[string]time.Time, k string, t time.Time) map[string]time.Time {
	if m == nil {
		m = map[string]time.Time{}
	}
	m[k] = t
	return m
}
