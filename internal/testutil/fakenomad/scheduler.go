package fakenomad

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// The scheduler places a job's groups on the one node the way Nomad's
// service scheduler decides, and explains failures with Nomad's metrics
// (recorded against Nomad v2.0.6 with one raw_exec-only client):
//
//	docker task, no docker driver      ConstraintFiltered {"missing drivers": 1}
//	device "nvidia/gpu", no such device ConstraintFiltered {"missing devices": 1}
//	more memory than the node has      DimensionExhausted {"memory": 1}, ResourcesExhausted {task: {MemoryMB: ask}}
//
// A registered job that cannot be placed gets a complete evaluation with
// FailedTGAllocs, QueuedAllocations and BlockedEval, and a blocked
// evaluation ("created to place remaining allocations", TriggeredBy
// "queued-allocs"); no allocation; Queued: 1 in its summary. A blocked
// evaluation for exhausted resources is retried when capacity frees up;
// one for a missing driver or device waits until the job is stopped.
// Resources are what allocations ask for (MemoryMB), not what processes
// use: an allocation told to stop frees its share at once, as in Nomad.

// placement is one allocation the plan creates.
type placement struct {
	group   *api.TaskGroup
	name    string
	ports   []api.PortMapping
	network *api.NetworkResource
	devices map[string][]*api.AllocatedDeviceResource
	metric  *api.AllocationMetric
	prev    *allocRecord
}

type stopAction struct {
	rec  *allocRecord
	desc string
}

type schedPlan struct {
	stops   []stopAction
	places  []placement
	failed  map[string]*api.AllocationMetric
	queued  map[string]int
	updates map[string]*api.DesiredUpdates
}

const (
	descNotNeeded   = "alloc not needed due to job update"
	descUpdated     = "alloc is being updated due to job update"
	descRescheduled = "alloc was rescheduled because it failed"
)

func (s *Server) enqueueEvalLocked(id string) {
	if !slices.Contains(s.evalQueue, id) {
		s.evalQueue = append(s.evalQueue, id)
	}
	select {
	case s.evalKick <- struct{}{}:
	default:
	}
}

// evalWorker is the leader's scheduler worker: it processes evaluations
// one at a time, after the write that created them has been answered.
func (s *Server) evalWorker() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.evalKick:
		}
		for {
			s.mu.Lock()
			if len(s.evalQueue) == 0 || s.ctx.Err() != nil {
				s.mu.Unlock()
				break
			}
			id := s.evalQueue[0]
			s.evalQueue = s.evalQueue[1:]
			s.processEvalLocked(id)
			s.mu.Unlock()
		}
	}
}

func (s *Server) newEval(job *api.Job, triggeredBy string) *api.Evaluation {
	now := time.Now().UnixNano()
	return &api.Evaluation{
		ID:          newUUID(),
		Namespace:   *job.Namespace,
		Priority:    *job.Priority,
		Type:        *job.Type,
		TriggeredBy: triggeredBy,
		JobID:       *job.ID,
		Status:      evalPending,
		CreateTime:  now,
		ModifyTime:  now,
	}
}

// processEvalLocked runs the scheduler for one evaluation and applies its
// plan.
func (s *Server) processEvalLocked(id string) {
	eval := s.evals[id]
	if eval == nil || (eval.Status != evalPending && eval.Status != evalBlocked) {
		return
	}
	var job *api.Job
	if rec, ok := s.jobs[eval.JobID]; ok {
		job = rec.job
	}
	plan := s.computePlan(job, eval.JobID)
	s.applyPlan(eval, job, plan)
}

// computePlan reconciles the job (nil when purged) with its allocations
// and places what is missing. It does not change anything.
func (s *Server) computePlan(job *api.Job, jobID string) *schedPlan {
	plan := &schedPlan{
		failed:  map[string]*api.AllocationMetric{},
		queued:  map[string]int{},
		updates: map[string]*api.DesiredUpdates{},
	}
	allocs := s.jobAllocs(jobID, false)
	if job == nil || *job.Stop {
		for _, rec := range allocs {
			if rec.alloc.DesiredStatus != desiredRun {
				continue
			}
			plan.stops = append(plan.stops, stopAction{rec, descNotNeeded})
			plan.update(rec.alloc.TaskGroup).Stop++
		}
		return plan
	}

	type want struct {
		group *api.TaskGroup
		name  string
		prev  *allocRecord
	}
	var wants []want
	for _, tg := range job.TaskGroups {
		upd := plan.update(*tg.Name)
		replacing := 0
		var keep []*allocRecord
		for _, rec := range allocs {
			a := rec.alloc
			if a.TaskGroup != *tg.Name || a.DesiredStatus != desiredRun {
				continue
			}
			switch {
			case *a.Job.Version != *job.Version || *a.Job.JobModifyIndex != *job.JobModifyIndex:
				plan.stops = append(plan.stops, stopAction{rec, descUpdated})
				upd.DestructiveUpdate++
				replacing++
				wants = append(wants, want{tg, a.Name, nil})
			case rec.rescheduled:
				plan.stops = append(plan.stops, stopAction{rec, descRescheduled})
				upd.Place++
				replacing++
				wants = append(wants, want{tg, a.Name, rec})
			default:
				keep = append(keep, rec)
			}
		}
		count := 1
		if tg.Count != nil {
			count = *tg.Count
		}
		for len(keep) > count {
			last := keep[len(keep)-1]
			keep = keep[:len(keep)-1]
			plan.stops = append(plan.stops, stopAction{last, descNotNeeded})
			upd.Stop++
		}
		upd.Ignore += uint64(len(keep))
		used := map[string]bool{}
		for _, rec := range keep {
			used[rec.alloc.Name] = true
		}
		for _, w := range wants {
			used[w.name] = true
		}
		for i := 0; len(keep)+replacing < count; i++ {
			name := fmt.Sprintf("%s.%s[%d]", *job.Name, *tg.Name, i)
			if used[name] {
				continue
			}
			used[name] = true
			wants = append(wants, want{tg, name, nil})
			replacing++
			upd.Place++
		}
	}

	stopping := map[string]bool{}
	for _, st := range plan.stops {
		stopping[st.rec.alloc.ID] = true
	}
	for _, w := range wants {
		p, metric := s.place(job, w.group, stopping, plan.places)
		group := *w.group.Name
		if metric != nil {
			if prev, ok := plan.failed[group]; ok {
				prev.CoalescedFailures++
			} else {
				plan.failed[group] = metric
			}
			plan.queued[group]++
			continue
		}
		p.name, p.prev = w.name, w.prev
		plan.places = append(plan.places, *p)
	}
	for _, tg := range job.TaskGroups {
		if _, ok := plan.queued[*tg.Name]; !ok {
			plan.queued[*tg.Name] = 0
		}
	}
	return plan
}

func (p *schedPlan) update(group string) *api.DesiredUpdates {
	u, ok := p.updates[group]
	if !ok {
		u = &api.DesiredUpdates{}
		p.updates[group] = u
	}
	return u
}

// place finds room for one allocation of tg on the node, given what the
// plan already stops and places, or returns why not.
func (s *Server) place(job *api.Job, tg *api.TaskGroup, stopping map[string]bool, placed []placement) (*placement, *api.AllocationMetric) {
	start := time.Now()
	metric := &api.AllocationMetric{
		NodesEvaluated: 1,
		NodesInPool:    1,
		NodePool:       s.node.NodePool,
		NodesAvailable: map[string]int{s.node.Datacenter: 1},
	}
	filter := func(reason string) (*placement, *api.AllocationMetric) {
		metric.NodesFiltered = 1
		metric.ConstraintFiltered = map[string]int{reason: 1}
		metric.AllocationTime = time.Since(start)
		return nil, metric
	}
	exhaust := func(dim string, task string, ask *api.Resources) (*placement, *api.AllocationMetric) {
		metric.NodesExhausted = 1
		metric.DimensionExhausted = map[string]int{dim: 1}
		if ask != nil {
			metric.ResourcesExhausted = map[string]*api.Resources{task: ask}
		}
		metric.AllocationTime = time.Since(start)
		return nil, metric
	}

	if !datacenterMatches(job.Datacenters, s.node.Datacenter) {
		metric.NodesEvaluated, metric.NodesInPool = 0, 0
		metric.NodesAvailable = map[string]int{}
		for _, dc := range job.Datacenters {
			metric.NodesAvailable[dc] = 0
		}
		return nil, metric
	}
	for _, c := range job.Constraints {
		if !s.constraintHolds(c) {
			return filter(constraintString(c))
		}
	}
	for _, t := range tg.Tasks {
		if !slices.Contains(s.opts.Drivers, t.Driver) {
			return filter("missing drivers")
		}
	}
	for _, c := range tg.Constraints {
		if !s.constraintHolds(c) {
			return filter(constraintString(c))
		}
	}
	for _, t := range tg.Tasks {
		for _, c := range t.Constraints {
			if !s.constraintHolds(c) {
				return filter(constraintString(c))
			}
		}
		if t.Resources == nil {
			continue
		}
		for _, d := range t.Resources.Devices {
			if len(s.deviceInstances(d.Name)) == 0 {
				return filter("missing devices")
			}
		}
	}

	// What the node already gives away: allocations not terminal on the
	// server side, minus what this plan stops, plus what it places.
	var usedCPU, usedMem int
	usedPorts := map[int]bool{}
	usedDevices := map[string]bool{}
	for _, rec := range s.allocs {
		if serverTerminal(rec.alloc) || stopping[rec.alloc.ID] {
			continue
		}
		cpu, mem := allocAsk(rec.alloc)
		usedCPU += cpu
		usedMem += mem
		for _, p := range rec.alloc.AllocatedResources.Shared.Ports {
			usedPorts[p.Value] = true
		}
		for _, tr := range rec.alloc.AllocatedResources.Tasks {
			for _, d := range tr.Devices {
				for _, id := range d.DeviceIDs {
					usedDevices[id] = true
				}
			}
		}
	}
	for _, p := range placed {
		for _, t := range p.group.Tasks {
			cpu, mem := taskAsk(t)
			usedCPU += cpu
			usedMem += mem
		}
		for _, port := range p.ports {
			usedPorts[port.Value] = true
		}
		for _, devs := range p.devices {
			for _, d := range devs {
				for _, id := range d.DeviceIDs {
					usedDevices[id] = true
				}
			}
		}
	}

	p := &placement{group: tg, devices: map[string][]*api.AllocatedDeviceResource{}, metric: metric}
	network := &api.NetworkResource{IP: s.hostIP}
	for _, n := range tg.Networks {
		network.Mode = n.Mode
		for _, port := range n.ReservedPorts {
			if usedPorts[port.Value] {
				return exhaust(fmt.Sprintf("network: reserved port collision %s=%d", port.Label, port.Value), "", nil)
			}
			usedPorts[port.Value] = true
			port.HostNetwork = "default"
			network.ReservedPorts = append(network.ReservedPorts, port)
			p.ports = append(p.ports, api.PortMapping{Label: port.Label, Value: port.Value, To: port.To, HostIP: s.hostIP})
		}
	}
	for _, n := range tg.Networks {
		for _, port := range n.DynamicPorts {
			value, err := freePort(s.hostIP, usedPorts)
			if err != nil {
				return exhaust("network: dynamic port selection failed", "", nil)
			}
			usedPorts[value] = true
			port.Value = value
			if port.To == -1 {
				port.To = value
			}
			port.HostNetwork = "default"
			network.DynamicPorts = append(network.DynamicPorts, port)
			p.ports = append(p.ports, api.PortMapping{Label: port.Label, Value: port.Value, To: port.To, HostIP: s.hostIP})
		}
	}
	if len(tg.Networks) > 0 {
		p.network = network
	}

	for _, t := range tg.Tasks {
		if t.Resources == nil {
			continue
		}
		for _, d := range t.Resources.Devices {
			want := uint64(1)
			if d.Count != nil {
				want = *d.Count
			}
			got := &api.AllocatedDeviceResource{}
			for _, inst := range s.deviceInstances(d.Name) {
				if uint64(len(got.DeviceIDs)) == want {
					break
				}
				if usedDevices[inst.id] {
					continue
				}
				got.Vendor, got.Type, got.Name = inst.vendor, inst.typ, inst.name
				got.DeviceIDs = append(got.DeviceIDs, inst.id)
				usedDevices[inst.id] = true
			}
			if uint64(len(got.DeviceIDs)) < want {
				return exhaust("devices: no devices match request", "", nil)
			}
			p.devices[t.Name] = append(p.devices[t.Name], got)
		}
	}

	for _, t := range tg.Tasks {
		cpu, mem := taskAsk(t)
		if usedCPU+cpu > s.cpuTotal {
			return exhaust("cpu", t.Name, &api.Resources{CPU: new(cpu)})
		}
		if usedMem+mem > s.opts.MemoryTotalMB {
			return exhaust("memory", t.Name, &api.Resources{MemoryMB: new(mem)})
		}
		usedCPU += cpu
		usedMem += mem
	}

	score := float64(usedMem) / float64(s.opts.MemoryTotalMB)
	metric.ScoreMetaData = []*api.NodeScoreMeta{{NodeID: s.node.ID, NormScore: score, Scores: map[string]float64{"binpack": score}}}
	metric.AllocationTime = time.Since(start)
	return p, nil
}

func taskAsk(t *api.Task) (cpu, mem int) {
	if t.Resources == nil {
		return 0, 0
	}
	if t.Resources.CPU != nil {
		cpu = *t.Resources.CPU
	}
	if t.Resources.MemoryMB != nil {
		mem = *t.Resources.MemoryMB
	}
	return cpu, mem
}

func allocAsk(a *api.Allocation) (cpu, mem int) {
	for _, tr := range a.AllocatedResources.Tasks {
		cpu += int(tr.Cpu.CpuShares)
		mem += int(tr.Memory.MemoryMB)
	}
	return cpu, mem
}

// freePort asks the kernel for a free port, as a stand-in for Nomad's
// dynamic port range.
func freePort(ip string, used map[int]bool) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !used[port] {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port")
}

func datacenterMatches(patterns []string, dc string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, dc); ok {
			return true
		}
	}
	return false
}

func constraintString(c *api.Constraint) string {
	return fmt.Sprintf("%s %s %s", c.LTarget, c.Operand, c.RTarget)
}

// constraintHolds checks a constraint against the node, for the operators
// jobspecs use.
func (s *Server) constraintHolds(c *api.Constraint) bool {
	resolve := func(v string) (string, bool) {
		if strings.HasPrefix(v, "${") && strings.HasSuffix(v, "}") {
			return s.nodeValue(v[2 : len(v)-1])
		}
		return v, true
	}
	l, lok := resolve(c.LTarget)
	r, rok := resolve(c.RTarget)
	switch c.Operand {
	case "", "=", "==", "is":
		return lok && rok && l == r
	case "!=", "not":
		return l != r || lok != rok
	case "is_set":
		return lok
	case "is_not_set":
		return !lok
	case "regexp":
		re, err := regexp.Compile(r)
		return lok && err == nil && re.MatchString(l)
	case "version", "semver":
		return lok && versionMatches(l, r)
	case "set_contains", "set_contains_all":
		have := strings.Split(l, ",")
		for _, w := range strings.Split(r, ",") {
			if !slices.Contains(have, strings.TrimSpace(w)) {
				return false
			}
		}
		return lok
	case "set_contains_any":
		have := strings.Split(l, ",")
		for _, w := range strings.Split(r, ",") {
			if slices.Contains(have, strings.TrimSpace(w)) {
				return lok
			}
		}
		return false
	case "distinct_hosts", "distinct_property":
		return true
	case "<", "<=", ">", ">=":
		return lok && rok && compareOrdered(l, r, c.Operand)
	}
	return false
}

func compareOrdered(l, r, op string) bool {
	lf, lerr := strconv.ParseFloat(l, 64)
	rf, rerr := strconv.ParseFloat(r, 64)
	var cmp int
	if lerr == nil && rerr == nil {
		switch {
		case lf < rf:
			cmp = -1
		case lf > rf:
			cmp = 1
		}
	} else {
		cmp = strings.Compare(l, r)
	}
	switch op {
	case "<":
		return cmp < 0
	case "<=":
		return cmp <= 0
	case ">":
		return cmp > 0
	}
	return cmp >= 0
}

// versionMatches checks "2.0.6-dev" against constraints like ">= 1.8.0,
// < 3".
func versionMatches(v, constraints string) bool {
	have := parseVersion(v)
	for _, c := range strings.Split(constraints, ",") {
		c = strings.TrimSpace(c)
		op := "="
		for _, candidate := range []string{">=", "<=", "!=", "~>", ">", "<", "="} {
			if strings.HasPrefix(c, candidate) {
				op, c = candidate, strings.TrimSpace(c[len(candidate):])
				break
			}
		}
		want := parseVersion(c)
		cmp := 0
		for i := range 3 {
			if have[i] != want[i] {
				cmp = 1
				if have[i] < want[i] {
					cmp = -1
				}
				break
			}
		}
		ok := false
		switch op {
		case "=":
			ok = cmp == 0
		case "!=":
			ok = cmp != 0
		case ">":
			ok = cmp > 0
		case ">=", "~>":
			ok = cmp >= 0
		case "<":
			ok = cmp < 0
		case "<=":
			ok = cmp <= 0
		}
		if !ok {
			return false
		}
	}
	return true
}

func parseVersion(v string) [3]int {
	var out [3]int
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
	for i, part := range strings.SplitN(v, ".", 3) {
		out[i], _ = strconv.Atoi(part)
	}
	return out
}

type deviceInstance struct {
	vendor, typ, name, id string
}

// deviceInstances lists the node's device instances a request name
// ("gpu", "nvidia/gpu" or "nvidia/gpu/<model>") matches.
func (s *Server) deviceInstances(request string) []deviceInstance {
	parts := strings.Split(request, "/")
	var out []deviceInstance
	for _, inst := range s.devices {
		var ok bool
		switch len(parts) {
		case 1:
			ok = parts[0] == inst.typ
		case 2:
			ok = parts[0] == inst.vendor && parts[1] == inst.typ
		case 3:
			ok = parts[0] == inst.vendor && parts[1] == inst.typ && parts[2] == inst.name
		}
		if ok {
			out = append(out, inst)
		}
	}
	return out
}

// applyPlan commits a plan: stops, then placements, then the evaluation's
// outcome (and a blocked evaluation for what could not be placed).
func (s *Server) applyPlan(eval *api.Evaluation, job *api.Job, plan *schedPlan) {
	if len(plan.stops) > 0 || len(plan.places) > 0 {
		idx := s.commit(tableAllocs)
		for _, st := range plan.stops {
			s.stopAllocLocked(st.rec, st.desc, idx)
		}
		for _, p := range plan.places {
			s.createAllocLocked(eval, job, p, idx)
		}
		s.refreshJob(eval.JobID, idx)
		if len(plan.stops) > 0 {
			s.capacityChangedLocked()
		}
	}

	idx := s.commit(tableEvals)
	eval.ModifyIndex, eval.ModifyTime, eval.SnapshotIndex = idx, time.Now().UnixNano(), idx-1
	eval.PlanAnnotations = &api.PlanAnnotations{DesiredTGUpdates: plan.updates}
	eval.QueuedAllocations = plan.queued
	if len(plan.failed) == 0 {
		eval.Status = evalComplete
		eval.FailedTGAllocs = nil
		eval.QueuedAllocations = plan.queued
		// A successful evaluation cancels the job's blocked ones.
		for _, other := range s.jobEvals(eval.JobID) {
			if other.Status == evalBlocked && other.ID != eval.ID {
				other.Status = evalCanceled
				other.StatusDescription = fmt.Sprintf("evaluation %q successful", eval.ID)
				other.ModifyIndex, other.ModifyTime = idx, eval.ModifyTime
			}
		}
	} else {
		eval.FailedTGAllocs = plan.failed
		if eval.Status == evalBlocked {
			// A retried blocked evaluation stays blocked.
			eval.StatusDescription = "created to place remaining allocations"
		} else {
			eval.Status = evalComplete
			blocked := &api.Evaluation{
				ID:                newUUID(),
				Namespace:         eval.Namespace,
				Priority:          eval.Priority,
				Type:              eval.Type,
				TriggeredBy:       "queued-allocs",
				JobID:             eval.JobID,
				JobModifyIndex:    eval.JobModifyIndex,
				Status:            evalBlocked,
				StatusDescription: "created to place remaining allocations",
				PreviousEval:      eval.ID,
				FailedTGAllocs:    plan.failed,
				ClassEligibility:  map[string]bool{"v1:" + s.nodeClassHash: !constraintFailure(plan.failed)},
				QueuedAllocations: plan.queued,
				SnapshotIndex:     idx - 1,
				CreateIndex:       idx,
				ModifyIndex:       idx,
				CreateTime:        eval.ModifyTime,
				ModifyTime:        eval.ModifyTime,
			}
			for _, other := range s.jobEvals(eval.JobID) {
				if other.Status == evalBlocked {
					other.Status = evalCanceled
					other.StatusDescription = fmt.Sprintf("evaluation %q superseded by %q", other.ID, blocked.ID)
					other.ModifyIndex, other.ModifyTime = idx, eval.ModifyTime
				}
			}
			eval.BlockedEval = blocked.ID
			s.evals[blocked.ID] = blocked
		}
	}
	s.refreshJob(eval.JobID, idx)
}

func constraintFailure(failed map[string]*api.AllocationMetric) bool {
	for _, m := range failed {
		if len(m.ConstraintFiltered) > 0 || m.NodesEvaluated == 0 {
			return true
		}
	}
	return false
}

// capacityChangedLocked retries blocked evaluations that waited for
// resources, as Nomad's blocked-evals tracker does when capacity frees up.
func (s *Server) capacityChangedLocked() {
	ids := make([]string, 0)
	for id, e := range s.evals {
		if e.Status == evalBlocked && !constraintFailure(e.FailedTGAllocs) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		s.enqueueEvalLocked(id)
	}
}

// stopAllocLocked tells an allocation to stop (DesiredStatus "stop"); its
// client status follows once its tasks are gone.
func (s *Server) stopAllocLocked(rec *allocRecord, desc string, idx uint64) {
	a := rec.alloc
	a.DesiredStatus, a.DesiredDescription = desiredStop, desc
	a.AllocModifyIndex = idx
	touchAlloc(a, idx)
	if rec.runner != nil {
		rec.runner.stop()
	}
}

func (s *Server) createAllocLocked(eval *api.Evaluation, job *api.Job, p placement, idx uint64) {
	now := time.Now().UnixNano()
	snapshot := copyJob(job)
	a := &api.Allocation{
		ID:            newUUID(),
		Namespace:     *job.Namespace,
		EvalID:        eval.ID,
		Name:          p.name,
		NodeID:        s.node.ID,
		NodeName:      s.node.Name,
		JobID:         *job.ID,
		Job:           snapshot,
		TaskGroup:     *p.group.Name,
		DesiredStatus: desiredRun,
		ClientStatus:  allocPending,
		Metrics:       p.metric,
		//lint:ignore SA1019 real Nomad still sends the deprecated fields
		TaskResources: map[string]*api.Resources{},
		AllocatedResources: &api.AllocatedResources{
			Tasks: map[string]*api.AllocatedTaskResources{},
		},
		CreateIndex:      idx,
		ModifyIndex:      idx,
		AllocModifyIndex: idx,
		CreateTime:       now,
		ModifyTime:       now,
	}
	for _, tg := range snapshot.TaskGroups {
		if *tg.Name == a.TaskGroup {
			p.group = tg
		}
	}
	var disk int
	if p.group.EphemeralDisk != nil && p.group.EphemeralDisk.SizeMB != nil {
		disk = *p.group.EphemeralDisk.SizeMB
	}
	shared := &a.AllocatedResources.Shared
	shared.DiskMB = int64(disk)
	shared.Ports = p.ports
	if p.network != nil {
		shared.Networks = []*api.NetworkResource{p.network}
	}
	var totalCPU, totalMem, totalMax int
	for _, t := range p.group.Tasks {
		cpu, mem := taskAsk(t)
		maxMem := mem
		if t.Resources != nil && t.Resources.MemoryMaxMB != nil && *t.Resources.MemoryMaxMB > 0 {
			maxMem = *t.Resources.MemoryMaxMB
		}
		totalCPU, totalMem, totalMax = totalCPU+cpu, totalMem+mem, totalMax+maxMem
		//lint:ignore SA1019 real Nomad still sends the deprecated fields
		a.TaskResources[t.Name] = &api.Resources{CPU: new(cpu), MemoryMB: new(mem)}
		atr := &api.AllocatedTaskResources{
			Cpu:     api.AllocatedCpuResources{CpuShares: int64(cpu)},
			Memory:  api.AllocatedMemoryResources{MemoryMB: int64(mem)},
			Devices: p.devices[t.Name],
		}
		if maxMem != mem {
			atr.Memory.MemoryMaxMB = int64(maxMem)
		}
		a.AllocatedResources.Tasks[t.Name] = atr
	}
	//lint:ignore SA1019 real Nomad still sends the deprecated fields
	a.Resources = &api.Resources{CPU: new(totalCPU), MemoryMB: new(totalMem), MemoryMaxMB: new(totalMax), DiskMB: new(disk)}
	if p.network != nil {
		//lint:ignore SA1019 real Nomad still sends the deprecated fields
		a.Resources.Networks = []*api.NetworkResource{p.network}
	}
	if p.prev != nil {
		prev := p.prev.alloc
		a.PreviousAllocation = prev.ID
		prev.NextAllocation = a.ID
		tracker := &api.RescheduleTracker{}
		if prev.RescheduleTracker != nil {
			tracker.Events = append(tracker.Events, prev.RescheduleTracker.Events...)
		}
		tracker.Events = append(tracker.Events, &api.RescheduleEvent{RescheduleTime: now, PrevAllocID: prev.ID, PrevNodeID: prev.NodeID})
		a.RescheduleTracker = tracker
	}
	rec := &allocRecord{alloc: a}
	s.allocs[a.ID] = rec
	s.checkInvariantLocked(job, fmt.Sprintf("placed allocation %s", shortID(a.ID)))
	s.startAllocRunner(rec)
}

// maybeRescheduleLocked schedules the replacement of a failed allocation
// when the group's reschedule policy allows one (never with attempts = 0
// and unlimited = false).
func (s *Server) maybeRescheduleLocked(rec *allocRecord) {
	a := rec.alloc
	if a.ClientStatus != allocFailed || a.DesiredStatus != desiredRun || a.FollowupEvalID != "" || rec.hidden {
		return
	}
	jr, ok := s.jobs[a.JobID]
	if !ok || *jr.job.Stop {
		return
	}
	var policy *api.ReschedulePolicy
	for _, tg := range a.Job.TaskGroups {
		if *tg.Name == a.TaskGroup {
			policy = tg.ReschedulePolicy
		}
	}
	if policy == nil {
		return
	}
	attempts := 0
	if a.RescheduleTracker != nil {
		attempts = len(a.RescheduleTracker.Events)
	}
	unlimited := policy.Unlimited != nil && *policy.Unlimited
	if !unlimited && (policy.Attempts == nil || attempts >= *policy.Attempts) {
		return
	}
	delay := time.Duration(0)
	if policy.Delay != nil {
		delay = *policy.Delay
	}
	if policy.DelayFunction != nil && *policy.DelayFunction != "constant" {
		for range attempts {
			delay *= 2
		}
		if policy.MaxDelay != nil && *policy.MaxDelay > 0 {
			delay = min(delay, *policy.MaxDelay)
		}
	}
	eval := s.newEval(jr.job, "alloc-failure")
	eval.WaitUntil = time.Now().Add(delay)
	idx := s.commit(tableEvals, tableAllocs)
	eval.CreateIndex, eval.ModifyIndex, eval.JobModifyIndex = idx, idx, *jr.job.JobModifyIndex
	s.evals[eval.ID] = eval
	a.FollowupEvalID = eval.ID
	touchAlloc(a, idx)
	s.refreshJob(a.JobID, idx)
	s.afterLocked(delay, func() {
		rec.rescheduled = true
		s.enqueueEvalLocked(eval.ID)
	})
}

// afterLocked runs fn under s.mu after d, unless the server stopped.
func (s *Server) afterLocked(d time.Duration, fn func()) {
	t := time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ctx.Err() == nil {
			fn()
		}
	})
	s.timers = append(s.timers, t)
}

// checkInvariantLocked records a violation of invariant 1 (one model at a
// time) when job is a managed job and another managed job still has an
// allocation that is not terminal on the client or a process alive.
func (s *Server) checkInvariantLocked(job *api.Job, what string) {
	if !isManaged(job) {
		return
	}
	ids := make([]string, 0, len(s.allocs))
	for id := range s.allocs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rec := s.allocs[id]
		if rec.alloc.JobID == *job.ID || !isManaged(rec.alloc.Job) || !liveAlloc(rec) {
			continue
		}
		s.violations = append(s.violations, fmt.Sprintf(
			"invariant 1 (one model at a time): managed job %q %s at index %d while managed job %q has allocation %s not terminal (client status %q, desired %q)",
			*job.ID, what, s.index, rec.alloc.JobID, shortID(rec.alloc.ID), rec.alloc.ClientStatus, rec.alloc.DesiredStatus))
	}
}
