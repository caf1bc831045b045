package fakeconsul_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
)

func TestKV_PutGetDelete(t *testing.T) {
	srv := fakeconsul.New(t, fakeconsul.Options{})
	c := newClient(t, srv)
	kv := c.KV()

	p, meta := getKV(t, c, "cfg/missing")
	if p != nil || meta.LastIndex == 0 {
		t.Fatalf("missing key = %+v (index %d), want nil with an index", p, meta.LastIndex)
	}
	resp := do(t, http.MethodGet, srv.URL+"/v1/kv/cfg/missing", "")
	if resp.status != http.StatusNotFound || len(resp.body) != 0 || resp.header.Get("X-Consul-Index") == "" {
		t.Fatalf("raw missing key = %d %q index %q, want 404, empty body, X-Consul-Index", resp.status, resp.body, resp.header.Get("X-Consul-Index"))
	}

	if _, err := kv.Put(&api.KVPair{Key: "cfg/a", Value: []byte("one"), Flags: 42}, nil); err != nil {
		t.Fatalf("put: %v", err)
	}
	p, meta = getKV(t, c, "cfg/a")
	if p == nil || string(p.Value) != "one" || p.Flags != 42 || p.CreateIndex == 0 || p.ModifyIndex != p.CreateIndex || meta.LastIndex != p.ModifyIndex {
		t.Fatalf("get = %+v (index %d)", p, meta.LastIndex)
	}
	if v, session, ok := srv.KV("cfg/a"); !ok || string(v) != "one" || session != "" {
		t.Fatalf("KV() = %q %q %v", v, session, ok)
	}
	resp = do(t, http.MethodGet, srv.URL+"/v1/kv/cfg/a?raw", "")
	if resp.status != http.StatusOK || string(resp.body) != "one" {
		t.Fatalf("raw get = %d %q", resp.status, resp.body)
	}
	created := p.ModifyIndex

	casTests := []struct {
		name   string
		key    string
		cas    uint64
		want   bool
		wantV  string
		exists bool
	}{
		{name: "create-only on an existing key fails", key: "cfg/a", cas: 0, want: false, wantV: "one", exists: true},
		{name: "stale index fails", key: "cfg/a", cas: created - 1, want: false, wantV: "one", exists: true},
		{name: "current index succeeds", key: "cfg/a", cas: created, want: true, wantV: "cas", exists: true},
		{name: "index on a missing key fails", key: "cfg/b", cas: 7, want: false, exists: false},
		{name: "create-only on a missing key succeeds", key: "cfg/b", cas: 0, want: true, wantV: "cas", exists: true},
	}
	for _, tt := range casTests {
		t.Run(tt.name, func(t *testing.T) {
			ok, _, err := kv.CAS(&api.KVPair{Key: tt.key, Value: []byte("cas"), ModifyIndex: tt.cas}, nil)
			if err != nil || ok != tt.want {
				t.Fatalf("CAS(%s, %d) = %v, %v; want %v", tt.key, tt.cas, ok, err, tt.want)
			}
			v, _, exists := srv.KV(tt.key)
			if exists != tt.exists || string(v) != tt.wantV {
				t.Fatalf("after CAS: %s = %q (exists %v), want %q (exists %v)", tt.key, v, exists, tt.wantV, tt.exists)
			}
		})
	}

	if _, err := kv.Put(&api.KVPair{Key: "cfg/sub/c", Value: []byte("c")}, nil); err != nil {
		t.Fatalf("put: %v", err)
	}
	keys, _, err := kv.Keys("cfg/", "/", nil)
	if err != nil || !slices.Equal(keys, []string{"cfg/a", "cfg/b", "cfg/sub/"}) {
		t.Fatalf("keys with separator = %v, %v", keys, err)
	}
	pairs, _, err := kv.List("cfg/", nil)
	if err != nil || len(pairs) != 3 || pairs[2].Key != "cfg/sub/c" {
		t.Fatalf("list = %v, %v", pairs, err)
	}

	p, _ = getKV(t, c, "cfg/a")
	if ok, _, err := kv.DeleteCAS(&api.KVPair{Key: "cfg/a", ModifyIndex: p.ModifyIndex - 1}, nil); err != nil || ok {
		t.Fatalf("DeleteCAS with a stale index = %v, %v; want false", ok, err)
	}
	if ok, _, err := kv.DeleteCAS(p, nil); err != nil || !ok {
		t.Fatalf("DeleteCAS = %v, %v; want true", ok, err)
	}
	if _, _, ok := srv.KV("cfg/a"); ok {
		t.Fatalf("cfg/a still exists after DeleteCAS")
	}
	if ok, _, err := kv.DeleteCAS(&api.KVPair{Key: "cfg/a", ModifyIndex: 5}, nil); err != nil || !ok {
		t.Fatalf("DeleteCAS of a missing key = %v, %v; want true", ok, err)
	}
	if _, err := kv.Delete("cfg/b", nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := kv.DeleteTree("cfg/", nil); err != nil {
		t.Fatalf("delete tree: %v", err)
	}
	pairs, meta, err = kv.List("cfg/", nil)
	if err != nil || len(pairs) != 0 {
		t.Fatalf("list after delete tree = %v, %v", pairs, err)
	}
	if meta.LastIndex <= created {
		t.Fatalf("list index after deletes = %d, want above %d (tombstones count)", meta.LastIndex, created)
	}
	if resp := do(t, http.MethodPut, srv.URL+"/v1/kv/k?cas=0&acquire=x", "v"); resp.status != http.StatusBadRequest {
		t.Fatalf("conflicting flags = %d %s, want 400", resp.status, resp.body)
	}
}

func TestKV_BlockingGet(t *testing.T) {
	const wait = 300 * time.Millisecond
	tests := []struct {
		name      string
		key       string
		create    bool // the key exists before the query
		change    func(t *testing.T, c *api.Client)
		wantWake  bool
		wantValue string
	}{
		{name: "wakes when the key changes", key: "app/state", create: true, wantWake: true, wantValue: "v2",
			change: func(t *testing.T, c *api.Client) { put(t, c, "app/state", "v2") }},
		{name: "wakes when a missing key appears", key: "app/new", wantWake: true, wantValue: "hello",
			change: func(t *testing.T, c *api.Client) { put(t, c, "app/new", "hello") }},
		{name: "a write to another key does not wake it", key: "app/state", create: true, wantValue: "v1",
			change: func(t *testing.T, c *api.Client) { put(t, c, "app/other", "x") }},
		{name: "times out with the same index", key: "app/state", create: true, wantValue: "v1",
			change: func(*testing.T, *api.Client) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fakeconsul.New(t, fakeconsul.Options{})
			parked := parks(srv)
			c := newClient(t, srv)
			if tt.create {
				put(t, c, tt.key, "v1")
			}
			_, meta := getKV(t, c, tt.key)

			type result struct {
				p    *api.KVPair
				meta *api.QueryMeta
				err  error
				took time.Duration
			}
			done := make(chan result, 1)
			go func() {
				start := time.Now()
				p, m, err := c.KV().Get(tt.key, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: wait})
				done <- result{p, m, err, time.Since(start)}
			}()
			awaitPark(t, parked, "/v1/kv/"+tt.key, nil)
			tt.change(t, c)

			var r result
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("blocking get never returned")
			}
			if r.err != nil || r.p == nil || string(r.p.Value) != tt.wantValue {
				t.Fatalf("blocking get = %+v, %v; want value %q", r.p, r.err, tt.wantValue)
			}
			if tt.wantWake {
				if r.meta.LastIndex <= meta.LastIndex || r.took >= wait {
					t.Fatalf("blocking get returned index %d after %v; want > %d before %v", r.meta.LastIndex, r.took, meta.LastIndex, wait)
				}
				return
			}
			if r.meta.LastIndex != meta.LastIndex || r.took < wait {
				t.Fatalf("blocking get returned index %d after %v; want the same index %d after >= %v", r.meta.LastIndex, r.took, meta.LastIndex, wait)
			}
		})
	}
}

func put(t *testing.T, c *api.Client, key, value string) {
	t.Helper()
	if _, err := c.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func TestKV_AcquireRelease(t *testing.T) {
	srv := fakeconsul.New(t, fakeconsul.Options{})
	c := newClient(t, srv)
	s1 := createSession(t, c, &api.SessionEntry{Name: "holder-1", TTL: "10s"})
	s2 := createSession(t, c, &api.SessionEntry{Name: "holder-2", TTL: "10s"})
	const key = "some/lock"

	steps := []struct {
		name        string
		op          func() (bool, error)
		want        bool
		wantSession string
		wantLock    uint64
		wantValue   string
	}{
		{name: "s1 acquires", want: true, wantSession: s1, wantLock: 1, wantValue: "holder-1",
			op: func() (bool, error) { return kvOp(c, "acquire", key, s1, "holder-1") }},
		{name: "s1 acquires again", want: true, wantSession: s1, wantLock: 1, wantValue: "holder-1-again",
			op: func() (bool, error) { return kvOp(c, "acquire", key, s1, "holder-1-again") }},
		{name: "s2 is refused", want: false, wantSession: s1, wantLock: 1, wantValue: "holder-1-again",
			op: func() (bool, error) { return kvOp(c, "acquire", key, s2, "holder-2") }},
		{name: "s2 cannot release", want: false, wantSession: s1, wantLock: 1, wantValue: "holder-1-again",
			op: func() (bool, error) { return kvOp(c, "release", key, s2, "") }},
		{name: "s1 releases with no body", want: true, wantSession: "", wantLock: 1, wantValue: "",
			op: func() (bool, error) { return kvOp(c, "release", key, s1, "") }},
		{name: "s2 acquires at once after a release", want: true, wantSession: s2, wantLock: 2, wantValue: "holder-2",
			op: func() (bool, error) { return kvOp(c, "acquire", key, s2, "holder-2") }},
	}
	for _, st := range steps {
		got, err := st.op()
		if err != nil || got != st.want {
			t.Fatalf("%s: got %v, %v; want %v", st.name, got, err, st.want)
		}
		p, _ := getKV(t, c, key)
		if p == nil || p.Session != st.wantSession || p.LockIndex != st.wantLock || string(p.Value) != st.wantValue {
			t.Fatalf("%s: key = %+v, want Session %q LockIndex %d Value %q", st.name, p, st.wantSession, st.wantLock, st.wantValue)
		}
	}
	if v, session, ok := srv.KV(key); !ok || session != s2 || string(v) != "holder-2" {
		t.Fatalf("KV() = %q %q %v", v, session, ok)
	}

	resp := do(t, http.MethodGet, srv.URL+"/v1/kv/"+key, "")
	if want := `"Session":"` + s2 + `"`; !strings.Contains(string(resp.body), want) {
		t.Fatalf("raw key %s lacks %s", resp.body, want)
	}
	unknown := "00000000-0000-0000-0000-000000000000"
	_, err := kvOp(c, "acquire", key, unknown, "x")
	se := statusError(t, err)
	if se.Code != 500 || se.Body != `raft apply failed: invalid session "`+unknown+`"` {
		t.Fatalf("acquire with an unknown session = %d %q", se.Code, se.Body)
	}
}

func kvOp(c *api.Client, op, key, session, value string) (bool, error) {
	p := &api.KVPair{Key: key, Session: session}
	if value != "" {
		p.Value = []byte(value)
	}
	if op == "release" {
		ok, _, err := c.KV().Release(p, nil)
		return ok, err
	}
	ok, _, err := c.KV().Acquire(p, nil)
	return ok, err
}

func TestKV_LockDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	tests := []struct {
		name      string
		behavior  string
		lockDelay string // session create LockDelay
		end       func(t *testing.T, srv *fakeconsul.Server, c *api.Client, session string)
		wantDelay bool
		wantKey   bool
		wantGone  bool // the holder's session is gone
	}{
		{name: "voluntary release has no delay", lockDelay: "300ms", wantKey: true,
			end: func(t *testing.T, _ *fakeconsul.Server, c *api.Client, s string) {
				if ok, err := kvOp(c, "release", "lock", s, "v"); err != nil || !ok {
					t.Fatalf("release = %v, %v", ok, err)
				}
			}},
		{name: "destroy starts the delay", wantGone: true, lockDelay: "300ms", wantDelay: true, wantKey: true,
			end: func(t *testing.T, _ *fakeconsul.Server, c *api.Client, s string) {
				if _, err := c.Session().Destroy(s, nil); err != nil {
					t.Fatalf("destroy: %v", err)
				}
			}},
		{name: "invalidation starts the delay", wantGone: true, lockDelay: "300ms", wantDelay: true, wantKey: true,
			end: func(_ *testing.T, srv *fakeconsul.Server, _ *api.Client, s string) { srv.InvalidateSession(s) }},
		{name: "delete behavior deletes the key and starts the delay", wantGone: true, behavior: "delete", lockDelay: "300ms", wantDelay: true,
			end: func(_ *testing.T, srv *fakeconsul.Server, _ *api.Client, s string) { srv.InvalidateSession(s) }},
		{name: "zero lock-delay has no delay", wantGone: true, lockDelay: "0s", wantKey: true,
			end: func(_ *testing.T, srv *fakeconsul.Server, _ *api.Client, s string) { srv.InvalidateSession(s) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fakeconsul.New(t, fakeconsul.Options{})
			c := newClient(t, srv)
			body := `{"TTL":"10s","LockDelay":"` + tt.lockDelay + `","Behavior":"` + tt.behavior + `"}`
			holder := rawSession(t, srv, body)
			next := createSession(t, c, &api.SessionEntry{TTL: "10s"})
			if !acquire(t, c, "lock", holder, "held") {
				t.Fatalf("holder could not acquire")
			}

			start := time.Now()
			tt.end(t, srv, c, holder)
			if _, _, ok := srv.KV("lock"); ok != tt.wantKey {
				t.Fatalf("key exists = %v after the holder ended, want %v", ok, tt.wantKey)
			}
			if slices.Contains(srv.Sessions(), holder) == tt.wantGone {
				t.Fatalf("Sessions() = %v", srv.Sessions())
			}
			if !tt.wantDelay {
				if !acquire(t, c, "lock", next, "next") {
					t.Fatalf("acquire right after the holder ended = false, want true (no lock-delay)")
				}
				return
			}
			if acquire(t, c, "lock", next, "next") {
				t.Fatalf("acquire right after the holder ended = true, want false (lock-delay)")
			}
			// Consul signals nothing when a lock-delay ends; clients retry
			// (the api's Lock every 5s). Retry briefly until it is granted.
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			deadline := time.After(5 * time.Second)
			for !acquire(t, c, "lock", next, "next") {
				select {
				case <-tick.C:
				case <-deadline:
					t.Fatalf("lock never granted after the lock-delay")
				}
			}
			if elapsed := time.Since(start); elapsed < delay {
				t.Fatalf("lock granted %v after the holder ended, want >= %v", elapsed, delay)
			}
			p, _ := getKV(t, c, "lock")
			if p.Session != next {
				t.Fatalf("key = %+v, want held by %s", p, next)
			}
		})
	}
}

func rawSession(t *testing.T, srv *fakeconsul.Server, body string) string {
	t.Helper()
	resp := do(t, http.MethodPut, srv.URL+"/v1/session/create", body)
	if resp.status != http.StatusOK {
		t.Fatalf("create session %s = %d %s", body, resp.status, resp.body)
	}
	var out struct{ ID string }
	if err := json.Unmarshal(resp.body, &out); err != nil || out.ID == "" {
		t.Fatalf("session create answer %s: %v", resp.body, err)
	}
	return out.ID
}
