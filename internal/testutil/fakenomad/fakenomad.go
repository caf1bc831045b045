// Package fakenomad is an in-process fake of the Nomad HTTP API, for tests
// that drive the official client (github.com/hashicorp/nomad/api) the way
// production code drives a real agent.
//
// It is one dev agent: a server and a single client node. Jobspecs are
// parsed like POST /v1/jobs/parse does (HCL2, variables, functions,
// runtime interpolations kept literally); jobs are registered with
// check-and-set, scheduled on the node (drivers, devices, memory, ports)
// and run as real processes: raw_exec tasks run their command, docker tasks
// run what Options.DockerCommand maps them to. Allocations go through
// Nomad's lifecycle with its task events, restart policy and kill timeout;
// every change takes the next raft index and wakes blocking queries.
// Running allocations register their services in a fake Consul.
//
// Behaviour, status codes, headers and error texts follow transcripts
// recorded against Nomad v2.0.6-dev; the comments of each file quote the
// facts they implement. The fake also records violations of the
// switchboard's invariant 1 (two managed model jobs alive at once) and
// reports them as test errors.
package fakenomad

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
)

// Options configure the fake node.
type Options struct {
	// Consul, when set, receives the services of running allocations
	// (with their HTTP checks) and loses them when the allocations stop.
	// Create it before the fake Nomad, so that it outlives it at cleanup.
	Consul *fakeconsul.Server
	// Drivers are the node's healthy task drivers; default raw_exec and
	// docker.
	Drivers []string
	// Devices are the node's devices, one instance per entry
	// ("vendor/type" or "vendor/type/model"); default one nvidia/gpu.
	Devices []string
	// MemoryTotalMB is the node's memory; default 128 GiB, a DGX Spark.
	MemoryTotalMB int
	// MemoryReleaseDelay is how long a task's memory still counts as used
	// in the host stats after its process exited: unified memory comes
	// back slowly, so "allocation complete" is not "memory free".
	MemoryReleaseDelay time.Duration
	// DockerCommand says how a docker task runs here, where there is no
	// Docker engine: the command line (argv[0] looked up on PATH) and extra
	// environment for the interpolated task. Nil makes docker tasks fail
	// with a Driver Failure event.
	DockerCommand func(t *api.Task) (argv []string, env map[string]string, err error)
}

// Server is a running fake Nomad agent.
type Server struct {
	t       testing.TB
	opts    Options
	srv     *httptest.Server
	node    *api.Node
	hostIP  string
	dataDir string
	devices []deviceInstance
	// nodeClassHash names the node's computed class in ClassEligibility.
	nodeClassHash string
	cpuTotal      int
	started       time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu            sync.Mutex
	index         uint64
	tables        map[string]uint64
	changed       chan struct{}
	jobs          map[string]*jobRecord
	allocs        map[string]*allocRecord
	evals         map[string]*api.Evaluation
	evalQueue     []string
	evalKick      chan struct{}
	timers        []*time.Timer
	failPull      map[string]bool
	oomNext       map[string]bool
	memHeld       int
	releaseDelay  time.Duration
	memLive       map[string]int
	releases      []memRelease
	violations    []string
	registrations []string
}

type memRelease struct {
	mb    int
	until time.Time
}

// New starts a fake Nomad agent for the test; it stops it, kills every
// task process and reports invariant violations in t.Cleanup.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Drivers == nil {
		opts.Drivers = []string{"raw_exec", "docker"}
	}
	if opts.Devices == nil {
		opts.Devices = []string{"nvidia/gpu"}
	}
	if opts.MemoryTotalMB <= 0 {
		opts.MemoryTotalMB = 128 * 1024
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		t:            t,
		opts:         opts,
		hostIP:       "127.0.0.1",
		dataDir:      t.TempDir(),
		cpuTotal:     20 * 3000,
		started:      time.Now(),
		ctx:          ctx,
		cancel:       cancel,
		tables:       map[string]uint64{},
		changed:      make(chan struct{}),
		jobs:         map[string]*jobRecord{},
		allocs:       map[string]*allocRecord{},
		evals:        map[string]*api.Evaluation{},
		evalKick:     make(chan struct{}, 1),
		failPull:     map[string]bool{},
		oomNext:      map[string]bool{},
		memLive:      map[string]int{},
		releaseDelay: opts.MemoryReleaseDelay,
	}
	s.buildNode()
	s.mu.Lock()
	// The node registers, then becomes ready: the first raft entries.
	s.index = 5
	idx := s.commit(tableNodes)
	s.node.CreateIndex, s.node.ModifyIndex = idx, idx
	s.mu.Unlock()

	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	// The node's client API is this server too (api.AllocFS talks to the
	// node's HTTPAddr directly).
	s.node.HTTPAddr = strings.TrimPrefix(s.srv.URL, "http://")
	s.wg.Go(s.evalWorker)
	t.Cleanup(s.close)
	return s
}

func (s *Server) buildNode() {
	hostname, _ := os.Hostname()
	id := newUUID()
	attrs := map[string]string{
		"kernel.name":               runtime.GOOS,
		"cpu.arch":                  runtime.GOARCH,
		"os.name":                   runtime.GOOS,
		"unique.hostname":           hostname,
		"unique.network.ip-address": s.hostIP,
		"nomad.version":             "2.0.6-dev",
		"nomad.revision":            "aa026cc99cfb74a77e519a1c1f0c78ba1b452705",
		"nomad.service_discovery":   "true",
		"consul.version":            "1.22.7",
		"consul.datacenter":         "dc1",
		"unique.consul.name":        hostname,
		"cpu.numcores":              "20",
		"cpu.totalcompute":          "60000",
	}
	drivers := map[string]*api.DriverInfo{}
	now := time.Now().UTC()
	for _, d := range s.opts.Drivers {
		attrs["driver."+d] = "1"
		drivers[d] = &api.DriverInfo{
			Attributes:        map[string]string{"driver." + d: "true"},
			Detected:          true,
			Healthy:           true,
			HealthDescription: "Healthy",
			UpdateTime:        now,
		}
	}
	res := &api.NodeResources{
		Cpu:            api.NodeCpuResources{CpuShares: int64(s.cpuTotal), TotalCpuCores: 20},
		Memory:         api.NodeMemoryResources{MemoryMB: int64(s.opts.MemoryTotalMB)},
		Disk:           api.NodeDiskResources{DiskMB: 100 * 1024},
		MinDynamicPort: 20000,
		MaxDynamicPort: 32000,
	}
	groups := map[string]*api.NodeDeviceResource{}
	var order []string
	for _, d := range s.opts.Devices {
		parts := strings.Split(d, "/")
		vendor, typ, model := "fake", parts[0], "fake"
		switch {
		case len(parts) == 2:
			vendor, typ = parts[0], parts[1]
		case len(parts) > 2:
			vendor, typ, model = parts[0], parts[1], strings.Join(parts[2:], "/")
		}
		inst := deviceInstance{vendor: vendor, typ: typ, name: model, id: newUUID()}
		s.devices = append(s.devices, inst)
		key := inst.vendor + "/" + inst.typ + "/" + inst.name
		g, ok := groups[key]
		if !ok {
			g = &api.NodeDeviceResource{Vendor: inst.vendor, Type: inst.typ, Name: inst.name}
			groups[key] = g
			order = append(order, key)
		}
		g.Instances = append(g.Instances, &api.NodeDevice{ID: inst.id, Healthy: true})
	}
	for _, key := range order {
		res.Devices = append(res.Devices, groups[key])
	}
	sum := sha256.Sum256([]byte(strings.Join(s.opts.Drivers, ",") + "|" + strings.Join(s.opts.Devices, ",")))
	s.nodeClassHash = hex.EncodeToString(sum[:8])
	name := hostname
	if name == "" {
		name = "fakenomad"
	}
	s.node = &api.Node{
		ID:                    id,
		Datacenter:            "dc1",
		Name:                  name,
		Attributes:            attrs,
		NodeResources:         res,
		ReservedResources:     &api.NodeReservedResources{},
		Meta:                  map[string]string{},
		NodePool:              "default",
		SchedulingEligibility: "eligible",
		Status:                "ready",
		StatusDescription:     "",
		StatusUpdatedAt:       now.Unix(),
		Drivers:               drivers,
	}
}

// close stops the agent: blocking queries return, task processes are
// killed, goroutines end; then violations become test errors.
func (s *Server) close() {
	s.cancel()
	s.srv.Close()
	s.mu.Lock()
	for _, t := range s.timers {
		t.Stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
	for _, v := range s.Violations() {
		s.t.Errorf("fakenomad: %s", v)
	}
}

// Config is a client configuration for this agent: api.NewClient(s.Config()).
func (s *Server) Config() *api.Config {
	return &api.Config{Address: s.srv.URL}
}

// URL is the agent's HTTP address, http://127.0.0.1:port.
func (s *Server) URL() string { return s.srv.URL }

// NodeID is the ID of the one client node.
func (s *Server) NodeID() string { return s.node.ID }

// FailImagePull makes every docker task with this image fail to start with
// the docker driver's pull error (a Driver Failure event, then Not
// Restarting; the allocation fails).
func (s *Server) FailImagePull(image string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failPull[image] = true
}

// OOMKillOnStart makes the next start of a task of job jobID die as if the
// kernel's OOM killer got it: a Terminated event with exit code 137,
// oom_killed "true" and the exit message "OOM Killed", then the restart
// policy decides.
func (s *Server) OOMKillOnStart(jobID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oomNext[jobID] = true
}

// SetMemoryHeld sets memory held by something other than allocations (page
// cache, a notebook), which the host stats count as used.
func (s *Server) SetMemoryHeld(mb int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.memHeld = mb
}

// SetMemoryReleaseDelay changes Options.MemoryReleaseDelay for processes
// that exit from now on.
func (s *Server) SetMemoryReleaseDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseDelay = d
}

// Violations lists the recorded violations of invariant 1: a managed job
// (Meta "managed-by" = "llm-switchboard") registered or placed while
// another managed job still had an allocation that was not terminal.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations)
}

// ClearViolations forgets the recorded violations, for tests that provoke
// one on purpose; they would fail the test at cleanup otherwise.
func (s *Server) ClearViolations() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = nil
}

// Registrations lists the job IDs of successful registrations, in order.
func (s *Server) Registrations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.registrations)
}

// hostMemory is the node's memory as the client's host stats report it.
func (s *Server) hostMemory() *api.HostMemoryStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	used := s.memHeld
	for _, mb := range s.memLive {
		used += mb
	}
	kept := s.releases[:0]
	for _, r := range s.releases {
		if r.until.After(now) {
			used += r.mb
			kept = append(kept, r)
		}
	}
	s.releases = kept
	const mib = 1 << 20
	total := uint64(s.opts.MemoryTotalMB) * mib
	usedBytes := min(uint64(max(used, 0))*mib, total)
	return &api.HostMemoryStats{
		Total:     total,
		Available: total - usedBytes,
		Used:      usedBytes,
		Free:      total - usedBytes,
	}
}
