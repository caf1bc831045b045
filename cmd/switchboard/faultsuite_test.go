package main

// The multi-process fault suite (issue 7). Each fault runs against a full
// production-shaped stack of its own: two `switchboard gateway` processes,
// two `switchboard orchestrator` processes (one leads, one waits on the
// Consul lock) with the Nomad runtime and the Consul lock, a real
// redis-server with the append-only file on, the Nomad and Consul fakes at
// their HTTP APIs, and `switchboard mockllm` as the raw_exec task of each of
// three models. A mixed load of sync, streaming and async requests runs
// across the three models and both gateways while one fault is injected;
// then the invariants of DESIGN.md are checked:
//
//   - every accepted job ends (terminal in Redis) with the right status: a
//     client that got a whole answer has a succeeded job, a failed or
//     canceled job carries a reason, and no job exists that no client asked
//     for (jobs lost = accepted jobs not terminal);
//   - no two managed model jobs were ever alive at once (the Nomad fake's
//     own record);
//   - no request was served by a backend that was not the active one for
//     its model: every answer is the one the requested model's backend
//     gives, and every succeeded job started while an allocation of its
//     model ran (Nomad's allocation timeline);
//   - clients get an answer or a connection error, never a hang, and no
//     process crashes (nor reports a data race).
//
// The short form runs under `go test ./cmd/switchboard/`; the long form
// (about 20 leader kills, more load) runs with -faults.full or FAULTS=full.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"github.com/redis/go-redis/v9"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakenomad"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/redistest"
)

var faultsFull = flag.Bool("faults.full", false,
	"run the long form of the multi-process fault suite (about 20 leader kills); env FAULTS=full does the same")

// faultsLong reports whether the long form of the fault suite runs.
func faultsLong() bool { return *faultsFull || os.Getenv("FAULTS") == "full" }

const (
	fsKeyPrefix = "sb:"
	fsJobPrefix = "sbf-"
	fsLockKey   = "llm-switchboard/leader"
	fsKVPrefix  = "llm-switchboard/state/"
	fsSlot      = "faults"
	fsUserKey   = "sk-faultsuite-user"
	fsAdminKey  = "sk-faultsuite-admin"
	// fsSessionTTL is the smallest session TTL the config accepts (and
	// real Consul's default session_ttl_min): a dead leader's lock frees
	// after at most 2 x TTL, then the lock-delay.
	fsSessionTTL = 10 * time.Second
	fsLockDelay  = time.Second
	// fsClientBound is how long any one client call may take before it
	// counts as a hang. It is above the gateway's own wait bound
	// (queue_timeout + switch_timeout + inference_timeout + 10%).
	fsClientBound = 3 * time.Minute
	// fsSettleBound is how long accepted jobs get to reach a terminal
	// state once the load is over.
	fsSettleBound = 2 * time.Minute
)

// fsTotals adds up the counts of every fault run of the process.
var fsTotals fsStats

type fsStats struct {
	mu                                             sync.Mutex
	faults, requests, direct, accepted, lost, viol int
}

func (s *fsStats) add(o *fsStats) {
	o.mu.Lock()
	f, r, d, a, l, v := o.faults, o.requests, o.direct, o.accepted, o.lost, o.viol
	o.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults += f
	s.requests += r
	s.direct += d
	s.accepted += a
	s.lost += l
	s.viol += v
}

func (s *fsStats) line() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("faults injected=%d, requests=%d (served on the direct route=%d), jobs accepted=%d, jobs lost=%d, invariant violations=%d",
		s.faults, s.requests, s.direct, s.accepted, s.lost, s.viol)
}

// fsOptions vary the stack of one fault.
type fsOptions struct {
	// flags are extra mockllm flags per model name (after the defaults).
	flags map[string][]string
	// vars are extra jobspec variables per model name.
	vars map[string]map[string]string
	// switchTimeout and stopTimeout override the orchestrator's bounds.
	switchTimeout, stopTimeout time.Duration
}

// fsCluster is one production-shaped stack of processes on the fakes.
type fsCluster struct {
	t      *testing.T
	name   string
	dir    string
	bin    string
	redis  *redistest.Server
	rdb    *redis.Client
	store  *jobstore.Store
	consul *fakeconsul.Server
	nomad  *fakenomad.Server
	nc     *nomad.Client
	config string // path of gateway.hcl
	env    []string

	mu       sync.Mutex
	procs    []*fsProc
	gateways [2]*fsProc
	seq      int

	stats fsStats
	// results of every client request of this run, by prompt.
	resMu   sync.Mutex
	results []*fsResult
}

// fsProc is one switchboard process.
type fsProc struct {
	name    string
	role    string // "gateway" or "orchestrator"
	addr    string // gateway: API address; orchestrator: metrics address
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	killed  atomic.Bool // SIGKILLed by the suite
	stopped atomic.Bool // stopped by cleanup
}

func (p *fsProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *fsProc) pid() int { return p.cmd.Process.Pid }

// kill SIGKILLs the process and waits until it is reaped.
func (p *fsProc) kill() {
	p.killed.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *fsProc) stop() {
	p.stopped.Store(true)
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *fsProc) logTail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// fsModels are the three models of every stack (the e2e tests' names).
var fsModels = testModels

// startFaultCluster writes the production-shaped configuration and starts
// every process of the stack.
func startFaultCluster(t *testing.T, name string, opts fsOptions) *fsCluster {
	t.Helper()
	rs := redistest.Start(t)
	if !rs.Real {
		t.Skip("the fault suite needs a real redis-server (restarts with AOF); install redis-server")
	}
	fc := fakeconsul.New(t, fakeconsul.Options{MinCheckInterval: 20 * time.Millisecond})
	fn := fakenomad.New(t, fakenomad.Options{Consul: fc})
	nc, err := nomad.NewClient(fn.Config())
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := filepath.Abs("../../orchestrator/nomadrt/testdata/mockllm.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	c := &fsCluster{t: t, name: name, dir: t.TempDir(), bin: bin, redis: rs, consul: fc, nomad: fn, nc: nc}
	c.rdb = rs.Client()
	c.store = jobstore.New(c.rdb, jobstore.Options{Prefix: fsKeyPrefix, ResultTTL: time.Hour})

	switchTimeout, stopTimeout := 20*time.Second, 15*time.Second
	if opts.switchTimeout > 0 {
		switchTimeout = opts.switchTimeout
	}
	if opts.stopTimeout > 0 {
		stopTimeout = opts.stopTimeout
	}
	consulAddr := fc.Config().Address
	gatewayHCL := fmt.Sprintf(`models_file = "models.hcl"

gateway {
  listen            = "127.0.0.1:8000"
  max_request_bytes = 1048576
}

redis {
  url        = %q
  key_prefix = %q
}

nomad {
  address         = %q
  job_prefix      = %q
  memory_headroom = "1MiB"
  memory_timeout  = "10s"
}

consul {
  address     = %q
  lock_key    = %q
  session_ttl = %q
  lock_delay  = %q
  kv_prefix   = %q
}

orchestrator {
  runtime           = "nomad"
  slot              = %q
  switch_timeout    = %q
  inference_timeout = "30s"
  drain_timeout     = "10s"
  stop_timeout      = %q
  canary_timeout    = "5s"
}

scheduler {
  max_wait        = "3s"
  queue_timeout   = "60s"
  quarantine_base = "2s"
  quarantine_max  = "4s"
}
`, rs.URL, fsKeyPrefix, fn.URL(), fsJobPrefix, consulAddr, fsLockKey, fsSessionTTL.String(), fsLockDelay.String(), fsKVPrefix,
		fsSlot, switchTimeout.String(), stopTimeout.String())

	var models strings.Builder
	for _, m := range fsModels {
		flags := []string{"--load-delay", "300ms", "--ttft", "10ms", "--tokens-per-second", "200"}
		flags = append(flags, opts.flags[m.name]...)
		vars := map[string]string{"switchboard_bin": bin, "check_interval": "100ms", "kill_timeout": "2s"}
		for k, v := range opts.vars[m.name] {
			vars[k] = v
		}
		var qflags, qvars []string
		for _, f := range flags {
			qflags = append(qflags, strconv.Quote(f))
		}
		for _, k := range mapsKeys(vars) {
			qvars = append(qvars, fmt.Sprintf("%s = %q", k, vars[k]))
		}
		fmt.Fprintf(&models, `model %q {
  aliases     = [%q]
  served_name = %q
  jobspec     = %q

  source {
    type  = "huggingface_repo"
    value = %q
  }

  backend {
    image     = "mockllm:faultsuite"
    port      = 8000
    vllm_args = [%s]
  }

  max_concurrency = 4
  variables       = { %s }
}

`, m.name, m.alias, m.served, spec, m.served, strings.Join(qflags, ", "), strings.Join(qvars, ", "))
	}
	c.config = filepath.Join(c.dir, "gateway.hcl")
	if err := os.WriteFile(c.config, []byte(gatewayHCL), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "models.hcl"), []byte(models.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// The environment wins over the file: pin every address to this
	// stack, whatever the developer's shell exports.
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case asMainEnv, "REDIS_URL", "NOMAD_ADDR", "NOMAD_TOKEN", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "GATEWAY_LISTEN",
			"GATEWAY_API_KEY", "GATEWAY_ADMIN_API_KEY", "SWITCH_TIMEOUT_SEC", "INFERENCE_TIMEOUT_SEC", "LOG_LEVEL":
			continue
		}
		c.env = append(c.env, kv)
	}
	c.env = append(c.env, asMainEnv+"=1", "REDIS_URL="+rs.URL, "NOMAD_ADDR="+fn.URL(), "CONSUL_HTTP_ADDR="+consulAddr,
		"GATEWAY_API_KEY="+fsUserKey, "GATEWAY_ADMIN_API_KEY="+fsAdminKey, "LOG_LEVEL=info")

	// Processes stop before the fakes and Redis (cleanups run last-in,
	// first-out); the crash and race checks run before they stop.
	t.Cleanup(c.stopAll)
	began := time.Now()
	c.startOrchestrator()
	c.waitLeader(30*time.Second, nil)
	c.startOrchestrator()
	c.gateways[0] = c.startGateway(0)
	c.gateways[1] = c.startGateway(1)
	t.Logf("stack up in %s: gateways %s and %s", time.Since(began).Round(time.Millisecond), c.gateways[0].addr, c.gateways[1].addr)
	return c
}

func mapsKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *fsCluster) startProc(role string, args []string, env ...string) *fsProc {
	c.t.Helper()
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("%s-%d", role, c.seq)
	c.mu.Unlock()
	logPath := filepath.Join(c.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, append([]string{role, "-config", c.config}, args...)...)
	cmd.Env = append(slices.Clone(c.env), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		c.t.Fatalf("start %s: %v", name, err)
	}
	p := &fsProc{name: name, role: role, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p
}

// startOrchestrator starts one more orchestrator; it leads or waits on
// the lock.
func (c *fsCluster) startOrchestrator() *fsProc {
	c.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(c.t))
	p := c.startProc("orchestrator", []string{"-metrics-listen", addr})
	p.addr = addr
	c.waitHTTP(p, "http://"+addr+"/health")
	return p
}

// startGateway starts gateway i (0 or 1) on a free port.
func (c *fsCluster) startGateway(i int) *fsProc {
	c.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(c.t))
	p := c.startProc("gateway", nil, "GATEWAY_LISTEN="+addr)
	p.addr = addr
	c.waitHTTP(p, "http://"+addr+"/health")
	c.mu.Lock()
	c.gateways[i] = p
	c.mu.Unlock()
	return p
}

func (c *fsCluster) gateway(i int) *fsProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gateways[i]
}

// waitHTTP waits until the process answers url with 200.
func (c *fsCluster) waitHTTP(p *fsProc, url string) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if p.exited() {
			c.t.Fatalf("%s exited during start:\n%s", p.name, p.logTail(40))
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s not answering %s after 60s (last error %v):\n%s", p.name, url, err, p.logTail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leader is the orchestrator process whose session holds the lock, and
// that session; the process is nil when the session belongs to a dead
// process (its lock not yet freed) or nobody holds the lock.
func (c *fsCluster) leader() (*fsProc, string) {
	v, session, ok := c.consul.KV(fsLockKey)
	if !ok || session == "" {
		return nil, ""
	}
	var lv struct {
		PID int `json:"pid"`
	}
	if json.Unmarshal(v, &lv) != nil {
		return nil, session
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.role == "orchestrator" && p.pid() == lv.PID && !p.exited() {
			return p, session
		}
	}
	return nil, session
}

// waitLeader waits until a live orchestrator other than not holds the
// lock.
func (c *fsCluster) waitLeader(bound time.Duration, not *fsProc) *fsProc {
	c.t.Helper()
	deadline := time.Now().Add(bound)
	for {
		if p, _ := c.leader(); p != nil && p != not {
			return p
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no orchestrator took the lock within %s\n%s", bound, c.logs(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// state is the slot state the leader publishes in Redis (nil when absent
// or unreadable, e.g. while Redis restarts).
func (c *fsCluster) state() *jobstore.SlotState {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.store.State(ctx, fsSlot)
	if err != nil {
		return nil
	}
	return st
}

// waitFor polls cond until it holds or bound passes; it reports which.
func waitFor(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// switching reports whether the slot is in the middle of a switch.
func switching(st *jobstore.SlotState) bool {
	if st == nil {
		return false
	}
	switch st.Phase {
	case jobstore.PhaseDraining, jobstore.PhaseStopping, jobstore.PhaseWaitingMemory, jobstore.PhaseStarting, jobstore.PhaseCanary:
		return true
	}
	return false
}

// violate records an invariant violation.
func (c *fsCluster) violate(kind, format string, args ...any) {
	c.t.Helper()
	c.stats.mu.Lock()
	c.stats.viol++
	c.stats.mu.Unlock()
	c.t.Errorf("INVARIANT VIOLATION [%s] %s", kind, fmt.Sprintf(format, args...))
}

// fault counts one injected fault.
func (c *fsCluster) fault(format string, args ...any) {
	c.t.Helper()
	c.stats.mu.Lock()
	c.stats.faults++
	n := c.stats.faults
	c.stats.mu.Unlock()
	c.t.Logf("fault %d injected at %s: %s", n, time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// logs are the tails of every process log, for failure messages.
func (c *fsCluster) logs(n int) string {
	c.mu.Lock()
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "--- %s (%s, pid %d) ---\n%s\n", p.name, p.addr, p.pid(), p.logTail(n))
	}
	return b.String()
}

// checkProcesses reports processes that died without being killed, and
// panics or data races in any process log.
func (c *fsCluster) checkProcesses() {
	c.t.Helper()
	c.mu.Lock()
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	for _, p := range procs {
		if p.exited() && !p.killed.Load() && !p.stopped.Load() {
			c.violate("no crash", "%s exited on its own (%v):\n%s", p.name, p.cmd.ProcessState, p.logTail(40))
		}
		b, _ := os.ReadFile(p.logPath)
		for _, bad := range []string{"WARNING: DATA RACE", "panic: ", "fatal error: "} {
			if i := bytes.Index(b, []byte(bad)); i >= 0 {
				c.violate("no crash", "%s logged %q:\n%s", p.name, bad, truncateString(string(b[i:]), 4000))
			}
		}
	}
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (c *fsCluster) stopAll() {
	c.mu.Lock()
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.stop)
	}
	wg.Wait()
	switch {
	case os.Getenv("FAULTS_LOGS") != "":
		c.t.Logf("process logs:\n%s", c.logs(100000))
	case c.t.Failed():
		c.t.Logf("process logs (tails):\n%s", c.logs(60))
	}
}

// backendPIDs lists the pids of the mockllm processes serving served on
// port (children of this test process: the Nomad fake runs them).
func backendPIDs(served, port string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	me := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != me {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(cmdline), "\x00")
		if i := slices.Index(args, "--port"); i < 0 || i+1 >= len(args) || args[i+1] != port {
			continue
		}
		if slices.Contains(args, "mockllm") && slices.Contains(args, served) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// allocInterval is when one allocation's task ran.
type allocInterval struct {
	alloc         string
	start, finish time.Time // finish zero: still running
}

// timeline reads, for every model, when its allocations ran.
func (c *fsCluster) timeline() (map[string][]allocInterval, error) {
	out := map[string][]allocInterval{}
	for _, m := range fsModels {
		allocs, _, err := c.nc.Jobs().Allocations(fsJobPrefix+m.name, true, nil)
		if err != nil {
			var ure nomad.UnexpectedResponseError
			if errors.As(err, &ure) && ure.StatusCode() == http.StatusNotFound {
				continue
			}
			return nil, fmt.Errorf("allocations of %s: %w", m.name, err)
		}
		for _, a := range allocs {
			for _, ts := range a.TaskStates {
				if ts.StartedAt.IsZero() {
					continue
				}
				out[m.name] = append(out[m.name], allocInterval{alloc: a.ID, start: ts.StartedAt, finish: ts.FinishedAt})
			}
		}
	}
	return out, nil
}

// aliveManaged lists the managed jobs that are not dead.
func (c *fsCluster) aliveManaged() ([]string, error) {
	stubs, _, err := c.nc.Jobs().List(nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range stubs {
		if strings.HasPrefix(s.ID, fsJobPrefix) && s.Status != "dead" {
			out = append(out, s.ID)
		}
	}
	return out, nil
}

// jobRecords reads every job record in Redis, by id.
func (c *fsCluster) jobRecords(ctx context.Context) (map[string]*jobstore.Job, error) {
	keys, err := c.rdb.Keys(ctx, fsKeyPrefix+"job:*").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]*jobstore.Job{}
	for _, k := range keys {
		id := strings.TrimPrefix(k, fsKeyPrefix+"job:")
		if strings.Contains(id, ":") {
			continue
		}
		j, err := c.store.Get(ctx, id)
		if errors.Is(err, jobstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[id] = j
	}
	return out, nil
}

// promptOf extracts the (last user) prompt of a job's request body.
func promptOf(body []byte) string {
	var req struct {
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
		Prompt string `json:"prompt"`
	}
	if json.Unmarshal(body, &req) != nil {
		return ""
	}
	if n := len(req.Messages); n > 0 {
		return req.Messages[n-1].Content
	}
	return req.Prompt
}

// verify waits for the jobs to settle and checks every invariant. It is
// called once per fault run, after the load ended.
func (c *fsCluster) verify() {
	t := c.t
	t.Helper()
	c.checkProcesses()

	c.resMu.Lock()
	results := slices.Clone(c.results)
	c.resMu.Unlock()
	byPrompt := map[string]*fsResult{}
	for _, r := range results {
		byPrompt[r.prompt] = r
	}

	// Wait until every job in Redis is terminal (or the bound passes).
	ctx, cancel := context.WithTimeout(context.Background(), fsSettleBound+30*time.Second)
	defer cancel()
	var jobs map[string]*jobstore.Job
	settled := waitFor(fsSettleBound, func() bool {
		var err error
		jobs, err = c.jobRecords(ctx)
		if err != nil {
			return false
		}
		for _, j := range jobs {
			if !j.Status.Terminal() {
				return false
			}
		}
		return true
	})
	if jobs == nil {
		t.Fatalf("cannot read the job records from Redis")
	}
	if !settled {
		t.Logf("some jobs are still not terminal %s after the load", fsSettleBound)
	}

	// Match jobs to requests by prompt (every request has its own).
	jobOf := map[*fsResult]*jobstore.Job{}
	strays := 0
	for id, j := range jobs {
		r := byPrompt[promptOf(j.Body)]
		if r == nil {
			// Created by no request of the load: a malformed request
			// that got through, or a job made up by the system.
			if strays++; strays <= 10 {
				c.violate("no job without a request", "job %s (model %s, %s) matches no client request: %.200s", id, j.Model, j.Status, j.Body)
			} else {
				c.stats.mu.Lock()
				c.stats.viol++
				c.stats.mu.Unlock()
			}
			continue
		}
		if prev := jobOf[r]; prev != nil {
			c.violate("one job per request", "request %d has two jobs: %s and %s", r.idx, prev.ID, id)
			continue
		}
		if r.jobID != "" && r.jobID != id {
			c.violate("one job per request", "request %d was told job %s but Redis holds %s for it", r.idx, r.jobID, id)
		}
		jobOf[r] = j
	}

	if strays > 10 {
		t.Errorf("INVARIANT VIOLATION [no job without a request] ... %d jobs in all match no client request", strays)
	}

	tl, err := c.timeline()
	if err != nil {
		t.Fatalf("nomad allocation timeline: %v", err)
	}
	accepted, lost, direct := 0, 0, 0
	counts := map[string]int{}
	for _, r := range results {
		j := jobOf[r]
		route := r.route
		if route == "" {
			route = "-"
		}
		counts[r.kind+"/"+route+" "+r.outcome()]++
		if r.hung {
			c.violate("no hang", "request %d (%s %s via gateway %d) got no answer within %s", r.idx, r.kind, r.clientModel, r.gw, fsClientBound)
		}
		if r.wrong != "" {
			c.violate("right backend", "request %d (%s %s): %s", r.idx, r.kind, r.clientModel, r.wrong)
		}
		if r.errBody != "" {
			c.violate("clear errors", "request %d (%s %s) answered %d without OpenAI's error shape: %.300s", r.idx, r.kind, r.clientModel, r.status, r.errBody)
		}
		if r.cut && !r.gatewayKilled {
			c.violate("streams end with [DONE] or an error", "request %d (stream %s via live gateway %d) ended without [DONE] or an error event (job %s)",
				r.idx, r.clientModel, r.gw, r.jobID)
		}
		if r.route == "direct" {
			// Served straight from the backend under a gateway lease:
			// no job record; the backend must have been the model's,
			// running while the client waited.
			direct++
			if j != nil {
				c.violate("one job per request", "request %d was served on the direct route but job %s exists for it", r.idx, j.ID)
			}
			if r.ok && !overlaps(tl[r.model], r.start, r.end) {
				c.violate("right backend", "request %d (%s) was answered on the direct route between %s and %s when no allocation of %s ran; allocations: %+v",
					r.idx, r.kind, r.start.Format("15:04:05.000000"), r.end.Format("15:04:05.000000"), r.model, tl[r.model])
			}
			continue
		}
		if !r.accepted() && j == nil {
			continue
		}
		accepted++
		if j == nil {
			lost++
			c.violate("every accepted job ends", "request %d (%s %s, job %q) was accepted (%s) but its job is gone from Redis", r.idx, r.kind, r.clientModel, r.jobID, r.outcome())
			continue
		}
		if !j.Status.Terminal() {
			lost++
			c.violate("every accepted job ends", "job %s (request %d, %s %s) is still %s %s after the load", j.ID, r.idx, r.kind, r.clientModel, j.Status, fsSettleBound)
			continue
		}
		if j.Model != r.model {
			c.violate("right model", "job %s of request %d is for model %s, the client asked for %s", j.ID, r.idx, j.Model, r.model)
		}
		if r.ok && j.Status != jobstore.StatusSucceeded {
			c.violate("right status", "request %d (%s) got a whole, right answer but job %s is %s (%v)", r.idx, r.kind, j.ID, j.Status, j.Error)
		}
		if r.errCode != "" || r.errMsg != "" {
			if j.Status == jobstore.StatusSucceeded {
				c.violate("right status", "request %d (%s) was answered with error %q (%s) but job %s succeeded", r.idx, r.kind, r.errCode, r.errMsg, j.ID)
			}
		}
		if j.Status != jobstore.StatusSucceeded && (j.Error == nil || strings.TrimSpace(j.Error.Message) == "") {
			c.violate("failures carry a reason", "job %s (request %d) is %s without a reason", j.ID, r.idx, j.Status)
		}
		if j.Status == jobstore.StatusSucceeded {
			if j.Started.IsZero() {
				c.violate("right backend", "job %s succeeded but never started", j.ID)
			} else if !servedWithin(tl[j.Model], j.Started) {
				c.violate("right backend", "job %s (%s) started at %s when no allocation of %s ran; allocations: %+v",
					j.ID, j.Model, j.Started.Format("15:04:05.000000"), j.Model, tl[j.Model])
			}
		}
	}

	for _, v := range c.nomad.Violations() {
		c.violate("one model at a time", "fake nomad: %s", v)
	}
	c.nomad.ClearViolations()
	if alive, err := c.aliveManaged(); err != nil {
		t.Errorf("list nomad jobs: %v", err)
	} else if len(alive) > 1 {
		c.violate("one model at a time", "managed jobs alive after the run: %v", alive)
	}
	c.checkProcesses()

	c.stats.mu.Lock()
	c.stats.requests += len(results)
	c.stats.direct += direct
	c.stats.accepted += accepted
	c.stats.lost += lost
	c.stats.mu.Unlock()
	var kinds []string
	for k, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	t.Logf("outcomes: %s", strings.Join(kinds, " "))
}

// servedWithin reports whether at falls within one of the allocations'
// run intervals.
func servedWithin(ivs []allocInterval, at time.Time) bool {
	for _, iv := range ivs {
		if !at.Before(iv.start) && (iv.finish.IsZero() || !at.After(iv.finish)) {
			return true
		}
	}
	return false
}

// overlaps reports whether one of the allocations ran at some instant
// between from and to.
func overlaps(ivs []allocInterval, from, to time.Time) bool {
	for _, iv := range ivs {
		if !iv.start.After(to) && (iv.finish.IsZero() || !iv.finish.Before(from)) {
			return true
		}
	}
	return false
}

// finish verifies the run and logs its summary line; the run fails when a
// job was lost or an invariant violated.
func (c *fsCluster) finish(start time.Time) {
	c.t.Helper()
	c.verify()
	fsTotals.add(&c.stats)
	c.t.Logf("fault suite summary [%s] (%s): %s", c.name, time.Since(start).Round(time.Second), c.stats.line())
	c.stats.mu.Lock()
	bad := c.stats.lost > 0 || c.stats.viol > 0
	c.stats.mu.Unlock()
	if bad {
		c.t.Errorf("jobs lost or invariants violated; see above")
	}
}

// sseLines reads SSE data lines from r until EOF, calling fn with each
// data payload; comments and blank lines are skipped.
func sseLines(r io.Reader, fn func(data []byte) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		if !fn(bytes.TrimSpace(line[len("data:"):])) {
			return nil
		}
	}
	return sc.Err()
}

// dialRefused reports whether addr refuses connections now.
func dialRefused(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		conn.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
