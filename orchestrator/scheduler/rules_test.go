package scheduler_test

import (
	"strings"
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/orchestrator/scheduler"
)

// q is a queue of n jobs whose head was enqueued d before t0.
func q(n int, d time.Duration) scheduler.Queue {
	return scheduler.Queue{Pending: n, HeadSince: ago(d)}
}

// switches returns n switch start times, the newest first at d before t0
// and then one minute apart further back.
func switches(n int, d time.Duration) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = ago(d + time.Duration(i)*time.Minute)
	}
	return out
}

// TestDecide_Rules covers each rule added after the first policy, and how
// the rules interact, at the fixed instant t0.
func TestDecide_Rules(t *testing.T) {
	// busy is a loaded model "a" with work, free capacity and a starving "b".
	busy := func() scheduler.Input {
		return scheduler.Input{
			Active: "a", InFlight: 1, Capacity: 4, Order: order,
			Queues:  map[string]scheduler.Queue{"a": q(3, time.Second), "b": q(1, 20*time.Minute)},
			MaxWait: 10 * time.Minute,
		}
	}
	// idleA is a loaded model "a" with nothing queued anywhere.
	idleA := func() scheduler.Input {
		return scheduler.Input{
			Active: "a", Capacity: 4, Order: order, Queues: map[string]scheduler.Queue{},
			ActiveSince: ago(2 * time.Hour), LastActivity: ago(30 * time.Minute),
			IdleUnloadAfter: 15 * time.Minute, DefaultModel: "a",
		}
	}
	with := func(in scheduler.Input, f func(*scheduler.Input)) scheduler.Input { f(&in); return in }

	tests := []struct {
		name      string
		in        scheduler.Input
		want      scheduler.Decision
		reasonHas []string
	}{
		// Maintenance: drain and hold.
		{
			name: "maintenance holds an active model with work and free capacity",
			in:   with(busy(), func(in *scheduler.Input) { in.Maintenance = true }),
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"maintenance"},
		},
		{
			name: "maintenance refuses an admin load",
			in:   with(busy(), func(in *scheduler.Input) { in.Maintenance, in.AdminLoad = true, "c" }),
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"maintenance"},
		},
		{
			name: "maintenance does not load the default model",
			in:   scheduler.Input{Order: order, DefaultModel: "a", Maintenance: true},
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"maintenance"},
		},
		{
			name: "maintenance does not unload an idle model",
			in:   with(idleA(), func(in *scheduler.Input) { in.Maintenance = true }),
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"maintenance"},
		},
		{
			name: "maintenance does not abandon a load",
			in: scheduler.Input{Switching: true, Loading: "b", Order: order, Maintenance: true,
				Queues: map[string]scheduler.Queue{"c": q(1, time.Minute)}},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},

		// A switch in progress: join the load, or abandon it.
		{
			name: "a load with waiters is joined, not abandoned",
			in: scheduler.Input{Switching: true, Loading: "b", LoadWaiters: 2, Order: order,
				Queues: map[string]scheduler.Queue{"b": q(2, time.Minute), "c": q(5, time.Hour)}},
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"switch to b in progress"},
		},
		{
			name: "a load nobody waits for is abandoned for a model with work",
			in: scheduler.Input{Switching: true, Loading: "b", Order: order,
				Queues: map[string]scheduler.Queue{"c": q(1, time.Minute)}},
			want:      scheduler.Decision{Kind: scheduler.Abandon, Model: "c"},
			reasonHas: []string{"waiting for b left", "c has work", "1m0s"},
		},
		{
			name: "abandon picks the longest waiting other model",
			in: scheduler.Input{Switching: true, Loading: "a", Order: order,
				Queues: map[string]scheduler.Queue{"b": q(9, time.Second), "c": q(1, time.Minute)}},
			want: scheduler.Decision{Kind: scheduler.Abandon, Model: "c"},
		},
		{
			name: "a load nobody waits for goes on when nothing else waits",
			in:   scheduler.Input{Switching: true, Loading: "b", Order: order, DefaultModel: "b"},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "switching without a known target waits",
			in: scheduler.Input{Switching: true, Order: order,
				Queues: map[string]scheduler.Queue{"c": q(1, time.Minute)}},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "an admin load is not abandoned",
			in: scheduler.Input{Switching: true, Loading: "b", AdminLoad: "b", Order: order,
				Queues: map[string]scheduler.Queue{"c": q(1, time.Minute)}},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "the pinned model's load is not abandoned",
			in: scheduler.Input{Switching: true, Loading: "b", Pinned: "b", Order: order,
				Queues: map[string]scheduler.Queue{"c": q(1, time.Minute)}},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "with a pin, a load is abandoned only for the pinned model",
			in: scheduler.Input{Switching: true, Loading: "b", Pinned: "c", Order: order,
				Queues: map[string]scheduler.Queue{"a": q(1, time.Hour), "c": q(1, time.Minute)}},
			want: scheduler.Decision{Kind: scheduler.Abandon, Model: "c"},
		},
		{
			name: "with a pin whose queue is empty, the load goes on",
			in: scheduler.Input{Switching: true, Loading: "b", Pinned: "c", Order: order,
				Queues: map[string]scheduler.Queue{"a": q(1, time.Hour)}},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "abandon skips a quarantined model",
			in: scheduler.Input{Switching: true, Loading: "b", Order: order,
				Queues:      map[string]scheduler.Queue{"c": q(1, time.Minute)},
				Quarantined: map[string]time.Time{"c": t0.Add(time.Minute)}},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "abandon for another model is refused when the budget is spent",
			in: scheduler.Input{Switching: true, Loading: "b", Order: order,
				Queues:         map[string]scheduler.Queue{"c": q(1, time.Minute)},
				RecentSwitches: switches(2, time.Minute), MaxSwitchesPerHour: 2},
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"switch budget exhausted"},
		},
		{
			name: "abandon during the drain resumes the model still loaded, budget or not",
			in: scheduler.Input{Switching: true, Active: "a", Loading: "b", Order: order,
				Queues:         map[string]scheduler.Queue{"a": q(3, time.Minute)},
				RecentSwitches: switches(2, time.Minute), MaxSwitchesPerHour: 2},
			want: scheduler.Decision{Kind: scheduler.Abandon, Model: "a"},
		},

		// Admin load.
		{
			name: "an admin load switches at once, over work, starvation and residency",
			in: with(busy(), func(in *scheduler.Input) {
				in.AdminLoad, in.ActiveSince, in.MinResidency = "c", ago(time.Second), time.Hour
			}),
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"}, reasonHas: []string{"admin load"},
		},
		{
			name: "an admin load ignores a spent budget",
			in: with(busy(), func(in *scheduler.Input) {
				in.AdminLoad, in.RecentSwitches, in.MaxSwitchesPerHour = "c", switches(5, time.Minute), 1
			}),
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
		},
		{
			name: "an admin load with nothing loaded",
			in:   scheduler.Input{Order: order, AdminLoad: "b", DefaultModel: "a"},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},
		{
			name: "an admin load of a quarantined model is refused",
			in: with(busy(), func(in *scheduler.Input) {
				in.AdminLoad, in.Quarantined = "c", map[string]time.Time{"c": t0.Add(90 * time.Second)}
			}),
			want:      scheduler.Decision{Kind: scheduler.Wait},
			reasonHas: []string{"admin load of c refused", "quarantined", "1m30s more"},
		},
		{
			name: "an admin load after the quarantine ended switches",
			in: with(busy(), func(in *scheduler.Input) {
				in.AdminLoad, in.Quarantined = "c", map[string]time.Time{"c": t0}
			}),
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
		},
		{
			name: "an admin load retries an unavailable model",
			in: with(busy(), func(in *scheduler.Input) {
				in.AdminLoad, in.Unavailable = "c", map[string]bool{"c": true}
			}),
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
		},
		{
			name: "an admin load is refused while another model is pinned",
			in:   with(busy(), func(in *scheduler.Input) { in.AdminLoad, in.Pinned = "c", "a" }),
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"refused", "a is pinned"},
		},
		{
			name: "an admin load of the pinned model switches",
			in:   with(busy(), func(in *scheduler.Input) { in.AdminLoad, in.Pinned = "c", "c" }),
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
		},
		{
			name: "an admin load of the active model changes nothing",
			in:   with(busy(), func(in *scheduler.Input) { in.AdminLoad, in.MaxWait = "a", 0 }),
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3},
		},
		{
			name: "an admin load of an unknown model is refused",
			in:   with(busy(), func(in *scheduler.Input) { in.AdminLoad = "zz" }),
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"not a configured model"},
		},

		// Pin.
		{
			name:      "the pinned active model serves its queue while another starves",
			in:        with(busy(), func(in *scheduler.Input) { in.Pinned = "a" }),
			want:      scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3},
			reasonHas: []string{"a is pinned", "b waits"},
		},
		{
			name: "the pinned active model stays with an empty queue while another starves",
			in: with(busy(), func(in *scheduler.Input) {
				in.Pinned, in.Queues = "a", map[string]scheduler.Queue{"b": q(1, time.Hour)}
			}),
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"a is pinned"},
		},
		{
			name: "the pinned model is not unloaded when idle",
			in:   with(idleA(), func(in *scheduler.Input) { in.Pinned = "a" }),
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "a pinned model that is not loaded is switched to, over residency and work",
			in: with(busy(), func(in *scheduler.Input) {
				in.Pinned, in.ActiveSince, in.MinResidency = "c", ago(time.Second), time.Hour
			}),
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"}, reasonHas: []string{"c is pinned"},
		},
		{
			name: "a pinned model is loaded when nothing is, work or not",
			in:   scheduler.Input{Order: order, Pinned: "c", Queues: map[string]scheduler.Queue{"a": q(1, time.Hour)}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
		},
		{
			name: "a pinned model waits for the budget; the active model serves meanwhile",
			in: with(busy(), func(in *scheduler.Input) {
				in.Pinned, in.RecentSwitches, in.MaxSwitchesPerHour = "c", switches(1, time.Minute), 1
			}),
			want:      scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3},
			reasonHas: []string{"c is pinned", "switch budget exhausted"},
		},
		{
			name: "a quarantined pinned model is not loaded; the active model serves meanwhile",
			in: with(busy(), func(in *scheduler.Input) {
				in.Pinned, in.Quarantined = "c", map[string]time.Time{"c": t0.Add(time.Minute)}
			}),
			want:      scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3},
			reasonHas: []string{"c is pinned", "quarantined"},
		},
		{
			name: "a quarantined pinned model with nothing loaded waits, whatever else has work",
			in: scheduler.Input{Order: order, Pinned: "c", Queues: map[string]scheduler.Queue{"a": q(1, time.Hour)},
				Quarantined: map[string]time.Time{"c": t0.Add(time.Minute)}},
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"c is pinned"},
		},
		{
			name: "an unavailable pinned model is not loaded",
			in:   with(busy(), func(in *scheduler.Input) { in.Pinned, in.Unavailable = "c", map[string]bool{"c": true} }),
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3}, reasonHas: []string{"unavailable"},
		},

		// Nothing loaded: roll back to the last good model.
		{
			name: "nothing loaded rolls back to the last good model over a longer waiting head",
			in: scheduler.Input{Order: order, LastGood: "b", MaxWait: 10 * time.Minute,
				Queues: map[string]scheduler.Queue{"a": q(1, 5*time.Minute), "b": q(1, time.Second)}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"}, reasonHas: []string{"roll back", "last good model b"},
		},
		{
			name: "the rollback gives way to a head past max_wait",
			in: scheduler.Input{Order: order, LastGood: "b", MaxWait: 10 * time.Minute,
				Queues: map[string]scheduler.Queue{"a": q(1, 11*time.Minute), "b": q(1, time.Second)}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "a"},
		},
		{
			name: "no rollback to a last good model without work",
			in: scheduler.Input{Order: order, LastGood: "b", DefaultModel: "b",
				Queues: map[string]scheduler.Queue{"c": q(1, time.Second)}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
		},
		{
			name: "no rollback to a quarantined last good model",
			in: scheduler.Input{Order: order, LastGood: "b",
				Queues:      map[string]scheduler.Queue{"a": q(1, time.Minute), "b": q(1, time.Hour)},
				Quarantined: map[string]time.Time{"b": t0.Add(time.Second)}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "a"},
		},
		{
			name: "nothing loaded with a spent budget waits and says so",
			in: scheduler.Input{Order: order, Queues: map[string]scheduler.Queue{"a": q(1, time.Minute)},
				RecentSwitches: switches(3, 50*time.Minute), MaxSwitchesPerHour: 3},
			want: scheduler.Decision{Kind: scheduler.Wait},
			// The oldest of the three started 52m ago: 8m until it leaves the hour.
			reasonHas: []string{"a waits", "switch budget exhausted: 3 switches in the last hour; next allowed in 8m0s"},
		},
		{
			name: "the default model waits for the budget too",
			in: scheduler.Input{Order: order, DefaultModel: "a",
				RecentSwitches: switches(1, time.Minute), MaxSwitchesPerHour: 1},
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"default model a waits"},
		},
		{
			name: "a quarantined default model is not loaded",
			in:   scheduler.Input{Order: order, DefaultModel: "a", Quarantined: map[string]time.Time{"a": t0.Add(time.Hour)}},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "the default model is loaded at start even with idle unload on",
			in:   scheduler.Input{Order: order, DefaultModel: "a", IdleUnloadAfter: time.Minute},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "a"},
		},
		{
			name: "the default model is not reloaded after an idle unload",
			in: scheduler.Input{Order: order, DefaultModel: "a", IdleUnloadAfter: 15 * time.Minute,
				LastActivity: ago(20 * time.Minute)},
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"idle"},
		},
		{
			name: "after an idle unload, new work loads its model",
			in: scheduler.Input{Order: order, DefaultModel: "a", IdleUnloadAfter: 15 * time.Minute,
				LastActivity: ago(20 * time.Minute), Queues: map[string]scheduler.Queue{"b": q(1, time.Second)}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},

		// Residency against the hand-over and against starvation.
		{
			name: "within min_residency an empty active queue does not hand over",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order, MinResidency: 2 * time.Minute,
				ActiveSince: ago(90 * time.Second), LastActivity: ago(time.Second),
				Queues: map[string]scheduler.Queue{"b": q(1, time.Minute)}},
			want:      scheduler.Decision{Kind: scheduler.Wait},
			reasonHas: []string{"b has work", "min_residency 2m0s", "loaded 1m30s ago", "30s more"},
		},
		{
			name: "after min_residency an empty active queue hands over",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order, MinResidency: 2 * time.Minute,
				ActiveSince: ago(2 * time.Minute), LastActivity: ago(time.Second),
				Queues: map[string]scheduler.Queue{"b": q(1, time.Minute)}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},
		{
			name: "residency beats starvation: the active model keeps serving",
			in: with(busy(), func(in *scheduler.Input) {
				in.ActiveSince, in.MinResidency, in.LastActivity = ago(time.Minute), 2*time.Minute, ago(time.Second)
			}),
			want:      scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3},
			reasonHas: []string{"b waited 20m0s > max_wait 10m0s", "min_residency"},
		},
		{
			name: "residency beats starvation even with an empty active queue",
			in: with(busy(), func(in *scheduler.Input) {
				in.Queues["a"] = scheduler.Queue{}
				in.ActiveSince, in.MinResidency = ago(time.Minute), 2*time.Minute
			}),
			want: scheduler.Decision{Kind: scheduler.Wait}, reasonHas: []string{"max_wait", "min_residency"},
		},
		{
			name: "after residency starvation switches",
			in: with(busy(), func(in *scheduler.Input) {
				in.ActiveSince, in.MinResidency, in.LastActivity = ago(3*time.Minute), 2*time.Minute, ago(time.Second)
			}),
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"}, reasonHas: []string{"max_wait"},
		},
		{
			name: "a fresh load serves its queue once before a starvation switch",
			in: with(busy(), func(in *scheduler.Input) {
				in.ActiveSince, in.LastActivity = ago(time.Second), ago(5*time.Minute)
			}),
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3}, reasonHas: []string{"just loaded"},
		},
		{
			name: "once it dispatched, a fresh load gives way to starvation",
			in: with(busy(), func(in *scheduler.Input) {
				in.ActiveSince, in.LastActivity = ago(2*time.Second), ago(time.Second)
			}),
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},
		{
			name: "an unknown ActiveSince means no residency",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order, MinResidency: time.Hour,
				Queues: map[string]scheduler.Queue{"b": q(1, time.Second)}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},

		// Switch budget.
		{
			name: "a spent budget stops the hand-over and says when the next switch is allowed",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order,
				Queues:         map[string]scheduler.Queue{"b": q(1, time.Minute)},
				RecentSwitches: switches(12, 45*time.Minute), MaxSwitchesPerHour: 12},
			want: scheduler.Decision{Kind: scheduler.Wait},
			// Twelve switches, the oldest 56m ago: 4m until it leaves the hour.
			reasonHas: []string{"switch budget exhausted: 12 switches in the last hour; next allowed in 4m0s"},
		},
		{
			name: "a spent budget stops a starvation switch; the active model serves",
			in: with(busy(), func(in *scheduler.Input) {
				in.RecentSwitches, in.MaxSwitchesPerHour = switches(2, time.Minute), 2
			}),
			want:      scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3},
			reasonHas: []string{"max_wait", "switch budget exhausted"},
		},
		{
			name: "switches older than an hour do not count",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order,
				Queues:         map[string]scheduler.Queue{"b": q(1, time.Minute)},
				RecentSwitches: []time.Time{ago(time.Hour), ago(2 * time.Hour), ago(59 * time.Minute)}, MaxSwitchesPerHour: 2},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},
		{
			name: "max_switches_per_hour 0 is no cap",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{"b": q(1, time.Minute)}, RecentSwitches: switches(100, 0)},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},

		// Quarantine.
		{
			name: "a quarantined model with work is not switched to",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order,
				Queues:      map[string]scheduler.Queue{"b": q(1, time.Minute)},
				Quarantined: map[string]time.Time{"b": t0.Add(time.Second)}},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "a quarantine that ended allows the switch",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order,
				Queues:      map[string]scheduler.Queue{"b": q(1, time.Minute)},
				Quarantined: map[string]time.Time{"b": t0}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},
		{
			name: "a starved quarantined model does not stop the active model",
			in: with(busy(), func(in *scheduler.Input) {
				in.Quarantined = map[string]time.Time{"b": t0.Add(time.Hour)}
			}),
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3},
		},
		{
			name: "quarantine passes over to the next waiting model",
			in: scheduler.Input{Order: order,
				Queues:      map[string]scheduler.Queue{"b": q(1, time.Hour), "c": q(1, time.Second)},
				Quarantined: map[string]time.Time{"b": t0.Add(time.Hour)}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
		},

		// Idle unload.
		{
			name: "an idle model is unloaded after idle_unload_after",
			in:   idleA(),
			want: scheduler.Decision{Kind: scheduler.Unload, Model: "a"}, reasonHas: []string{"idle for 30m0s", "15m0s"},
		},
		{
			name: "a model idle for less is kept",
			in:   with(idleA(), func(in *scheduler.Input) { in.LastActivity = ago(14 * time.Minute) }),
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "a model with a request in flight is kept",
			in:   with(idleA(), func(in *scheduler.Input) { in.InFlight = 1 }),
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "work anywhere, even for a quarantined model, keeps the model",
			in: with(idleA(), func(in *scheduler.Input) {
				in.Queues = map[string]scheduler.Queue{"b": q(1, time.Hour)}
				in.Quarantined = map[string]time.Time{"b": t0.Add(time.Hour)}
			}),
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "idle_unload_after 0 never unloads",
			in:   with(idleA(), func(in *scheduler.Input) { in.IdleUnloadAfter = 0 }),
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "idleness counts from the load when nothing ran since",
			in: with(idleA(), func(in *scheduler.Input) {
				in.LastActivity, in.ActiveSince = time.Time{}, ago(10*time.Minute)
			}),
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "idleness unknown never unloads",
			in: with(idleA(), func(in *scheduler.Input) {
				in.LastActivity, in.ActiveSince = time.Time{}, time.Time{}
			}),
			want: scheduler.Decision{Kind: scheduler.Wait},
		},

		// Fair turns.
		{
			name: "the hand-over prefers a model that has not had a turn over an older head",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order,
				Queues:    map[string]scheduler.Queue{"b": q(1, time.Minute), "c": q(200, time.Hour)},
				TurnEnded: map[string]time.Time{"c": ago(10 * time.Second), "b": ago(time.Hour)}},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},
		{
			name: "starvation counts from the end of the model's last turn",
			in: with(busy(), func(in *scheduler.Input) {
				in.TurnEnded = map[string]time.Time{"b": ago(5 * time.Minute)}
			}),
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3},
		},
		{
			name: "starvation counts from the head when the turn ended earlier",
			in: with(busy(), func(in *scheduler.Input) {
				in.TurnEnded = map[string]time.Time{"b": ago(time.Hour)}
			}),
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scheduler.Decide(tt.in, t0)
			if got.Kind != tt.want.Kind || got.Model != tt.want.Model || got.N != tt.want.N {
				t.Fatalf("Decide = %+v, want kind %d model %q n %d", got, tt.want.Kind, tt.want.Model, tt.want.N)
			}
			for _, s := range tt.reasonHas {
				if !strings.Contains(got.Reason, s) {
					t.Fatalf("Decide reason = %q, want it to contain %q", got.Reason, s)
				}
			}
		})
	}
}

func TestNextCheck_Instants(t *testing.T) {
	tests := []struct {
		name string
		in   scheduler.Input
		want time.Time // zero: none
	}{
		{
			name: "nothing time-bound",
			in:   scheduler.Input{Active: "a", Capacity: 4, Order: order, Queues: map[string]scheduler.Queue{"b": q(1, time.Minute)}},
		},
		{
			name: "a head passing max_wait, just after the bound",
			in: scheduler.Input{Active: "a", Order: order, MaxWait: 10 * time.Minute,
				Queues: map[string]scheduler.Queue{"b": q(1, 4*time.Minute), "c": q(1, time.Minute)}},
			want: t0.Add(6*time.Minute + time.Nanosecond),
		},
		{
			name: "a head already past max_wait is not an instant to come",
			in: scheduler.Input{Active: "a", Order: order, MaxWait: time.Minute,
				Queues: map[string]scheduler.Queue{"b": q(1, 4*time.Minute)}},
		},
		{
			name: "the turn end moves the starvation instant",
			in: scheduler.Input{Active: "a", Order: order, MaxWait: 10 * time.Minute,
				Queues:    map[string]scheduler.Queue{"b": q(1, time.Hour)},
				TurnEnded: map[string]time.Time{"b": ago(time.Minute)}},
			want: t0.Add(9*time.Minute + time.Nanosecond),
		},
		{
			name: "the end of residency",
			in: scheduler.Input{Active: "a", Order: order, ActiveSince: ago(time.Minute), MinResidency: 3 * time.Minute,
				Queues: map[string]scheduler.Queue{"b": q(1, time.Minute)}},
			want: t0.Add(2 * time.Minute),
		},
		{
			name: "a switch leaving the hour",
			in: scheduler.Input{Active: "a", Order: order, MaxSwitchesPerHour: 2,
				RecentSwitches: []time.Time{ago(50 * time.Minute), ago(20 * time.Minute)}},
			want: t0.Add(10 * time.Minute),
		},
		{
			name: "the end of a quarantine",
			in:   scheduler.Input{Order: order, Quarantined: map[string]time.Time{"b": t0.Add(time.Minute), "c": ago(time.Minute)}},
			want: t0.Add(time.Minute),
		},
		{
			name: "the slot becoming idle",
			in: scheduler.Input{Active: "a", Order: order, IdleUnloadAfter: 15 * time.Minute,
				ActiveSince: ago(time.Hour), LastActivity: ago(5 * time.Minute)},
			want: t0.Add(10 * time.Minute),
		},
		{
			name: "the earliest of several",
			in: scheduler.Input{Active: "a", Order: order, MaxWait: 10 * time.Minute, ActiveSince: ago(time.Minute),
				MinResidency: 2 * time.Minute, IdleUnloadAfter: 30 * time.Minute,
				Queues: map[string]scheduler.Queue{"b": q(1, 5*time.Minute)}},
			want: t0.Add(time.Minute),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scheduler.NextCheck(tt.in, t0); !got.Equal(tt.want) {
				t.Fatalf("NextCheck = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestETA_Estimates(t *testing.T) {
	avgSwitch := map[string]time.Duration{"a": time.Minute, "b": 90 * time.Second, "c": 4 * time.Minute}
	avgJob := map[string]time.Duration{"a": 10 * time.Second, "b": 20 * time.Second, "c": 30 * time.Second}
	conc := map[string]int{"a": 4, "b": 2, "c": 8}
	tests := []struct {
		name     string
		in       scheduler.Input
		model    string
		position int
		want     time.Duration
	}{
		{
			name: "the active model with a free slot starts it now",
			in: scheduler.Input{Active: "a", Capacity: 4, InFlight: 1, Order: order,
				Queues: map[string]scheduler.Queue{"a": q(3, 0)}},
			model: "a", position: 2, want: 0,
		},
		{
			name: "the active model at capacity: one job time per round of capacity",
			in: scheduler.Input{Active: "a", Capacity: 4, InFlight: 4, Order: order,
				Queues: map[string]scheduler.Queue{"a": q(9, 0)}},
			model: "a", position: 5, want: 20 * time.Second,
		},
		{
			name: "the model being loaded: the rest of its switch, then its rounds",
			in: scheduler.Input{Switching: true, Loading: "b", Order: order, MaxConcurrency: conc,
				RecentSwitches: []time.Time{ago(time.Hour), ago(30 * time.Second)},
				Queues:         map[string]scheduler.Queue{"b": q(5, 0)}},
			model: "b", position: 4, want: time.Minute + 2*20*time.Second,
		},
		{
			name: "a load overdue is ready any moment",
			in: scheduler.Input{Switching: true, Loading: "b", Order: order,
				RecentSwitches: []time.Time{ago(10 * time.Minute)}, Queues: map[string]scheduler.Queue{"b": q(1, 0)}},
			model: "b", position: 0, want: 0,
		},
		{
			name:  "nothing loaded: the model's switch",
			in:    scheduler.Input{Order: order, MaxConcurrency: conc, Queues: map[string]scheduler.Queue{"c": q(1, 0)}},
			model: "c", position: 0, want: 4 * time.Minute,
		},
		{
			name: "another model active: its queue first, then the switch",
			in: scheduler.Input{Active: "a", Capacity: 4, InFlight: 2, Order: order, MaxConcurrency: conc,
				Queues: map[string]scheduler.Queue{"a": q(6, 0), "b": q(3, 0)}},
			// a finishes 8 jobs in 2 rounds of 10s; b loads in 90s; position
			// 2 is b's second round.
			model: "b", position: 2, want: 20*time.Second + 90*time.Second + 20*time.Second,
		},
		{
			name: "another model active: max_wait cuts its turn, plus one job to drain",
			in: scheduler.Input{Active: "a", Capacity: 1, Order: order, MaxWait: time.Minute, MaxConcurrency: conc,
				Queues: map[string]scheduler.Queue{"a": q(100, 0), "b": q(1, 50*time.Second)}},
			model: "b", position: 0, want: 10*time.Second + 10*time.Second + 90*time.Second,
		},
		{
			name: "another model active: never before its residency ends",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order, MinResidency: 2 * time.Minute,
				ActiveSince: ago(30 * time.Second), Queues: map[string]scheduler.Queue{"b": q(1, 0)}},
			model: "b", position: 0, want: 90*time.Second + 90*time.Second,
		},
		{
			name: "a model whose wait began earlier takes its turn first",
			in: scheduler.Input{Order: order, MaxConcurrency: conc,
				Queues: map[string]scheduler.Queue{"b": q(1, time.Second), "c": q(16, time.Minute)}},
			// c: switch 4m, 16 jobs in 2 rounds of 30s; then b's switch.
			model: "b", position: 0, want: 4*time.Minute + time.Minute + 90*time.Second,
		},
		{
			name: "a new job (position past an empty queue) counts as waiting from now",
			in: scheduler.Input{Order: order, MaxConcurrency: conc,
				Queues: map[string]scheduler.Queue{"c": q(1, time.Minute)}},
			model: "b", position: 0, want: 4*time.Minute + 30*time.Second + 90*time.Second,
		},
		{
			name: "a quarantined model starts after its quarantine",
			in: scheduler.Input{Order: order, Queues: map[string]scheduler.Queue{"b": q(1, 0)},
				Quarantined: map[string]time.Time{"b": t0.Add(5 * time.Minute)}},
			model: "b", position: 0, want: 5*time.Minute + 90*time.Second,
		},
		{
			name: "a spent budget delays the switch until it allows one",
			in: scheduler.Input{Order: order, Queues: map[string]scheduler.Queue{"b": q(1, 0)},
				RecentSwitches: []time.Time{ago(55 * time.Minute)}, MaxSwitchesPerHour: 1},
			model: "b", position: 0, want: 5*time.Minute + 90*time.Second,
		},
		{
			name: "the pinned model is switched to after the drain only",
			in: scheduler.Input{Active: "a", Capacity: 4, InFlight: 1, Order: order, Pinned: "b",
				Queues: map[string]scheduler.Queue{"a": q(50, time.Hour), "b": q(1, 0)}},
			model: "b", position: 0, want: 10*time.Second + 90*time.Second,
		},
		{
			name: "an admin load likewise",
			in: scheduler.Input{Active: "a", Capacity: 4, Order: order, AdminLoad: "c",
				Queues: map[string]scheduler.Queue{"a": q(50, time.Hour)}},
			model: "c", position: 0, want: 10*time.Second + 4*time.Minute,
		},
		{
			name:  "maintenance: unknown",
			in:    scheduler.Input{Active: "a", Capacity: 4, Order: order, Maintenance: true, Queues: map[string]scheduler.Queue{"a": q(1, 0)}},
			model: "a", position: 0, want: -1,
		},
		{
			name:  "another model pinned: unknown",
			in:    scheduler.Input{Active: "a", Capacity: 4, Order: order, Pinned: "a"},
			model: "b", position: 0, want: -1,
		},
		{
			name:  "an unavailable model: unknown",
			in:    scheduler.Input{Order: order, Unavailable: map[string]bool{"b": true}},
			model: "b", position: 0, want: -1,
		},
		{
			name:  "an unknown model: unknown",
			in:    scheduler.Input{Order: order},
			model: "zz", position: 0, want: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scheduler.ETA(tt.in, tt.model, tt.position, avgSwitch, avgJob, t0); got != tt.want {
				t.Fatalf("ETA = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestETA_ZeroWhenDispatched checks that ETA says 0 exactly for the jobs
// Decide dispatches now.
func TestETA_ZeroWhenDispatched(t *testing.T) {
	in := scheduler.Input{Active: "a", Capacity: 8, InFlight: 5, Order: order,
		Queues: map[string]scheduler.Queue{"a": q(10, time.Second)}}
	d := scheduler.Decide(in, t0)
	if d.Kind != scheduler.Dispatch {
		t.Fatalf("Decide = %+v, want a dispatch", d)
	}
	for pos := range 10 {
		eta := scheduler.ETA(in, "a", pos, nil, map[string]time.Duration{"a": time.Second}, t0)
		if (pos < d.N) != (eta == 0) {
			t.Fatalf("position %d: ETA %s, but Decide dispatches %d", pos, eta, d.N)
		}
	}
}
