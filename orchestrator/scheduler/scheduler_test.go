package scheduler_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/orchestrator/scheduler"
)

// t0 is the fixed "now" of every table case; queues are placed relative to it.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// ago is a head job enqueued d before t0.
func ago(d time.Duration) time.Time { return t0.Add(-d) }

var order = []string{"a", "b", "c"}

func TestDecide_Kinds(t *testing.T) {
	tests := []struct {
		name string
		in   scheduler.Input
		// want is compared field by field, except Reason.
		want scheduler.Decision
		// reasonHas lists substrings the reason must contain.
		reasonHas []string
	}{
		{
			name: "switching in progress waits even with work everywhere",
			in: scheduler.Input{
				Active: "a", Switching: true, Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 3, HeadSince: ago(time.Second)},
					"b": {Pending: 1, HeadSince: ago(time.Hour)},
				},
				MaxWait: time.Minute, DefaultModel: "c",
			},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "switching with nothing loaded waits instead of loading the default",
			in:   scheduler.Input{Switching: true, Order: order, DefaultModel: "a"},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "nothing loaded picks the longest waiting head",
			in: scheduler.Input{
				Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 5, HeadSince: ago(time.Second)},
					"b": {Pending: 1, HeadSince: ago(3 * time.Second)},
					"c": {Pending: 2, HeadSince: ago(2 * time.Second)},
				},
				DefaultModel: "a",
			},
			want:      scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
			reasonHas: []string{"nothing loaded", "b", "3s"},
		},
		{
			name: "nothing loaded breaks a tie by configuration order",
			in: scheduler.Input{
				Order: []string{"c", "b", "a"},
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 1, HeadSince: ago(time.Second)},
					"b": {Pending: 1, HeadSince: ago(time.Second)},
					"c": {Pending: 1, HeadSince: ago(time.Second)},
				},
			},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
		},
		{
			name: "nothing loaded ignores an empty queue with an old head",
			in: scheduler.Input{
				Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 0, HeadSince: ago(time.Hour)},
					"b": {Pending: 1, HeadSince: ago(time.Second)},
				},
			},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},
		{
			name: "nothing loaded skips an unavailable model with work",
			in: scheduler.Input{
				Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 1, HeadSince: ago(time.Hour)},
					"b": {Pending: 1, HeadSince: ago(time.Second)},
				},
				Unavailable: map[string]bool{"a": true},
			},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},
		{
			name: "nothing loaded and nothing waiting loads the default",
			in: scheduler.Input{
				Order:        order,
				Queues:       map[string]scheduler.Queue{"a": {}, "b": {}},
				DefaultModel: "b",
			},
			want:      scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
			reasonHas: []string{"default"},
		},
		{
			name: "nothing loaded and only unavailable work loads the default",
			in: scheduler.Input{
				Order:        order,
				Queues:       map[string]scheduler.Queue{"a": {Pending: 2, HeadSince: ago(time.Minute)}},
				DefaultModel: "b",
				Unavailable:  map[string]bool{"a": true},
			},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
		},
		{
			name: "nothing loaded and the default unavailable waits",
			in: scheduler.Input{
				Order:        order,
				DefaultModel: "b",
				Unavailable:  map[string]bool{"b": true},
			},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "nothing loaded, nothing waiting, no default waits",
			in:   scheduler.Input{Order: order, Queues: map[string]scheduler.Queue{"a": {}}},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "active with free capacity dispatches all pending",
			in: scheduler.Input{
				Active: "a", InFlight: 1, Capacity: 8, Order: order,
				Queues: map[string]scheduler.Queue{"a": {Pending: 3, HeadSince: ago(time.Second)}},
			},
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3},
		},
		{
			name: "active with little capacity dispatches only the free slots",
			in: scheduler.Input{
				Active: "a", InFlight: 6, Capacity: 8, Order: order,
				Queues: map[string]scheduler.Queue{"a": {Pending: 10, HeadSince: ago(time.Second)}},
			},
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 2},
		},
		{
			name: "active at capacity waits",
			in: scheduler.Input{
				Active: "a", InFlight: 4, Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{"a": {Pending: 2, HeadSince: ago(time.Second)}},
			},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "active over capacity waits",
			in: scheduler.Input{
				Active: "a", InFlight: 6, Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{"a": {Pending: 2, HeadSince: ago(time.Second)}},
			},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "active at capacity with other work waits rather than switching",
			in: scheduler.Input{
				Active: "a", InFlight: 4, Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 2, HeadSince: ago(time.Second)},
					"b": {Pending: 1, HeadSince: ago(time.Minute)},
				},
			},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "active idle with nothing anywhere waits",
			in: scheduler.Input{
				Active: "a", Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{"a": {}, "b": {}}, DefaultModel: "b",
			},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "active queue empty and another model has work switches",
			in: scheduler.Input{
				Active: "a", InFlight: 2, Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {},
					"b": {Pending: 1, HeadSince: ago(2 * time.Second)},
				},
			},
			want:      scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
			reasonHas: []string{"a has no queued work", "b has", "2s"},
		},
		{
			name: "active queue empty switches to the longest waiting other",
			in: scheduler.Input{
				Active: "a", Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {},
					"b": {Pending: 9, HeadSince: ago(time.Second)},
					"c": {Pending: 1, HeadSince: ago(5 * time.Second)},
				},
			},
			want: scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
		},
		{
			name: "active queue empty and the only other work is unavailable waits",
			in: scheduler.Input{
				Active: "a", Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {},
					"b": {Pending: 1, HeadSince: ago(time.Hour)},
				},
				MaxWait:     time.Minute,
				Unavailable: map[string]bool{"b": true},
			},
			want: scheduler.Decision{Kind: scheduler.Wait},
		},
		{
			name: "starved head forces a switch while the active model has work",
			in: scheduler.Input{
				Active: "a", InFlight: 1, Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 5, HeadSince: ago(time.Second)},
					"b": {Pending: 1, HeadSince: ago(90 * time.Second)},
				},
				MaxWait: time.Minute,
			},
			want:      scheduler.Decision{Kind: scheduler.Switch, Model: "b"},
			reasonHas: []string{"max_wait", "1m30s", "1m0s"},
		},
		{
			name: "starved head forces a switch even at capacity",
			in: scheduler.Input{
				Active: "a", InFlight: 4, Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 5, HeadSince: ago(time.Second)},
					"c": {Pending: 1, HeadSince: ago(2 * time.Minute)},
				},
				MaxWait: time.Minute,
			},
			want:      scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
			reasonHas: []string{"max_wait"},
		},
		{
			name: "starvation picks the longest waiting head",
			in: scheduler.Input{
				Active: "a", Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 5, HeadSince: ago(time.Second)},
					"b": {Pending: 1, HeadSince: ago(2 * time.Minute)},
					"c": {Pending: 1, HeadSince: ago(3 * time.Minute)},
				},
				MaxWait: time.Minute,
			},
			want:      scheduler.Decision{Kind: scheduler.Switch, Model: "c"},
			reasonHas: []string{"max_wait"},
		},
		{
			name: "head waited exactly max_wait keeps dispatching",
			in: scheduler.Input{
				Active: "a", Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 2, HeadSince: ago(time.Second)},
					"b": {Pending: 1, HeadSince: ago(time.Minute)},
				},
				MaxWait: time.Minute,
			},
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 2},
		},
		{
			name: "max_wait not exceeded keeps dispatching the active model",
			in: scheduler.Input{
				Active: "a", InFlight: 2, Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 7, HeadSince: ago(time.Second)},
					"b": {Pending: 3, HeadSince: ago(59 * time.Second)},
				},
				MaxWait: time.Minute,
			},
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 2},
		},
		{
			name: "max_wait zero disables the starvation bound",
			in: scheduler.Input{
				Active: "a", Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 1, HeadSince: ago(time.Second)},
					"b": {Pending: 1, HeadSince: ago(24 * time.Hour)},
				},
			},
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 1},
		},
		{
			name: "the active model's own old head is no reason to switch",
			in: scheduler.Input{
				Active: "a", Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 1, HeadSince: ago(time.Hour)},
					"b": {Pending: 1, HeadSince: ago(time.Second)},
				},
				MaxWait: time.Minute,
			},
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 1},
		},
		{
			name: "a starved but unavailable model is not switched to",
			in: scheduler.Input{
				Active: "a", Capacity: 4, Order: order,
				Queues: map[string]scheduler.Queue{
					"a": {Pending: 1, HeadSince: ago(time.Second)},
					"b": {Pending: 1, HeadSince: ago(time.Hour)},
				},
				MaxWait:     time.Minute,
				Unavailable: map[string]bool{"b": true},
			},
			want: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 1},
		},
		{
			name: "a model missing from Order is never chosen",
			in: scheduler.Input{
				Active: "a", Capacity: 4, Order: []string{"a", "b"},
				Queues: map[string]scheduler.Queue{
					"a": {},
					"z": {Pending: 1, HeadSince: ago(time.Hour)},
				},
				MaxWait: time.Minute,
			},
			want: scheduler.Decision{Kind: scheduler.Wait},
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

func TestDecide_DoesNotMutateInput(t *testing.T) {
	in := scheduler.Input{
		Active: "a", Capacity: 4, Order: []string{"a", "b"},
		Queues: map[string]scheduler.Queue{
			"a": {Pending: 1, HeadSince: ago(time.Second)},
			"b": {Pending: 2, HeadSince: ago(time.Hour)},
		},
		MaxWait:     time.Minute,
		Unavailable: map[string]bool{},
	}
	before := fmt.Sprintf("%+v", in)
	first := scheduler.Decide(in, t0)
	if after := fmt.Sprintf("%+v", in); after != before {
		t.Fatalf("Decide changed its input:\nbefore %s\nafter  %s", before, after)
	}
	if again := scheduler.Decide(in, t0); again != first {
		t.Fatalf("Decide is not deterministic: %+v then %+v", first, again)
	}
}

func TestDecision_String(t *testing.T) {
	tests := []struct {
		name string
		d    scheduler.Decision
		want string
	}{
		{name: "wait", d: scheduler.Decision{Kind: scheduler.Wait}, want: "wait"},
		{name: "wait ignores fields", d: scheduler.Decision{Kind: scheduler.Wait, Model: "a", N: 3, Reason: "x"}, want: "wait"},
		{name: "dispatch", d: scheduler.Decision{Kind: scheduler.Dispatch, Model: "a", N: 3}, want: "dispatch 3 to a"},
		{name: "switch", d: scheduler.Decision{Kind: scheduler.Switch, Model: "b", Reason: "nothing loaded: default model"},
			want: "switch to b: nothing loaded: default model"},
		{name: "unknown kind reads as wait", d: scheduler.Decision{Kind: scheduler.Kind(42)}, want: "wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDecide_Properties checks over many random inputs what must hold for
// every decision, whatever the policy's details.
func TestDecide_Properties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	models := []string{"a", "b", "c", "d"}
	pick := func() string { return models[rng.IntN(len(models))] }

	for i := range 20000 {
		in := scheduler.Input{
			Switching: rng.IntN(10) == 0,
			InFlight:  rng.IntN(6),
			Capacity:  rng.IntN(5),
			Queues:    make(map[string]scheduler.Queue),
			Order:     models,
		}
		if rng.IntN(4) != 0 {
			in.Active = pick()
		}
		if rng.IntN(2) == 0 {
			in.MaxWait = time.Duration(1+rng.IntN(120)) * time.Second
		}
		if rng.IntN(2) == 0 {
			in.DefaultModel = pick()
		}
		for _, m := range models {
			if rng.IntN(3) == 0 {
				in.Queues[m] = scheduler.Queue{
					Pending: rng.IntN(4),
					// Whole seconds, so ties happen.
					HeadSince: ago(time.Duration(rng.IntN(180)) * time.Second),
				}
			}
			if rng.IntN(5) == 0 {
				if in.Unavailable == nil {
					in.Unavailable = make(map[string]bool)
				}
				in.Unavailable[m] = true
			}
		}

		d := scheduler.Decide(in, t0)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("case %d: input %+v: decision %+v: %s", i, in, d, fmt.Sprintf(format, args...))
		}
		available := func(m string) bool { return in.Queues[m].Pending > 0 && !in.Unavailable[m] }

		switch d.Kind {
		case scheduler.Wait:
			if d.Model != "" || d.N != 0 {
				fail("wait carries a model or count")
			}
		case scheduler.Dispatch:
			if in.Switching {
				fail("dispatch while switching")
			}
			if in.Active == "" || d.Model != in.Active {
				fail("dispatch to %q, active is %q", d.Model, in.Active)
			}
			if d.N <= 0 || d.N > in.Capacity-in.InFlight {
				fail("dispatch %d with capacity %d and %d in flight", d.N, in.Capacity, in.InFlight)
			}
			if d.N > in.Queues[in.Active].Pending {
				fail("dispatch %d of %d pending", d.N, in.Queues[in.Active].Pending)
			}
		case scheduler.Switch:
			if in.Switching {
				fail("switch while switching")
			}
			if d.Model == "" || d.Model == in.Active {
				fail("switch to the active model %q", d.Model)
			}
			if in.Unavailable[d.Model] {
				fail("switch to unavailable %q", d.Model)
			}
			if d.Reason == "" {
				fail("switch without a reason")
			}
			if in.Queues[d.Model].Pending == 0 && (in.Active != "" || d.Model != in.DefaultModel) {
				fail("switch to %q which has no pending work", d.Model)
			}
		default:
			fail("unknown kind")
		}

		// Liveness: the decision must not Wait while there is something
		// to do.
		if in.Switching {
			if d.Kind != scheduler.Wait {
				fail("not waiting while switching")
			}
			continue
		}
		var starved []string
		for _, m := range models {
			if m != in.Active && available(m) && in.MaxWait > 0 && t0.Sub(in.Queues[m].HeadSince) > in.MaxWait {
				starved = append(starved, m)
			}
		}
		if in.Active != "" && len(starved) > 0 && d.Kind != scheduler.Switch {
			fail("%v starved past max_wait %s, but no switch", starved, in.MaxWait)
		}
		if in.Active != "" && len(starved) == 0 && in.Queues[in.Active].Pending > 0 &&
			in.Capacity > in.InFlight && d.Kind != scheduler.Dispatch {
			fail("active model has work and free capacity, but no dispatch")
		}
		if in.Active == "" {
			anyWork := false
			for _, m := range models {
				anyWork = anyWork || available(m)
			}
			if anyWork && d.Kind != scheduler.Switch {
				fail("nothing loaded and work waits, but no switch")
			}
		}
		// A switch goes to the longest waiting available head, first in
		// Order on a tie, unless it is the default model load.
		if d.Kind == scheduler.Switch && in.Queues[d.Model].Pending > 0 {
			for _, m := range models {
				if m == in.Active || m == d.Model || !available(m) {
					continue
				}
				if in.Queues[m].HeadSince.Before(in.Queues[d.Model].HeadSince) {
					fail("switch to %q, but %q waited longer", d.Model, m)
				}
			}
		}
	}
}
