package fakenomad

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Job writes, with Nomad's semantics (job_endpoint.go, recorded against
// v2.0.6):
//
//   - register answers EvalID, EvalCreateIndex, JobModifyIndex, Index and
//     Warnings; a group service without shutdown_delay earns
//     "1 warning:\n\n* group \"web\" defines services, but neither the group
//     nor any of its tasks have shutdown_delay set".
//   - re-registering an identical job creates a new evaluation but no new
//     version; JobModifyIndex is then the job's ModifyIndex.
//   - check-and-set (EnforceIndex): index 0 means the job must not exist,
//     otherwise it must equal the job's JobModifyIndex. Nomad answers a
//     conflict with HTTP 500 and "Enforcing job modify index 0: job already
//     exists", "Enforcing job modify index N: job exists with conflicting
//     job modify index: M" or "Enforcing job modify index N: job does not
//     exist".
//   - an invalid job is a 500 with a multierror, "1 error occurred:\n\t*
//     Missing job task groups\n\n".
//   - deregister sets Stop (a new version) and creates an evaluation that
//     stops the allocations; with purge the job, its summary and its
//     allocations are gone at once. Deregistering a job that does not exist
//     answers 200 with an empty EvalID and index 0.

const enforceIndexPrefix = "Enforcing job modify index"

type registerResponse struct {
	EvalID          string
	EvalCreateIndex uint64
	JobModifyIndex  uint64
	Warnings        string
	Index           uint64
	KnownLeader     bool
	LastContact     uint64
	NextToken       string
}

type deregisterResponse struct {
	EvalID          string
	EvalCreateIndex uint64
	JobModifyIndex  uint64
	VolumeEvalID    string
	VolumeEvalIndex uint64
	Index           uint64
	KnownLeader     bool
	LastContact     uint64
	NextToken       string
}

type planResponse struct {
	Annotations        *api.PlanAnnotations
	CreatedEvals       []*api.Evaluation
	Diff               *api.JobDiff
	FailedTGAllocs     map[string]*api.AllocationMetric
	Index              uint64
	JobModifyIndex     uint64
	NextPeriodicLaunch *time.Time
	Warnings           string
}

// prepareJob canonicalizes a submitted job as the agent and the server do
// and validates it.
func prepareJob(job *api.Job) error {
	job.Canonicalize()
	if len(job.Datacenters) == 0 {
		job.Datacenters = []string{"*"}
	}
	if *job.NodePool == "" {
		job.NodePool = new("default")
	}
	for _, tg := range job.TaskGroups {
		for _, n := range tg.Networks {
			for i := range n.ReservedPorts {
				if n.ReservedPorts[i].HostNetwork == "" {
					n.ReservedPorts[i].HostNetwork = "default"
				}
			}
			for i := range n.DynamicPorts {
				if n.DynamicPorts[i].HostNetwork == "" {
					n.DynamicPorts[i].HostNetwork = "default"
				}
			}
		}
		services := tg.Services
		for _, t := range tg.Tasks {
			services = append(services, t.Services...)
			if t.Identity == nil {
				t.Identity = &api.WorkloadIdentity{Name: "default", Audience: []string{"nomadproject.io"}}
			}
		}
		consul, nomad := false, false
		for _, svc := range services {
			for i := range svc.Checks {
				if svc.Checks[i].Name == "" {
					svc.Checks[i].Name = fmt.Sprintf("service: %q check", svc.Name)
				}
			}
			if svc.Provider == "nomad" {
				nomad = true
			} else {
				consul = true
			}
		}
		if consul {
			addConstraint(tg, &api.Constraint{LTarget: "${attr.consul.version}", Operand: "semver", RTarget: ">= 1.8.0"})
		}
		if nomad {
			addConstraint(tg, &api.Constraint{LTarget: "${attr.nomad.service_discovery}", Operand: "=", RTarget: "true"})
			addConstraint(tg, &api.Constraint{LTarget: "${attr.nomad.version}", Operand: "semver", RTarget: ">= 1.4.0"})
		}
	}
	return validateJob(job)
}

func addConstraint(tg *api.TaskGroup, c *api.Constraint) {
	for _, have := range tg.Constraints {
		if *have == *c {
			return
		}
	}
	tg.Constraints = append(tg.Constraints, c)
}

// validateJob is the part of Nomad's Job.Validate a jobspec can fail.
func validateJob(job *api.Job) error {
	var errs []string
	if *job.ID == "" {
		errs = append(errs, "Missing job ID")
	} else if strings.Contains(*job.ID, " ") {
		errs = append(errs, "Job ID contains a space")
	}
	if *job.Name == "" {
		errs = append(errs, "Missing job name")
	}
	switch *job.Type {
	case "service", "batch", "system", "sysbatch":
	default:
		errs = append(errs, fmt.Sprintf("Invalid job type: %q", *job.Type))
	}
	for _, dc := range job.Datacenters {
		if dc == "" {
			errs = append(errs, "Job datacenter must be non-empty string")
		}
	}
	if len(job.TaskGroups) == 0 {
		errs = append(errs, "Missing job task groups")
	}
	seen := map[string]int{}
	for i, tg := range job.TaskGroups {
		name := *tg.Name
		if name == "" {
			errs = append(errs, fmt.Sprintf("Job task group %d missing name", i+1))
		} else if prev, ok := seen[name]; ok {
			errs = append(errs, fmt.Sprintf("Job task group %d redefines '%s' from group %d", i+1, name, prev+1))
		} else {
			seen[name] = i
		}
	}
	for _, tg := range job.TaskGroups {
		if err := validateGroup(tg); err != "" {
			errs = append(errs, fmt.Sprintf("Task group %s validation failed: %s", *tg.Name, err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", multiError(errs))
}

func validateGroup(tg *api.TaskGroup) string {
	var errs []string
	if tg.Count != nil && *tg.Count < 0 {
		errs = append(errs, "Task group count can't be negative")
	}
	if len(tg.Tasks) == 0 {
		errs = append(errs, "Missing tasks for task group")
	}
	names := map[string]bool{}
	labels := map[string]bool{}
	for _, n := range tg.Networks {
		for _, p := range append(append([]api.Port{}, n.ReservedPorts...), n.DynamicPorts...) {
			if labels[p.Label] {
				errs = append(errs, fmt.Sprintf("Port label %s already in use", p.Label))
			}
			labels[p.Label] = true
		}
	}
	for i, t := range tg.Tasks {
		if t.Name == "" {
			errs = append(errs, fmt.Sprintf("Task %d missing name", i+1))
		} else if names[t.Name] {
			errs = append(errs, fmt.Sprintf("Task %d redefines '%s' from task %d", i+1, t.Name, i))
		}
		names[t.Name] = true
		if t.Driver == "" {
			errs = append(errs, fmt.Sprintf("Task %s validation failed: %s", t.Name, multiError([]string{"Missing task driver"})))
		}
	}
	for _, svc := range tg.Services {
		if svc.PortLabel != "" && !labels[svc.PortLabel] {
			if _, err := fmt.Sscan(svc.PortLabel, new(int)); err != nil {
				errs = append(errs, fmt.Sprintf("Service[%s] validation failed: port label %q referenced by services %s does not exist", svc.Name, svc.PortLabel, svc.Name))
			}
		}
	}
	if len(errs) == 0 {
		return ""
	}
	return multiError(errs)
}

// multiError formats errors like hashicorp/go-multierror.
func multiError(errs []string) string {
	if len(errs) == 1 {
		return fmt.Sprintf("1 error occurred:\n\t* %s\n\n", errs[0])
	}
	points := make([]string, len(errs))
	for i, e := range errs {
		points[i] = "* " + e
	}
	return fmt.Sprintf("%d errors occurred:\n\t%s\n\n", len(errs), strings.Join(points, "\n\t"))
}

// jobWarnings is Nomad's shutdown_delay warning set, formatted like
// helper.MergeMultierrorWarnings.
func jobWarnings(job *api.Job) string {
	var warnings []string
	for _, tg := range job.TaskGroups {
		referenced := map[string]bool{}
		unscoped := false
		anyTaskDelay := false
		groupDelay := tg.ShutdownDelay != nil && *tg.ShutdownDelay > 0
		for _, svc := range tg.Services {
			if svc.TaskName != "" {
				referenced[svc.TaskName] = true
				continue
			}
			if svc.Connect != nil && svc.Connect.SidecarTask != nil {
				if svc.Connect.SidecarTask.ShutdownDelay == nil {
					warnings = append(warnings, fmt.Sprintf("service %q defines a sidecar task in Consul Connect definition, but the task has no shutdown_delay set", svc.Name))
				}
				continue
			}
			unscoped = true
		}
		for _, t := range tg.Tasks {
			if referenced[t.Name] && t.ShutdownDelay == 0 {
				warnings = append(warnings, fmt.Sprintf("group %q references task %q in a service definition, but the task has no shutdown_delay set", *tg.Name, t.Name))
			}
			if t.ShutdownDelay > 0 {
				anyTaskDelay = true
			} else if len(t.Services) > 0 {
				warnings = append(warnings, fmt.Sprintf("task %q in group %q defines services, but has no shutdown_delay set", t.Name, *tg.Name))
			}
		}
		if unscoped && !groupDelay && !anyTaskDelay {
			warnings = append(warnings, fmt.Sprintf("group %q defines services, but neither the group nor any of its tasks have shutdown_delay set", *tg.Name))
		}
	}
	switch len(warnings) {
	case 0:
		return ""
	case 1:
		return "1 warning:\n\n* " + warnings[0]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d warnings:\n", len(warnings))
	for _, w := range warnings {
		b.WriteString("\n* " + w)
	}
	return b.String()
}

// specKey is a job's spec without the fields the server sets, to tell
// whether a registration changes anything.
func specKey(job *api.Job) []byte {
	c := copyJob(job)
	c.Status, c.StatusDescription, c.Stable, c.Version, c.SubmitTime = nil, nil, nil, nil, nil
	c.CreateIndex, c.ModifyIndex, c.JobModifyIndex = nil, nil, nil
	b, _ := json.Marshal(c)
	return b
}

func copyJob(job *api.Job) *api.Job {
	b, err := json.Marshal(job)
	if err != nil {
		panic(err)
	}
	var c api.Job
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return &c
}

func (s *Server) registerJob(req *api.JobRegisterRequest) (*registerResponse, error) {
	job := req.Job
	if err := prepareJob(job); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	existing := s.jobs[*job.ID]
	if req.EnforceIndex {
		switch {
		case existing != nil && req.JobModifyIndex == 0:
			return nil, fmt.Errorf("%s 0: job already exists", enforceIndexPrefix)
		case existing != nil && req.JobModifyIndex != *existing.job.JobModifyIndex:
			return nil, fmt.Errorf("%s %d: job exists with conflicting job modify index: %d",
				enforceIndexPrefix, req.JobModifyIndex, *existing.job.JobModifyIndex)
		case existing == nil && req.JobModifyIndex != 0:
			return nil, fmt.Errorf("%s %d: job does not exist", enforceIndexPrefix, req.JobModifyIndex)
		}
	}
	if existing != nil && *existing.job.Type != *job.Type {
		return nil, fmt.Errorf("cannot update job from type %q to %q", *existing.job.Type, *job.Type)
	}

	s.registrations = append(s.registrations, *job.ID)
	s.checkInvariantLocked(job, "registered")
	resp := &registerResponse{Warnings: jobWarnings(job)}
	eval := s.newEval(job, "job-register")
	resp.EvalID = eval.ID

	if existing != nil && bytes.Equal(specKey(existing.job), specKey(job)) {
		idx := s.commit(tableEvals)
		eval.CreateIndex, eval.ModifyIndex, eval.JobModifyIndex = idx, idx, *existing.job.JobModifyIndex
		s.evals[eval.ID] = eval
		resp.JobModifyIndex, resp.EvalCreateIndex, resp.Index = *existing.job.ModifyIndex, idx, idx
		s.refreshJob(*job.ID, idx)
		s.enqueueEvalLocked(eval.ID)
		return resp, nil
	}

	idx := s.commit(tableJobs, tableEvals, tableSummary)
	job.Version = new(uint64(0))
	job.CreateIndex = new(idx)
	rec := &jobRecord{summaryCreate: idx, summaryModify: idx}
	if existing != nil {
		job.Version = new(*existing.job.Version + 1)
		job.CreateIndex = existing.job.CreateIndex
		rec = existing
	}
	job.ModifyIndex, job.JobModifyIndex = new(idx), new(idx)
	job.SubmitTime = new(time.Now().UnixNano())
	job.Status, job.Stable = new(jobPending), new(false)
	rec.job = job
	s.jobs[*job.ID] = rec
	eval.CreateIndex, eval.ModifyIndex, eval.JobModifyIndex = idx, idx, idx
	s.evals[eval.ID] = eval
	resp.JobModifyIndex, resp.EvalCreateIndex, resp.Index = idx, idx, idx
	s.refreshJob(*job.ID, idx)
	if job.Periodic == nil && job.ParameterizedJob == nil {
		s.enqueueEvalLocked(eval.ID)
	}
	return resp, nil
}

func (s *Server) deregisterJob(id string, purge bool) *deregisterResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.jobs[id]
	if !ok {
		return &deregisterResponse{}
	}
	eval := s.newEval(rec.job, "job-deregister")
	if purge {
		idx := s.commit(tableJobs, tableEvals, tableAllocs, tableSummary)
		delete(s.jobs, id)
		for _, arec := range s.jobAllocs(id, false) {
			arec.hidden = true
			if arec.alloc.DesiredStatus == desiredRun {
				s.stopAllocLocked(arec, descNotNeeded, idx)
			}
		}
		for _, e := range s.jobEvals(id) {
			if e.Status == evalPending {
				e.Status, e.StatusDescription = evalComplete, fmt.Sprintf("job %s deleted", id)
				e.ModifyIndex = idx
			}
		}
		eval.CreateIndex, eval.ModifyIndex, eval.JobModifyIndex = idx, idx, idx
		s.evals[eval.ID] = eval
		s.enqueueEvalLocked(eval.ID)
		s.capacityChangedLocked()
		return &deregisterResponse{EvalID: eval.ID, EvalCreateIndex: idx, JobModifyIndex: idx, Index: idx}
	}
	idx := s.commit(tableJobs, tableEvals)
	job := copyJob(rec.job)
	job.Stop = new(true)
	job.Version = new(*rec.job.Version + 1)
	job.ModifyIndex, job.JobModifyIndex = new(idx), new(idx)
	job.SubmitTime = new(time.Now().UnixNano())
	rec.job = job
	eval.CreateIndex, eval.ModifyIndex, eval.JobModifyIndex = idx, idx, idx
	s.evals[eval.ID] = eval
	s.refreshJob(id, idx)
	s.enqueueEvalLocked(eval.ID)
	return &deregisterResponse{EvalID: eval.ID, EvalCreateIndex: idx, JobModifyIndex: idx, Index: idx}
}

// planJob is the dry run of POST /v1/job/:id/plan: what registering job
// would do now, changing nothing.
func (s *Server) planJob(job *api.Job, diff bool) (*planResponse, error) {
	if err := prepareJob(job); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &planResponse{Warnings: jobWarnings(job)}
	candidate := copyJob(job)
	candidate.Version, candidate.JobModifyIndex = new(uint64(0)), new(uint64(0))
	diffType := "Added"
	if rec, ok := s.jobs[*job.ID]; ok {
		resp.JobModifyIndex = *rec.job.JobModifyIndex
		if bytes.Equal(specKey(rec.job), specKey(job)) {
			candidate = rec.job
			diffType = "None"
		} else {
			candidate.Version = new(*rec.job.Version + 1)
			diffType = "Edited"
		}
	}
	plan := s.computePlan(candidate, *job.ID)
	resp.Annotations = &api.PlanAnnotations{DesiredTGUpdates: plan.updates}
	if len(plan.failed) > 0 {
		resp.FailedTGAllocs = plan.failed
		now := time.Now().UnixNano()
		resp.CreatedEvals = []*api.Evaluation{{
			ID:                newUUID(),
			Namespace:         *job.Namespace,
			Priority:          *job.Priority,
			Type:              *job.Type,
			TriggeredBy:       "queued-allocs",
			JobID:             *job.ID,
			Status:            evalBlocked,
			StatusDescription: "created to place remaining allocations",
			PreviousEval:      newUUID(),
			FailedTGAllocs:    plan.failed,
			ClassEligibility:  map[string]bool{"v1:" + s.nodeClassHash: !constraintFailure(plan.failed)},
			CreateTime:        now,
			ModifyTime:        now,
		}}
	}
	if diff {
		resp.Diff = &api.JobDiff{Type: diffType, ID: *job.ID}
		for _, tg := range job.TaskGroups {
			d := &api.TaskGroupDiff{Type: diffType, Name: *tg.Name, Updates: map[string]uint64{}}
			if u := plan.updates[*tg.Name]; u != nil {
				for k, v := range map[string]uint64{"create": u.Place, "destroy": u.Stop, "ignore": u.Ignore, "create/destroy update": u.DestructiveUpdate} {
					if v > 0 {
						d.Updates[k] = v
					}
				}
			}
			resp.Diff.TaskGroups = append(resp.Diff.TaskGroups, d)
		}
	}
	return resp, nil
}
