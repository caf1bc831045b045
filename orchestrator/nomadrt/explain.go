package nomadrt

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// PlacementError is Nomad's answer that a job cannot be placed, from an
// evaluation or a plan.
type PlacementError struct {
	JobID    string
	Failures map[string]*api.AllocationMetric
}

func (e *PlacementError) Error() string {
	var parts []string
	for _, group := range slices.Sorted(maps.Keys(e.Failures)) {
		parts = append(parts, fmt.Sprintf("group %q: %s", group, describeMetric(e.Failures[group])))
	}
	return fmt.Sprintf("nomad cannot place job %s: %s", e.JobID, strings.Join(parts, "; "))
}

// onlyResources reports whether every failure is resources being in use
// (memory, devices, ports): what the model that runs now holds.
func (e *PlacementError) onlyResources() bool {
	for _, m := range e.Failures {
		if m == nil || len(m.ConstraintFiltered) > 0 || len(m.ClassFiltered) > 0 || len(m.QuotaExhausted) > 0 {
			return false
		}
		if m.NodesEvaluated == 0 || m.NodesExhausted == 0 {
			return false
		}
	}
	return true
}

// describeMetric turns Nomad's placement metrics into a sentence with a
// next step.
func describeMetric(m *api.AllocationMetric) string {
	if m == nil {
		return "no placement details"
	}
	var out []string
	if m.NodesEvaluated == 0 {
		out = append(out, "no node is eligible (check the job's datacenters and node pool, and that the Nomad client is up)")
	}
	for _, c := range slices.Sorted(maps.Keys(m.ConstraintFiltered)) {
		hint := ""
		switch {
		case strings.Contains(c, "missing devices"):
			hint = " (the node has no nvidia/gpu device: is the NVIDIA device plugin running? see scripts/ and jobs.nomad.d/README)"
		case strings.Contains(c, "missing drivers"):
			hint = " (the node lacks the task driver: is docker running and enabled in the Nomad client?)"
		case strings.Contains(c, "missing compatible host volumes"):
			hint = " (declare the host volume in the Nomad client config)"
		}
		out = append(out, fmt.Sprintf("%d node(s) filtered by %s%s", m.ConstraintFiltered[c], c, hint))
	}
	for _, d := range slices.Sorted(maps.Keys(m.DimensionExhausted)) {
		hint := ""
		if d == "memory" {
			hint = " (lower the task's memory, or free memory on the node)"
		}
		out = append(out, fmt.Sprintf("%d node(s) out of %s%s", m.DimensionExhausted[d], d, hint))
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("%d node(s) evaluated, %d filtered, %d exhausted", m.NodesEvaluated, m.NodesFiltered, m.NodesExhausted))
	}
	return strings.Join(out, ", ")
}

// explainAlloc builds an error from an allocation's task events: what
// Nomad saw (image pull failure, OOM kill, exit code) and what to do.
func (r *Runtime) explainAlloc(ctx context.Context, allocID, what string) error {
	alloc, _, err := r.opts.Client.Allocations().Info(allocID, r.query(ctx))
	if err != nil {
		return fmt.Errorf("%s (events unavailable: %s)", what, nomadMessage(err))
	}
	var events []string
	hint := fmt.Sprintf("see `nomad alloc status %s` and `nomad alloc logs %s`", allocID[:8], allocID[:8])
	for _, task := range slices.Sorted(maps.Keys(alloc.TaskStates)) {
		ts := alloc.TaskStates[task]
		for _, ev := range ts.Events {
			msg := eventText(ev)
			if msg == "" {
				continue
			}
			events = append(events, fmt.Sprintf("%s: %s", task, msg))
			switch {
			case ev.Type == api.TaskDriverFailure && strings.Contains(strings.ToLower(msg), "pull"):
				hint = "check the image name and that the node can pull it (scripts/pull-image.sh), then retry"
			case ev.Type == api.TaskDriverFailure && strings.Contains(msg, "could not be found"):
				hint = "the task's command is not on the node; check the jobspec's command"
			case strings.Contains(msg, "OOM"):
				hint = "the model needed more memory than was free: lower --gpu-memory-utilization or --max-model-len, or find what else holds memory"
			}
		}
	}
	if len(events) == 0 {
		return fmt.Errorf("%s; %s", what, hint)
	}
	// The last events say the most; keep the message readable.
	if len(events) > 6 {
		events = events[len(events)-6:]
	}
	return fmt.Errorf("%s: %s; %s", what, strings.Join(events, "; "), hint)
}

// eventText renders one task event as Nomad's CLI would.
func eventText(ev *api.TaskEvent) string {
	if ev == nil {
		return ""
	}
	switch ev.Type {
	case api.TaskReceived, api.TaskSetup, api.TaskStarted:
		return "" // routine
	}
	msg := ev.DisplayMessage
	if msg == "" {
		msg = ev.Message
	}
	if msg == "" && ev.DriverError != "" {
		msg = ev.DriverError
	}
	if ev.Type == api.TaskTerminated && ev.ExitCode != 0 && !strings.Contains(msg, "Exit Code") {
		msg = strings.TrimSpace(fmt.Sprintf("Exit Code: %d %s", ev.ExitCode, msg))
	}
	if msg == "" {
		return ev.Type
	}
	if strings.HasPrefix(msg, ev.Type) {
		return msg
	}
	return ev.Type + ": " + msg
}
