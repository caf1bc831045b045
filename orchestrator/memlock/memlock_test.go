package memlock_test

import (
	"testing"

	"github.com/llm-switchboard/llm-switchboard/orchestrator"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/locktest"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/memlock"
)

func TestLock_Conformance(t *testing.T) {
	// Contenders of the in-process lock are goroutines sharing one Lock.
	l := memlock.New()
	locktest.Run(t, locktest.Harness{
		New:    func(*testing.T) orchestrator.Lock { return l },
		Revoke: func(*testing.T) { l.Revoke() },
	})
}
