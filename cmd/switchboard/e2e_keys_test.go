package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func keyHash(k string) string {
	h := sha256.Sum256([]byte(k))
	return hex.EncodeToString(h[:])
}

// do sends a request with a key (and extra headers) and returns the
// status and body.
func do(t *testing.T, method, url, key, body string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Per-key rights from a keys file: the models a key may use, whether it
// may cause a switch, its switches-per-hour budget; every switch is
// attributed; admin routes refuse Funnel traffic; CORS for listed origins.
func TestE2E_KeyRights(t *testing.T) {
	keys := fmt.Sprintf(`key "alice" {
  sha256 = %q
  models = ["qwen3"]
}
key "bob" {
  sha256     = %q
  may_switch = false
}
key "carol" {
  sha256            = %q
  switches_per_hour = 1
}
key "ops" {
  sha256 = %q
  scope  = "admin"
}
`, keyHash("sk-alice"), keyHash("sk-bob"), keyHash("sk-carol"), keyHash("sk-ops"))
	e := startE2E(t, e2eOptions{
		gatewayHCL: "gateway {\n  keys_file = \"keys.hcl\"\n  cors_origins = [\"https://app.example\"]\n}\n",
		files:      map[string]string{"keys.hcl": keys},
	})
	chat := func(model string) string {
		return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"x"}],"max_tokens":2}`, model)
	}
	url := e.url + "/v1/chat/completions"

	if resp, body := do(t, http.MethodPost, url, "sk-alice", chat("qwen3-30b"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice on her model = %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, http.MethodPost, url, "sk-alice", chat("gpt-oss120"), nil); resp.StatusCode != http.StatusForbidden ||
		!strings.Contains(body, "model_not_allowed") {
		t.Fatalf("alice on another model = %d %s", resp.StatusCode, body)
	}
	// qwen3-30b is loaded: bob may use it, but may not cause a switch.
	if resp, body := do(t, http.MethodPost, url, "sk-bob", chat("qwen3"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob on the loaded model = %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, http.MethodPost, url, "sk-bob", chat("gpt-oss120"), nil); resp.StatusCode != http.StatusForbidden ||
		!strings.Contains(body, "switch_not_allowed") || !strings.Contains(body, "qwen3-30b") {
		t.Fatalf("bob causing a switch = %d %s", resp.StatusCode, body)
	}
	// carol may cause one switch an hour.
	if resp, body := do(t, http.MethodPost, url, "sk-carol", chat("gpt-oss120"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("carol's first switch = %d %s", resp.StatusCode, body)
	}
	st, _ := e.stack.Store.State(context.Background(), "e2e")
	if st.LastSwitch == nil || st.LastSwitch.RequestedBy != "carol" || !strings.Contains(st.LastSwitch.Reason, "for key carol") {
		t.Fatalf("the switch is not attributed to carol: %+v", st.LastSwitch)
	}
	resp, body := do(t, http.MethodPost, url, "sk-carol", chat("qwen3-30b"), nil)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "switch_budget_exhausted") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("carol's second switch = %d %s (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}

	// Admin routes: not for users, not through Funnel.
	if resp, _ := do(t, http.MethodGet, e.url+"/status", "sk-alice", "", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("user on /status = %d", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodGet, e.url+"/status", "sk-ops", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin on /status = %d", resp.StatusCode)
	}
	if resp, body := do(t, http.MethodGet, e.url+"/status", "sk-ops", "", map[string]string{"Tailscale-Funnel-Request": "?1"}); resp.StatusCode != http.StatusForbidden ||
		!strings.Contains(body, "admin_not_public") {
		t.Fatalf("admin through Funnel = %d %s", resp.StatusCode, body)
	}
	// User routes stay open to Funnel traffic.
	if resp, body := do(t, http.MethodGet, e.url+"/v1/models", "sk-alice", "", map[string]string{"Tailscale-Funnel-Request": "?1"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("user route through Funnel = %d %s", resp.StatusCode, body)
	}

	// CORS: the listed origin gets its preflight answered; others nothing.
	resp, _ = do(t, http.MethodOptions, url, "", "", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("preflight = %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = do(t, http.MethodOptions, url, "", "", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("an unlisted origin got CORS headers: %v", resp.Header)
	}
}
