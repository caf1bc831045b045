package nomadrt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
)

// Preflight implements orchestrator.Preflighter: the jobspec must parse
// with the model's variables and a Nomad plan must show no problem but
// the resources the running models hold (make before break).
func (r *Runtime) Preflight(ctx context.Context, m *config.Model, running []string) error {
	job, _, err := r.Render(ctx, m)
	if err != nil {
		return err
	}
	if serviceOf(job) == "" {
		return fmt.Errorf("jobspec %s of %s registers no service: the switchboard needs its Consul health check", m.Jobspec, m.Name)
	}
	plan, _, err := r.opts.Client.Jobs().Plan(job, false, r.write(ctx))
	if err != nil {
		return fmt.Errorf("plan job %s: %s", *job.ID, nomadMessage(err))
	}
	if len(plan.FailedTGAllocs) == 0 {
		return nil
	}
	perr := &PlacementError{JobID: *job.ID, Failures: plan.FailedTGAllocs}
	if len(running) > 0 && perr.onlyResources() {
		// What is exhausted is held by the model that runs now; the
		// switch frees it.
		r.log.Debug("plan is short of resources the running model holds", "model", m.Name, "detail", perr.Error())
		return nil
	}
	return perr
}

// WaitMemory implements orchestrator.MemoryWaiter: after the old model
// stopped, wait until the node's available memory (Nomad's host stats:
// MemAvailable; NVML cannot report unified memory) covers m's footprint
// plus the headroom. Host stats have no blocking query, so this polls.
func (r *Runtime) WaitMemory(ctx context.Context, m *config.Model) error {
	if m.MemoryBytes <= 0 {
		return nil // no footprint configured: nothing to wait for
	}
	need := uint64(m.MemoryBytes + r.opts.Nomad.MemoryHeadroom)
	node, err := r.node(ctx, m.Name)
	if err != nil {
		return err
	}
	var last *api.HostMemoryStats
	for {
		stats, err := r.opts.Client.Nodes().Stats(node, r.query(ctx))
		switch {
		case err == nil && stats.Memory != nil:
			last = stats.Memory
			if last.Available >= need {
				return nil
			}
		case err != nil && ctx.Err() == nil:
			r.log.Warn("reading host stats failed", "node_id", node, "error", nomadMessage(err))
		}
		select {
		case <-ctx.Done():
			if last == nil {
				return fmt.Errorf("no memory stats from node %s: %w", node, context.Cause(ctx))
			}
			return fmt.Errorf("node %s has %s available, %s needed (memory %s + headroom %s)",
				node, gib(last.Available), gib(need), gib(uint64(m.MemoryBytes)), gib(uint64(r.opts.Nomad.MemoryHeadroom)))
		case <-time.After(r.opts.MemoryPoll):
		}
	}
}

// node picks the node whose memory the barrier reads: the configured one,
// else the node that ran a model last, else the only node.
func (r *Runtime) node(ctx context.Context, model string) (string, error) {
	if id := r.opts.Nomad.NodeID; id != "" {
		return id, nil
	}
	r.mu.Lock()
	for _, st := range r.models {
		if st.nodeID != "" {
			r.mu.Unlock()
			return st.nodeID, nil
		}
	}
	r.mu.Unlock()
	nodes, _, err := r.opts.Client.Nodes().List(r.query(ctx))
	if err != nil {
		return "", fmt.Errorf("list nomad nodes: %s", nomadMessage(err))
	}
	var ready []string
	for _, n := range nodes {
		if n.Status == "ready" {
			ready = append(ready, n.ID)
		}
	}
	switch len(ready) {
	case 1:
		return ready[0], nil
	case 0:
		return "", errors.New("no ready nomad node to read memory from")
	default:
		return "", fmt.Errorf("%d ready nomad nodes: set nomad.node_id to the GPU node of slot %q", len(ready), r.opts.Slot)
	}
}

func gib(b uint64) string { return fmt.Sprintf("%.1fGiB", float64(b)/(1<<30)) }
