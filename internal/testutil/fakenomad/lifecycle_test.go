package fakenomad_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakenomad"
)

// TestLifecycle_RegisterRunStop follows one job from register to complete
// through blocking queries, as a runtime would.
func TestLifecycle_RegisterRunStop(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	job := parseBackend(t, c, "web")

	resp := register(t, c, job)
	if resp.EvalID == "" || resp.JobModifyIndex == 0 || resp.EvalCreateIndex != resp.JobModifyIndex {
		t.Fatalf("register response = %+v", resp)
	}
	want := "1 warning:\n\n* group \"backend\" defines services, but neither the group nor any of its tasks have shutdown_delay set"
	assertEqual(t, "warnings", resp.Warnings, want)

	pending := waitAllocs(t, c, "web", "pending", func(a []*api.AllocationListStub) bool { return len(a) == 1 })
	assertEqual(t, "desired", pending[0].DesiredStatus, "run")
	running := waitAllocs(t, c, "web", "running", oneWith("running"))
	alloc, meta, err := c.Allocations().Info(running[0].ID, nil)
	if err != nil {
		t.Fatalf("alloc info: %v", err)
	}
	if !meta.KnownLeader || meta.LastIndex == 0 {
		t.Errorf("query meta = %+v", meta)
	}
	ts := alloc.TaskStates["server"]
	assertEqual(t, "events", strings.Join(eventTypes(ts), ","), "Received,Task Setup,Started")
	assertEqual(t, "client description", alloc.ClientDescription, "Tasks are running")
	// The job has no name attribute: its name is the block label.
	assertEqual(t, "alloc name", alloc.Name, "backend.backend[0]")
	ports := alloc.AllocatedResources.Shared.Ports
	if len(ports) != 1 || ports[0].Label != "http" || ports[0].Value == 0 || ports[0].HostIP != "127.0.0.1" {
		t.Fatalf("ports = %+v", ports)
	}
	// The backend really runs on the assigned port.
	waitHealthy(t, ports[0].Value)

	info, _, err := c.Jobs().Info("web", nil)
	if err != nil {
		t.Fatalf("job info: %v", err)
	}
	assertEqual(t, "job status", *info.Status, "running")
	sum, _, err := c.Jobs().Summary("web", nil)
	if err != nil {
		t.Fatalf("summary: %v", err)
	}
	assertEqual(t, "running", sum.Summary["backend"].Running, 1)
	ev, _, err := c.Evaluations().Info(resp.EvalID, nil)
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	assertEqual(t, "eval status", ev.Status, "complete")
	assertEqual(t, "eval place", ev.PlanAnnotations.DesiredTGUpdates["backend"].Place, uint64(1))

	// Stop: DesiredStatus is stop at once, complete once the process exited.
	evalID, _, err := c.Jobs().Deregister("web", false, nil)
	if err != nil || evalID == "" {
		t.Fatalf("deregister: %q %v", evalID, err)
	}
	waitAllocs(t, c, "web", "told to stop", func(a []*api.AllocationListStub) bool { return a[0].DesiredStatus == "stop" })
	done := waitAllocs(t, c, "web", "complete", oneWith("complete"))
	assertEqual(t, "desired description", done[0].DesiredDescription, "alloc not needed due to job update")
	ts = done[0].TaskStates["server"]
	assertEqual(t, "events after stop", strings.Join(eventTypes(ts), ","), "Received,Task Setup,Started,Killing,Terminated,Killed")
	assertEqual(t, "killing", findEvent(ts, "Killing").DisplayMessage, "Sent interrupt. Waiting 5s before force killing")
	assertEqual(t, "terminated", findEvent(ts, "Terminated").DisplayMessage, "Exit Code: 0")
	assertEqual(t, "killed", findEvent(ts, "Killed").DisplayMessage, "Task successfully killed")
	assertEqual(t, "task state", ts.State, "dead")
	if ts.Failed {
		t.Error("stopped task marked failed")
	}

	info, _, err = c.Jobs().Info("web", nil)
	if err != nil {
		t.Fatalf("job info after stop: %v", err)
	}
	assertEqual(t, "stop", *info.Stop, true)
	assertEqual(t, "status", *info.Status, "dead")
}

func TestLifecycle_BlockingQueryTimesOutWithSameIndex(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	_, meta, err := c.Jobs().Allocations("nothing", false, nil)
	if err != nil {
		t.Fatalf("allocations: %v", err)
	}
	start := time.Now()
	_, meta2, err := c.Jobs().Allocations("nothing", false, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("blocking allocations: %v", err)
	}
	elapsed := time.Since(start)
	assertEqual(t, "index", meta2.LastIndex, meta.LastIndex)
	if elapsed < 300*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("blocking query returned after %v, want the wait (300ms) plus a little jitter", elapsed)
	}

	// A canceled query returns at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = c.Jobs().Allocations("nothing", false, (&api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute}).WithContext(ctx))
	if err == nil {
		t.Fatal("canceled blocking query succeeded")
	}
}

func TestLifecycle_Headers(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	resp, body := rawGet(t, srv.URL()+"/v1/jobs")
	assertEqual(t, "body", body, "[]")
	for _, h := range []string{"X-Nomad-Index", "X-Nomad-Knownleader", "X-Nomad-Lastcontact"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("missing header %s", h)
		}
	}
	assertEqual(t, "known leader", resp.Header.Get("X-Nomad-Knownleader"), "true")
}

func TestLifecycle_CheckAndSet(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	job := parseBackend(t, c, "cas")

	// Index 0: the job must not exist yet.
	first, _, err := c.Jobs().RegisterOpts(job, &api.RegisterOptions{EnforceIndex: true, ModifyIndex: 0}, nil)
	if err != nil {
		t.Fatalf("first CAS register: %v", err)
	}
	tests := []struct {
		name  string
		index uint64
		want  string
	}{
		{"exists", 0, "Enforcing job modify index 0: job already exists"},
		{"stale", first.JobModifyIndex + 100, fmt.Sprintf("Enforcing job modify index %d: job exists with conflicting job modify index: %d", first.JobModifyIndex+100, first.JobModifyIndex)},
	}
	for _, tt := range tests {
		_, _, err := c.Jobs().RegisterOpts(job, &api.RegisterOptions{EnforceIndex: true, ModifyIndex: tt.index}, nil)
		if err == nil {
			t.Fatalf("%s: CAS register succeeded", tt.name)
		}
		code, body := unexpected(t, err)
		assertEqual(t, tt.name+" status", code, 500)
		assertEqual(t, tt.name+" body", body, tt.want)
	}
	_, _, err = c.Jobs().RegisterOpts(parseBackend(t, c, "other"), &api.RegisterOptions{EnforceIndex: true, ModifyIndex: 7}, nil)
	_, body := unexpected(t, err)
	assertEqual(t, "missing job", body, "Enforcing job modify index 7: job does not exist")

	// Re-registering the identical job: a new evaluation, no new version.
	again, _, err := c.Jobs().RegisterOpts(job, &api.RegisterOptions{EnforceIndex: true, ModifyIndex: first.JobModifyIndex}, nil)
	if err != nil {
		t.Fatalf("CAS register with the right index: %v", err)
	}
	if again.EvalID == first.EvalID || again.EvalCreateIndex <= first.EvalCreateIndex {
		t.Fatalf("identical re-register: %+v after %+v", again, first)
	}
	info, _, err := c.Jobs().Info("cas", nil)
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	assertEqual(t, "version", *info.Version, uint64(0))
	assertEqual(t, "job modify index", *info.JobModifyIndex, first.JobModifyIndex)

	// A change makes a new version and moves the CAS token.
	job.Meta["owner"] = "changed"
	changed, _, err := c.Jobs().RegisterOpts(job, &api.RegisterOptions{EnforceIndex: true, ModifyIndex: first.JobModifyIndex}, nil)
	if err != nil {
		t.Fatalf("CAS register of a change: %v", err)
	}
	info, _, _ = c.Jobs().Info("cas", nil)
	assertEqual(t, "version after change", *info.Version, uint64(1))
	assertEqual(t, "job modify index after change", *info.JobModifyIndex, changed.JobModifyIndex)
	// The running allocation is replaced by one of the new version.
	waitAllocs(t, c, "cas", "replaced", func(a []*api.AllocationListStub) bool {
		var oldStopped, newRunning bool
		for _, s := range a {
			oldStopped = oldStopped || (s.JobVersion == 0 && s.DesiredStatus == "stop")
			newRunning = newRunning || (s.JobVersion == 1 && s.ClientStatus == "running")
		}
		return oldStopped && newRunning
	})
}

func TestLifecycle_TaskIgnoringSignalIsKilledAfterKillTimeout(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	waitRunning(t, c, parseBackend(t, c, "stubborn", `mode = "ignore-signals"`, `kill_timeout = "1s"`))

	start := time.Now()
	if _, _, err := c.Jobs().Deregister("stubborn", false, nil); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	stopping := waitAllocs(t, c, "stubborn", "told to stop", func(a []*api.AllocationListStub) bool { return a[0].DesiredStatus == "stop" })
	if time.Since(start) > 500*time.Millisecond {
		t.Errorf("DesiredStatus stop took %v", time.Since(start))
	}
	if stopping[0].ClientStatus != "running" {
		t.Fatalf("client status right after stop = %s, want running", stopping[0].ClientStatus)
	}
	done := waitAllocs(t, c, "stubborn", "complete", oneWith("complete"))
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Fatalf("complete after %v, before the 1s kill timeout", elapsed)
	}
	ts := done[0].TaskStates["server"]
	assertEqual(t, "killing", findEvent(ts, "Killing").DisplayMessage, "Sent interrupt. Waiting 1s before force killing")
	term := findEvent(ts, "Terminated")
	assertEqual(t, "terminated", term.DisplayMessage, "Exit Code: 137, Signal: 9")
	assertEqual(t, "exit code detail", term.Details["exit_code"], "137")
}

func TestLifecycle_PurgeRemovesJobAndAllocations(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	alloc := waitRunning(t, c, parseBackend(t, c, "purged"))

	evalID, wm, err := c.Jobs().Deregister("purged", true, nil)
	if err != nil || evalID == "" || wm.LastIndex == 0 {
		t.Fatalf("purge: %q %+v %v", evalID, wm, err)
	}
	_, _, err = c.Jobs().Info("purged", nil)
	code, body := unexpected(t, err)
	assertEqual(t, "job status", code, 404)
	assertEqual(t, "job body", body, "job not found")
	_, _, err = c.Allocations().Info(alloc.ID, nil)
	code, body = unexpected(t, err)
	assertEqual(t, "alloc status", code, 404)
	assertEqual(t, "alloc body", body, "alloc not found")
	stubs, _, err := c.Jobs().PrefixList("purged")
	if err != nil || len(stubs) != 0 {
		t.Fatalf("jobs after purge: %v %v", stubs, err)
	}

	// Deregistering a job that does not exist is a 200 with nothing in it.
	evalID, wm, err = c.Jobs().Deregister("does-not-exist", false, nil)
	if err != nil || evalID != "" || wm.LastIndex != 0 {
		t.Fatalf("deregister of a missing job: %q %+v %v", evalID, wm, err)
	}
}

func TestLifecycle_MissingBinaryFails(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	job := parseBackend(t, c, "nocmd", `restart_attempts = 1`)
	job.TaskGroups[0].Tasks[0].Config["command"] = "/nonexistent/llm-server"
	register(t, c, job)
	failed := waitAllocs(t, c, "nocmd", "failed", oneWith("failed"))
	ts := failed[0].TaskStates["server"]
	assertEqual(t, "events", strings.Join(eventTypes(ts), ","), "Received,Task Setup,Driver Failure,Not Restarting")
	assertEqual(t, "driver error", findEvent(ts, "Driver Failure").DriverError,
		`failed to launch command with executor: rpc error: code = Unknown desc = binary "/nonexistent/llm-server" could not be found`)
	nr := findEvent(ts, "Not Restarting")
	assertEqual(t, "reason", nr.DisplayMessage, "Error was unrecoverable")
	assertEqual(t, "fails task", nr.FailsTask, true)
	assertEqual(t, "failed", ts.Failed, true)
	assertEqual(t, "client description", failed[0].ClientDescription, "Failed tasks")
	waitJobStatus(t, c, "nocmd", "dead")
	sum, _, _ := c.Jobs().Summary("nocmd", nil)
	assertEqual(t, "summary failed", sum.Summary["backend"].Failed, 1)
}

// waitJobStatus follows the job with blocking queries until its status is
// want.
func waitJobStatus(t *testing.T, c *api.Client, jobID, want string) *api.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var idx uint64
	for {
		job, meta, err := c.Jobs().Info(jobID, (&api.QueryOptions{WaitIndex: idx, WaitTime: 5 * time.Second}).WithContext(ctx))
		if err != nil {
			t.Fatalf("job %s never %s: %v", jobID, want, err)
		}
		if *job.Status == want {
			return job
		}
		idx = meta.LastIndex
	}
}

func TestLifecycle_ExitWithRestartPolicy(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	register(t, c, parseBackend(t, c, "exit1", `mode = "exit1"`, `restart_attempts = 1`))
	failed := waitAllocs(t, c, "exit1", "failed", oneWith("failed"))
	ts := failed[0].TaskStates["server"]
	assertEqual(t, "events", strings.Join(eventTypes(ts), ","),
		"Received,Task Setup,Started,Terminated,Restarting,Started,Terminated,Not Restarting")
	assertEqual(t, "terminated", findEvent(ts, "Terminated").DisplayMessage, "Exit Code: 1")
	if msg := findEvent(ts, "Restarting").DisplayMessage; !strings.HasPrefix(msg, "Task restarting in ") {
		t.Errorf("restarting message = %q", msg)
	}
	assertEqual(t, "not restarting", findEvent(ts, "Not Restarting").DisplayMessage,
		`Exceeded allowed attempts 1 in interval 30m0s and mode is "fail"`)
	assertEqual(t, "restarts", ts.Restarts, uint64(1))
	waitJobStatus(t, c, "exit1", "dead")

	// Reschedule is off: no replacement allocation.
	allocs, _, err := c.Jobs().Allocations("exit1", true, nil)
	if err != nil || len(allocs) != 1 {
		t.Fatalf("allocations: %v %v", describeStubs(allocs), err)
	}

	// The task's stderr is readable like Nomad's client logs.
	alloc, _, err := c.Allocations().Info(allocs[0].ID, nil)
	if err != nil {
		t.Fatalf("alloc: %v", err)
	}
	frames, errc := c.AllocFS().Logs(alloc, false, "server", "stderr", "start", 0, nil, nil)
	var logs strings.Builder
	for f := range frames {
		logs.Write(f.Data)
	}
	select {
	case err := <-errc:
		t.Fatalf("logs: %v", err)
	default:
	}
	assertEqual(t, "stderr", logs.String(), "model weights not found\nmodel weights not found\n")
}

func TestLifecycle_NoRestartsAllowed(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	register(t, c, parseBackend(t, c, "exit0", `mode = "exit1"`))
	failed := waitAllocs(t, c, "exit0", "failed", oneWith("failed"))
	ts := failed[0].TaskStates["server"]
	assertEqual(t, "not restarting", findEvent(ts, "Not Restarting").DisplayMessage, "Policy allows no restarts")
}

func TestLifecycle_DockerTask(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	docker := func(task *api.Task) ([]string, map[string]string, error) {
		var args []string
		for _, a := range task.Config["args"].([]any) {
			args = append(args, fmt.Sprint(a))
		}
		return append([]string{exe}, args...), map[string]string{"FAKENOMAD_TEST_BACKEND": "1"}, nil
	}

	t.Run("runs through DockerCommand", func(t *testing.T) {
		t.Parallel()
		seen := make(chan *api.Task, 1)
		srv := fakenomad.New(t, fakenomad.Options{DockerCommand: func(task *api.Task) ([]string, map[string]string, error) {
			seen <- task
			return docker(task)
		}})
		c := newClient(t, srv)
		alloc := waitRunning(t, c, parseBackend(t, c, "docker", `driver = "docker"`))
		ts := alloc.TaskStates["server"]
		assertEqual(t, "driver event", findEvent(ts, "Driver").DisplayMessage, "Downloading image")
		// The driver sees the task interpolated at run time.
		task := <-seen
		port := alloc.AllocatedResources.Shared.Ports[0].Value
		assertEqual(t, "args", fmt.Sprint(task.Config["args"]), fmt.Sprintf("[--port %d --mode serve --alloc %s]", port, alloc.ID))
		assertEqual(t, "env", task.Env["BACKEND_JOB"], "backend")
		assertEqual(t, "image", task.Config["image"], any("backend:test"))
		if _, _, err := c.Jobs().Deregister("docker", false, nil); err != nil {
			t.Fatalf("deregister: %v", err)
		}
		done := waitAllocs(t, c, "docker", "complete", oneWith("complete"))
		assertEqual(t, "terminated", findEvent(done[0].TaskStates["server"], "Terminated").DisplayMessage, "Exit Code: 0")
	})

	t.Run("image pull fails", func(t *testing.T) {
		t.Parallel()
		srv := fakenomad.New(t, fakenomad.Options{DockerCommand: docker})
		srv.FailImagePull("backend:test")
		c := newClient(t, srv)
		register(t, c, parseBackend(t, c, "nopull", `driver = "docker"`, `restart_attempts = 1`))
		failed := waitAllocs(t, c, "nopull", "failed", oneWith("failed"))
		ts := failed[0].TaskStates["server"]
		assertEqual(t, "events", strings.Join(eventTypes(ts), ","), "Received,Task Setup,Driver,Driver Failure,Not Restarting")
		assertEqual(t, "driver error", findEvent(ts, "Driver Failure").DriverError, "Failed to pull `backend:test`: Error: image backend:test not found")
		assertEqual(t, "reason", findEvent(ts, "Not Restarting").DisplayMessage, "Error was unrecoverable")
		waitJobStatus(t, c, "nopull", "dead")
	})

	t.Run("OOM killed on start", func(t *testing.T) {
		t.Parallel()
		srv := fakenomad.New(t, fakenomad.Options{DockerCommand: docker})
		c := newClient(t, srv)
		srv.OOMKillOnStart("oom")
		register(t, c, parseBackend(t, c, "oom", `driver = "docker"`))
		failed := waitAllocs(t, c, "oom", "failed", oneWith("failed"))
		ts := failed[0].TaskStates["server"]
		term := findEvent(ts, "Terminated")
		assertEqual(t, "terminated", term.DisplayMessage, `Exit Code: 137, Exit Message: "OOM Killed"`)
		assertEqual(t, "oom_killed", term.Details["oom_killed"], "true")
		assertEqual(t, "not restarting", findEvent(ts, "Not Restarting").DisplayMessage, "Policy allows no restarts")
	})

	t.Run("no DockerCommand", func(t *testing.T) {
		t.Parallel()
		srv := fakenomad.New(t, fakenomad.Options{})
		c := newClient(t, srv)
		register(t, c, parseBackend(t, c, "nodocker", `driver = "docker"`))
		failed := waitAllocs(t, c, "nodocker", "failed", oneWith("failed"))
		if findEvent(failed[0].TaskStates["server"], "Driver Failure") == nil {
			t.Fatalf("events = %v", eventTypes(failed[0].TaskStates["server"]))
		}
	})
}

// TestLifecycle_VLLMJobspecRuns registers the project's vLLM jobspec, its
// docker task mapped to the stand-in backend, and stops it.
func TestLifecycle_VLLMJobspecRuns(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var seen *api.Task
	srv := fakenomad.New(t, fakenomad.Options{DockerCommand: func(task *api.Task) ([]string, map[string]string, error) {
		seen = task
		var port string
		args := task.Config["args"].([]any)
		for i, a := range args {
			if a == "--port" {
				port = fmt.Sprint(args[i+1])
			}
		}
		return []string{exe, "--port", port}, map[string]string{"FAKENOMAD_TEST_BACKEND": "1"}, nil
	}})
	c := newClient(t, srv)
	port := freeTCPPort(t)
	job, err := c.Jobs().ParseHCLOpts(&api.JobsParseRequest{
		JobHCL:       readFile(t, "../../../jobs.nomad.d/vllm.nomad.hcl"),
		Variables:    fmt.Sprintf("job_name = \"sb-a\"\nmodel = \"a\"\nserved_name = \"org/a\"\nport = %d\n", port),
		Canonicalize: true,
	})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	alloc := waitRunning(t, c, job)
	assertEqual(t, "static port", alloc.AllocatedResources.Shared.Ports[0].Value, port)
	assertEqual(t, "gpu", alloc.AllocatedResources.Tasks["vllm"].Devices[0].Type, "gpu")
	assertEqual(t, "task env", seen.Env["HF_HUB_OFFLINE"], "1")
	waitHealthy(t, port)
	if _, _, err := c.Jobs().Deregister("sb-a", false, nil); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	done := waitAllocs(t, c, "sb-a", "complete", oneWith("complete"))
	// kill_timeout 60s is capped by the client's max_kill_timeout (30s).
	assertEqual(t, "killing", findEvent(done[0].TaskStates["vllm"], "Killing").DisplayMessage, "Sent interrupt. Waiting 30s before force killing")
}

// TestLifecycle_Reschedule: with a reschedule policy that allows it, a
// failed allocation is replaced after the delay, once.
func TestLifecycle_Reschedule(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	job := parseBackend(t, c, "resched", `mode = "exit1"`)
	job.TaskGroups[0].ReschedulePolicy = &api.ReschedulePolicy{
		Attempts: new(1), Interval: new(time.Hour), Delay: new(100 * time.Millisecond),
		DelayFunction: new("constant"), MaxDelay: new(time.Hour), Unlimited: new(false),
	}
	register(t, c, job)
	allocs := waitAllocs(t, c, "resched", "replaced once", func(a []*api.AllocationListStub) bool {
		return len(a) == 2 && a[0].ClientStatus == "failed" && a[1].ClientStatus == "failed"
	})
	first, second := allocs[1], allocs[0] // newest first
	if first.CreateIndex > second.CreateIndex {
		first, second = second, first
	}
	assertEqual(t, "first desired", first.DesiredStatus, "stop")
	assertEqual(t, "first description", first.DesiredDescription, "alloc was rescheduled because it failed")
	assertEqual(t, "first next", first.NextAllocation, second.ID)
	full, _, err := c.Allocations().Info(second.ID, nil)
	if err != nil {
		t.Fatalf("alloc: %v", err)
	}
	assertEqual(t, "previous", full.PreviousAllocation, first.ID)
	assertEqual(t, "reschedule events", len(full.RescheduleTracker.Events), 1)
	waitJobStatus(t, c, "resched", "dead")
}

func TestLifecycle_RegisterErrors(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	c := newClient(t, srv)
	_, _, err := c.Jobs().Register(&api.Job{ID: new("broken"), Name: new("broken"), Type: new("service")}, nil)
	code, body := unexpected(t, err)
	assertEqual(t, "invalid job status", code, 500)
	assertEqual(t, "invalid job body", body, "1 error occurred:\n\t* Missing job task groups") // the client trims it

	resp, err := http.Post(srv.URL()+"/v1/jobs", "application/json", strings.NewReader(`{"Job":{"ID":"broken","Name":"broken","Type":"service"}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assertEqual(t, "raw invalid job body", string(b), "1 error occurred:\n\t* Missing job task groups\n\n")

	resp, err = http.Post(srv.URL()+"/v1/jobs", "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assertEqual(t, "malformed status", resp.StatusCode, 400)
	assertEqual(t, "malformed body", string(b), "invalid character 'n' looking for beginning of object key string")
}
