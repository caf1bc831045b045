package fakenomad

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/nomad/api"
)

// The client side: one allocRunner per placed allocation runs its tasks as
// real processes, each in its own process group, and reports task states
// and events the way Nomad's task runner does. Recorded behaviour it
// follows (Nomad v2.0.6, raw_exec):
//
//   - events Received, Task Setup ("Building Task Directory"), then
//     Started; the allocation is pending until then, running after.
//   - a stop: DesiredStatus "stop" at once, event Killing ("Sent interrupt.
//     Waiting 5s before force killing"), the kill signal (SIGINT by default
//     for raw_exec, SIGTERM for docker) to the task, SIGKILL after
//     kill_timeout (capped by the client's max_kill_timeout, 30s), then
//     Terminated ("Exit Code: 0", or "Exit Code: 137, Signal: 9") and
//     Killed ("Task successfully killed"); the allocation is complete only
//     once the process has exited.
//   - a missing binary: Driver Failure `failed to launch command with
//     executor: rpc error: code = Unknown desc = binary "..." could not be
//     found`, then Not Restarting "Error was unrecoverable".
//   - exit 1 with restart { attempts = 1, mode = "fail" }: Terminated
//     "Exit Code: 1", Restarting "Task restarting in 1.155995152s",
//     Started, Terminated, Not Restarting `Exceeded allowed attempts 1 in
//     interval 30m0s and mode is "fail"`; the allocation failed.

const (
	// maxKillTimeout is the Nomad client's default max_kill_timeout.
	maxKillTimeout = 30 * time.Second

	reasonNoRestarts     = "Policy allows no restarts"
	reasonUnrecoverable  = "Error was unrecoverable"
	reasonWithinPolicy   = "Restart within policy"
	reasonDelay          = "Exceeded allowed attempts, applying a delay"
	reasonSuccessfulExit = "Restart unnecessary as task terminated successfully"
)

// Task event types.
const (
	eventReceived      = "Received"
	eventSetup         = "Task Setup"
	eventStarted       = "Started"
	eventDriverFailure = "Driver Failure"
	eventDriver        = "Driver"
	eventTerminated    = "Terminated"
	eventRestarting    = "Restarting"
	eventNotRestarting = "Not Restarting"
	eventKilling       = "Killing"
	eventKilled        = "Killed"
	eventSiblingFailed = "Sibling Task Failed"
)

type allocRunner struct {
	s     *Server
	rec   *allocRecord
	job   *api.Job
	tg    *api.TaskGroup
	dir   string
	kill  chan struct{}
	once  sync.Once
	tasks []*taskRunner

	// alive counts running processes; guarded by s.mu.
	alive int
}

type taskRunner struct {
	ar      *allocRunner
	task    *api.Task
	dir     string
	tracker *restartTracker
	// sibling is closed when another task of the allocation failed.
	sibling chan struct{}
}

// stop asks the allocation's tasks to stop; safe to call more than once.
func (ar *allocRunner) stop() {
	ar.once.Do(func() { close(ar.kill) })
}

// processAlive tells whether one of the allocation's processes still
// runs. s.mu must be held.
func (ar *allocRunner) processAlive() bool { return ar.alive > 0 }

// startAllocRunner hands a freshly placed allocation to the client. s.mu
// must be held.
func (s *Server) startAllocRunner(rec *allocRecord) {
	ar := &allocRunner{
		s:    s,
		rec:  rec,
		job:  rec.alloc.Job,
		kill: make(chan struct{}),
		dir:  filepath.Join(s.dataDir, "alloc", rec.alloc.ID),
	}
	for _, tg := range ar.job.TaskGroups {
		if *tg.Name == rec.alloc.TaskGroup {
			ar.tg = tg
		}
	}
	rec.runner = ar
	s.wg.Go(ar.run)
}

func (ar *allocRunner) run() {
	s := ar.s
	a := ar.rec.alloc

	s.mu.Lock()
	a.TaskStates = map[string]*api.TaskState{}
	for _, t := range ar.tg.Tasks {
		a.TaskStates[t.Name] = &api.TaskState{State: taskPending, Events: []*api.TaskEvent{newEvent(eventReceived)}}
	}
	ar.updateClientStatusLocked()
	s.mu.Unlock()

	sibling := make(chan struct{})
	var siblingOnce sync.Once
	for _, t := range ar.tg.Tasks {
		tr := &taskRunner{
			ar:      ar,
			task:    t,
			dir:     filepath.Join(ar.dir, t.Name),
			tracker: newRestartTracker(taskRestartPolicy(t, ar.tg), *ar.job.Type),
			sibling: sibling,
		}
		ar.tasks = append(ar.tasks, tr)
	}
	for _, dir := range []string{filepath.Join(ar.dir, "alloc", "logs"), filepath.Join(ar.dir, "alloc", "data"), filepath.Join(ar.dir, "alloc", "tmp")} {
		_ = os.MkdirAll(dir, 0o755)
	}
	for _, tr := range ar.tasks {
		for _, sub := range []string{"local", "secrets", "tmp", "private"} {
			_ = os.MkdirAll(filepath.Join(tr.dir, sub), 0o755)
		}
		setup := newEvent(eventSetup)
		setup.Message = "Building Task Directory"
		setup.Details["message"] = setup.Message
		setup.DisplayMessage = setup.Message
		tr.emit(setup, nil)
	}

	// Group services are registered before the tasks start (Nomad's group
	// service hook runs at prerun), so their checks start critical.
	ar.registerServices(nil)

	var wg sync.WaitGroup
	for _, tr := range ar.tasks {
		wg.Go(func() {
			if failed := tr.run(); failed {
				siblingOnce.Do(func() { close(sibling) })
			}
		})
	}
	tasksDone := make(chan struct{})
	go func() { wg.Wait(); close(tasksDone) }()
	select {
	case <-ar.kill:
		ar.deregisterServices(nil)
		<-tasksDone
	case <-s.ctx.Done():
		<-tasksDone
	case <-tasksDone:
		ar.deregisterServices(nil)
	}
}

// emit appends ev to the task's events and applies change to its state, as
// one write; nil ev only changes the state.
func (tr *taskRunner) emit(ev *api.TaskEvent, change func(ts *api.TaskState)) {
	s := tr.ar.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := tr.ar.rec.alloc.TaskStates[tr.task.Name]
	if ev != nil {
		ts.Events = append(ts.Events, ev)
		if len(ts.Events) > 10 {
			// Nomad keeps the last 10 events of a task.
			ts.Events = ts.Events[len(ts.Events)-10:]
		}
	}
	if change != nil {
		change(ts)
	}
	tr.ar.updateClientStatusLocked()
}

// updateClientStatusLocked recomputes the allocation's client status from
// its task states (Nomad's getClientStatus) and commits the change.
func (ar *allocRunner) updateClientStatusLocked() {
	s := ar.s
	a := ar.rec.alloc
	var pending, running, dead, failed bool
	for _, ts := range a.TaskStates {
		switch ts.State {
		case taskRunning:
			running = true
		case taskPending:
			pending = true
		case taskDead:
			if ts.Failed {
				failed = true
			} else {
				dead = true
			}
		}
	}
	switch {
	case failed:
		a.ClientStatus, a.ClientDescription = allocFailed, "Failed tasks"
	case running:
		a.ClientStatus, a.ClientDescription = allocRunning, "Tasks are running"
	case pending:
		a.ClientStatus, a.ClientDescription = allocPending, "No tasks have started"
	case dead:
		a.ClientStatus, a.ClientDescription = allocComplete, "All tasks have completed"
	}
	idx := s.commit(tableAllocs)
	touchAlloc(a, idx)
	s.refreshJob(a.JobID, idx)
	if isClientTerminal(a.ClientStatus) {
		s.capacityChangedLocked()
		s.maybeRescheduleLocked(ar.rec)
	}
}

func taskRestartPolicy(t *api.Task, tg *api.TaskGroup) *api.RestartPolicy {
	if t.RestartPolicy != nil {
		return t.RestartPolicy
	}
	return tg.RestartPolicy
}

// exitResult is what a task's process ended with.
type exitResult struct {
	code, signal int
	oom          bool
	message      string
}

func (r exitResult) successful() bool { return r.code == 0 && r.signal == 0 && !r.oom }

// driverError is a failure to start a task; recoverable ones count against
// the restart policy, the others stop the task at once.
type driverError struct {
	msg         string
	recoverable bool
}

func (e *driverError) Error() string { return e.msg }

// run runs the task until it is done and tells whether it failed.
func (tr *taskRunner) run() (failed bool) {
	ar := tr.ar
	s := ar.s
	for {
		select {
		case <-ar.kill:
			return tr.finish(false)
		case <-tr.sibling:
			return tr.finish(false)
		case <-s.ctx.Done():
			return tr.finish(false)
		default:
		}

		proc, err := tr.start()
		if err != nil {
			tr.emit(driverFailureEvent(err), nil)
			tr.tracker.setStartError(err)
		} else {
			tr.emit(newEvent(eventStarted), func(ts *api.TaskState) {
				ts.State = taskRunning
				ts.StartedAt = time.Now().UTC()
			})
			ar.registerServices(tr)
			var res exitResult
			select {
			case res = <-proc.exited:
				select {
				case <-ar.kill:
					// It exited as it was being stopped: a stop, not a crash.
					tr.tracker.setKilled()
				default:
				}
			case <-ar.kill:
				res = tr.kill(proc)
				tr.tracker.setKilled()
			case <-tr.sibling:
				ev := newEvent(eventSiblingFailed)
				ev.Details["failed_sibling"] = "sibling"
				ev.DisplayMessage = "Task's sibling failed"
				tr.emit(ev, nil)
				res = tr.kill(proc)
				tr.tracker.setKilled()
			case <-s.ctx.Done():
				proc.signal(syscall.SIGKILL)
				<-proc.exited
				return tr.finish(false)
			}
			ar.deregisterServices(tr)
			tr.emit(terminatedEvent(res), nil)
			tr.tracker.setExitResult(res)
		}

		state, delay, reason := tr.tracker.next()
		switch state {
		case eventKilled:
			ev := newEvent(eventKilled)
			ev.DisplayMessage = "Task successfully killed"
			tr.emit(ev, nil)
			return tr.finish(false)
		case eventNotRestarting:
			ev := newEvent(eventNotRestarting)
			ev.RestartReason, ev.FailsTask = reason, true
			ev.Details["restart_reason"], ev.Details["fails_task"] = reason, "true"
			ev.DisplayMessage = reason
			tr.emit(ev, nil)
			return tr.finish(true)
		case eventTerminated:
			return tr.finish(false)
		}
		ev := newEvent(eventRestarting)
		ev.StartDelay, ev.RestartReason = int64(delay), reason
		ev.Details["start_delay"], ev.Details["restart_reason"] = strconv.FormatInt(int64(delay), 10), reason
		ev.DisplayMessage = fmt.Sprintf("Task restarting in %v", delay)
		if reason != reasonWithinPolicy {
			ev.DisplayMessage = reason + " - " + ev.DisplayMessage
		}
		tr.emit(ev, func(ts *api.TaskState) {
			ts.State = taskPending
			ts.Restarts++
			ts.LastRestart = time.Now().UTC()
		})
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-ar.kill:
			timer.Stop()
			return tr.finish(false)
		case <-tr.sibling:
			timer.Stop()
			return tr.finish(false)
		case <-s.ctx.Done():
			timer.Stop()
			return tr.finish(false)
		}
	}
}

// finish marks the task dead.
func (tr *taskRunner) finish(failed bool) bool {
	tr.emit(nil, func(ts *api.TaskState) {
		ts.State = taskDead
		ts.Failed = ts.Failed || failed
		ts.FinishedAt = time.Now().UTC()
	})
	return failed
}

// kill stops a running task: the kill signal, then SIGKILL after the kill
// timeout.
func (tr *taskRunner) kill(proc *process) exitResult {
	timeout := maxKillTimeout
	if tr.task.KillTimeout != nil {
		timeout = min(*tr.task.KillTimeout, maxKillTimeout)
	}
	ev := newEvent(eventKilling)
	ev.KillTimeout = timeout
	ev.Details["kill_timeout"] = timeout.String()
	ev.DisplayMessage = fmt.Sprintf("Sent interrupt. Waiting %v before force killing", timeout)
	tr.emit(ev, nil)

	proc.signal(killSignal(tr.task))
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res := <-proc.exited:
		return res
	case <-timer.C:
	case <-tr.ar.s.ctx.Done():
	}
	proc.signal(syscall.SIGKILL)
	return <-proc.exited
}

func killSignal(t *api.Task) syscall.Signal {
	name := strings.ToUpper(strings.TrimSpace(t.KillSignal))
	if name == "" {
		if t.Driver == "docker" {
			return syscall.SIGTERM
		}
		return syscall.SIGINT
	}
	if sig, ok := signalsByName[strings.TrimPrefix(name, "SIG")]; ok {
		return sig
	}
	return syscall.SIGINT
}

var signalsByName = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM,
}

func newEvent(typ string) *api.TaskEvent {
	ev := &api.TaskEvent{Type: typ, Time: time.Now().UnixNano(), Details: map[string]string{}}
	switch typ {
	case eventReceived:
		ev.DisplayMessage = "Task received by client"
	case eventStarted:
		ev.DisplayMessage = "Task started by client"
	}
	return ev
}

func driverFailureEvent(err error) *api.TaskEvent {
	ev := newEvent(eventDriverFailure)
	ev.DriverError = err.Error()
	ev.Details["driver_error"] = err.Error()
	ev.DisplayMessage = err.Error()
	return ev
}

func driverMessageEvent(msg string, details map[string]string) *api.TaskEvent {
	ev := newEvent(eventDriver)
	ev.DriverMessage = msg
	ev.Details["driver_message"] = msg
	for k, v := range details {
		ev.Details[k] = v
	}
	ev.DisplayMessage = msg
	return ev
}

func terminatedEvent(res exitResult) *api.TaskEvent {
	ev := newEvent(eventTerminated)
	ev.ExitCode, ev.Signal, ev.Message = res.code, res.signal, res.message
	ev.Details["exit_code"] = strconv.Itoa(res.code)
	ev.Details["signal"] = strconv.Itoa(res.signal)
	ev.Details["oom_killed"] = strconv.FormatBool(res.oom)
	parts := []string{fmt.Sprintf("Exit Code: %d", res.code)}
	if res.signal != 0 {
		parts = append(parts, fmt.Sprintf("Signal: %d", res.signal))
	}
	if res.message != "" {
		ev.Details["exit_message"] = res.message
		parts = append(parts, fmt.Sprintf("Exit Message: %q", res.message))
	}
	ev.DisplayMessage = strings.Join(parts, ", ")
	return ev
}

// process is a started task process.
type process struct {
	pid    int
	exited chan exitResult
}

func (p *process) signal(sig syscall.Signal) {
	// The task runs in its own process group; signal all of it.
	_ = syscall.Kill(-p.pid, sig)
}

// start launches the task's process, or says why the driver could not.
func (tr *taskRunner) start() (*process, error) {
	ar := tr.ar
	s := ar.s
	env := ar.taskEnv(tr)
	task := interpolateTask(tr.task, env, s)

	var argv []string
	var extraEnv map[string]string
	oomDriverSignal := int(syscall.SIGKILL)
	switch task.Driver {
	case "raw_exec", "exec":
		command, _ := task.Config["command"].(string)
		bin, err := lookupBin(tr.dir, command)
		if err != nil {
			return nil, &driverError{msg: "failed to launch command with executor: rpc error: code = Unknown desc = " + err.Error()}
		}
		argv = append([]string{bin}, configArgs(task.Config["args"])...)
	case "docker":
		image, _ := task.Config["image"].(string)
		tr.emit(driverMessageEvent("Downloading image", map[string]string{"image": image}), nil)
		s.mu.Lock()
		failPull := s.failPull[image]
		s.mu.Unlock()
		if failPull {
			// The docker driver's error for an image the registry does not
			// have. Its text matches the driver's "Error: image .+ not
			// found", so it is unrecoverable: no restart.
			return nil, &driverError{msg: fmt.Sprintf("Failed to pull `%s`: Error: image %s not found", image, image)}
		}
		if s.opts.DockerCommand == nil {
			return nil, &driverError{msg: fmt.Sprintf("Failed to create container: fakenomad has no Docker engine and Options.DockerCommand is nil (image %q)", image)}
		}
		cmd, cenv, err := s.opts.DockerCommand(task)
		if err != nil {
			return nil, &driverError{msg: "Failed to create container: " + err.Error()}
		}
		if len(cmd) == 0 {
			return nil, &driverError{msg: "Failed to create container: DockerCommand returned no command"}
		}
		argv, extraEnv = cmd, cenv
		oomDriverSignal = 0
	default:
		return nil, &driverError{msg: fmt.Sprintf("fakenomad: driver %q cannot run tasks", task.Driver)}
	}

	procEnv := os.Environ()
	for k, v := range env {
		procEnv = append(procEnv, k+"="+v)
	}
	for k, v := range extraEnv {
		procEnv = append(procEnv, k+"="+v)
	}
	logDir := filepath.Join(ar.dir, "alloc", "logs")
	stdout, err := os.OpenFile(filepath.Join(logDir, tr.task.Name+".stdout.0"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, &driverError{msg: err.Error(), recoverable: true}
	}
	stderr, err := os.OpenFile(filepath.Join(logDir, tr.task.Name+".stderr.0"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		stdout.Close()
		return nil, &driverError{msg: err.Error(), recoverable: true}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = procEnv
	cmd.Dir = tr.dir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	s.mu.Lock()
	oom := s.oomNext[*ar.job.ID]
	delete(s.oomNext, *ar.job.ID)
	s.mu.Unlock()

	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		return nil, &driverError{msg: "failed to launch command with executor: rpc error: code = Unknown desc = " + err.Error(), recoverable: true}
	}
	proc := &process{pid: cmd.Process.Pid, exited: make(chan exitResult, 1)}
	memKey := ar.rec.alloc.ID + "/" + tr.task.Name
	memMB := taskMemoryMB(tr.task)

	s.mu.Lock()
	ar.alive++
	s.memLive[memKey] = memMB
	s.mu.Unlock()

	go func() {
		err := cmd.Wait()
		// Reap what the task left behind in its process group.
		_ = syscall.Kill(-proc.pid, syscall.SIGKILL)
		stdout.Close()
		stderr.Close()
		res := resultOf(cmd, err)
		if oom {
			res.oom, res.code, res.signal, res.message = true, 137, oomDriverSignal, "OOM Killed"
		}
		s.mu.Lock()
		ar.alive--
		delete(s.memLive, memKey)
		if s.releaseDelay > 0 {
			s.releases = append(s.releases, memRelease{mb: memMB, until: time.Now().Add(s.releaseDelay)})
		}
		s.mu.Unlock()
		proc.exited <- res
	}()
	if oom {
		// The kernel's OOM killer, right after the start.
		proc.signal(syscall.SIGKILL)
	}
	return proc, nil
}

func resultOf(cmd *exec.Cmd, err error) exitResult {
	ps := cmd.ProcessState
	if ps == nil {
		return exitResult{code: 1, message: fmt.Sprint(err)}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := int(ws.Signal())
		return exitResult{code: 128 + sig, signal: sig}
	}
	return exitResult{code: ps.ExitCode()}
}

// lookupBin finds a raw_exec command the way Nomad's executor does: in
// the task's local/ directory, at the task directory's root, then on PATH.
func lookupBin(taskDir, bin string) (string, error) {
	if bin == "" {
		return "", errors.New("binary \"\" could not be found")
	}
	for _, candidate := range []string{filepath.Join(taskDir, "local", bin), filepath.Join(taskDir, bin)} {
		if fi, err := os.Stat(candidate); err == nil && !fi.IsDir() {
			return candidate, nil
		}
	}
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("binary %q could not be found", bin)
}

func configArgs(v any) []string {
	var out []string
	switch args := v.(type) {
	case []any:
		for _, a := range args {
			out = append(out, fmt.Sprint(a))
		}
	case []string:
		out = append(out, args...)
	}
	return out
}

// taskMemoryMB is what a running task is charged in the host's memory
// statistics: memory_max when set (the model may grow to it), else memory.
func taskMemoryMB(t *api.Task) int {
	if t.Resources == nil {
		return 0
	}
	if t.Resources.MemoryMaxMB != nil && *t.Resources.MemoryMaxMB > 0 {
		return *t.Resources.MemoryMaxMB
	}
	if t.Resources.MemoryMB != nil {
		return *t.Resources.MemoryMB
	}
	return 0
}

// restartTracker is Nomad's RestartTracker (client/allocrunner/taskrunner/
// restarts): what to do after a task exited or failed to start.
type restartTracker struct {
	policy    *api.RestartPolicy
	onSuccess bool
	startTime time.Time
	count     int

	startErr error
	exit     *exitResult
	killed   bool
}

func newRestartTracker(p *api.RestartPolicy, jobType string) *restartTracker {
	if p == nil {
		p = &api.RestartPolicy{}
	}
	return &restartTracker{policy: p, onSuccess: jobType != "batch" && jobType != "sysbatch", startTime: time.Now()}
}

func (r *restartTracker) setStartError(err error)    { r.startErr = err }
func (r *restartTracker) setExitResult(e exitResult) { r.exit = &e }
func (r *restartTracker) setKilled()                 { r.killed = true }

// next returns eventKilled, eventNotRestarting, eventTerminated or
// eventRestarting with the delay, and the reason.
func (r *restartTracker) next() (string, time.Duration, string) {
	defer func() { r.startErr, r.exit, r.killed = nil, nil, false }()
	if r.killed {
		return eventKilled, 0, ""
	}
	attempts := 0
	if r.policy.Attempts != nil {
		attempts = *r.policy.Attempts
	}
	if attempts == 0 {
		if !r.onSuccess && r.exit != nil && r.exit.successful() {
			return eventTerminated, 0, reasonNoRestarts
		}
		return eventNotRestarting, 0, reasonNoRestarts
	}
	var interval time.Duration
	if r.policy.Interval != nil {
		interval = *r.policy.Interval
	}
	if now := time.Now(); now.After(r.startTime.Add(interval)) {
		r.count = 0
		r.startTime = now
	}
	r.count++
	if r.startErr != nil {
		var de *driverError
		if errors.As(r.startErr, &de) && !de.recoverable {
			return eventNotRestarting, 0, reasonUnrecoverable
		}
	} else if r.exit != nil && r.exit.successful() && !r.onSuccess {
		return eventTerminated, 0, reasonSuccessfulExit
	}
	if r.count > attempts {
		mode := ""
		if r.policy.Mode != nil {
			mode = *r.policy.Mode
		}
		if mode == "fail" {
			return eventNotRestarting, 0, fmt.Sprintf(`Exceeded allowed attempts %d in interval %v and mode is "fail"`, attempts, interval)
		}
		return eventRestarting, time.Until(r.startTime.Add(interval)), reasonDelay
	}
	var delay time.Duration
	if r.policy.Delay != nil {
		delay = *r.policy.Delay
	}
	d := max(delay.Nanoseconds(), 1)
	return eventRestarting, time.Duration(d + int64(float64(rand.Int64N(d))*0.25)), reasonWithinPolicy
}
