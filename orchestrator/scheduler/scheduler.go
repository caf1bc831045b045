// Package scheduler is the switchboard's policy: which model should be
// loaded and how much of its queue to admit, as a pure function of the
// slot's state, the queues and the time. It does no I/O and keeps no
// state, so every decision can be tested and replayed.
package scheduler

import (
	"fmt"
	"time"
)

// Queue is one model's pending work.
type Queue struct {
	Pending int
	// HeadSince is when the oldest pending job was enqueued.
	HeadSince time.Time
}

// Input is everything a decision depends on.
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
}

// Kind is what a decision asks for.
type Kind int

// Decision kinds.
const (
	// Wait: nothing to do until the next event.
	Wait Kind = iota
	// Dispatch N jobs of the active model.
	Dispatch
	// Switch to Model: drain the active model, stop it, load Model.
	Switch
)

// Decision is what the orchestrator should do now, and why.
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
	default:
		return "wait"
	}
}

// Decide returns the next step.
func Decide(in Input, now time.Time) Decision {
	if in.Switching {
		return Decision{Kind: Wait}
	}
	if in.Active == "" {
		if m, waited := longestWaiting(in, ""); m != "" {
			return Decision{Kind: Switch, Model: m,
				Reason: fmt.Sprintf("nothing loaded and %s has work (head waited %s)", m, round(waited(now)))}
		}
		if d := in.DefaultModel; d != "" && !in.Unavailable[d] {
			return Decision{Kind: Switch, Model: d, Reason: "nothing loaded: default model"}
		}
		return Decision{Kind: Wait}
	}

	// Starvation bound: another model waited too long.
	if in.MaxWait > 0 {
		if m, waited := longestWaiting(in, in.Active); m != "" && waited(now) > in.MaxWait {
			return Decision{Kind: Switch, Model: m,
				Reason: fmt.Sprintf("its head job waited %s > max_wait %s", round(waited(now)), in.MaxWait)}
		}
	}

	active := in.Queues[in.Active]
	if active.Pending > 0 {
		if free := in.Capacity - in.InFlight; free > 0 {
			return Decision{Kind: Dispatch, Model: in.Active, N: min(free, active.Pending)}
		}
		return Decision{Kind: Wait}
	}

	if m, waited := longestWaiting(in, in.Active); m != "" {
		return Decision{Kind: Switch, Model: m,
			Reason: fmt.Sprintf("%s has no queued work and %s has (head waited %s)", in.Active, m, round(waited(now)))}
	}
	return Decision{Kind: Wait}
}

// longestWaiting returns the model other than except whose head job waited
// longest, and a function giving that wait at a time.
func longestWaiting(in Input, except string) (string, func(time.Time) time.Duration) {
	best := ""
	var since time.Time
	for _, m := range in.Order {
		q := in.Queues[m]
		if m == except || q.Pending == 0 || in.Unavailable[m] {
			continue
		}
		if best == "" || q.HeadSince.Before(since) {
			best, since = m, q.HeadSince
		}
	}
	return best, func(now time.Time) time.Duration { return now.Sub(since) }
}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
