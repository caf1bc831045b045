package orchestrator

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
)

func newTestMetrics(t *testing.T) *metrics {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMetrics_SwitchOutcome(t *testing.T) {
	tests := []struct {
		name string
		rec  jobstore.SwitchRecord
		err  error
		want string
	}{
		{"ok", jobstore.SwitchRecord{To: "a"}, nil, outcomeOK},
		{"adopted", jobstore.SwitchRecord{To: "a", Adopted: true}, nil, outcomeAdopted},
		{"failed", jobstore.SwitchRecord{To: "a"}, errors.New("boom"), outcomeFailed},
		{"wedged", jobstore.SwitchRecord{To: "a"}, fmt.Errorf("%w: memory", ErrWedged), outcomeWedged},
		{"abandoned", jobstore.SwitchRecord{To: "a"}, errAbandoned, outcomeAbandoned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := switchOutcome(tt.rec, tt.err); got != tt.want {
				t.Fatalf("switchOutcome = %q, want %q", got, tt.want)
			}
		})
	}
}

// An ended switch is counted and observes only the steps it ran.
func TestMetrics_SwitchEnded(t *testing.T) {
	m := newTestMetrics(t)
	m.switchEnded(jobstore.SwitchRecord{To: "a", Drain: time.Millisecond, Stop: time.Second,
		Start: 3 * time.Second, Total: 4 * time.Second, RequestedBy: "alice"}, outcomeOK)
	m.preflightFailed("b", "", 2*time.Second)
	if got := testutil.ToFloat64(m.switches.WithLabelValues("a", outcomeOK, "alice")); got != 1 {
		t.Fatalf("switches_total{a,ok,alice} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.switches.WithLabelValues("b", outcomePreflightFailed, "")); got != 1 {
		t.Fatalf("switches_total{b,preflight_failed} = %v, want 1", got)
	}
	// drain, stop, start, total, and the failed preflight: no memory or
	// canary series, as those steps never ran.
	if n := testutil.CollectAndCount(m.phaseSeconds); n != 5 {
		t.Fatalf("switch_phase_seconds has %d series, want 5", n)
	}
}

// Wall time goes to switching or serving by the phase it was spent in.
func TestMetrics_SlotClock(t *testing.T) {
	m := newTestMetrics(t)
	var c slotClock
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at    time.Duration
		phase jobstore.Phase
	}{
		{0, jobstore.PhaseIdle},
		{5 * time.Second, jobstore.PhaseStopping},       // 5s idle: neither
		{7 * time.Second, jobstore.PhaseStarting},       // 2s switching
		{17 * time.Second, jobstore.PhaseReady},         // 10s switching
		{47 * time.Second, jobstore.PhasePreflight},     // 30s serving
		{50 * time.Second, jobstore.PhaseDraining},      // 3s serving
		{51 * time.Second, jobstore.PhaseWaitingMemory}, // 1s switching
	}
	for _, s := range steps {
		m.observeState(&c, &jobstore.SlotState{Phase: s.phase, Active: "a"}, []string{"a", "b"}, t0.Add(s.at))
	}
	m.termEnded(&c, t0.Add(55*time.Second)) // 4s switching
	if got := testutil.ToFloat64(m.switching); got != 17 {
		t.Fatalf("time_switching_seconds_total = %v, want 17", got)
	}
	if got := testutil.ToFloat64(m.serving); got != 33 {
		t.Fatalf("time_serving_seconds_total = %v, want 33", got)
	}
	if n := testutil.CollectAndCount(m.phase); n != 0 {
		t.Fatalf("phase has %d series after the term, want 0", n)
	}
}

func TestMetrics_ActiveModelAndPhase(t *testing.T) {
	m := newTestMetrics(t)
	var c slotClock
	m.observeState(&c, &jobstore.SlotState{Phase: jobstore.PhaseReady, Active: "b"}, []string{"a", "b"}, time.Unix(1, 0))
	for _, tt := range []struct {
		name string
		g    prometheus.Gauge
		want float64
	}{
		{"active b", m.activeModel.WithLabelValues("b"), 1},
		{"inactive a", m.activeModel.WithLabelValues("a"), 0},
		{"phase ready", m.phase.WithLabelValues("ready"), 1},
		{"phase starting", m.phase.WithLabelValues("starting"), 0},
	} {
		if got := testutil.ToFloat64(tt.g); got != tt.want {
			t.Fatalf("%s = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMetrics_JobEnded(t *testing.T) {
	m := newTestMetrics(t)
	m.jobEnded("a", string(jobstore.StatusSucceeded), time.Second, false)
	m.jobEnded("a", string(jobstore.Requeued), time.Millisecond, true)
	if got := testutil.ToFloat64(m.jobs.WithLabelValues("a", "succeeded")); got != 1 {
		t.Fatalf("jobs_total{a,succeeded} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.jobs.WithLabelValues("a", "requeued")); got != 1 {
		t.Fatalf("jobs_total{a,requeued} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.backendErrors.WithLabelValues("a")); got != 1 {
		t.Fatalf("backend_errors_total{a} = %v, want 1", got)
	}
}

// Metrics register on the registry given: one registry cannot hold two
// orchestrators' metrics (New defaults to a private registry each).
func TestMetrics_Registerer(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := newMetrics(reg); err == nil {
		t.Fatal("registering twice on one registry succeeded")
	}
}
