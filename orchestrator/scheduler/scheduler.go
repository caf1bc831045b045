// Package scheduler is the switchboard's policy: which model should be
// loaded and how much of its queue to admit, as a pure function of the
// slot's state, the queues and the time. It does no I/O and keeps no
// state, so every decision can be tested and replayed.
//
// Decide applies its rules in a fixed precedence order (docs/scheduler.md
// explains each one):
//
//  1. Maintenance holds everything: no dispatch, no switch, no unload.
//  2. While a switch is under way requests join it; the only exception is
//     a load whose every waiter left while another model has work, which
//     is abandoned.
//  3. An admin load switches now (quarantine and a pin can refuse it;
//     residency and the switch budget cannot).
//  4. A pinned model is loaded and stays loaded; other models' work waits.
//  5. With nothing loaded: the longest-waiting model with work (the last
//     good model first, unless another head is past max_wait), else the
//     default model.
//  6. With a model loaded: residency (min_residency, and a fresh load
//     serves its queue once) beats the starvation bound (max_wait), which
//     beats serving the active model's own queue; an empty active queue
//     hands over to the longest-waiting model; an idle slot unloads.
//
// Every switch (rules 2 to 6) is refused once max_switches_per_hour is
// spent, except an admin load. Quarantined and unavailable models are
// never switched to.
package scheduler

import (
	"fmt"
	"slices"
	"time"
)

// Queue is one model's pending work.
type Queue struct {
	Pending int
	// HeadSince is when the oldest pending job was enqueued.
	HeadSince time.Time
}

// Input is everything a decision depends on. The zero value of every field
// added after Active..Unavailable disables its rule, so an older caller
// keeps the older behaviour.
type Input struct {
	// Active is the loaded, ready model ("" when none is).
	Active string
	// Switching is set while a drain, stop or start is under way; requests
	// for the model being loaded join that load.
	Switching bool
	// InFlight is how many requests the active model is serving.
	InFlight int
	// Capacity is the active model's max_concurrency.
	Capacity int
	// Queues holds every configured model's queue; Order lists the models
	// in configuration order, for deterministic tie-breaks.
	Queues map[string]Queue
	Order  []string
	// MaxWait is the starvation bound: a head job of another model that
	// waited longer forces a switch even while the active model has work.
	MaxWait time.Duration
	// DefaultModel is loaded when nothing is loaded and nothing waits.
	DefaultModel string
	// Unavailable models are not switched to (a failed start waits for new
	// work before another try).
	Unavailable map[string]bool

	// ActiveSince is when Active became ready. With MinResidency it keeps
	// a freshly loaded model in place; zero means unknown (no residency).
	ActiveSince time.Time
	// MinResidency is how long a model stays after its load before any
	// switch away except an admin load or a pin. It beats MaxWait: a load
	// that is evicted before it served anything is minutes lost for
	// nothing, and two starved models would evict each other forever.
	MinResidency time.Duration

	// RecentSwitches holds the start times of the switches of the last
	// hour (older entries are ignored). The orchestrator keeps them.
	RecentSwitches []time.Time
	// MaxSwitchesPerHour caps RecentSwitches: at the cap, no switch but an
	// admin load starts until the oldest one leaves the hour. 0 = no cap.
	MaxSwitchesPerHour int

	// IdleUnloadAfter unloads the active model once the slot has had no
	// work and no activity this long (0 = never), freeing the memory.
	IdleUnloadAfter time.Duration
	// LastActivity is the last dispatch or finish on the slot. The
	// orchestrator keeps it across an unload, so that an idle unload is
	// undone by new work, not by reloading the default model.
	LastActivity time.Time

	// Pinned is a model that must stay loaded: it is loaded if it is not,
	// and nothing — not even the starvation bound — switches away from it.
	Pinned string
	// Maintenance drains and holds: no new dispatch, no switch, no unload.
	Maintenance bool
	// Quarantined maps a model whose start failed to the end of its
	// backoff; it is not switched to before then. The orchestrator fails
	// its waiters fast.
	Quarantined map[string]time.Time
	// LastGood is the last model that loaded fine. With nothing loaded
	// (after a failed start) it is preferred if it has work: roll back.
	LastGood string

	// Loading is the model a switch in progress is loading, and
	// LoadWaiters how many jobs still wait for it. A load nobody waits for
	// any more is abandoned when another model has work (only while
	// Switching).
	Loading     string
	LoadWaiters int
	// AdminLoad is an operator's request to load a model now. Quarantine
	// and a pin on another model refuse it; residency and the switch
	// budget do not. The orchestrator clears it once acted on or refused.
	AdminLoad string

	// TurnEnded maps a model to when the slot last switched away from it.
	// A model's wait is counted from its head job's enqueue time or from
	// the end of its last turn, whichever is later, so that a big old
	// batch cannot win every hand-over against interactive models that
	// have not had a turn. Missing entries count from the head job alone.
	TurnEnded map[string]time.Time
	// MaxConcurrency maps models to their max_concurrency. Only ETA reads
	// it, for models that are not active; Capacity covers the active one.
	MaxConcurrency map[string]int
}

// Kind is what a decision asks for.
type Kind int

// Decision kinds.
const (
	// Wait: nothing to do until the next event (or NextCheck).
	Wait Kind = iota
	// Dispatch N jobs of the active model.
	Dispatch
	// Switch to Model: drain the active model, stop it, load Model.
	Switch
	// Unload the active model (Model) and load nothing: it sat idle for
	// idle_unload_after.
	Unload
	// Abandon the load in progress (Input.Loading) — every one of its
	// waiters left — and switch to Model instead. When Model is the model
	// still loaded (the switch had not stopped it yet), the switch is
	// canceled and Model resumes.
	Abandon
)

// Decision is what the orchestrator should do now, and why. Reason is set
// on every switch, unload and abandon, and on a Wait or Dispatch whenever
// a switch was wanted but refused (maintenance, pin, residency, budget,
// quarantine), so /status can say why a queue waits.
type Decision struct {
	Kind   Kind
	Model  string
	N      int
	Reason string
}

func (d Decision) String() string {
	switch d.Kind {
	case Dispatch:
		return fmt.Sprintf("dispatch %d to %s", d.N, d.Model)
	case Switch:
		return fmt.Sprintf("switch to %s: %s", d.Model, d.Reason)
	case Unload:
		return fmt.Sprintf("unload %s: %s", d.Model, d.Reason)
	case Abandon:
		return fmt.Sprintf("abandon the load, switch to %s: %s", d.Model, d.Reason)
	default:
		return "wait"
	}
}

// Decide returns the next step. The package comment lists the rules in
// precedence order.
func Decide(in Input, now time.Time) Decision {
	if in.Maintenance {
		return Decision{Kind: Wait, Reason: "maintenance: holding; no new work is dispatched and no model is switched"}
	}
	if in.Switching {
		if d, ok := abandon(in, now); ok {
			return d
		}
		return Decision{Kind: Wait, Reason: switchingReason(in)}
	}
	if d, ok := adminLoad(in, now); ok {
		return d
	}
	if in.Pinned != "" {
		return pinned(in, now)
	}
	if in.Active == "" {
		return nothingLoaded(in, now)
	}
	return loaded(in, now)
}

func switchingReason(in Input) string {
	if in.Loading != "" {
		return fmt.Sprintf("switch to %s in progress; its requests join the load", in.Loading)
	}
	return "switch in progress"
}

// abandon stops a load that nobody waits for when another model has work.
// A load an admin asked for, or of the pinned model, is kept.
func abandon(in Input, now time.Time) (Decision, bool) {
	if in.Loading == "" || in.LoadWaiters > 0 || in.Loading == in.AdminLoad || in.Loading == in.Pinned {
		return Decision{}, false
	}
	m, since := longestWaiting(in, now, in.Loading)
	if p := in.Pinned; p != "" {
		// Only the pinned model may take the slot, if it has work.
		m, since = "", time.Time{}
		if in.Queues[p].Pending > 0 && loadable(in, p, now) {
			m, since = p, waitingSince(in, p)
		}
	}
	if m == "" {
		return Decision{}, false
	}
	reason := fmt.Sprintf("every request waiting for %s left; %s has work (head waited %s)",
		in.Loading, m, round(now.Sub(since)))
	if m != in.Active {
		// Picking another model starts a new load; resuming the one still
		// loaded does not.
		if exhausted, why := budget(in, now); exhausted {
			return Decision{Kind: Wait, Reason: fmt.Sprintf("%s, but %s", reason, why)}, true
		}
	}
	return Decision{Kind: Abandon, Model: m, Reason: reason}, true
}

// adminLoad acts on an operator's load request.
func adminLoad(in Input, now time.Time) (Decision, bool) {
	m := in.AdminLoad
	if m == "" || m == in.Active {
		return Decision{}, false
	}
	refused := func(why string) (Decision, bool) {
		return Decision{Kind: Wait, Reason: fmt.Sprintf("admin load of %s refused: %s", m, why)}, true
	}
	switch {
	case !slices.Contains(in.Order, m):
		return refused("not a configured model")
	case in.Pinned != "" && in.Pinned != m:
		return refused(fmt.Sprintf("%s is pinned; unpin it first", in.Pinned))
	case quarantined(in, m, now):
		return refused(quarantineReason(in, m, now))
	}
	return Decision{Kind: Switch, Model: m, Reason: "admin load"}, true
}

// pinned keeps the pinned model loaded. Nothing switches away from it;
// while it cannot be loaded, the active model serves its own queue.
func pinned(in Input, now time.Time) Decision {
	p := in.Pinned
	if in.Active == p {
		held := ""
		if m, _ := longestWaiting(in, now, p); m != "" {
			held = fmt.Sprintf("%s is pinned; %s waits until it is unpinned", p, m)
		}
		return serveActive(in, held)
	}
	var held string
	switch {
	case !slices.Contains(in.Order, p):
		held = fmt.Sprintf("pinned model %s is not configured", p)
	case quarantined(in, p, now):
		held = fmt.Sprintf("%s is pinned but %s", p, quarantineReason(in, p, now))
	case in.Unavailable[p]:
		held = fmt.Sprintf("%s is pinned but unavailable after a failed start", p)
	default:
		exhausted, why := budget(in, now)
		if !exhausted {
			return Decision{Kind: Switch, Model: p, Reason: fmt.Sprintf("%s is pinned", p)}
		}
		held = fmt.Sprintf("%s is pinned but %s", p, why)
	}
	if in.Active == "" {
		return Decision{Kind: Wait, Reason: held}
	}
	return serveActive(in, held)
}

// nothingLoaded picks the first model to load.
func nothingLoaded(in Input, now time.Time) Decision {
	exhausted, why := budget(in, now)
	if m, since := longestWaiting(in, now, ""); m != "" {
		reason := fmt.Sprintf("nothing loaded and %s has work (head waited %s)", m, round(now.Sub(since)))
		starved := in.MaxWait > 0 && now.Sub(since) > in.MaxWait
		if lg := in.LastGood; lg != "" && !starved && in.Queues[lg].Pending > 0 && loadable(in, lg, now) {
			m = lg
			reason = fmt.Sprintf("nothing loaded; roll back to last good model %s, which has work (head waited %s)",
				lg, round(now.Sub(in.Queues[lg].HeadSince)))
		}
		if exhausted {
			return Decision{Kind: Wait, Reason: fmt.Sprintf("%s waits: %s", m, why)}
		}
		return Decision{Kind: Switch, Model: m, Reason: reason}
	}
	d := in.DefaultModel
	if d == "" || in.Unavailable[d] || quarantined(in, d, now) || !slices.Contains(in.Order, d) {
		return Decision{Kind: Wait}
	}
	if idle, _ := slotIdle(in, now); idle {
		return Decision{Kind: Wait, Reason: fmt.Sprintf("nothing loaded: idle past idle_unload_after %s; default model %s is not reloaded, new work loads its model",
			in.IdleUnloadAfter, d)}
	}
	if exhausted {
		return Decision{Kind: Wait, Reason: fmt.Sprintf("default model %s waits: %s", d, why)}
	}
	return Decision{Kind: Switch, Model: d, Reason: "nothing loaded: default model"}
}

// loaded decides for a loaded, unpinned model: residency, then the
// starvation bound, then the active queue, then a hand-over, then idling.
func loaded(in Input, now time.Time) Decision {
	a := in.Active
	resident, residency := resident(in, now)
	exhausted, why := budget(in, now)
	m, since := longestWaiting(in, now, a)

	// held says why a switch that the rules want is not made.
	var held string
	if m != "" && in.MaxWait > 0 && now.Sub(since) > in.MaxWait {
		starving := fmt.Sprintf("%s waited %s > max_wait %s", m, round(now.Sub(since)), in.MaxWait)
		switch {
		case resident:
			held = fmt.Sprintf("%s, but %s", starving, residency)
		case exhausted:
			held = fmt.Sprintf("%s, but %s", starving, why)
		default:
			return Decision{Kind: Switch, Model: m,
				Reason: fmt.Sprintf("its head job waited %s > max_wait %s", round(now.Sub(since)), in.MaxWait)}
		}
	}

	if in.Queues[a].Pending > 0 {
		return serveActive(in, held)
	}

	if m != "" {
		if held == "" {
			switch {
			case resident:
				held = fmt.Sprintf("%s has work, but %s", m, residency)
			case exhausted:
				held = fmt.Sprintf("%s has work, but %s", m, why)
			default:
				return Decision{Kind: Switch, Model: m,
					Reason: fmt.Sprintf("%s has no queued work and %s has (head waited %s)", a, m, round(now.Sub(since)))}
			}
		}
		return Decision{Kind: Wait, Reason: held}
	}

	if unload, reason := idleUnload(in, now); unload {
		return Decision{Kind: Unload, Model: a, Reason: reason}
	}
	return Decision{Kind: Wait, Reason: held}
}

// serveActive dispatches the active model's queue into its free capacity.
func serveActive(in Input, reason string) Decision {
	pending := in.Queues[in.Active].Pending
	if free := in.Capacity - in.InFlight; pending > 0 && free > 0 {
		return Decision{Kind: Dispatch, Model: in.Active, N: min(free, pending), Reason: reason}
	}
	return Decision{Kind: Wait, Reason: reason}
}

// resident reports whether the active model is protected from a switch
// away: within MinResidency of its load, or freshly loaded with queued
// work it has not dispatched yet (a load must serve something).
func resident(in Input, now time.Time) (bool, string) {
	if in.ActiveSince.IsZero() {
		return false, ""
	}
	if until := in.ActiveSince.Add(in.MinResidency); in.MinResidency > 0 && now.Before(until) {
		return true, fmt.Sprintf("min_residency %s: %s loaded %s ago, stays %s more",
			in.MinResidency, in.Active, round(now.Sub(in.ActiveSince)), round(until.Sub(now)))
	}
	if in.Queues[in.Active].Pending > 0 && !in.LastActivity.After(in.ActiveSince) {
		return true, fmt.Sprintf("%s was just loaded and serves its queue first", in.Active)
	}
	return false, ""
}

// budget reports whether max_switches_per_hour is spent, and if so when
// the next switch is allowed.
func budget(in Input, now time.Time) (bool, string) {
	if in.MaxSwitchesPerHour <= 0 {
		return false, ""
	}
	n, oldest := 0, time.Time{}
	for _, t := range in.RecentSwitches {
		if now.Sub(t) >= time.Hour {
			continue
		}
		n++
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if n < in.MaxSwitchesPerHour {
		return false, ""
	}
	return true, fmt.Sprintf("switch budget exhausted: %d switches in the last hour; next allowed in %s",
		n, roundUp(oldest.Add(time.Hour).Sub(now)))
}

// idleUnload reports whether the active model should be unloaded: no work
// anywhere, nothing in flight, and no activity for IdleUnloadAfter.
func idleUnload(in Input, now time.Time) (bool, string) {
	if in.IdleUnloadAfter <= 0 || in.Active == "" || in.InFlight > 0 || in.Active == in.Pinned {
		return false, ""
	}
	for _, m := range in.Order {
		if in.Queues[m].Pending > 0 {
			return false, ""
		}
	}
	idle, since := slotIdle(in, now)
	if !idle {
		return false, ""
	}
	return true, fmt.Sprintf("%s idle for %s >= idle_unload_after %s", in.Active, round(since), in.IdleUnloadAfter)
}

// slotIdle reports whether the slot has seen no activity (dispatch, finish
// or load) for IdleUnloadAfter, and for how long.
func slotIdle(in Input, now time.Time) (bool, time.Duration) {
	last := in.LastActivity
	if in.ActiveSince.After(last) {
		last = in.ActiveSince
	}
	if in.IdleUnloadAfter <= 0 || last.IsZero() {
		return false, 0
	}
	idle := now.Sub(last)
	return idle >= in.IdleUnloadAfter, idle
}

func quarantined(in Input, m string, now time.Time) bool {
	until, ok := in.Quarantined[m]
	return ok && now.Before(until)
}

func quarantineReason(in Input, m string, now time.Time) string {
	until := in.Quarantined[m]
	return fmt.Sprintf("%s is quarantined after a failed start until %s (%s more)",
		m, until.UTC().Format(time.RFC3339), roundUp(until.Sub(now)))
}

// loadable reports whether m may be switched to now.
func loadable(in Input, m string, now time.Time) bool {
	return !in.Unavailable[m] && !quarantined(in, m, now) && slices.Contains(in.Order, m)
}

// waitingSince is when m's wait started: its head job's enqueue time, or
// the end of its last turn if that is later.
func waitingSince(in Input, m string) time.Time {
	since := in.Queues[m].HeadSince
	if t, ok := in.TurnEnded[m]; ok && t.After(since) {
		since = t
	}
	return since
}

// longestWaiting returns the loadable model other than except with work
// whose wait started first (first in Order on a tie), and that start.
func longestWaiting(in Input, now time.Time, except string) (string, time.Time) {
	best := ""
	var since time.Time
	for _, m := range in.Order {
		if m == except || in.Queues[m].Pending == 0 || in.Unavailable[m] || quarantined(in, m, now) {
			continue
		}
		if s := waitingSince(in, m); best == "" || s.Before(since) {
			best, since = m, s
		}
	}
	return best, since
}

// NextCheck returns the earliest instant after now at which Decide may
// answer differently for the same input: a head job passing max_wait, the
// end of residency, a switch leaving the hour, a quarantine ending, the
// slot becoming idle. Zero means only an event (an arrival, a finish, a
// switch step) can change the answer. The orchestrator arms one timer for
// it instead of polling.
func NextCheck(in Input, now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if in.MaxWait > 0 {
		for _, m := range in.Order {
			if in.Queues[m].Pending > 0 {
				// The bound is strict: the switch comes just after max_wait.
				consider(waitingSince(in, m).Add(in.MaxWait + time.Nanosecond))
			}
		}
	}
	if !in.ActiveSince.IsZero() && in.MinResidency > 0 {
		consider(in.ActiveSince.Add(in.MinResidency))
	}
	if in.MaxSwitchesPerHour > 0 {
		for _, t := range in.RecentSwitches {
			consider(t.Add(time.Hour))
		}
	}
	for _, until := range in.Quarantined {
		consider(until)
	}
	if in.IdleUnloadAfter > 0 {
		last := in.LastActivity
		if in.ActiveSince.After(last) {
			last = in.ActiveSince
		}
		if !last.IsZero() {
			consider(last.Add(in.IdleUnloadAfter))
		}
	}
	return next
}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// roundUp rounds a time left up to the second, so that "next allowed in"
// never promises too early.
func roundUp(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return ((d + time.Second - 1) / time.Second) * time.Second
}
