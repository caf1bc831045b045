package sim

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Main runs the simulation as a command (`switchboard sim` wraps it) and
// prints the markdown table. It returns the process exit code: 0 (also
// for -h), or 2 on bad flags.
func Main(args []string, stdout, stderr io.Writer) int {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: switchboard sim [flags]")
		fmt.Fprintln(stderr, "Replays arrival traces through the scheduling policy and two baselines on a simulated clock.")
		fs.PrintDefaults()
	}
	seed := fs.Int64("seed", 1, "seed of the generated traces")
	trace := fs.String("trace", "all", "trace to run: all, "+strings.Join(traceNames(), ", "))
	fs.DurationVar(&cfg.MaxWait, "max-wait", cfg.MaxWait, "scheduler max_wait (starvation bound)")
	fs.DurationVar(&cfg.MinResidency, "min-residency", cfg.MinResidency, "scheduler min_residency")
	fs.IntVar(&cfg.MaxSwitchesPerHour, "max-switches-per-hour", cfg.MaxSwitchesPerHour, "scheduler max_switches_per_hour (0 = no cap)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sim: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if cfg.MaxWait < 0 || cfg.MinResidency < 0 || cfg.MaxSwitchesPerHour < 0 {
		fmt.Fprintln(stderr, "sim: -max-wait, -min-residency and -max-switches-per-hour must not be negative")
		return 2
	}
	var results []Result
	for _, t := range Traces(*seed) {
		if *trace != "all" && *trace != t.Name {
			continue
		}
		for _, p := range Policies() {
			results = append(results, Run(t, p, cfg))
		}
	}
	if len(results) == 0 {
		fmt.Fprintf(stderr, "sim: unknown trace %q; want all or one of %s\n", *trace, strings.Join(traceNames(), ", "))
		return 2
	}
	fmt.Fprintf(stdout, "Seed %d; max_wait %s, min_residency %s, max_switches_per_hour %d.\n", *seed, cfg.MaxWait, cfg.MinResidency, cfg.MaxSwitchesPerHour)
	fmt.Fprint(stdout, "Models:")
	for i, m := range cfg.Models {
		sep := ","
		if i == len(cfg.Models)-1 {
			sep = "."
		}
		fmt.Fprintf(stdout, " %s (switch %s, max_concurrency %d)%s", m.Name, dur(m.SwitchCost), m.MaxConcurrency, sep)
	}
	fmt.Fprint(stdout, "\n\n")
	fmt.Fprint(stdout, Table(results...))
	return 0
}

func traceNames() []string {
	return []string{TraceAgent, TraceBatch, TraceBursts, TraceMixed}
}
