package fakeconsul_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
)

func TestSession_Shapes(t *testing.T) {
	srv := fakeconsul.New(t, fakeconsul.Options{})
	c := newClient(t, srv)

	id := createSession(t, c, &api.SessionEntry{Name: "ref-release", TTL: "10s", LockDelay: 15 * time.Second, Behavior: api.SessionBehaviorRelease})

	info, meta, err := c.Session().Info(id, nil)
	if err != nil || info == nil {
		t.Fatalf("info %s: %v, %v", id, info, err)
	}
	if info.ID != id || info.Name != "ref-release" || info.TTL != "10s" || info.LockDelay != 15*time.Second ||
		info.Behavior != "release" || info.Node == "" || !slices.Equal(info.NodeChecks, []string{"serfHealth"}) {
		t.Fatalf("info = %+v", info)
	}
	if meta.LastIndex == 0 || !meta.KnownLeader {
		t.Fatalf("info meta = %+v, want an index and a known leader", meta)
	}

	// The wire shapes the client hides: one-element arrays, LockDelay in ns.
	for _, ep := range []struct{ method, path string }{
		{http.MethodGet, "/v1/session/info/" + id},
		{http.MethodPut, "/v1/session/renew/" + id},
	} {
		resp := do(t, ep.method, srv.URL+ep.path, "")
		var got []map[string]any
		if err := json.Unmarshal(resp.body, &got); err != nil || resp.status != http.StatusOK {
			t.Fatalf("%s %s = %d %s (%v)", ep.method, ep.path, resp.status, resp.body, err)
		}
		if len(got) != 1 || got[0]["ID"] != id || got[0]["LockDelay"] != float64(15e9) || got[0]["TTL"] != "10s" {
			t.Fatalf("%s %s = %s, want one session with LockDelay 15000000000", ep.method, ep.path, resp.body)
		}
	}

	renewed, _, err := c.Session().Renew(id, nil)
	if err != nil || renewed == nil || renewed.ID != id {
		t.Fatalf("renew = %+v, %v", renewed, err)
	}
	list, _, err := c.Session().List(nil)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if got := srv.Sessions(); !slices.Equal(got, []string{id}) {
		t.Fatalf("Sessions() = %v, want [%s]", got, id)
	}

	if _, err := c.Session().Destroy(id, nil); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if resp := do(t, http.MethodPut, srv.URL+"/v1/session/destroy/"+id, ""); resp.status != http.StatusOK || string(resp.body) != "true" {
		t.Fatalf("destroy again = %d %s, want 200 true", resp.status, resp.body)
	}
	if info, _, err := c.Session().Info(id, nil); err != nil || info != nil {
		t.Fatalf("info after destroy = %+v, %v; want nil", info, err)
	}
	if resp := do(t, http.MethodGet, srv.URL+"/v1/session/info/"+id, ""); resp.status != http.StatusOK || string(resp.body) != "[]" {
		t.Fatalf("raw info after destroy = %d %s, want 200 []", resp.status, resp.body)
	}
	resp := do(t, http.MethodPut, srv.URL+"/v1/session/renew/"+id, "")
	if resp.status != http.StatusNotFound || string(resp.body) != "Session id '"+id+"' not found" {
		t.Fatalf("renew unknown = %d %q", resp.status, resp.body)
	}
	if renewed, _, err := c.Session().Renew(id, nil); err != nil || renewed != nil {
		t.Fatalf("client renew unknown = %+v, %v; want nil, nil", renewed, err)
	}
	if resp := do(t, http.MethodGet, srv.URL+"/v1/session/renew/"+id, ""); resp.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET renew = %d, want 405", resp.status)
	}
}

func TestSession_CreateBody(t *testing.T) {
	srv := fakeconsul.New(t, fakeconsul.Options{})
	c := newClient(t, srv)
	tests := []struct {
		name          string
		body          string
		wantDelay     time.Duration
		wantBehavior  string
		wantChecks    []string
		wantTTLString string
	}{
		{name: "no body", body: "", wantDelay: 15 * time.Second, wantBehavior: "release", wantChecks: []string{"serfHealth"}},
		{name: "duration string", body: `{"TTL":"10s","LockDelay":"15s"}`, wantDelay: 15 * time.Second, wantBehavior: "release", wantChecks: []string{"serfHealth"}, wantTTLString: "10s"},
		{name: "milliseconds as the client sends", body: `{"LockDelay":"300ms"}`, wantDelay: 300 * time.Millisecond, wantBehavior: "release", wantChecks: []string{"serfHealth"}},
		{name: "small number is seconds", body: `{"LockDelay":15}`, wantDelay: 15 * time.Second, wantBehavior: "release", wantChecks: []string{"serfHealth"}},
		{name: "large number is nanoseconds", body: `{"LockDelay":15000000000}`, wantDelay: 15 * time.Second, wantBehavior: "release", wantChecks: []string{"serfHealth"}},
		{name: "zero delay", body: `{"LockDelay":"0s"}`, wantDelay: 0, wantBehavior: "release", wantChecks: []string{"serfHealth"}},
		{name: "delete behavior", body: `{"Behavior":"delete"}`, wantDelay: 15 * time.Second, wantBehavior: "delete", wantChecks: []string{"serfHealth"}},
		{name: "no checks", body: `{"NodeChecks":[]}`, wantDelay: 15 * time.Second, wantBehavior: "release", wantChecks: []string{}},
		{name: "empty deprecated checks", body: `{"Checks":[]}`, wantDelay: 15 * time.Second, wantBehavior: "release", wantChecks: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, http.MethodPut, srv.URL+"/v1/session/create", tt.body)
			var out struct{ ID string }
			if err := json.Unmarshal(resp.body, &out); err != nil || resp.status != http.StatusOK || out.ID == "" {
				t.Fatalf("create = %d %s (%v)", resp.status, resp.body, err)
			}
			info, _, err := c.Session().Info(out.ID, nil)
			if err != nil || info == nil {
				t.Fatalf("info: %+v, %v", info, err)
			}
			if info.LockDelay != tt.wantDelay || info.Behavior != tt.wantBehavior || info.TTL != tt.wantTTLString ||
				!slices.Equal(info.NodeChecks, tt.wantChecks) {
				t.Fatalf("info = %+v, want LockDelay %v Behavior %s TTL %q NodeChecks %v", info, tt.wantDelay, tt.wantBehavior, tt.wantTTLString, tt.wantChecks)
			}
		})
	}
}

func TestSession_CreateErrors(t *testing.T) {
	tests := []struct {
		name     string
		opts     fakeconsul.Options
		entry    *api.SessionEntry
		wantCode int
		wantBody string
	}{
		{name: "ttl under the default minimum", entry: &api.SessionEntry{TTL: "5s"}, wantCode: 500,
			wantBody: "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"},
		{name: "ttl under a lowered minimum", opts: fakeconsul.Options{MinSessionTTL: time.Second}, entry: &api.SessionEntry{TTL: "500ms"}, wantCode: 500,
			wantBody: "Invalid Session TTL '500000000', must be between [1s=24h0m0s]"},
		{name: "ttl over the maximum", entry: &api.SessionEntry{TTL: "25h"}, wantCode: 500,
			wantBody: "Invalid Session TTL '90000000000000', must be between [10s=24h0m0s]"},
		{name: "bad behavior", entry: &api.SessionEntry{TTL: "10s", Behavior: "bogus"}, wantCode: 500,
			wantBody: "Invalid Behavior setting 'bogus'"},
		{name: "unknown node", entry: &api.SessionEntry{Node: "elsewhere"}, wantCode: 500,
			wantBody: "raft apply failed: Missing node registration"},
		{name: "unknown check", entry: &api.SessionEntry{NodeChecks: []string{"nope"}}, wantCode: 500,
			wantBody: "raft apply failed: Missing check 'nope' registration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeconsul.New(t, tt.opts)
			_, _, err := newClient(t, srv).Session().Create(tt.entry, nil)
			se := statusError(t, err)
			if se.Code != tt.wantCode || se.Body != tt.wantBody {
				t.Fatalf("create error = %d %q, want %d %q", se.Code, se.Body, tt.wantCode, tt.wantBody)
			}
			if got := srv.Sessions(); len(got) != 0 {
				t.Fatalf("Sessions() = %v after a failed create", got)
			}
		})
	}
}

// awaitSessionGone waits, by blocking queries on the session, until it is
// invalidated.
func awaitSessionGone(t *testing.T, c *api.Client, id string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var idx uint64
	for time.Now().Before(deadline) {
		info, meta, err := c.Session().Info(id, &api.QueryOptions{WaitIndex: idx, WaitTime: time.Until(deadline)})
		if err != nil {
			t.Fatalf("info %s: %v", id, err)
		}
		if info == nil {
			return
		}
		idx = meta.LastIndex
	}
	t.Fatalf("session %s still alive after %v", id, within)
}

func TestSession_TTLExpiry(t *testing.T) {
	t.Parallel()
	srv := fakeconsul.New(t, fakeconsul.Options{MinSessionTTL: time.Second})
	c := newClient(t, srv)

	start := time.Now()
	id := createSession(t, c, &api.SessionEntry{TTL: "1s", LockDelay: 5 * time.Second})
	if !acquire(t, c, "some/ttl-lock", id, "ttl-holder") {
		t.Fatalf("acquire by a fresh session failed")
	}
	awaitSessionGone(t, c, id, 10*time.Second)
	if elapsed := time.Since(start); elapsed < 2*time.Second {
		t.Fatalf("1s TTL session gone after %v, want >= 2s (2 x TTL)", elapsed)
	}

	p, _ := getKV(t, c, "some/ttl-lock")
	if p == nil || p.Session != "" || p.LockIndex != 1 || string(p.Value) != "ttl-holder" {
		t.Fatalf("key after expiry = %+v, want released with value and LockIndex kept", p)
	}
	if got := srv.Sessions(); len(got) != 0 {
		t.Fatalf("Sessions() = %v after expiry", got)
	}
	if renewed, _, err := c.Session().Renew(id, nil); err != nil || renewed != nil {
		t.Fatalf("renew after expiry = %+v, %v; want nil, nil (404)", renewed, err)
	}
	// Expiry is an invalidation: the lock-delay applies.
	other := createSession(t, c, &api.SessionEntry{TTL: "10s"})
	if acquire(t, c, "some/ttl-lock", other, "x") {
		t.Fatalf("acquire right after the holder expired succeeded; want the lock-delay")
	}
}

func TestSession_RenewKeepsAlive(t *testing.T) {
	t.Parallel()
	srv := fakeconsul.New(t, fakeconsul.Options{MinSessionTTL: time.Second})
	c := newClient(t, srv)

	id := createSession(t, c, &api.SessionEntry{TTL: "1s"})
	done := make(chan struct{})
	renewErr := make(chan error, 1)
	go func() { renewErr <- c.Session().RenewPeriodic("1s", id, nil, done) }()
	stopRenew := sync.OnceValue(func() error {
		close(done) // RenewPeriodic destroys the session on the way out
		return <-renewErr
	})
	t.Cleanup(func() { _ = stopRenew() })

	_, meta, err := c.Session().Info(id, nil)
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	// Nothing changes for well past 2 x TTL: the blocking query times out
	// with the same index and the session is still there.
	info, meta2, err := c.Session().Info(id, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 2500 * time.Millisecond})
	if err != nil || info == nil || meta2.LastIndex != meta.LastIndex {
		t.Fatalf("renewed session after 2.5s: %+v (index %d -> %d), %v", info, meta.LastIndex, meta2.LastIndex, err)
	}

	if err := stopRenew(); err != nil {
		t.Fatalf("RenewPeriodic: %v", err)
	}
	if got := srv.Sessions(); len(got) != 0 {
		t.Fatalf("Sessions() = %v after RenewPeriodic destroyed it", got)
	}
}
