package orchestrator

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
)

// Switch outcomes, the outcome label of switches_total.
const (
	outcomeOK              = "ok"
	outcomeFailed          = "failed"
	outcomeWedged          = "wedged"
	outcomeAbandoned       = "abandoned"
	outcomePreflightFailed = "preflight_failed"
	outcomeAdopted         = "adopted"
)

// switchBuckets span a switch's steps: a drain or a canary in
// milliseconds, a 200 GB model's load in many minutes.
var switchBuckets = []float64{0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 450, 600, 900, 1200}

// jobBuckets span one backend request, up to inference_timeout.
var jobBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 450, 600}

// allPhases are the slot phases, each a series of the phase gauge.
var allPhases = []jobstore.Phase{jobstore.PhaseIdle, jobstore.PhasePreflight, jobstore.PhaseDraining,
	jobstore.PhaseStopping, jobstore.PhaseWaitingMemory, jobstore.PhaseStarting, jobstore.PhaseCanary,
	jobstore.PhaseReady, jobstore.PhaseFailed, jobstore.PhaseWedged}

// metrics are the orchestrator's Prometheus metrics. The leader's loop
// goroutine updates the slot's, which exist only while this instance
// leads (a follower knows nothing about the slot); executors update the
// jobs'.
type metrics struct {
	switches      *prometheus.CounterVec
	phaseSeconds  *prometheus.HistogramVec
	activeModel   *prometheus.GaugeVec
	phase         *prometheus.GaugeVec
	jobs          *prometheus.CounterVec
	jobDuration   *prometheus.HistogramVec
	backendErrors *prometheus.CounterVec
	queueDepth    *prometheus.GaugeVec
	switching     prometheus.Counter
	serving       prometheus.Counter
	leader        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "switchboard", "orchestrator"
	m := &metrics{
		switches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "switches_total",
			Help: "Model switches that ended, by target model (empty for an unload), outcome (ok, failed, wedged, abandoned, preflight_failed, adopted) and the key the switch was for (empty when none: default model, admin, adoption).",
		}, []string{"to_model", "outcome", "key"}),
		phaseSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name:    "switch_phase_seconds",
			Help:    "Time an ended switch spent in each step (preflight, drain, stop, memory, start, canary) and in all (total); steps that did not run are not observed.",
			Buckets: switchBuckets,
		}, []string{"phase"}),
		activeModel: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "active_model",
			Help: "1 for the model the leader serves, 0 for every other.",
		}, []string{"model"}),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "phase",
			Help: "1 for the slot's current phase, 0 for every other.",
		}, []string{"phase"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "jobs_total",
			Help: "Jobs the executors finished, by model and outcome: succeeded, failed, canceled, requeued.",
		}, []string{"model", "outcome"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name:    "job_duration_seconds",
			Help:    "Time a job's backend request took.",
			Buckets: jobBuckets,
		}, []string{"model"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "backend_errors_total",
			Help: "Backend requests that found the backend unreachable or got a 5xx answer.",
		}, []string{"model"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "queue_depth",
			Help: "Jobs queued per model, as the leader last saw them.",
		}, []string{"model"}),
		switching: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "time_switching_seconds_total",
			Help: "Wall time the leader spent with a switch under way (draining, stopping, waiting for memory, starting, canary).",
		}),
		serving: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "time_serving_seconds_total",
			Help: "Wall time the leader spent with a model ready to serve (including while a successor is preflighted).",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "leader",
			Help: "1 while this instance leads the slot.",
		}),
	}
	var err error
	for _, c := range []prometheus.Collector{m.switches, m.phaseSeconds, m.activeModel, m.phase, m.jobs,
		m.jobDuration, m.backendErrors, m.queueDepth, m.switching, m.serving, m.leader} {
		if e := reg.Register(c); e != nil {
			err = errors.Join(err, e)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("register orchestrator metrics: %w", err)
	}
	return m, nil
}

// switchOutcome names how a switch ended, from the switcher's error.
func switchOutcome(rec jobstore.SwitchRecord, err error) string {
	switch {
	case errors.Is(err, errAbandoned):
		return outcomeAbandoned
	case errors.Is(err, ErrWedged):
		return outcomeWedged
	case err != nil:
		return outcomeFailed
	case rec.Adopted:
		return outcomeAdopted
	}
	return outcomeOK
}

// switchEnded counts an ended switch and observes the steps it ran.
func (m *metrics) switchEnded(rec jobstore.SwitchRecord, outcome string) {
	m.switches.WithLabelValues(rec.To, outcome, rec.RequestedBy).Inc()
	for _, p := range []struct {
		name string
		d    time.Duration
	}{
		{"preflight", rec.Preflight}, {"drain", rec.Drain}, {"stop", rec.Stop}, {"memory", rec.Memory},
		{"start", rec.Start}, {"canary", rec.Canary},
	} {
		if p.d > 0 {
			m.phaseSeconds.WithLabelValues(p.name).Observe(p.d.Seconds())
		}
	}
	m.phaseSeconds.WithLabelValues("total").Observe(rec.Total.Seconds())
}

// preflightFailed counts a switch that its preflight refused.
func (m *metrics) preflightFailed(to, key string, took time.Duration) {
	m.switches.WithLabelValues(to, outcomePreflightFailed, key).Inc()
	m.phaseSeconds.WithLabelValues("preflight").Observe(took.Seconds())
}

// slotClock attributes the leader's wall time to switching or serving.
// The loop goroutine owns it.
type slotClock struct {
	since time.Time
	phase jobstore.Phase
}

// advance credits the time since the last call to the phase then
// current, and moves on to phase p at now.
func (c *slotClock) advance(m *metrics, now time.Time, p jobstore.Phase) {
	if !c.since.IsZero() && now.After(c.since) {
		d := now.Sub(c.since).Seconds()
		switch c.phase {
		case jobstore.PhaseDraining, jobstore.PhaseStopping, jobstore.PhaseWaitingMemory,
			jobstore.PhaseStarting, jobstore.PhaseCanary:
			m.switching.Add(d)
		case jobstore.PhaseReady, jobstore.PhasePreflight:
			m.serving.Add(d)
		}
	}
	c.since, c.phase = now, p
}

// observeState mirrors the published state: the active model, the
// phase and the time accounting.
func (m *metrics) observeState(c *slotClock, st *jobstore.SlotState, models []string, now time.Time) {
	for _, model := range models {
		m.activeModel.WithLabelValues(model).Set(boolFloat(model == st.Active))
	}
	for _, p := range allPhases {
		m.phase.WithLabelValues(string(p)).Set(boolFloat(p == st.Phase))
	}
	c.advance(m, now, st.Phase)
}

// termEnded stops the time accounting and clears the slot's gauges: a
// follower knows nothing about the slot.
func (m *metrics) termEnded(c *slotClock, now time.Time) {
	c.advance(m, now, "")
	m.leader.Set(0)
	m.activeModel.Reset()
	m.phase.Reset()
	m.queueDepth.Reset()
}

// jobEnded counts a job an executor finished.
func (m *metrics) jobEnded(model, outcome string, took time.Duration, backendError bool) {
	m.jobs.WithLabelValues(model, outcome).Inc()
	m.jobDuration.WithLabelValues(model).Observe(took.Seconds())
	if backendError {
		m.backendErrors.WithLabelValues(model).Inc()
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
