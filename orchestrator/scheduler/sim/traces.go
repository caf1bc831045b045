package sim

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"time"
)

// The trace names Traces returns, in order.
const (
	TraceAgent  = "agent-alternating"
	TraceBatch  = "batch-plus-interactive"
	TraceBursts = "bursts"
	TraceMixed  = "mixed"
)

// Traces returns the standard traces over DefaultConfig's models,
// generated from seed (the same seed gives the same traces):
//
//   - agent-alternating: an agent alternates the small and the mid model,
//     one request every 3–8 s, for 30 minutes;
//   - batch-plus-interactive: 200 async jobs for the big model at t=0
//     while interactive traffic for the other two continues (one request
//     every ~30 s each, for 30 minutes);
//   - bursts: for an hour, bursts of 5–30 requests within 20 s arrive for
//     each model, ~8 minutes apart on average;
//   - mixed: all three at once.
func Traces(seed int64) []Trace {
	models := DefaultConfig().Models
	a, b, c := models[0].Name, models[1].Name, models[2].Name
	// One generator per trace, so that changing one trace leaves the
	// others as they were.
	rng := func(stream uint64) *rand.Rand { return rand.New(rand.NewPCG(uint64(seed), stream)) }
	service := func(r *rand.Rand, model string) time.Duration {
		// Interactive answers vary around the model's mean; the big
		// model's batch jobs are long generations.
		mean := map[string]time.Duration{a: 8 * time.Second, b: 12 * time.Second, c: 40 * time.Second}[model]
		return mean/2 + time.Duration(r.Int64N(int64(mean)))
	}

	agent := Trace{Name: TraceAgent}
	{
		r := rng(1)
		at := time.Duration(0)
		for i := 0; at < 30*time.Minute; i++ {
			m := a
			if i%2 == 1 {
				m = b
			}
			agent.Jobs = append(agent.Jobs, Job{At: at, Model: m, Service: service(r, m)})
			at += 3*time.Second + time.Duration(r.Int64N(int64(5*time.Second)))
		}
	}

	batch := Trace{Name: TraceBatch}
	{
		r := rng(2)
		for range 200 {
			batch.Jobs = append(batch.Jobs, Job{At: 0, Model: c, Service: service(r, c)})
		}
		for _, m := range []string{a, b} {
			for at := poisson(r, 30*time.Second); at < 30*time.Minute; at += poisson(r, 30*time.Second) {
				batch.Jobs = append(batch.Jobs, Job{At: at, Model: m, Service: service(r, m)})
			}
		}
	}

	bursts := Trace{Name: TraceBursts}
	{
		r := rng(3)
		for _, m := range []string{a, b, c} {
			for at := poisson(r, 8*time.Minute); at < time.Hour; at += poisson(r, 8*time.Minute) {
				for range 5 + r.IntN(26) {
					j := Job{At: at + time.Duration(r.Int64N(int64(20*time.Second))), Model: m}
					j.Service = service(r, m)
					bursts.Jobs = append(bursts.Jobs, j)
				}
			}
		}
	}

	mixed := Trace{Name: TraceMixed}
	for _, t := range []Trace{agent, batch, bursts} {
		mixed.Jobs = append(mixed.Jobs, t.Jobs...)
	}

	out := []Trace{agent, batch, bursts, mixed}
	for i := range out {
		// Whole seconds keep the printed numbers readable; the stable
		// sort keeps equal arrivals in generation order.
		for k := range out[i].Jobs {
			out[i].Jobs[k].At = out[i].Jobs[k].At.Truncate(time.Second)
		}
		slices.SortStableFunc(out[i].Jobs, func(x, y Job) int { return cmp.Compare(x.At, y.At) })
	}
	return out
}

// poisson draws an exponential inter-arrival time with the given mean,
// at least one second.
func poisson(r *rand.Rand, mean time.Duration) time.Duration {
	return max(time.Duration(r.ExpFloat64()*float64(mean)), time.Second)
}
