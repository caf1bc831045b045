package fakeconsul_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
)

// backend is a model server whose /health answers a settable status.
type backend struct {
	*httptest.Server
	code atomic.Int32
	hits chan time.Time
}

func newBackend(t *testing.T, code int) *backend {
	t.Helper()
	b := &backend{hits: make(chan time.Time, 64)}
	b.code.Store(int32(code))
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case b.hits <- time.Now():
		default:
		}
		w.WriteHeader(int(b.code.Load()))
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) registration(id, name string, interval time.Duration) fakeconsul.ServiceRegistration {
	return fakeconsul.ServiceRegistration{
		ID: id, Name: name, Tags: []string{"model-x"}, Address: "127.0.0.1", Port: 18099,
		Meta:   map[string]string{"model": "x"},
		Checks: []fakeconsul.Check{{Name: "health", HTTP: b.URL + "/health", Interval: interval, Timeout: time.Second}},
	}
}

// awaitHealth runs blocking health queries (consul-template's loop) until
// done accepts the entries.
func awaitHealth(t *testing.T, c *api.Client, name string, passingOnly bool, done func([]*api.ServiceEntry) bool) []*api.ServiceEntry {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var idx uint64
	for time.Now().Before(deadline) {
		entries, meta, err := c.Health().Service(name, "", passingOnly, &api.QueryOptions{WaitIndex: idx, WaitTime: time.Until(deadline)})
		if err != nil {
			t.Fatalf("health %s: %v", name, err)
		}
		if done(entries) {
			return entries
		}
		if meta.LastIndex < idx {
			idx = 0
			continue
		}
		idx = meta.LastIndex
	}
	t.Fatalf("health of %s never reached the expected state", name)
	return nil
}

// serviceCheck is the entry's check of the service (not the node's).
func serviceCheck(t *testing.T, e *api.ServiceEntry) *api.HealthCheck {
	t.Helper()
	for _, hc := range e.Checks {
		if hc.ServiceID != "" {
			return hc
		}
	}
	t.Fatalf("entry %s has no service check", e.Service.ID)
	return nil
}

func TestHealth_CheckLifecycle(t *testing.T) {
	t.Parallel()
	srv := fakeconsul.New(t, fakeconsul.Options{})
	c := newClient(t, srv)
	be := newBackend(t, http.StatusServiceUnavailable)
	srv.Register(be.registration("llm-a-1", "llm-a", 20*time.Millisecond))

	entries, _, err := c.Health().Service("llm-a", "", false, nil)
	if err != nil || len(entries) != 1 {
		t.Fatalf("health = %v, %v; want one entry", entries, err)
	}
	e := entries[0]
	if e.Node.Node == "" || e.Node.Datacenter != "dc1" || e.Service.ID != "llm-a-1" || e.Service.Service != "llm-a" ||
		e.Service.Port != 18099 || e.Service.Address != "127.0.0.1" || e.Service.Meta["model"] != "x" || len(e.Checks) != 2 {
		t.Fatalf("entry = node %+v service %+v checks %d", e.Node, e.Service, len(e.Checks))
	}
	hc := serviceCheck(t, e)
	if hc.CheckID != "service:llm-a-1" || hc.Status != api.HealthCritical || hc.Name != "health" || hc.Type != "http" {
		t.Fatalf("new check = %+v, want critical service:llm-a-1", hc)
	}
	if got := e.Checks.AggregatedStatus(); got != api.HealthCritical {
		t.Fatalf("aggregated status = %s, want critical", got)
	}
	passing, _, err := c.Health().Service("llm-a", "", true, nil)
	if err != nil || len(passing) != 0 {
		t.Fatalf("?passing while critical = %v, %v; want none", passing, err)
	}

	be.code.Store(http.StatusOK)
	entries = awaitHealth(t, c, "llm-a", true, func(es []*api.ServiceEntry) bool { return len(es) == 1 })
	if hc := serviceCheck(t, entries[0]); hc.Status != api.HealthPassing || !strings.Contains(hc.Output, "200 OK") {
		t.Fatalf("passing check = %+v", hc)
	}

	be.code.Store(http.StatusInternalServerError)
	awaitHealth(t, c, "llm-a", true, func(es []*api.ServiceEntry) bool { return len(es) == 0 })
	entries, _, err = c.Health().Service("llm-a", "", false, nil)
	if err != nil || len(entries) != 1 || serviceCheck(t, entries[0]).Status != api.HealthCritical {
		t.Fatalf("health after the backend failed = %v, %v; want one critical entry", entries, err)
	}

	// The catalog ignores health.
	cat, _, err := c.Catalog().Service("llm-a", "", nil)
	if err != nil || len(cat) != 1 || cat[0].ServiceID != "llm-a-1" || cat[0].ServicePort != 18099 {
		t.Fatalf("catalog = %v, %v", cat, err)
	}

	srv.Deregister("llm-a-1")
	entries = awaitHealth(t, c, "llm-a", false, func(es []*api.ServiceEntry) bool { return len(es) == 0 })
	if cat, _, err := c.Catalog().Service("llm-a", "", nil); err != nil || len(cat) != 0 {
		t.Fatalf("catalog after deregister = %v, %v", cat, err)
	}
	_ = entries
}

func TestHealth_StatusFromHTTPCode(t *testing.T) {
	tests := []struct {
		name string
		code int
		want string
	}{
		{name: "200 passes", code: 200, want: api.HealthPassing},
		{name: "204 passes", code: 204, want: api.HealthPassing},
		{name: "429 warns", code: 429, want: api.HealthWarning},
		{name: "404 is critical", code: 404, want: api.HealthCritical},
		{name: "500 is critical", code: 500, want: api.HealthCritical},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fakeconsul.New(t, fakeconsul.Options{})
			c := newClient(t, srv)
			be := newBackend(t, tt.code)
			if tt.want == api.HealthCritical {
				// A new check is already critical: pass first so that
				// reaching critical proves the check ran.
				be.code.Store(http.StatusOK)
			}
			srv.Register(be.registration("svc-1", "svc", 10*time.Millisecond))
			status := func(want string) func([]*api.ServiceEntry) bool {
				return func(es []*api.ServiceEntry) bool { return len(es) == 1 && serviceCheck(t, es[0]).Status == want }
			}
			if tt.want == api.HealthCritical {
				awaitHealth(t, c, "svc", false, status(api.HealthPassing))
				be.code.Store(int32(tt.code))
			}
			awaitHealth(t, c, "svc", false, status(tt.want))

			passing, _, err := c.Health().Service("svc", "", true, nil)
			if err != nil || (len(passing) == 1) != (tt.want == api.HealthPassing) {
				t.Fatalf("?passing with a %s check = %d entries, %v", tt.want, len(passing), err)
			}
		})
	}
}

func TestHealth_MinCheckInterval(t *testing.T) {
	t.Parallel()
	const minInterval = 100 * time.Millisecond
	srv := fakeconsul.New(t, fakeconsul.Options{MinCheckInterval: minInterval})
	be := newBackend(t, http.StatusOK)
	srv.Register(be.registration("svc-1", "svc", time.Millisecond))

	var last time.Time
	for i := range 3 {
		var hit time.Time
		select {
		case hit = <-be.hits:
		case <-time.After(5 * time.Second):
			t.Fatalf("check ran only %d times", i)
		}
		if !last.IsZero() && hit.Sub(last) < minInterval {
			t.Fatalf("checks %v apart, want >= %v", hit.Sub(last), minInterval)
		}
		last = hit
	}
}

func TestHealth_AgentEndpoints(t *testing.T) {
	t.Parallel()
	srv := fakeconsul.New(t, fakeconsul.Options{})
	c := newClient(t, srv)
	be := newBackend(t, http.StatusOK)
	agent := c.Agent()

	reg := &api.AgentServiceRegistration{
		ID: "ref-backend-1", Name: "ref-backend", Address: "127.0.0.1", Port: 18099,
		Tags: []string{"model-x"}, Meta: map[string]string{"model": "x"},
		Check: &api.AgentServiceCheck{Name: "http-root", HTTP: be.URL + "/", Method: "GET", Interval: "20ms", Timeout: "1s",
			DeregisterCriticalServiceAfter: "90s"},
	}
	if err := agent.ServiceRegister(reg); err != nil {
		t.Fatalf("register: %v", err)
	}
	services, err := agent.Services()
	if err != nil || services["ref-backend-1"] == nil || services["ref-backend-1"].Service != "ref-backend" {
		t.Fatalf("agent services = %v, %v", services, err)
	}
	entries := awaitHealth(t, c, "ref-backend", true, func(es []*api.ServiceEntry) bool { return len(es) == 1 })
	if hc := serviceCheck(t, entries[0]); hc.Name != "http-root" || hc.CheckID != "service:ref-backend-1" {
		t.Fatalf("check = %+v", hc)
	}

	tagTests := []struct {
		name string
		tag  string
		want int
	}{
		{name: "matching tag", tag: "model-x", want: 1},
		{name: "other tag", tag: "model-y", want: 0},
		{name: "no tag", tag: "", want: 1},
	}
	for _, tt := range tagTests {
		t.Run(tt.name, func(t *testing.T) {
			entries, _, err := c.Health().Service("ref-backend", tt.tag, false, nil)
			if err != nil || len(entries) != tt.want {
				t.Fatalf("health with tag %q = %d entries, %v; want %d", tt.tag, len(entries), err, tt.want)
			}
		})
	}

	// An identical registration changes nothing (no new index).
	_, meta, err := c.Health().Service("ref-backend", "", false, nil)
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	if err := agent.ServiceRegister(reg); err != nil {
		t.Fatalf("re-register: %v", err)
	}
	if _, meta2, err := c.Health().Service("ref-backend", "", false, nil); err != nil || meta2.LastIndex != meta.LastIndex {
		t.Fatalf("index %d -> %d after an identical registration, %v", meta.LastIndex, meta2.LastIndex, err)
	}

	errTests := []struct {
		name     string
		call     func() error
		wantCode int
		wantBody string
	}{
		{name: "missing name", call: func() error { return agent.ServiceRegister(&api.AgentServiceRegistration{Port: 1}) },
			wantCode: 400, wantBody: "Missing service name"},
		{name: "check without interval", wantCode: 400,
			call: func() error {
				return agent.ServiceRegister(&api.AgentServiceRegistration{Name: "x", Check: &api.AgentServiceCheck{HTTP: be.URL}})
			},
			wantBody: "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"},
		{name: "unknown service", call: func() error { return agent.ServiceDeregister("nope") },
			wantCode: 404, wantBody: `Unknown service ID "nope". Ensure that the service ID is passed, not the service name.`},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			se := statusError(t, tt.call())
			if se.Code != tt.wantCode || se.Body != tt.wantBody {
				t.Fatalf("error = %d %q, want %d %q", se.Code, se.Body, tt.wantCode, tt.wantBody)
			}
		})
	}

	if err := agent.ServiceDeregister("ref-backend-1"); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	if services, err := agent.Services(); err != nil || len(services) != 0 {
		t.Fatalf("agent services after deregister = %v, %v", services, err)
	}
}

func TestHealth_SessionTiedToCheck(t *testing.T) {
	t.Parallel()
	srv := fakeconsul.New(t, fakeconsul.Options{})
	c := newClient(t, srv)
	be := newBackend(t, http.StatusServiceUnavailable)
	srv.Register(be.registration("svc-1", "svc", 10*time.Millisecond))

	entry := &api.SessionEntry{TTL: "10s", NodeChecks: []string{"serfHealth", "service:svc-1"}}
	_, _, err := c.Session().Create(entry, nil)
	se := statusError(t, err)
	if se.Body != "raft apply failed: Check 'service:svc-1' is in critical state" {
		t.Fatalf("session on a critical check: %q", se.Body)
	}
	be.code.Store(http.StatusOK)
	awaitHealth(t, c, "svc", true, func(es []*api.ServiceEntry) bool { return len(es) == 1 })
	id := createSession(t, c, entry)
	if !acquire(t, c, "leader", id, "me") {
		t.Fatalf("acquire failed")
	}

	be.code.Store(http.StatusInternalServerError)
	awaitSessionGone(t, c, id, 5*time.Second)
	if _, holder, _ := srv.KV("leader"); holder != "" {
		t.Fatalf("lock still held by %q after its check went critical", holder)
	}
}
