package fakenomad_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakenomad"
)

func itoa(n int) string { return strconv.Itoa(n) }

// TestAPI_ErrorShapes checks the error answers recorded from Nomad v2.0.6.
func TestAPI_ErrorShapes(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	tests := []struct {
		name     string
		path     string
		wantCode int
		wantBody string
	}{
		{"short alloc id", "/v1/allocation/9d6a35bd", 500, "alloc lookup failed: index error: UUID must be 36 characters"},
		{"bad alloc id", "/v1/allocation/zz", 500, "alloc lookup failed: index error: UUID must be 36 characters"},
		{"unknown alloc", "/v1/allocation/00000000-0000-0000-0000-000000000000", 404, "alloc not found"},
		{"unknown job", "/v1/job/does-not-exist", 404, "job not found"},
		{"allocations of unknown job", "/v1/job/does-not-exist/allocations", 200, "[]"},
		{"bad index", "/v1/job/does-not-exist?index=abc", 400, "Invalid index"},
		{"bad boolean", "/v1/jobs?meta=notabool", 500, `Failed to parse value of "meta" (notabool) as a bool: strconv.ParseBool: parsing "notabool": invalid syntax`},
		{"unknown path", "/v1/nonsense", 404, ""},
		{"leader", "/v1/status/leader", 200, `"127.0.0.1:4647"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawGet(t, srv.URL()+tt.path)
			assertEqual(t, "status", resp.StatusCode, tt.wantCode)
			assertEqual(t, "body", body, tt.wantBody)
		})
	}

	c := newClient(t, srv)
	_, _, err := c.Jobs().Info("does-not-exist", nil)
	code, _ := unexpected(t, err)
	assertEqual(t, "client status", code, 404)
	if _, err := c.Status().Leader(); err != nil {
		t.Fatalf("leader: %v", err)
	}
	self, err := c.Agent().Self()
	if err != nil {
		t.Fatalf("agent self: %v", err)
	}
	assertEqual(t, "agent region", self.Config["Region"], any("global"))
}

func TestAPI_JobListPrefixMetaFilter(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	register(t, c, parseBackend(t, c, "sb-alpha", `managed = true`))
	register(t, c, parseBackend(t, c, "sb-beta", `managed = true`))
	register(t, c, parseBackend(t, c, "other"))
	waitAllocs(t, c, "sb-beta", "running", oneWith("running"))

	stubs, _, err := c.Jobs().PrefixList("sb-")
	if err != nil {
		t.Fatalf("prefix list: %v", err)
	}
	assertEqual(t, "prefix count", len(stubs), 2)
	assertEqual(t, "first", stubs[0].ID, "sb-alpha")
	if stubs[0].Meta != nil {
		t.Errorf("meta without meta=true: %v", stubs[0].Meta)
	}
	if stubs[0].JobSummary == nil || stubs[0].Type != "service" {
		t.Errorf("stub = %+v", stubs[0])
	}

	stubs, _, err = c.Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}}, &api.QueryOptions{Prefix: "sb-"})
	if err != nil {
		t.Fatalf("list with meta: %v", err)
	}
	assertEqual(t, "managed-by", stubs[1].Meta["managed-by"], "llm-switchboard")
	assertEqual(t, "model", stubs[1].Meta["model"], "sb-beta")

	stubs, _, err = c.Jobs().List(&api.QueryOptions{Filter: `Meta["managed-by"] == "llm-switchboard" and Status == "running"`})
	if err != nil {
		t.Fatalf("list with filter: %v", err)
	}
	var ids []string
	for _, s := range stubs {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	assertEqual(t, "filtered", fmt.Sprint(ids), "[sb-alpha sb-beta]")
	stubs, _, _ = c.Jobs().PrefixList("nomatch")
	assertEqual(t, "no match", len(stubs), 0)
	srv.ClearViolations() // the two managed jobs run side by side on purpose
}

func TestAPI_NodesAndHostStats(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{MemoryTotalMB: 4096, MemoryReleaseDelay: 300 * time.Millisecond})
	c := newClient(t, srv)
	nodes, _, err := c.Nodes().List(nil)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes: %v %v", nodes, err)
	}
	assertEqual(t, "node id", nodes[0].ID, srv.NodeID())
	assertEqual(t, "status", nodes[0].Status, "ready")
	if !nodes[0].Drivers["raw_exec"].Healthy || !nodes[0].Drivers["docker"].Healthy {
		t.Errorf("drivers = %v", nodes[0].Drivers)
	}
	node, _, err := c.Nodes().Info(srv.NodeID(), nil)
	if err != nil {
		t.Fatalf("node info: %v", err)
	}
	assertEqual(t, "memory", node.NodeResources.Memory.MemoryMB, int64(4096))
	assertEqual(t, "gpu", node.NodeResources.Devices[0].Type, "gpu")

	const mib = 1 << 20
	available := func() uint64 {
		t.Helper()
		st, err := c.Nodes().Stats(srv.NodeID(), nil)
		if err != nil {
			t.Fatalf("stats: %v", err)
		}
		assertEqual(t, "total", st.Memory.Total, uint64(4096*mib))
		return st.Memory.Available / mib
	}
	assertEqual(t, "available idle", available(), uint64(4096))
	srv.SetMemoryHeld(96)
	assertEqual(t, "available with page cache", available(), uint64(4000))

	waitRunning(t, c, parseBackend(t, c, "mem", `memory_mb = 1000`))
	assertEqual(t, "available while running", available(), uint64(3000))
	if _, _, err := c.Jobs().Deregister("mem", false, nil); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	waitAllocs(t, c, "mem", "complete", oneWith("complete"))
	// The allocation is complete, the memory not back yet.
	assertEqual(t, "available right after complete", available(), uint64(3000))
	deadline := time.Now().Add(waitTimeout)
	for available() != 4000 {
		if time.Now().After(deadline) {
			t.Fatal("memory never came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAPI_ConsulServices checks that a running allocation's service is in
// Consul with Nomad's service ID and a check that passes, and leaves with
// the allocation.
func TestAPI_ConsulServices(t *testing.T) {
	t.Parallel()
	consul := fakeconsul.New(t, fakeconsul.Options{})
	srv := fakenomad.New(t, fakenomad.Options{Consul: consul})
	c := newClient(t, srv)
	alloc := waitRunning(t, c, parseBackend(t, c, "svc"))
	port := alloc.AllocatedResources.Shared.Ports[0].Value

	entries := waitConsul(t, consul.URL, "backend-svc", func(e []healthEntry) bool { return len(e) == 1 })
	svc := entries[0].Service
	assertEqual(t, "service id", svc.ID, "_nomad-task-"+alloc.ID+"-group-backend-backend-svc-http")
	assertEqual(t, "port", svc.Port, port)
	assertEqual(t, "address", svc.Address, "127.0.0.1")
	assertEqual(t, "external source", svc.Meta["external-source"], "nomad")
	assertEqual(t, "tags", fmt.Sprint(svc.Tags), "[model=svc]")
	var check *healthCheck
	for i := range entries[0].Checks {
		if entries[0].Checks[i].ServiceID == svc.ID {
			check = &entries[0].Checks[i]
		}
	}
	if check == nil {
		t.Fatalf("no service check in %+v", entries[0].Checks)
	}
	assertEqual(t, "check name", check.Name, `service: "backend-svc" check`)

	if _, _, err := c.Jobs().Deregister("svc", false, nil); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	waitConsul(t, consul.URL, "backend-svc", func(e []healthEntry) bool { return len(e) == 0 })
}

type healthEntry struct {
	Service struct {
		ID      string
		Service string
		Address string
		Port    int
		Tags    []string
		Meta    map[string]string
	}
	Checks []healthCheck
}

type healthCheck struct {
	Name      string
	Status    string
	ServiceID string
}

// waitConsul follows /v1/health/service/<name>?passing on the fake Consul
// with blocking queries until cond holds.
func waitConsul(t *testing.T, base, name string, cond func([]healthEntry) bool) []healthEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	index := "0"
	for {
		url := fmt.Sprintf("%s/v1/health/service/%s?passing=1&index=%s&wait=5s", base, name, index)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("consul health of %s: %v", name, err)
		}
		var entries []healthEntry
		err = json.NewDecoder(resp.Body).Decode(&entries)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("decode consul health: %v", err)
		}
		if cond(entries) {
			return entries
		}
		index = resp.Header.Get("X-Consul-Index")
	}
}

// TestAPI_InvariantRecorder checks that the fake catches a second managed
// job registered while the first still runs, and not a proper switch.
func TestAPI_InvariantRecorder(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)

	// A proper switch: stop a, wait until its allocation is terminal, then b.
	waitRunning(t, c, parseBackend(t, c, "model-a", `managed = true`))
	if _, _, err := c.Jobs().Deregister("model-a", false, nil); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	waitAllocs(t, c, "model-a", "complete", oneWith("complete"))
	waitRunning(t, c, parseBackend(t, c, "model-b", `managed = true`))
	if v := srv.Violations(); len(v) != 0 {
		t.Fatalf("violations after a proper switch: %v", v)
	}

	// Unmanaged jobs do not count.
	waitRunning(t, c, parseBackend(t, c, "notebook"))
	if v := srv.Violations(); len(v) != 0 {
		t.Fatalf("violations for an unmanaged job: %v", v)
	}

	// A broken switch: c registered while b still runs.
	register(t, c, parseBackend(t, c, "model-c", `managed = true`))
	waitAllocs(t, c, "model-c", "placed", func(a []*api.AllocationListStub) bool { return len(a) == 1 })
	v := srv.Violations()
	if len(v) != 2 {
		t.Fatalf("violations = %q, want one at register and one at placement", v)
	}
	want := `invariant 1 (one model at a time): managed job "model-c" registered at index`
	if len(v[0]) < len(want) || v[0][:len(want)] != want {
		t.Fatalf("violation = %q", v[0])
	}
	srv.ClearViolations()
	if v := srv.Violations(); len(v) != 0 {
		t.Fatalf("violations after clear: %v", v)
	}
	assertEqual(t, "registrations", fmt.Sprint(srv.Registrations()), "[model-a model-b notebook model-c]")
}
