package fakenomad_test

import (
	"testing"

	"github.com/hashicorp/nomad/api"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakenomad"
)

// TestPlacement_Failures checks the dry run and the registration of jobs
// the node cannot take, against what Nomad v2.0.6 answered: a plan with
// FailedTGAllocs and a blocked evaluation, and once registered a blocked
// evaluation, no allocation and Queued: 1, until the job is stopped.
func TestPlacement_Failures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      fakenomad.Options
		vars      []string
		filtered  map[string]int
		exhausted map[string]int
	}{
		{"missing driver", fakenomad.Options{Drivers: []string{"raw_exec"}}, []string{`driver = "docker"`},
			map[string]int{"missing drivers": 1}, nil},
		{"missing device", fakenomad.Options{Devices: []string{}}, []string{`gpus = 1`},
			map[string]int{"missing devices": 1}, nil},
		{"too much memory", fakenomad.Options{MemoryTotalMB: 4096}, []string{`memory_mb = 1000000`},
			nil, map[string]int{"memory": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fakenomad.New(t, tt.opts)
			c := newClient(t, srv)
			job := parseBackend(t, c, "unplaceable", tt.vars...)

			plan, _, err := c.Jobs().Plan(job, true, nil)
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			checkMetric(t, "plan", plan.FailedTGAllocs["backend"], tt.filtered, tt.exhausted)
			if len(plan.CreatedEvals) != 1 || plan.CreatedEvals[0].Status != "blocked" {
				t.Fatalf("plan created evals = %+v", plan.CreatedEvals)
			}
			assertEqual(t, "plan place", plan.Annotations.DesiredTGUpdates["backend"].Place, uint64(1))
			assertEqual(t, "plan diff", plan.Diff.Type, "Added")
			if tt.exhausted != nil {
				assertEqual(t, "resources exhausted", *plan.FailedTGAllocs["backend"].ResourcesExhausted["server"].MemoryMB, 1000000)
			}

			resp := register(t, c, job)
			ev := waitEval(t, c, resp.EvalID, "complete")
			checkMetric(t, "eval", ev.FailedTGAllocs["backend"], tt.filtered, tt.exhausted)
			assertEqual(t, "queued", ev.QueuedAllocations["backend"], 1)
			if ev.BlockedEval == "" {
				t.Fatal("no blocked eval")
			}
			blocked, _, err := c.Evaluations().Info(ev.BlockedEval, nil)
			if err != nil {
				t.Fatalf("blocked eval: %v", err)
			}
			assertEqual(t, "blocked status", blocked.Status, "blocked")
			assertEqual(t, "blocked description", blocked.StatusDescription, "created to place remaining allocations")
			assertEqual(t, "blocked trigger", blocked.TriggeredBy, "queued-allocs")
			assertEqual(t, "blocked previous", blocked.PreviousEval, ev.ID)

			allocs, _, err := c.Jobs().Allocations("unplaceable", true, nil)
			if err != nil || len(allocs) != 0 {
				t.Fatalf("allocations = %s, %v", describeStubs(allocs), err)
			}
			sum, _, err := c.Jobs().Summary("unplaceable", nil)
			if err != nil {
				t.Fatalf("summary: %v", err)
			}
			assertEqual(t, "summary queued", sum.Summary["backend"].Queued, 1)
			info, _, _ := c.Jobs().Info("unplaceable", nil)
			assertEqual(t, "job status", *info.Status, "pending")

			// Stopping the job ends the wait.
			if _, _, err := c.Jobs().Deregister("unplaceable", false, nil); err != nil {
				t.Fatalf("deregister: %v", err)
			}
			waitEval(t, c, ev.BlockedEval, "canceled")
			waitJobStatus(t, c, "unplaceable", "dead")
		})
	}
}

func checkMetric(t *testing.T, what string, m *api.AllocationMetric, filtered, exhausted map[string]int) {
	t.Helper()
	if m == nil {
		t.Fatalf("%s: no failed allocation metric", what)
	}
	if !sameCounts(m.ConstraintFiltered, filtered) || !sameCounts(m.DimensionExhausted, exhausted) {
		t.Fatalf("%s: ConstraintFiltered %v DimensionExhausted %v, want %v and %v",
			what, m.ConstraintFiltered, m.DimensionExhausted, filtered, exhausted)
	}
	assertEqual(t, what+" nodes evaluated", m.NodesEvaluated, 1)
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// waitEval follows an evaluation with blocking queries until its status
// is want.
func waitEval(t *testing.T, c *api.Client, id, want string) *api.Evaluation {
	t.Helper()
	var idx uint64
	for range 100 {
		ev, meta, err := c.Evaluations().Info(id, &api.QueryOptions{WaitIndex: idx, WaitTime: waitTimeout})
		if err != nil {
			t.Fatalf("eval %s: %v", id, err)
		}
		if ev.Status == want {
			return ev
		}
		idx = meta.LastIndex
	}
	t.Fatalf("eval %s never %s", id, want)
	return nil
}

// TestPlacement_BlockedJobPlacedWhenCapacityFrees: a job waiting for memory
// is placed as soon as the job holding it is told to stop (Nomad schedules
// on what allocations ask for, not on what processes still use).
func TestPlacement_BlockedJobPlacedWhenCapacityFrees(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{MemoryTotalMB: 1000})
	c := newClient(t, srv)
	waitRunning(t, c, parseBackend(t, c, "first", `memory_mb = 600`))

	// The plan says the node lacks memory only because first holds it.
	second := parseBackend(t, c, "second", `memory_mb = 600`)
	plan, _, err := c.Jobs().Plan(second, false, nil)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	checkMetric(t, "plan", plan.FailedTGAllocs["backend"], nil, map[string]int{"memory": 1})

	resp := register(t, c, second)
	ev := waitEval(t, c, resp.EvalID, "complete")
	if ev.BlockedEval == "" {
		t.Fatalf("second was placed next to first: %+v", ev)
	}
	if _, _, err := c.Jobs().Deregister("first", false, nil); err != nil {
		t.Fatalf("deregister first: %v", err)
	}
	waitAllocs(t, c, "second", "running", oneWith("running"))
	waitEval(t, c, ev.BlockedEval, "complete")
}

func TestPlacement_StaticPortCollision(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	port := freeTCPPort(t)
	a := parseBackend(t, c, "a")
	a.TaskGroups[0].Networks[0].DynamicPorts = nil
	a.TaskGroups[0].Networks[0].ReservedPorts = []api.Port{{Label: "http", Value: port}}
	waitRunning(t, c, a)
	b := parseBackend(t, c, "b")
	b.TaskGroups[0].Networks[0].DynamicPorts = nil
	b.TaskGroups[0].Networks[0].ReservedPorts = []api.Port{{Label: "http", Value: port}}
	plan, _, err := c.Jobs().Plan(b, false, nil)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	want := map[string]int{"network: reserved port collision http=" + itoa(port): 1}
	checkMetric(t, "plan", plan.FailedTGAllocs["backend"], nil, want)
}
