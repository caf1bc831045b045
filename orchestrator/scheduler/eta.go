package scheduler

import (
	"slices"
	"time"
)

// ETA estimates how long from now until the job at queue position
// (0 = the head) of model's queue starts, following the same rules as
// Decide: 0 when Decide would dispatch it now, a negative duration when no
// start can be predicted (maintenance, another model pinned, the model
// unavailable or not configured).
//
// avgSwitch holds each model's learned switch time (drain excluded: stop,
// memory barrier, start, healthy) and avgJob its mean service time; a
// missing entry counts as zero. The estimate is deliberately simple and
// errs late rather than early:
//
//   - the active model serves its queue in rounds of Capacity (a switch
//     away that the starvation bound may force first is not foreseen);
//   - a model being loaded is ready avgSwitch after the latest entry of
//     RecentSwitches (the start of that switch);
//   - otherwise the current model keeps the slot until its queue is
//     served, cut short when model's wait passes max_wait (plus one job
//     to drain), never before its residency ends; then every model whose
//     wait began earlier takes a turn (its switch plus its queue, cut the
//     same way); then model's own switch, after any quarantine and after
//     the switch budget allows it.
func ETA(in Input, model string, position int, avgSwitch, avgJob map[string]time.Duration, now time.Time) time.Duration {
	position = max(position, 0)
	if in.Maintenance {
		return -1
	}
	d := Decide(in, now)
	if d.Kind == Dispatch && d.Model == model && position < d.N {
		return 0
	}
	conc := func(m string) int {
		if m == in.Active && in.Capacity > 0 {
			return in.Capacity
		}
		if c := in.MaxConcurrency[m]; c > 0 {
			return c
		}
		return 1
	}
	// serve is how long m needs to start jobs queued behind n others once
	// it is ready with nothing in flight.
	serve := func(m string, n int) time.Duration { return time.Duration(n/conc(m)) * avgJob[m] }
	// finish is how long m needs to finish n jobs with nothing in flight.
	finish := func(m string, n int) time.Duration {
		c := conc(m)
		return time.Duration((n+c-1)/c) * avgJob[m]
	}

	if model == in.Active && !in.Switching && d.Kind != Switch && d.Kind != Unload {
		free := max(in.Capacity-in.InFlight, 0)
		if position < free {
			return 0
		}
		return time.Duration((position-free)/conc(model)+1) * avgJob[model]
	}
	if (in.Pinned != "" && in.Pinned != model) || in.Unavailable[model] || !slices.Contains(in.Order, model) {
		return -1
	}
	if in.Switching && in.Loading == model {
		return loadLeft(in, model, avgSwitch, now) + serve(model, position)
	}

	// t walks forward through the turns that come before model's.
	t := now
	cur, curSince, curJobs := in.Active, in.ActiveSince, in.Queues[in.Active].Pending+in.InFlight
	if in.Switching && in.Loading != "" {
		t = now.Add(loadLeft(in, in.Loading, avgSwitch, now))
		cur, curSince, curJobs = in.Loading, t, in.Queues[in.Loading].Pending
	}
	since := now
	if in.Queues[model].Pending > 0 {
		since = waitingSince(in, model)
	}
	// turn advances t past a turn of m with jobs to finish, cut at
	// model's starvation, never shorter than residency.
	turn := func(m string, start time.Time, jobs int) {
		end := t.Add(finish(m, jobs))
		if starve := since.Add(in.MaxWait); in.MaxWait > 0 && starve.Before(end) {
			end = later(starve, t).Add(avgJob[m])
		}
		t = later(end, start.Add(in.MinResidency))
	}

	if in.Pinned == model || in.AdminLoad == model {
		// Switched to at once: only the drain comes first.
		if cur != "" && curJobs > 0 {
			t = t.Add(avgJob[cur])
		}
	} else {
		if cur != "" && cur != model {
			turn(cur, curSince, curJobs)
		}
		type ahead struct {
			m     string
			since time.Time
		}
		var before []ahead
		for _, m := range in.Order {
			if m == model || m == cur || in.Queues[m].Pending == 0 || !loadable(in, m, now) {
				continue
			}
			if s := waitingSince(in, m); s.Before(since) {
				before = append(before, ahead{m, s})
			}
		}
		slices.SortStableFunc(before, func(a, b ahead) int { return a.since.Compare(b.since) })
		for _, a := range before {
			t = t.Add(avgSwitch[a.m])
			turn(a.m, t, in.Queues[a.m].Pending)
		}
	}

	if until, ok := in.Quarantined[model]; ok {
		t = later(t, until)
	}
	if exhausted, _ := budget(in, now); exhausted && in.AdminLoad != model {
		t = later(t, nextAllowed(in, now))
	}
	return t.Sub(now) + avgSwitch[model] + serve(model, position)
}

// loadLeft is how long the load of m in progress still takes.
func loadLeft(in Input, m string, avgSwitch map[string]time.Duration, now time.Time) time.Duration {
	var started time.Time
	for _, s := range in.RecentSwitches {
		if !s.After(now) && s.After(started) {
			started = s
		}
	}
	if started.IsZero() {
		return avgSwitch[m]
	}
	return max(avgSwitch[m]-now.Sub(started), 0)
}

// nextAllowed is when the switch budget allows the next switch.
func nextAllowed(in Input, now time.Time) time.Time {
	var oldest time.Time
	for _, s := range in.RecentSwitches {
		if now.Sub(s) < time.Hour && (oldest.IsZero() || s.Before(oldest)) {
			oldest = s
		}
	}
	return oldest.Add(time.Hour)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
