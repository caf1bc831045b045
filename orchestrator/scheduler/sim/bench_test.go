package sim_test

import (
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/orchestrator/scheduler/sim"
)

// BenchmarkSchedulerMixed replays the mixed trace (seed 1) through the
// policy and through naive arrival order, and reports switches and the
// max and mean wait (arrival to start of service, over all jobs) of each,
// and naive's over the policy's. The numbers are simulated time, so they
// are the same on every machine; `switchboard sim -seed 1 -trace mixed`
// prints the full table. Run:
//
//	go test -run '^$' -bench SchedulerMixed -benchtime 1x ./orchestrator/scheduler/sim/
func BenchmarkSchedulerMixed(b *testing.B) {
	var trace sim.Trace
	for _, t := range sim.Traces(1) {
		if t.Name == sim.TraceMixed {
			trace = t
		}
	}
	if trace.Name == "" {
		b.Fatal("no mixed trace")
	}
	cfg := sim.DefaultConfig()
	var ours, naive sim.Result
	for range b.N {
		ours = sim.Run(trace, sim.Ours, cfg)
		naive = sim.Run(trace, sim.Naive, cfg)
	}
	meanWait := func(r sim.Result) time.Duration {
		var sum time.Duration
		jobs := 0
		for _, m := range r.Models {
			sum += m.MeanWait * time.Duration(m.Jobs)
			jobs += m.Jobs
		}
		return sum / time.Duration(max(jobs, 1))
	}
	minutes := func(d time.Duration) float64 { return d.Minutes() }
	b.ReportMetric(float64(ours.Switches), "switches")
	b.ReportMetric(float64(naive.Switches), "naive-switches")
	b.ReportMetric(minutes(ours.MaxWait()), "max-wait-min")
	b.ReportMetric(minutes(naive.MaxWait()), "naive-max-wait-min")
	b.ReportMetric(minutes(meanWait(ours)), "mean-wait-min")
	b.ReportMetric(minutes(meanWait(naive)), "naive-mean-wait-min")
	b.ReportMetric(minutes(ours.MaxHeadWait()), "max-head-wait-min")
	b.ReportMetric(minutes(naive.MaxHeadWait()), "naive-max-head-wait-min")
	b.ReportMetric(float64(naive.Switches)/float64(ours.Switches), "naive/ours-switches")
	b.ReportMetric(float64(naive.MaxWait())/float64(ours.MaxWait()), "naive/ours-max-wait")
	b.ReportMetric(float64(meanWait(naive))/float64(meanWait(ours)), "naive/ours-mean-wait")
}
