// Package orchestrator is the switchboard's brain: the one leader that
// decides which model is loaded, switches models safely (drain, stop, wait
// until gone, start, wait healthy) and executes admitted jobs against the
// active backend, writing results and stream chunks to Redis.
//
// It owns two small interfaces, Runtime and Lock. Production plugs in
// Nomad and Consul; the embedded dev mode plugs in local child processes
// and an in-process lock. The gateway never imports this package: the two
// meet in Redis.
package orchestrator

import (
	"context"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
)

// Backend is a healthy model server the executor may send requests to.
type Backend struct {
	Model string
	// URL is the server's base URL, e.g. http://127.0.0.1:18101.
	URL string
}

// Runtime starts and stops model backends. Implementations must make
// WaitStopped return only when the backend is really gone (its process
// reaped, its allocations terminal), because the orchestrator starts the
// next model right after.
type Runtime interface {
	// Start launches m's backend and returns once the runtime accepted it;
	// it does not wait for health.
	Start(ctx context.Context, m *config.Model) error
	// WaitHealthy blocks until m's backend answers as ready, and returns
	// where to reach it. It fails early, with the backend's own words,
	// when the backend died while loading.
	WaitHealthy(ctx context.Context, m *config.Model) (Backend, error)
	// Stop asks model's backend to stop. Stopping a model that is not
	// running is not an error.
	Stop(ctx context.Context, model string) error
	// WaitStopped blocks until model's backend is gone.
	WaitStopped(ctx context.Context, model string) error
	// Running lists the models whose backends are not terminal, so a new
	// leader can reconcile.
	Running(ctx context.Context) ([]string, error)
}

// Lock elects the single leader that may mutate the runtime.
type Lock interface {
	// RunWhileHeld blocks until the lock is acquired, then runs fn with a
	// context that is canceled the moment the lock is lost. It releases
	// the lock when fn returns and returns fn's error, or ctx's error when
	// ctx ends first.
	RunWhileHeld(ctx context.Context, fn func(ctx context.Context, held Held) error) error
}

// Held is proof of leadership; Check fails once the lock is lost. The
// orchestrator calls it before every mutating runtime step, so a paused
// ex-leader cannot act on stale belief.
type Held interface {
	Check(ctx context.Context) error
}

// Optional Runtime capabilities. The orchestrator uses each one a runtime
// has; the local runtime has few, the Nomad runtime all.

// Preflighter checks, before anything is stopped, that a model can start:
// make before break. running names the models that hold resources now, so
// their holdings do not count as a problem.
type Preflighter interface {
	Preflight(ctx context.Context, m *config.Model, running []string) error
}

// MemoryWaiter blocks after a stop until the node has memory for m again
// ("allocation complete" is not "memory free" on unified memory). An
// error means the slot is wedged: nothing must be started.
type MemoryWaiter interface {
	WaitMemory(ctx context.Context, m *config.Model) error
}

// AdoptionChecker tells whether a running model was started from the
// current configuration, so a new leader may adopt it instead of
// restarting it. Runtimes without it have every running model adoptable.
type AdoptionChecker interface {
	Adoptable(ctx context.Context, m *config.Model) (bool, error)
}

// Describer reports what the runtime knows of a model's backend (job id,
// status, allocation) for /status.
type Describer interface {
	Describe(ctx context.Context, model string) (map[string]string, error)
}
