package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
)

// TestFaultSuite injects each fault of issue 7 into a multi-process stack
// of its own under a mixed load, then checks the invariants (see
// faultsuite_test.go). The short form runs by default; -faults.full (or
// FAULTS=full) runs the long form: about 20 leader kills and longer loads.
func TestFaultSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process fault suite skipped in -short mode")
	}
	begin := time.Now()
	form := "short"
	if faultsLong() {
		form = "long"
	}
	t.Cleanup(func() {
		t.Logf("FAULT SUITE TOTAL (%s form, %s): %s", form, time.Since(begin).Round(time.Second), fsTotals.line())
	})
	faults := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"LeaderSIGKILL", faultLeaderKill},
		{"SessionInvalidated", faultSessionInvalidated},
		{"ConsulDown2xTTL", faultConsulDown},
		{"RedisRestart", faultRedisRestart},
		{"BackendKilledMidGeneration", faultBackendKilled},
		{"ModelOOMAtStart", faultOOMAtStart},
		{"ModelHangsAtStart", faultHangAtStart},
		{"StopNeverFinishes", faultStopNeverFinishes},
		{"ClientDisconnectMidStream", faultClientDisconnect},
		{"Slowloris", faultSlowloris},
		{"HostileRequests", faultHostile},
		{"GatewaySIGKILL", faultGatewayKill},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			// Each fault has a stack of its own; most of their time is
			// spent waiting (TTLs, timeouts), so they share the CPU well.
			t.Parallel()
			f.run(t)
		})
	}
}

// warm waits until the load has its first answers, so the fault hits a
// serving stack.
func warm(t *testing.T, c *fsCluster, l *fsLoad, n int) {
	t.Helper()
	if !l.waitOK(n, 2*time.Minute) {
		t.Fatalf("the stack never served %d requests before the fault\n%s", n, c.logs(40))
	}
}

// recovered checks the stack serves again after a fault.
func recovered(t *testing.T, c *fsCluster, l *fsLoad, n int) {
	t.Helper()
	if !l.waitOK(n, 2*time.Minute) {
		t.Errorf("the stack did not serve %d more requests within 2m after the fault\n%s", n, c.logs(40))
	}
}

// The leader is SIGKILLed again and again at random points during
// switches and during streams; a fresh standby is started after each kill.
// The first kill (every fifth in the long form) leaves the dead leader's
// session to expire (2 x TTL, as when only the process dies); the others
// invalidate it right away, as Consul does when the leader's node dies,
// to keep the suite's time bounded.
func faultLeaderKill(t *testing.T) {
	start := time.Now()
	c := startFaultCluster(t, "leader-kill", fsOptions{})
	n := 3
	if faultsLong() {
		n = 20
	}
	load := c.startLoad("main", fsLoadOpts{workers: 5, maxTokens: 24})
	warm(t, c, load, 3)
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill points seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range n {
		point := "switch"
		if i%2 == 1 {
			point = "stream"
		}
		var seen bool
		switch point {
		case "switch":
			seen = waitFor(30*time.Second, func() bool { return switching(c.state()) })
		case "stream":
			seen = waitFor(30*time.Second, func() bool { return load.inStream.Load() > 0 })
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		old, session := c.leader()
		if old == nil {
			old = c.waitLeader(time.Minute, nil)
			_, session = c.leader()
		}
		phase := "?"
		if st := c.state(); st != nil {
			phase = fmt.Sprintf("%s (active %q, target %q)", st.Phase, st.Active, st.Target)
		}
		killed := time.Now()
		old.kill()
		natural := i == 0 || (faultsLong() && i%5 == 0)
		how := "session left to expire"
		if !natural {
			c.consul.InvalidateSession(session)
			how = "session invalidated (node failure)"
		}
		c.fault("SIGKILL leader %s (pid %d) during %s (condition seen: %t), phase %s, %d streams open; %s",
			old.name, old.pid(), point, seen, phase, load.inStream.Load(), how)
		c.startOrchestrator()
		next := c.waitLeader(2*fsSessionTTL+time.Minute, old)
		t.Logf("new leader %s after %s", next.name, time.Since(killed).Round(time.Millisecond))
		// Some work gets done between two kills.
		recovered(t, c, load, 2)
	}
	recovered(t, c, load, 5)
	load.halt()
	c.finish(start)
}

// The leader's Consul session is invalidated in the middle of a switch.
func faultSessionInvalidated(t *testing.T) {
	start := time.Now()
	c := startFaultCluster(t, "session-invalidated", fsOptions{})
	load := c.startLoad("main", fsLoadOpts{workers: 4})
	warm(t, c, load, 3)
	seen := waitFor(30*time.Second, func() bool { return switching(c.state()) })
	old, session := c.leader()
	if old == nil {
		t.Fatalf("no leader")
	}
	c.consul.InvalidateSession(session)
	c.fault("consul session %s of leader %s invalidated (mid-switch: %t)", session, old.name, seen)
	if !waitFor(2*fsSessionTTL+time.Minute, func() bool {
		p, s := c.leader()
		return p != nil && s != session
	}) {
		t.Fatalf("nobody took the lock after the session was invalidated\n%s", c.logs(40))
	}
	recovered(t, c, load, 6)
	load.halt()
	c.finish(start)
}

// Consul is unreachable for twice the session TTL: the leader's session
// expires; once Consul is back an orchestrator leads again.
func faultConsulDown(t *testing.T) {
	start := time.Now()
	c := startFaultCluster(t, "consul-down", fsOptions{})
	load := c.startLoad("main", fsLoadOpts{workers: 4})
	warm(t, c, load, 3)
	old, session := c.leader()
	c.consul.SetDown(true)
	down := 2*fsSessionTTL + 2*time.Second
	c.fault("consul down for %s (leader %s, session %s)", down, old.name, session)
	time.Sleep(down) // the fault's duration, not a wait for an event
	c.consul.SetDown(false)
	if !waitFor(2*fsSessionTTL+time.Minute, func() bool {
		p, s := c.leader()
		return p != nil && s != session
	}) {
		t.Fatalf("nobody took the lock after consul came back\n%s", c.logs(40))
	}
	recovered(t, c, load, 6)
	load.halt()
	// A leader that cannot confirm its lock ends its term: the waiting
	// jobs stay queued for the next one instead of failing for a stop
	// that was never tried.
	for _, reason := range []string{"leadership not confirmed", "lost leadership", "could not stop the running model"} {
		if n := c.countJobErrors(reason); n > 0 {
			c.violate("consul-outage-failed-jobs", "%d jobs failed with %q although their model was fine", n, reason)
		}
	}
	c.finish(start)
}

// countJobErrors counts the jobs whose error message contains s.
func (c *fsCluster) countJobErrors(s string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	jobs, err := c.jobRecords(ctx)
	if err != nil {
		return 0
	}
	n := 0
	for _, j := range jobs {
		if j.Error != nil && strings.Contains(j.Error.Message, s) {
			n++
		}
	}
	return n
}

// Redis restarts (append-only file on) while streams run.
func faultRedisRestart(t *testing.T) {
	start := time.Now()
	c := startFaultCluster(t, "redis-restart", fsOptions{})
	load := c.startLoad("main", fsLoadOpts{workers: 5, maxTokens: 24})
	warm(t, c, load, 3)
	seen := waitFor(30*time.Second, func() bool { return load.inStream.Load() > 0 })
	c.fault("redis restarted (%d requests in flight, streams open: %t)", load.inFlight.Load(), seen)
	c.redis.Restart()
	recovered(t, c, load, 6)
	load.halt()
	c.finish(start)
}

// The active model's backend process is SIGKILLed while it generates.
func faultBackendKilled(t *testing.T) {
	start := time.Now()
	slow := []string{"--tokens-per-second", "40"}
	c := startFaultCluster(t, "backend-killed", fsOptions{flags: map[string][]string{
		fsModels[0].name: slow, fsModels[1].name: slow, fsModels[2].name: slow}})
	load := c.startLoad("main", fsLoadOpts{workers: 5, maxTokens: 24})
	warm(t, c, load, 3)
	var pids []int
	var active string
	if !waitFor(time.Minute, func() bool {
		st := c.state()
		if st == nil || st.Phase != jobstore.PhaseReady || load.inStream.Load() == 0 {
			return false
		}
		active = st.Active
		port := st.Backend[strings.LastIndexByte(st.Backend, ':')+1:]
		for _, m := range fsModels {
			if m.name == active {
				pids = backendPIDs(m.served, port)
			}
		}
		return len(pids) == 1
	}) {
		t.Fatalf("never saw a generating backend (pids %v of %q)", pids, active)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.fault("SIGKILL backend of %s (pid %d) with %d streams open", active, pids[0], load.inStream.Load())
	recovered(t, c, load, 6)
	// The killed model serves again too.
	c.probe(t, active, time.Minute)
	load.halt()
	c.finish(start)
}

// probe sends sync requests for model until one is answered right.
func (c *fsCluster) probe(t *testing.T, model string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for i := 0; ; i++ {
		r := c.newResult("probe-"+model, int(time.Now().UnixNano()), model, "sync", i%2, 8)
		c.do(r, nil)
		if r.ok {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s never answered a request within %s after the fault (last: %s %s)", model, bound, r.outcome(), r.errMsg)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitJobError waits until some job of model failed with a reason that
// contains want, and returns it.
func (c *fsCluster) waitJobError(model, want string, bound time.Duration) *jobstore.Job {
	var found *jobstore.Job
	waitFor(bound, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		jobs, err := c.jobRecords(ctx)
		if err != nil {
			return false
		}
		for _, j := range jobs {
			if j.Model == model && j.Error != nil && strings.Contains(j.Error.Message, want) {
				found = j
				return true
			}
		}
		return false
	})
	return found
}

// A model is OOM-killed when it starts: its waiters fail with Nomad's
// reason, the other models keep serving, and it loads fine later.
func faultOOMAtStart(t *testing.T) {
	start := time.Now()
	c := startFaultCluster(t, "oom", fsOptions{})
	x := fsModels[2].name
	pre := c.startLoad("pre", fsLoadOpts{workers: 3, models: []int{0, 1}})
	warm(t, c, pre, 3)
	c.nomad.OOMKillOnStart(fsJobPrefix + x)
	c.fault("model %s OOM-killed at its next start", x)
	load := c.startLoad("main", fsLoadOpts{workers: 4})
	if j := c.waitJobError(x, "OOM", 90*time.Second); j == nil {
		t.Errorf("no job of %s failed with an OOM reason: the fault was not exercised\n%s", x, c.logs(40))
	} else {
		t.Logf("job %s failed with: %s", j.ID, j.Error.Message)
	}
	recovered(t, c, load, 6)
	c.probe(t, x, time.Minute)
	pre.halt()
	load.halt()
	c.finish(start)
}

// A model hangs while loading past switch_timeout: its waiters fail with
// that reason, it is stopped, the other models keep serving.
func faultHangAtStart(t *testing.T) {
	start := time.Now()
	x := fsModels[1].name
	c := startFaultCluster(t, "hang-at-start", fsOptions{switchTimeout: 4 * time.Second,
		flags: map[string][]string{x: {"--hang-load"}}})
	load := c.startLoad("main", fsLoadOpts{workers: 4})
	c.fault("model %s hangs at start (switch_timeout 4s)", x)
	if j := c.waitJobError(x, "switch_timeout", 90*time.Second); j == nil {
		t.Errorf("no job of %s failed with a switch_timeout reason\n%s", x, c.logs(40))
	} else {
		t.Logf("job %s failed with: %s", j.ID, j.Error.Message)
	}
	recovered(t, c, load, 6)
	load.halt()
	c.resMu.Lock()
	for _, r := range c.results {
		if r.model == x && r.ok {
			t.Errorf("request %d for %s, which never loads, was answered", r.idx, x)
		}
	}
	c.resMu.Unlock()
	c.finish(start)
}

// The active model ignores SIGTERM, so its stop outlasts stop_timeout
// (Nomad kills it only after kill_timeout): the switch fails with a reason
// and nothing else starts while it lives.
func faultStopNeverFinishes(t *testing.T) {
	start := time.Now()
	x := fsModels[0].name
	kill := "10s"
	if faultsLong() {
		kill = "1h" // Nomad caps it at max_kill_timeout, 30s
	}
	c := startFaultCluster(t, "stop-never-finishes", fsOptions{stopTimeout: 2 * time.Second,
		flags: map[string][]string{x: {"--ignore-sigterm"}},
		vars:  map[string]map[string]string{x: {"kill_timeout": kill}}})
	pre := c.startLoad("pre", fsLoadOpts{workers: 2, models: []int{0}})
	warm(t, c, pre, 3)
	pre.halt()
	c.fault("model %s ignores SIGTERM (kill_timeout %s, stop_timeout 2s)", x, kill)
	load := c.startLoad("main", fsLoadOpts{workers: 4, models: []int{1, 2, 0}})
	if j := c.waitJobError(fsModels[1].name, "stop", 60*time.Second); j == nil {
		if j = c.waitJobError(fsModels[2].name, "stop", time.Second); j == nil {
			t.Errorf("no job failed because %s would not stop\n%s", x, c.logs(40))
		}
	}
	recovered(t, c, load, 6)
	load.halt()
	c.finish(start)
}

// Clients that go away in the middle of a stream: their jobs end (canceled),
// the backend stops generating for them, others are served.
func faultClientDisconnect(t *testing.T) {
	start := time.Now()
	slow := []string{"--tokens-per-second", "20"}
	c := startFaultCluster(t, "client-disconnect", fsOptions{flags: map[string][]string{
		fsModels[0].name: slow, fsModels[1].name: slow, fsModels[2].name: slow}})
	load := c.startLoad("main", fsLoadOpts{workers: 3})
	warm(t, c, load, 3)
	n := 6
	if faultsLong() {
		n = 24
	}
	done := make(chan struct{}, n)
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			m := fsModels[i%len(fsModels)]
			r := c.newResult("disconnect", i, m.name, "stream", i%2, 24)
			if c.disconnectMidStream(r) {
				c.fault("client of request %d (%s) left mid-stream (job %s)", r.idx, m.name, r.jobID)
			}
		}()
	}
	for range n {
		<-done
	}
	recovered(t, c, load, 6)
	load.halt()
	c.finish(start)
}

// disconnectMidStream starts a stream, reads until its first content and
// hangs up; it reports whether it got that far.
func (c *fsCluster) disconnectMidStream(r *fsResult) bool {
	gw := c.gateway(r.gw)
	c.resMu.Lock()
	r.gwProc, r.start = gw, time.Now()
	c.resMu.Unlock()
	defer func() {
		c.resMu.Lock()
		r.end = time.Now()
		c.resMu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), fsClientBound)
	defer cancel()
	resp, err := fsPost(ctx, gw.addr, "/v1/chat/completions", r.body(`,"stream":true`))
	if err != nil {
		r.transport = err
		return false
	}
	defer resp.Body.Close()
	r.jobID, r.route = resp.Header.Get("X-Switchboard-Job-Id"), resp.Header.Get("X-Switchboard-Route")
	r.status = resp.StatusCode
	if resp.StatusCode != 200 {
		b := make([]byte, 4096)
		k, _ := resp.Body.Read(b)
		r.recordError(resp.StatusCode, b[:k])
		return false
	}
	r.streamStarted = true
	got := false
	_ = sseLines(resp.Body, func(data []byte) bool {
		if strings.Contains(string(data), `"content":"`) && !strings.Contains(string(data), `"content":""`) {
			got = true
			return false
		}
		return string(data) != "[DONE]"
	})
	r.transport = fmt.Errorf("the client hung up mid-stream")
	return got
}
