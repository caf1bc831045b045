package scheduler_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/orchestrator/scheduler"
)

// randomInput draws an input that may use every rule. Times are whole
// seconds around t0, so that ties and exact bounds happen.
func randomInput(rng *rand.Rand, models []string) scheduler.Input {
	pick := func() string { return models[rng.IntN(len(models))] }
	secs := func(max time.Duration) time.Duration {
		return time.Duration(rng.Int64N(int64(max/time.Second)+1)) * time.Second
	}
	one := func(n int) bool { return rng.IntN(n) == 0 }

	in := scheduler.Input{
		Switching: one(8),
		InFlight:  rng.IntN(6),
		Capacity:  rng.IntN(5),
		Queues:    make(map[string]scheduler.Queue),
		Order:     models,
	}
	if !one(4) {
		in.Active = pick()
		if one(2) {
			in.ActiveSince = ago(secs(30 * time.Minute))
		}
	}
	if in.Switching && !one(3) {
		in.Loading = pick()
		in.LoadWaiters = rng.IntN(3)
	}
	if one(2) {
		in.MinResidency = secs(5 * time.Minute)
	}
	if one(2) {
		in.MaxWait = time.Second + secs(20*time.Minute)
	}
	if one(2) {
		in.DefaultModel = pick()
	}
	if one(2) {
		for range rng.IntN(6) {
			in.RecentSwitches = append(in.RecentSwitches, ago(secs(90*time.Minute)))
		}
		in.MaxSwitchesPerHour = rng.IntN(5)
	}
	if one(3) {
		in.IdleUnloadAfter = time.Second + secs(30*time.Minute)
	}
	if one(2) {
		in.LastActivity = ago(secs(time.Hour))
	}
	if one(8) {
		in.Pinned = pick()
	}
	in.Maintenance = one(12)
	if one(3) {
		in.LastGood = pick()
	}
	if one(10) {
		in.AdminLoad = pick()
		if one(10) {
			in.AdminLoad = "unknown"
		}
	}
	for _, m := range models {
		if one(3) {
			in.Queues[m] = scheduler.Queue{Pending: rng.IntN(4), HeadSince: ago(secs(30 * time.Minute))}
		}
		if one(5) {
			if in.Unavailable == nil {
				in.Unavailable = make(map[string]bool)
			}
			in.Unavailable[m] = true
		}
		if one(6) {
			if in.Quarantined == nil {
				in.Quarantined = make(map[string]time.Time)
			}
			in.Quarantined[m] = ago(10 * time.Minute).Add(secs(20 * time.Minute))
		}
		if one(4) {
			if in.TurnEnded == nil {
				in.TurnEnded = make(map[string]time.Time)
			}
			in.TurnEnded[m] = ago(secs(30 * time.Minute))
		}
	}
	return in
}

// TestDecide_PropertiesAllRules checks over many random inputs, using
// every rule, what must hold for every decision. (TestDecide_Properties
// keeps checking inputs that use only the first policy's fields.)
func TestDecide_PropertiesAllRules(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	models := []string{"a", "b", "c", "d"}
	kinds := map[scheduler.Kind]int{}

	for i := range 20000 {
		in := randomInput(rng, models)
		d := scheduler.Decide(in, t0)
		kinds[d.Kind]++
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("case %d: input %+v: decision %+v: %s", i, in, d, fmt.Sprintf(format, args...))
		}

		pending := func(m string) int { return in.Queues[m].Pending }
		quarantined := func(m string) bool { u, ok := in.Quarantined[m]; return ok && t0.Before(u) }
		loadable := func(m string) bool { return !in.Unavailable[m] && !quarantined(m) }
		since := func(m string) time.Time {
			s := in.Queues[m].HeadSince
			if e, ok := in.TurnEnded[m]; ok && e.After(s) {
				s = e
			}
			return s
		}
		recent := 0
		for _, s := range in.RecentSwitches {
			if t0.Sub(s) < time.Hour {
				recent++
			}
		}
		exhausted := in.MaxSwitchesPerHour > 0 && recent >= in.MaxSwitchesPerHour
		anyPending := false
		for _, m := range models {
			anyPending = anyPending || pending(m) > 0
		}

		// Safety: what each kind may never do.
		if in.Maintenance && d.Kind != scheduler.Wait {
			fail("acted during maintenance")
		}
		switch d.Kind {
		case scheduler.Wait:
			if d.Model != "" || d.N != 0 {
				fail("wait carries a model or count")
			}
		case scheduler.Dispatch:
			if in.Switching || in.Active == "" || d.Model != in.Active {
				fail("dispatch to %q, active %q, switching %v", d.Model, in.Active, in.Switching)
			}
			if d.N <= 0 || d.N > in.Capacity-in.InFlight || d.N > pending(in.Active) {
				fail("dispatch %d with capacity %d, %d in flight, %d pending", d.N, in.Capacity, in.InFlight, pending(in.Active))
			}
		case scheduler.Switch:
			switch {
			case in.Switching:
				fail("switch while switching")
			case d.Model == "" || d.Model == in.Active || !slices.Contains(models, d.Model):
				fail("switch to %q with %q active", d.Model, in.Active)
			case d.Reason == "":
				fail("switch without a reason")
			case quarantined(d.Model):
				fail("switch to %q before its quarantine ends", d.Model)
			case in.Unavailable[d.Model] && d.Model != in.AdminLoad:
				fail("switch to unavailable %q", d.Model)
			case in.Pinned != "" && d.Model != in.Pinned:
				fail("switch away from pinned %q", in.Pinned)
			case exhausted && d.Model != in.AdminLoad:
				fail("switch with the budget spent (%d of %d)", recent, in.MaxSwitchesPerHour)
			case pending(d.Model) == 0 && d.Model != in.AdminLoad && d.Model != in.Pinned &&
				(in.Active != "" || d.Model != in.DefaultModel):
				fail("switch to %q which has no work", d.Model)
			}
		case scheduler.Unload:
			switch {
			case in.Switching || in.Active == "" || d.Model != in.Active:
				fail("unload of %q with %q active", d.Model, in.Active)
			case in.Active == in.Pinned:
				fail("unload of the pinned model")
			case in.IdleUnloadAfter <= 0 || in.InFlight > 0 || anyPending:
				fail("unload with work, requests in flight, or idle unload off")
			case in.AdminLoad != "" && in.AdminLoad != in.Active:
				fail("unload instead of an admin load")
			}
		case scheduler.Abandon:
			switch {
			case !in.Switching || in.Loading == "" || in.LoadWaiters > 0:
				fail("abandon of a load with waiters, or of no load")
			case d.Model == in.Loading || pending(d.Model) == 0 || !loadable(d.Model):
				fail("abandon for %q, which cannot take the slot", d.Model)
			case in.Loading == in.Pinned || in.Loading == in.AdminLoad:
				fail("abandon of a pinned or admin load")
			case in.Pinned != "" && d.Model != in.Pinned:
				fail("abandon for %q with %q pinned", d.Model, in.Pinned)
			case exhausted && d.Model != in.Active:
				fail("abandon for a new load with the budget spent")
			}
		default:
			fail("unknown kind")
		}

		// Liveness: with no hold in force, the decision must act.
		if in.Maintenance || in.Switching || in.Pinned != "" || (in.AdminLoad != "" && in.AdminLoad != in.Active) {
			continue
		}
		if in.Active == "" {
			work := false
			for _, m := range models {
				work = work || (pending(m) > 0 && loadable(m))
			}
			if work && !exhausted && d.Kind != scheduler.Switch {
				fail("nothing loaded and work waits, but no switch")
			}
			continue
		}
		resident := !in.ActiveSince.IsZero() && (t0.Before(in.ActiveSince.Add(in.MinResidency)) ||
			(pending(in.Active) > 0 && !in.LastActivity.After(in.ActiveSince)))
		var starved []string
		for _, m := range models {
			if m != in.Active && pending(m) > 0 && loadable(m) && in.MaxWait > 0 && t0.Sub(since(m)) > in.MaxWait {
				starved = append(starved, m)
			}
		}
		switchDue := len(starved) > 0 && !resident && !exhausted
		if switchDue && d.Kind != scheduler.Switch {
			fail("%v starved past max_wait, not resident, budget left, but no switch", starved)
		}
		if !switchDue && pending(in.Active) > 0 && in.Capacity > in.InFlight && d.Kind != scheduler.Dispatch {
			fail("active model has work and free capacity, but no dispatch")
		}
		// A switch made by the rules (not admin, pin or default) goes to
		// the model whose wait began first.
		if d.Kind == scheduler.Switch && pending(d.Model) > 0 {
			for _, m := range models {
				if m != in.Active && m != d.Model && pending(m) > 0 && loadable(m) && since(m).Before(since(d.Model)) {
					fail("switch to %q, but %q waited longer", d.Model, m)
				}
			}
		}
	}
	for k := scheduler.Wait; k <= scheduler.Abandon; k++ {
		if kinds[k] < 50 {
			t.Fatalf("only %d decisions of kind %d: the generator misses a rule (%v)", kinds[k], k, kinds)
		}
	}
}

// TestNextCheck_NothingChangesBefore checks NextCheck's promise over
// random inputs: until the instant it names (or ever, if it names none),
// Decide gives the same answer for the same input.
func TestNextCheck_NothingChangesBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	models := []string{"a", "b", "c", "d"}
	for i := range 5000 {
		in := randomInput(rng, models)
		first := scheduler.Decide(in, t0)
		next := scheduler.NextCheck(in, t0)
		if !next.IsZero() && !next.After(t0) {
			t.Fatalf("case %d: NextCheck %v is not after now", i, next)
		}
		horizon := 3 * time.Hour
		if !next.IsZero() {
			horizon = next.Sub(t0)
		}
		for _, at := range []time.Duration{0, horizon / 3, horizon / 2, horizon - time.Nanosecond, time.Duration(rng.Int64N(int64(horizon)))} {
			d := scheduler.Decide(in, t0.Add(at))
			if d.Kind != first.Kind || d.Model != first.Model || d.N != first.N {
				t.Fatalf("case %d: input %+v: at now %s, at now+%s %s, but NextCheck said %v",
					i, in, first, at, d, next)
			}
		}
	}
}

// TestETA_Properties checks over random inputs that ETA is 0 for exactly
// the jobs Decide dispatches now, never negative except "unknown" (-1),
// and never earlier for a job further back in the same queue.
func TestETA_Properties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	models := []string{"a", "b", "c", "d"}
	avg := map[string]time.Duration{"a": time.Minute, "b": 2 * time.Minute, "c": 3 * time.Minute, "d": 4 * time.Minute}
	job := map[string]time.Duration{"a": time.Second, "b": 2 * time.Second, "c": 3 * time.Second, "d": 4 * time.Second}
	for i := range 5000 {
		in := randomInput(rng, models)
		in.MaxConcurrency = map[string]int{"a": 1, "b": 2, "c": 4}
		d := scheduler.Decide(in, t0)
		for _, m := range models {
			prev := time.Duration(-2)
			for pos := range 6 {
				eta := scheduler.ETA(in, m, pos, avg, job, t0)
				if eta < 0 && eta != -1 {
					t.Fatalf("case %d: ETA(%s, %d) = %s", i, m, pos, eta)
				}
				if prev >= 0 && eta >= 0 && eta < prev {
					t.Fatalf("case %d: input %+v: ETA(%s, %d) = %s before position %d's %s", i, in, m, pos, eta, pos-1, prev)
				}
				if (prev == -1) != (eta == -1) && pos > 0 {
					t.Fatalf("case %d: ETA(%s) unknown for some positions only", i, m)
				}
				prev = eta
				if d.Kind == scheduler.Dispatch && m == d.Model && pos < d.N && eta != 0 {
					t.Fatalf("case %d: input %+v: Decide dispatches %d of %s now, ETA(%d) = %s", i, in, d.N, m, pos, eta)
				}
			}
		}
	}
}
