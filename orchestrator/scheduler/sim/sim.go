// Package sim is a discrete-event simulation of one slot (one GPU box, one
// loaded model at a time) with a simulated clock. It replays multi-model
// arrival traces through the switchboard's policy — scheduler.Decide,
// called the way the orchestrator calls it — and through two baselines
// (naive arrival order, and a llama-swap-like FIFO that joins loads), and
// reports switches, waits and makespan for each, so that the policy's
// claims (several times fewer switches, bounded waits, nobody starved)
// are measured rather than asserted.
//
// The model of the box: a switch drains the active model (its in-flight
// requests finish; nothing is cut), then costs the target's SwitchCost
// (stop, memory barrier, start, healthy); the active model serves up to
// MaxConcurrency requests at once, each for its own service time (vLLM
// batches them, so a request's time does not depend on its neighbours).
package sim

import (
	"container/heap"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/llm-switchboard/llm-switchboard/orchestrator/scheduler"
)

// Model is one model of the simulated slot.
type Model struct {
	Name string
	// SwitchCost is how long a switch to this model takes once the old
	// model has drained: stop, memory barrier, start, healthy.
	SwitchCost time.Duration
	// JobTime is the service time of a job whose trace gives none.
	JobTime time.Duration
	// MaxConcurrency is how many jobs the model serves at once.
	MaxConcurrency int
}

// Config is the simulated slot and the policy's settings.
type Config struct {
	Models []Model
	// MaxWait, MinResidency and MaxSwitchesPerHour configure our policy
	// as scheduler.Input does; the baselines ignore them.
	MaxWait            time.Duration
	MinResidency       time.Duration
	MaxSwitchesPerHour int
}

// DefaultConfig is three models with the switch costs seen on a DGX Spark
// (a small model warm, a mid one, a big 4-bit one), max_wait 10m (the
// configuration's default) and min_residency 2m.
func DefaultConfig() Config {
	return Config{
		Models: []Model{
			{Name: "qwen3-30b", SwitchCost: 60 * time.Second, JobTime: 8 * time.Second, MaxConcurrency: 8},
			{Name: "gpt-oss-120b", SwitchCost: 90 * time.Second, JobTime: 12 * time.Second, MaxConcurrency: 8},
			{Name: "qwen3-235b", SwitchCost: 240 * time.Second, JobTime: 30 * time.Second, MaxConcurrency: 16},
		},
		MaxWait:      10 * time.Minute,
		MinResidency: 2 * time.Minute,
	}
}

func (c Config) model(name string) Model {
	for _, m := range c.Models {
		if m.Name == name {
			return m
		}
	}
	return Model{Name: name, MaxConcurrency: 1}
}

// MaxSwitchCost is the longest SwitchCost of the configured models.
func (c Config) MaxSwitchCost() time.Duration {
	var d time.Duration
	for _, m := range c.Models {
		d = max(d, m.SwitchCost)
	}
	return d
}

// MaxJobTime is the longest service time a trace's job has (or the
// longest JobTime, for jobs that give none): the longest a drain takes.
func (c Config) MaxJobTime(t Trace) time.Duration {
	var d time.Duration
	for _, j := range t.Jobs {
		d = max(d, c.service(j))
	}
	return d
}

func (c Config) service(j Job) time.Duration {
	if j.Service > 0 {
		return j.Service
	}
	return c.model(j.Model).JobTime
}

// Job is one request of a trace.
type Job struct {
	// At is the arrival time from the start of the trace.
	At    time.Duration
	Model string
	// Service is how long the model takes to answer it; 0 takes the
	// model's JobTime.
	Service time.Duration
}

// Trace is a named arrival sequence, sorted by At.
type Trace struct {
	Name string
	Jobs []Job
}

// Policy selects who decides.
type Policy int

// The simulated policies.
const (
	// Ours is scheduler.Decide, driven the way the orchestrator drives it.
	Ours Policy = iota
	// Naive serves in arrival order: whenever the oldest pending job is
	// for another model, drain and switch to it; the active model serves
	// jobs only while they are at the head.
	Naive
	// LlamaSwap is FIFO over all requests like llama-swap: the head
	// request's model is loaded (after draining the old one), every
	// request for the model being loaded joins that load, and there is no
	// aging and no residency.
	LlamaSwap
)

// Policies lists every policy, ours first.
func Policies() []Policy { return []Policy{Ours, Naive, LlamaSwap} }

func (p Policy) String() string {
	switch p {
	case Ours:
		return "switchboard"
	case Naive:
		return "naive"
	case LlamaSwap:
		return "llama-swap-like"
	default:
		return fmt.Sprintf("policy(%d)", int(p))
	}
}

// ModelStats is the outcome of one model's jobs.
type ModelStats struct {
	Model  string
	Jobs   int
	Served int
	// Waits run from arrival to the start of service.
	MeanWait, P95Wait, MaxWait time.Duration
	// MaxHeadWait is the longest a job waited while it was its model's
	// oldest pending job: waiting behind the model's own queue excluded,
	// this is what max_wait bounds.
	MaxHeadWait time.Duration
}

// Result is one policy's run of one trace.
type Result struct {
	Trace  string
	Policy Policy
	// Switches counts loads, the first one included.
	Switches int
	// Makespan is when the last job finished.
	Makespan time.Duration
	Jobs     int
	Served   int
	Models   []ModelStats
}

// Stats returns the stats of model (zero if the trace has none of it).
func (r Result) Stats(model string) ModelStats {
	for _, s := range r.Models {
		if s.Model == model {
			return s
		}
	}
	return ModelStats{Model: model}
}

// MaxWait is the longest wait of any job.
func (r Result) MaxWait() time.Duration {
	var d time.Duration
	for _, s := range r.Models {
		d = max(d, s.MaxWait)
	}
	return d
}

// MaxHeadWait is the longest head-of-queue wait of any job.
func (r Result) MaxHeadWait() time.Duration {
	var d time.Duration
	for _, s := range r.Models {
		d = max(d, s.MaxHeadWait)
	}
	return d
}

// epoch anchors the simulated clock for the scheduler's time.Time values.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

type phase int

const (
	serving  phase = iota // the active model (if any) takes work
	draining              // waiting for the active model's in-flight jobs
	loading               // the target is starting
)

type eventKind int

const (
	evArrive eventKind = iota
	evFinish
	evLoaded
	evWake
)

type event struct {
	at   time.Duration
	kind eventKind
	job  int
	seq  int
}

type events []event

func (e events) Len() int { return len(e) }
func (e events) Less(i, j int) bool {
	if e[i].at != e[j].at {
		return e[i].at < e[j].at
	}
	return e[i].seq < e[j].seq
}
func (e events) Swap(i, j int) { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)   { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

type jobState struct {
	Job
	service time.Duration
	started bool
	start   time.Duration
	// joined marks a llama-swap request that waits on the load of its
	// model.
	joined bool
}

// sim is one run's mutable state; only Run's goroutine touches it.
type sim struct {
	cfg    Config
	policy Policy
	order  []string

	now  time.Duration
	evs  events
	seq  int
	wake time.Duration // pending wake-up, -1 if none

	jobs    []jobState
	queues  map[string][]int // pending jobs per model, FIFO
	pending []int            // every pending job, arrival order

	phase       phase
	active      string
	activeSince time.Duration
	target      string
	inFlight    int
	lastGood    string

	lastActivity time.Duration
	switchStarts []time.Duration
	turnEnded    map[string]time.Duration
	switches     int
	makespan     time.Duration
}

// Run replays trace through policy on the slot cfg describes. It is
// deterministic: the same inputs give the same Result.
func Run(trace Trace, policy Policy, cfg Config) Result {
	s := &sim{
		cfg: cfg, policy: policy, wake: -1,
		queues:    make(map[string][]int),
		turnEnded: make(map[string]time.Duration),
	}
	for _, m := range cfg.Models {
		s.order = append(s.order, m.Name)
	}
	for i, j := range trace.Jobs {
		s.jobs = append(s.jobs, jobState{Job: j, service: cfg.service(j)})
		s.push(j.At, evArrive, i)
	}
	// Bounded: each event is handled once and each handled event pushes
	// a bounded number of new ones; the bound only guards against a
	// policy that would wake itself forever.
	for steps := 0; s.evs.Len() > 0 && steps < 50*len(trace.Jobs)+1000; steps++ {
		e := heap.Pop(&s.evs).(event)
		s.now = e.at
		s.handle(e)
		for s.evs.Len() > 0 && s.evs[0].at == s.now {
			s.handle(heap.Pop(&s.evs).(event))
		}
		s.step()
	}
	return s.result(trace)
}

func (s *sim) push(at time.Duration, kind eventKind, job int) {
	s.seq++
	heap.Push(&s.evs, event{at: at, kind: kind, job: job, seq: s.seq})
}

func (s *sim) handle(e event) {
	switch e.kind {
	case evArrive:
		j := &s.jobs[e.job]
		s.queues[j.Model] = append(s.queues[j.Model], e.job)
		s.pending = append(s.pending, e.job)
		if s.policy == LlamaSwap && s.phase != serving && j.Model == s.target {
			j.joined = true
		}
	case evFinish:
		s.inFlight--
		s.lastActivity = s.now
		s.makespan = max(s.makespan, s.now)
	case evLoaded:
		if s.phase != loading || e.job != s.switches {
			break // a load that was abandoned
		}
		s.phase = serving
		s.active, s.activeSince, s.lastGood = s.target, s.now, s.target
		s.target = ""
	case evWake:
		if s.wake == e.at {
			s.wake = -1
		}
	}
	if s.phase == draining && s.inFlight == 0 {
		s.startLoad()
	}
}

// step lets the policy act until it waits for the next event.
func (s *sim) step() {
	for range 1000 {
		var acted bool
		switch s.policy {
		case Ours:
			acted = s.stepOurs()
		case Naive:
			acted = s.stepNaive()
		case LlamaSwap:
			acted = s.stepLlamaSwap()
		}
		if !acted {
			return
		}
	}
}

// input builds scheduler.Input from the slot as the orchestrator does.
func (s *sim) input() scheduler.Input {
	at := func(d time.Duration) time.Time { return epoch.Add(d) }
	in := scheduler.Input{
		Switching:          s.phase != serving,
		InFlight:           s.inFlight,
		Queues:             make(map[string]scheduler.Queue, len(s.order)),
		Order:              s.order,
		MaxWait:            s.cfg.MaxWait,
		MinResidency:       s.cfg.MinResidency,
		MaxSwitchesPerHour: s.cfg.MaxSwitchesPerHour,
		LastActivity:       at(s.lastActivity),
		LastGood:           s.lastGood,
		Loading:            s.target,
		TurnEnded:          make(map[string]time.Time, len(s.turnEnded)),
		MaxConcurrency:     make(map[string]int, len(s.order)),
	}
	if s.phase != loading && s.active != "" {
		in.Active = s.active
		in.ActiveSince = at(s.activeSince)
		in.Capacity = s.cfg.model(s.active).MaxConcurrency
	}
	for _, m := range s.cfg.Models {
		in.MaxConcurrency[m.Name] = m.MaxConcurrency
		q := s.queues[m.Name]
		if len(q) > 0 {
			in.Queues[m.Name] = scheduler.Queue{Pending: len(q), HeadSince: at(s.jobs[q[0]].At)}
		}
	}
	if s.target != "" {
		in.LoadWaiters = len(s.queues[s.target])
	}
	for _, t := range s.switchStarts {
		if s.now-t < time.Hour {
			in.RecentSwitches = append(in.RecentSwitches, at(t))
		}
	}
	for m, t := range s.turnEnded {
		in.TurnEnded[m] = at(t)
	}
	return in
}

func (s *sim) stepOurs() bool {
	in := s.input()
	now := epoch.Add(s.now)
	d := scheduler.Decide(in, now)
	switch d.Kind {
	case scheduler.Dispatch:
		if d.Model != s.active || s.phase != serving || d.N <= 0 {
			panic(fmt.Sprintf("sim: policy dispatched %d to %q with %q active in phase %d", d.N, d.Model, s.active, s.phase))
		}
		for range d.N {
			s.dispatch(s.queues[s.active][0])
		}
		return true
	case scheduler.Switch:
		s.beginSwitch(d.Model)
		return true
	case scheduler.Abandon:
		if d.Model == s.active && s.phase == draining {
			s.phase, s.target = serving, ""
		} else {
			s.target = d.Model
			if s.phase == loading {
				s.startLoad()
			}
		}
		return true
	case scheduler.Unload:
		s.turnEnded[s.active] = s.now
		s.active = ""
		return true
	default:
		if next := scheduler.NextCheck(in, now); !next.IsZero() {
			at := next.Sub(epoch)
			if s.wake < 0 || at < s.wake {
				s.wake = at
				s.push(at, evWake, -1)
			}
		}
		return false
	}
}

func (s *sim) stepNaive() bool {
	if s.phase != serving || len(s.pending) == 0 {
		return false
	}
	head := s.jobs[s.pending[0]]
	if head.Model != s.active {
		s.beginSwitch(head.Model)
		return true
	}
	if s.inFlight >= s.cfg.model(s.active).MaxConcurrency {
		return false
	}
	s.dispatch(s.pending[0])
	return true
}

func (s *sim) stepLlamaSwap() bool {
	if s.phase != serving || len(s.pending) == 0 {
		return false
	}
	if s.active != "" {
		for _, i := range s.queues[s.active] {
			if s.jobs[i].joined {
				if s.inFlight >= s.cfg.model(s.active).MaxConcurrency {
					return false
				}
				s.dispatch(i)
				return true
			}
		}
	}
	head := s.jobs[s.pending[0]]
	if head.Model != s.active {
		s.beginSwitch(head.Model)
		for _, i := range s.queues[head.Model] {
			s.jobs[i].joined = true
		}
		return true
	}
	if s.inFlight >= s.cfg.model(s.active).MaxConcurrency {
		return false
	}
	s.dispatch(s.pending[0])
	return true
}

// dispatch starts pending job i on the active model.
func (s *sim) dispatch(i int) {
	j := &s.jobs[i]
	j.started, j.start = true, s.now
	s.queues[j.Model] = slices.DeleteFunc(s.queues[j.Model], func(k int) bool { return k == i })
	s.pending = slices.DeleteFunc(s.pending, func(k int) bool { return k == i })
	s.inFlight++
	s.lastActivity = s.now
	s.push(s.now+j.service, evFinish, i)
}

// beginSwitch drains the active model; the load starts when it is empty.
func (s *sim) beginSwitch(to string) {
	s.target = to
	s.phase = draining
	if s.inFlight == 0 {
		s.startLoad()
	}
}

func (s *sim) startLoad() {
	if s.active != "" {
		s.turnEnded[s.active] = s.now
	}
	s.active = ""
	s.phase = loading
	s.switches++
	s.switchStarts = append(s.switchStarts, s.now)
	// The event carries the load's number: an abandoned load's is ignored.
	s.push(s.now+s.cfg.model(s.target).SwitchCost, evLoaded, s.switches)
}

func (s *sim) result(trace Trace) Result {
	r := Result{Trace: trace.Name, Policy: s.policy, Switches: s.switches, Makespan: s.makespan, Jobs: len(s.jobs)}
	waits := make(map[string][]time.Duration)
	heads := make(map[string]time.Duration)
	lastStart := make(map[string]time.Duration)
	counts := make(map[string]int)
	// Jobs of one model start in arrival order under every policy, so a
	// job became its model's head when the one before it started.
	for _, j := range s.jobs {
		counts[j.Model]++
		if !j.started {
			continue
		}
		r.Served++
		waits[j.Model] = append(waits[j.Model], j.start-j.At)
		became := j.At
		if ls, ok := lastStart[j.Model]; ok && ls > became {
			became = ls
		}
		heads[j.Model] = max(heads[j.Model], j.start-became)
		lastStart[j.Model] = j.start
	}
	for _, m := range s.order {
		if counts[m] == 0 {
			continue
		}
		w := waits[m]
		st := ModelStats{Model: m, Jobs: counts[m], Served: len(w), MaxHeadWait: heads[m]}
		if len(w) > 0 {
			slices.Sort(w)
			var sum time.Duration
			for _, d := range w {
				sum += d
			}
			st.MeanWait = sum / time.Duration(len(w))
			st.P95Wait = w[int(math.Ceil(0.95*float64(len(w))))-1]
			st.MaxWait = w[len(w)-1]
		}
		r.Models = append(r.Models, st)
	}
	return r
}

// Table renders results as a markdown table, one row per result, in the
// order given: switches, makespan, jobs served, the longest head-of-queue
// wait (what max_wait bounds), and per model "mean / p95 / max" wait from
// arrival to start.
func Table(results ...Result) string {
	var models []string
	for _, r := range results {
		for _, m := range r.Models {
			if !slices.Contains(models, m.Model) {
				models = append(models, m.Model)
			}
		}
	}
	var b strings.Builder
	b.WriteString("| trace | policy | switches | makespan | served | max head wait |")
	for _, m := range models {
		fmt.Fprintf(&b, " %s wait mean / p95 / max |", m)
	}
	b.WriteString("\n|---|---|--:|--:|--:|--:|")
	for range models {
		b.WriteString("--:|")
	}
	b.WriteString("\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %d/%d | %s |", r.Trace, r.Policy, r.Switches, dur(r.Makespan), r.Served, r.Jobs,
			dur(r.MaxHeadWait()))
		for _, m := range models {
			st := r.Stats(m)
			if st.Jobs == 0 {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&b, " %s / %s / %s |", dur(st.MeanWait), dur(st.P95Wait), dur(st.MaxWait))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// dur prints a duration to the second, in the largest sensible unit.
func dur(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	default:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
}
