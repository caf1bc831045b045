// Package memlock is the in-process Lock of the embedded dev mode: one
// leader among the orchestrators of a single process. It also lets tests
// take leadership away (Revoke) the way a Consul session expiry would.
package memlock

import (
	"context"
	"errors"
	"sync"

	"github.com/llm-switchboard/llm-switchboard/orchestrator"
)

var _ orchestrator.Lock = (*Lock)(nil)

// ErrRevoked is the cause of a term ended by Revoke.
var ErrRevoked = errors.New("lock revoked")

// Lock is a mutual-exclusion lock with leadership semantics.
type Lock struct {
	token chan struct{}

	mu     sync.Mutex
	revoke context.CancelCauseFunc
}

// New returns an unheld lock.
func New() *Lock { return &Lock{token: make(chan struct{}, 1)} }

// RunWhileHeld implements orchestrator.Lock.
func (l *Lock) RunWhileHeld(ctx context.Context, fn func(context.Context, orchestrator.Held) error) error {
	if err := ctx.Err(); err != nil {
		return err // select would pick at random between a free lock and a dead ctx
	}
	select {
	case l.token <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.token }()

	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	l.mu.Lock()
	l.revoke = cancel
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.revoke = nil
		l.mu.Unlock()
	}()
	err := fn(hctx, held{hctx})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Revoke takes leadership from the current holder, if any: its context is
// canceled and its Check fails, as when a Consul session is invalidated.
func (l *Lock) Revoke() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.revoke != nil {
		l.revoke(ErrRevoked)
	}
}

type held struct{ ctx context.Context }

func (h held) Check(context.Context) error {
	if h.ctx.Err() != nil {
		return context.Cause(h.ctx)
	}
	return nil
}
