package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
)

// A gateway that died holding a lease on the direct route (here: a lease
// taken in its name and never renewed nor released) delays a switch until
// the lease runs out, and no longer: the old backend is never stopped
// while a gateway may still be sending it requests.
func TestE2E_DirectLeaseOfDeadGatewayDelaysSwitch(t *testing.T) {
	e := startE2E(t, e2eOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "warm", false); err != nil {
		t.Fatal(err)
	}
	const ghostTTL = 2 * time.Second
	taken := time.Now()
	g, err := e.stack.Store.RenewLease(ctx, "e2e", "dead-gateway", ghostTTL, false, nil)
	if err != nil || !g.Open || g.Model != "qwen3-30b" {
		t.Fatalf("ghost lease = %+v, %v", g, err)
	}
	if err := e.chat(ctx, "gpt-oss120", "openai/gpt-oss-120b", "other model", false); err != nil {
		t.Fatal(err)
	}
	// The other model can answer only after the old one stopped, which
	// may happen only after the ghost lease ran out in Redis.
	if waited := time.Since(taken); waited < ghostTTL {
		t.Fatalf("the switch finished %s after the ghost lease was taken, before its %s ran out", waited, ghostTTL)
	}
	if n, _, err := e.stack.Store.LiveLeases(ctx, "e2e"); err != nil || n > 1 {
		// At most this gateway's lease on the new model remains.
		t.Fatalf("live leases after the switch = %d, %v", n, err)
	}
	if n := e.stack.Runtime.MaxAlive(); n != 1 {
		t.Fatalf("max alive = %d", n)
	}
}

// Requests on the direct route have no job record, but they are activity:
// idle unload does not unload a model that serves them.
func TestE2E_DirectRequestsKeepModelLoaded(t *testing.T) {
	e := startE2E(t, e2eOptions{gatewayHCL: "scheduler {\n  idle_unload_after = \"3s\"\n}\n"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.chat(ctx, "qwen3-30b", "Qwen/Qwen3-30B-A3B", "warm", false); err != nil {
		t.Fatal(err)
	}
	// Let the gateway's lease come in after the load.
	waitDirect := time.Now().Add(10 * time.Second)
	for routeOf(t, e) != "direct" {
		if time.Now().After(waitDirect) {
			t.Fatal("requests never took the direct route")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if r := routeOf(t, e); r != "direct" {
			st, _ := e.stack.Store.State(ctx, "e2e")
			t.Fatalf("a request took the %s route while the model was in use: %+v", r, st)
		}
	}
	// Unused, it is unloaded.
	e.waitState(t, "idle unload", func(s *jobstore.SlotState) bool { return s.Active == "" && s.Phase == jobstore.PhaseIdle })
}

// routeOf sends one small chat completion for qwen3-30b and returns the
// route it took.
func routeOf(t *testing.T, e *e2e) string {
	t.Helper()
	resp, err := http.Post(e.url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"qwen3-30b","messages":[{"role":"user","content":"x"}],"max_tokens":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Switchboard-Route")
}
