package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestE2E_SmokeScript runs the operator's check, scripts/smoke_test.sh,
// against the embedded stack with keys configured, so the script that
// checks a DGX deployment is itself tested: health, models, sync, stream,
// async job, cancel and a switch must all pass.
func TestE2E_SmokeScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not on PATH: scripts/smoke_test.sh needs it")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not on PATH: scripts/smoke_test.sh needs it")
	}
	const userKey, adminKey = "smoke-user-key", "smoke-admin-key"
	e := startE2E(t, e2eOptions{env: map[string]string{
		"GATEWAY_API_KEY": userKey, "GATEWAY_ADMIN_API_KEY": adminKey}})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "../../scripts/smoke_test.sh")
	env := []string{}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "SWITCHBOARD_BIN", "SWITCHBOARD_CONFIG", "GATEWAY_URL", "GATEWAY_API_KEY",
			"GATEWAY_ADMIN_API_KEY", "SMOKE_MODEL_A", "SMOKE_MODEL_B", "SMOKE_TIMEOUT",
			"SMOKE_SHORT_TIMEOUT", "SMOKE_MAX_TOKENS":
			continue // the test decides these
		}
		env = append(env, kv)
	}
	cmd.Env = append(env,
		"GATEWAY_URL="+e.url,
		"GATEWAY_API_KEY="+userKey,
		"GATEWAY_ADMIN_API_KEY="+adminKey,
		"SMOKE_MODEL_A=qwen3-30b",
		"SMOKE_MODEL_B=gpt-oss120",
		"SMOKE_TIMEOUT=30",
		"SMOKE_SHORT_TIMEOUT=10",
	)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("scripts/smoke_test.sh (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	if ctx.Err() != nil {
		t.Fatalf("smoke_test.sh did not finish in time: %v", ctx.Err())
	}
	if err != nil {
		t.Fatalf("smoke_test.sh failed: %v", err)
	}
	for _, want := range []string{"ok   7/7 switch", "smoke test passed"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("smoke_test.sh output lacks %q", want)
		}
	}
	if n := e.stack.Runtime.MaxAlive(); n != 1 {
		t.Fatalf("max backends alive = %d, want 1", n)
	}
}
