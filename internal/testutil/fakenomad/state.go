package fakenomad

import (
	"sort"
	"time"

	"github.com/hashicorp/nomad/api"
)

// State tables. Like Nomad's state store, every write gets the next raft
// index and records it as the index of the tables it touched; a query
// answers with (and blocks on) the index of the tables it reads, so a
// blocking query on a job's allocations does not wake for an unrelated
// node update.
const (
	tableJobs    = "jobs"
	tableAllocs  = "allocs"
	tableEvals   = "evals"
	tableSummary = "job_summary"
	tableNodes   = "nodes"
)

// Allocation and evaluation states, as Nomad spells them.
const (
	allocPending  = "pending"
	allocRunning  = "running"
	allocComplete = "complete"
	allocFailed   = "failed"
	allocLost     = "lost"

	desiredRun  = "run"
	desiredStop = "stop"

	evalPending   = "pending"
	evalComplete  = "complete"
	evalBlocked   = "blocked"
	evalCanceled  = "canceled"
	taskPending   = "pending"
	taskRunning   = "running"
	taskDead      = "dead"
	jobPending    = "pending"
	jobRunning    = "running"
	jobDead       = "dead"
	managedByKey  = "managed-by"
	managedByThis = "llm-switchboard"
)

type jobRecord struct {
	job *api.Job
	// summaryCreate and summaryModify are the indexes of the job summary;
	// lastSummary is what it counted at summaryModify.
	summaryCreate, summaryModify uint64
	lastSummary                  map[string]api.TaskGroupSummary
}

type allocRecord struct {
	alloc *api.Allocation
	// hidden allocations were purged with their job: gone from the API,
	// but their processes may still be shutting down.
	hidden bool
	runner *allocRunner
	// rescheduled marks a failed allocation that already has a follow-up.
	rescheduled bool
}

// commit takes the next index, stamps it on tables and wakes blocking
// queries. s.mu must be held.
func (s *Server) commit(tables ...string) uint64 {
	s.index++
	for _, t := range tables {
		s.tables[t] = s.index
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

// tableIndex is the index a query over tables answers with (never 0, so a
// client's next blocking query blocks).
func (s *Server) tableIndex(tables ...string) uint64 {
	var idx uint64
	for _, t := range tables {
		idx = max(idx, s.tables[t])
	}
	return max(idx, 1)
}

func isClientTerminal(status string) bool {
	return status == allocComplete || status == allocFailed || status == allocLost
}

// serverTerminal is Nomad's Allocation.TerminalStatus: told to stop, or
// finished on the client. The scheduler frees the resources of such an
// allocation at once, whether or not its process has exited.
func serverTerminal(a *api.Allocation) bool {
	return a.DesiredStatus != desiredRun || isClientTerminal(a.ClientStatus)
}

func (s *Server) jobAllocs(jobID string, withHidden bool) []*allocRecord {
	var out []*allocRecord
	for _, rec := range s.allocs {
		if rec.alloc.JobID == jobID && (withHidden || !rec.hidden) {
			out = append(out, rec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].alloc.CreateIndex < out[j].alloc.CreateIndex })
	return out
}

func (s *Server) jobEvals(jobID string) []*api.Evaluation {
	var out []*api.Evaluation
	for _, e := range s.evals {
		if e.JobID == jobID {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// jobStatus is Nomad's getJobStatus without deployments: running while an
// allocation is not terminal, pending while an evaluation is not, dead
// once something happened and everything is over.
func (s *Server) jobStatus(job *api.Job) string {
	for _, rec := range s.jobAllocs(*job.ID, false) {
		if !serverTerminal(rec.alloc) {
			return jobRunning
		}
	}
	hasEval := false
	for _, e := range s.jobEvals(*job.ID) {
		if e.Status == evalPending || e.Status == evalBlocked {
			return jobPending
		}
		hasEval = true
	}
	if hasEval || *job.Stop {
		return jobDead
	}
	return jobPending
}

// refreshJob recomputes the job's status and summary after a write at idx
// and stamps the tables that changed.
func (s *Server) refreshJob(jobID string, idx uint64) {
	rec, ok := s.jobs[jobID]
	if !ok {
		return
	}
	if status := s.jobStatus(rec.job); status != *rec.job.Status {
		rec.job.Status = new(status)
		rec.job.ModifyIndex = new(idx)
		s.tables[tableJobs] = idx
	}
	sum := s.summary(rec)
	if rec.lastSummary == nil || !sameSummary(rec.lastSummary, sum.Summary) {
		rec.lastSummary = sum.Summary
		rec.summaryModify = idx
		s.tables[tableSummary] = idx
	}
}

func sameSummary(a, b map[string]api.TaskGroupSummary) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// summary counts a job's allocations per group the way Nomad's job summary
// does; Queued counts placements a blocked evaluation still waits for.
func (s *Server) summary(rec *jobRecord) *api.JobSummary {
	sum := &api.JobSummary{
		JobID:       *rec.job.ID,
		Namespace:   *rec.job.Namespace,
		Summary:     map[string]api.TaskGroupSummary{},
		Children:    &api.JobChildrenSummary{},
		CreateIndex: rec.summaryCreate,
		ModifyIndex: max(rec.summaryModify, rec.summaryCreate),
	}
	for _, tg := range rec.job.TaskGroups {
		sum.Summary[*tg.Name] = api.TaskGroupSummary{}
	}
	for _, a := range s.jobAllocs(*rec.job.ID, false) {
		g := sum.Summary[a.alloc.TaskGroup]
		switch a.alloc.ClientStatus {
		case allocPending:
			g.Starting++
		case allocRunning:
			g.Running++
		case allocComplete:
			g.Complete++
		case allocFailed:
			g.Failed++
		case allocLost:
			g.Lost++
		}
		sum.Summary[a.alloc.TaskGroup] = g
	}
	for _, e := range s.jobEvals(*rec.job.ID) {
		if e.Status != evalBlocked {
			continue
		}
		for group, n := range e.QueuedAllocations {
			g := sum.Summary[group]
			g.Queued += n
			sum.Summary[group] = g
		}
	}
	return sum
}

func (s *Server) jobStub(rec *jobRecord, withMeta bool) *api.JobListStub {
	j := rec.job
	stub := &api.JobListStub{
		ID:                *j.ID,
		ParentID:          *j.ParentID,
		Name:              *j.Name,
		Namespace:         *j.Namespace,
		Datacenters:       j.Datacenters,
		Type:              *j.Type,
		Priority:          *j.Priority,
		Periodic:          j.Periodic != nil,
		ParameterizedJob:  j.ParameterizedJob != nil,
		Stop:              *j.Stop,
		Status:            *j.Status,
		StatusDescription: *j.StatusDescription,
		JobSummary:        s.summary(rec),
		CreateIndex:       *j.CreateIndex,
		ModifyIndex:       *j.ModifyIndex,
		JobModifyIndex:    *j.JobModifyIndex,
		SubmitTime:        *j.SubmitTime,
	}
	if withMeta {
		stub.Meta = j.Meta
	}
	return stub
}

func allocStub(a *api.Allocation) *api.AllocationListStub {
	return &api.AllocationListStub{
		ID:                    a.ID,
		EvalID:                a.EvalID,
		Name:                  a.Name,
		Namespace:             a.Namespace,
		NodeID:                a.NodeID,
		NodeName:              a.NodeName,
		JobID:                 a.JobID,
		JobType:               *a.Job.Type,
		JobVersion:            *a.Job.Version,
		TaskGroup:             a.TaskGroup,
		DesiredStatus:         a.DesiredStatus,
		DesiredDescription:    a.DesiredDescription,
		ClientStatus:          a.ClientStatus,
		ClientDescription:     a.ClientDescription,
		TaskStates:            a.TaskStates,
		DeploymentStatus:      a.DeploymentStatus,
		FollowupEvalID:        a.FollowupEvalID,
		NextAllocation:        a.NextAllocation,
		RescheduleTracker:     a.RescheduleTracker,
		PreemptedAllocations:  a.PreemptedAllocations,
		PreemptedByAllocation: a.PreemptedByAllocation,
		CreateIndex:           a.CreateIndex,
		ModifyIndex:           a.ModifyIndex,
		CreateTime:            a.CreateTime,
		ModifyTime:            a.ModifyTime,
	}
}

// touchAlloc stamps a client-side change of rec at idx.
func touchAlloc(a *api.Allocation, idx uint64) {
	a.ModifyIndex = idx
	a.ModifyTime = time.Now().UnixNano()
}

// isManaged tells whether a job is one of the switchboard's model jobs.
func isManaged(j *api.Job) bool {
	return j != nil && j.Meta[managedByKey] == managedByThis
}

// liveAlloc tells whether an allocation may still hold the node: its
// client status is not terminal or one of its processes still runs.
func liveAlloc(rec *allocRecord) bool {
	if !isClientTerminal(rec.alloc.ClientStatus) {
		return true
	}
	return rec.runner != nil && rec.runner.processAlive()
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
