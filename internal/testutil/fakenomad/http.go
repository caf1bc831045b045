package fakenomad

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// HTTP conventions of the Nomad agent (command/agent/http.go), recorded
// against v2.0.6:
//
//   - reads answer X-Nomad-Index (the index of the tables read),
//     X-Nomad-Knownleader: true and X-Nomad-Lastcontact: 0; writes answer
//     X-Nomad-Index only; /v1/jobs/parse answers neither.
//   - ?index=N&wait=D blocks until the index passes N or D (default 5m,
//     at most 5m) plus up to D/16 of jitter has passed, then answers the
//     current data and index (the same index when nothing changed).
//     ?index=abc is a 400 "Invalid index", ?wait=x a 400 "Invalid wait
//     time".
//   - errors are plain text: 404 "job not found", 404 "alloc not found",
//     500 "alloc lookup failed: index error: UUID must be 36 characters"
//     for a short ID, 500 `Failed to parse value of "meta" (notabool) as a
//     bool: ...` for a bad boolean, 405 "Invalid method", and an empty 404
//     for an unknown path.

const (
	defaultQueryTime = 5 * time.Minute
	maxQueryTime     = 5 * time.Minute
)

type codedError struct {
	code int
	msg  string
}

func (e *codedError) Error() string { return e.msg }

func coded(code int, format string, args ...any) error {
	return &codedError{code: code, msg: fmt.Sprintf(format, args...)}
}

var errInvalidMethod = coded(http.StatusMethodNotAllowed, "Invalid method")

// errNoResponse means the handler already answered (or the client left).
var errNoResponse = errors.New("no response")

type handlerFunc func(w http.ResponseWriter, r *http.Request) (any, error)

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := s.route(r.URL.Path)
	if h == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	out, err := h(w, r)
	if errors.Is(err, errNoResponse) {
		return
	}
	if err != nil {
		code := http.StatusInternalServerError
		var ce *codedError
		if errors.As(err, &ce) {
			code = ce.code
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(err.Error()))
		return
	}
	if out == nil {
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(err.Error()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (s *Server) route(p string) handlerFunc {
	switch p {
	case "/v1/jobs":
		return s.handleJobs
	case "/v1/jobs/parse":
		return s.handleParse
	case "/v1/allocations":
		return s.handleAllocations
	case "/v1/evaluations":
		return s.handleEvaluations
	case "/v1/nodes":
		return s.handleNodes
	case "/v1/client/stats":
		return s.handleClientStats
	case "/v1/status/leader":
		return func(http.ResponseWriter, *http.Request) (any, error) { return "127.0.0.1:4647", nil }
	case "/v1/status/peers":
		return func(http.ResponseWriter, *http.Request) (any, error) { return []string{"127.0.0.1:4647"}, nil }
	case "/v1/regions":
		return func(http.ResponseWriter, *http.Request) (any, error) { return []string{"global"}, nil }
	case "/v1/agent/self":
		return s.handleAgentSelf
	case "/v1/agent/health":
		return func(http.ResponseWriter, *http.Request) (any, error) {
			ok := map[string]any{"ok": true, "message": "ok"}
			return map[string]any{"client": ok, "server": ok}, nil
		}
	}
	switch {
	case strings.HasPrefix(p, "/v1/job/"):
		return s.handleJob
	case strings.HasPrefix(p, "/v1/allocation/"):
		return s.handleAllocation
	case strings.HasPrefix(p, "/v1/evaluation/"):
		return s.handleEvaluation
	case strings.HasPrefix(p, "/v1/node/"):
		return s.handleNode
	case strings.HasPrefix(p, "/v1/client/fs/logs/"):
		return s.handleLogs
	}
	return nil
}

// query answers a read over tables, blocking first when the request has
// ?index=; read runs under s.mu.
func (s *Server) query(w http.ResponseWriter, r *http.Request, tables []string, read func() (any, error)) (any, error) {
	q := r.URL.Query()
	var minIndex uint64
	wait := defaultQueryTime
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, coded(http.StatusBadRequest, "Invalid wait time")
		}
		wait = d
	}
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, coded(http.StatusBadRequest, "Invalid index")
		}
		minIndex = n
	}
	if minIndex > 0 {
		if wait <= 0 {
			wait = defaultQueryTime
		}
		wait = min(wait, maxQueryTime)
		wait += time.Duration(rand.Int64N(int64(wait/16) + 1))
		timer := time.NewTimer(wait)
		defer timer.Stop()
	WAIT:
		for {
			s.mu.Lock()
			if s.tableIndex(tables...) > minIndex {
				s.mu.Unlock()
				break
			}
			ch := s.changed
			s.mu.Unlock()
			select {
			case <-ch:
			case <-timer.C:
				break WAIT
			case <-r.Context().Done():
				return nil, errNoResponse
			case <-s.ctx.Done():
				return nil, coded(http.StatusServiceUnavailable, "agent shutting down")
			}
		}
	}
	s.mu.Lock()
	idx := s.tableIndex(tables...)
	out, err := read()
	s.mu.Unlock()
	h := w.Header()
	h.Set("X-Nomad-Index", strconv.FormatUint(idx, 10))
	h.Set("X-Nomad-KnownLeader", "true")
	h.Set("X-Nomad-LastContact", "0")
	return out, err
}

func setWriteIndex(w http.ResponseWriter, idx uint64) {
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(idx, 10))
}

func parseBool(r *http.Request, field string) (bool, error) {
	v := r.URL.Query().Get(field)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		//lint:ignore ST1005 the body is Nomad's exact wire text
		return false, fmt.Errorf("Failed to parse value of %q (%v) as a bool: %v", field, v, err)
	}
	return b, nil
}

func decodeBody(r *http.Request, out any) error {
	if err := json.NewDecoder(r.Body).Decode(out); err != nil {
		return coded(http.StatusBadRequest, "%s", err.Error())
	}
	return nil
}

func isWrite(r *http.Request) bool { return r.Method == http.MethodPut || r.Method == http.MethodPost }

func (s *Server) handleParse(_ http.ResponseWriter, r *http.Request) (any, error) {
	if !isWrite(r) {
		return nil, errInvalidMethod
	}
	var req api.JobsParseRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.JobHCL == "" {
		return nil, coded(http.StatusBadRequest, "Job spec is empty")
	}
	job, err := parseJobspec(req.JobHCL, req.Variables)
	if err != nil {
		return nil, coded(http.StatusBadRequest, "Failed to parse job: %v", err)
	}
	if req.Canonicalize {
		job.Canonicalize()
	}
	return job, nil
}

func (s *Server) handleJobs(w http.ResponseWriter, r *http.Request) (any, error) {
	switch {
	case r.Method == http.MethodGet:
		withMeta, err := parseBool(r, "meta")
		if err != nil {
			return nil, err
		}
		filter, err := parseFilter(r.URL.Query().Get("filter"))
		if err != nil {
			return nil, err
		}
		prefix := r.URL.Query().Get("prefix")
		return s.query(w, r, []string{tableJobs, tableSummary}, func() (any, error) {
			out := []*api.JobListStub{}
			for id, rec := range s.jobs {
				if !strings.HasPrefix(id, prefix) {
					continue
				}
				stub := s.jobStub(rec, true)
				if !filter.matches(stub) {
					continue
				}
				if !withMeta {
					stub.Meta = nil
				}
				out = append(out, stub)
			}
			sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
			return out, nil
		})
	case isWrite(r):
		return s.handleRegister(w, r, "")
	}
	return nil, errInvalidMethod
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request, jobID string) (any, error) {
	var req api.JobRegisterRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Job == nil {
		return nil, coded(http.StatusBadRequest, "Job must be specified")
	}
	if req.Job.ID == nil {
		return nil, coded(http.StatusBadRequest, "Job ID hasn't been provided")
	}
	if jobID != "" && *req.Job.ID != jobID {
		return nil, coded(http.StatusBadRequest, "Job ID does not match name")
	}
	resp, err := s.registerJob(&req)
	if err != nil {
		return nil, err
	}
	setWriteIndex(w, resp.Index)
	return resp, nil
}

func (s *Server) handleJob(w http.ResponseWriter, r *http.Request) (any, error) {
	rest := strings.TrimPrefix(r.URL.Path, "/v1/job/")
	for _, suffix := range []string{"/allocations", "/evaluations", "/plan", "/summary", "/versions"} {
		if id, ok := strings.CutSuffix(rest, suffix); ok {
			switch suffix {
			case "/allocations":
				return s.handleJobAllocations(w, r, id)
			case "/evaluations":
				return s.handleJobEvaluations(w, r, id)
			case "/plan":
				return s.handlePlan(w, r, id)
			case "/summary":
				return s.handleJobSummary(w, r, id)
			case "/versions":
				return s.handleJobVersions(w, r, id)
			}
		}
	}
	switch {
	case r.Method == http.MethodGet:
		return s.query(w, r, []string{tableJobs}, func() (any, error) {
			rec, ok := s.jobs[rest]
			if !ok {
				return nil, coded(http.StatusNotFound, "job not found")
			}
			return copyJob(rec.job), nil
		})
	case isWrite(r):
		return s.handleRegister(w, r, rest)
	case r.Method == http.MethodDelete:
		purge, err := parseBool(r, "purge")
		if err != nil {
			return nil, err
		}
		if _, err := parseBool(r, "global"); err != nil {
			return nil, err
		}
		if v := r.URL.Query().Get("no_shutdown_delay"); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				//lint:ignore ST1005 the body is Nomad's exact wire text
				return nil, fmt.Errorf("Failed to parse value of %qq (%v) as a bool: %v", "no_shutdown_delay", v, err)
			}
		}
		resp := s.deregisterJob(rest, purge)
		setWriteIndex(w, resp.Index)
		return resp, nil
	}
	return nil, errInvalidMethod
}

func (s *Server) handleJobAllocations(w http.ResponseWriter, r *http.Request, jobID string) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	return s.query(w, r, []string{tableAllocs}, func() (any, error) {
		out := []*api.AllocationListStub{}
		for _, rec := range s.jobAllocs(jobID, false) {
			out = append(out, copyValue(allocStub(rec.alloc)))
		}
		return out, nil
	})
}

func (s *Server) handleJobEvaluations(w http.ResponseWriter, r *http.Request, jobID string) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	return s.query(w, r, []string{tableEvals}, func() (any, error) {
		out := []*api.Evaluation{}
		for _, e := range s.jobEvals(jobID) {
			out = append(out, copyValue(e))
		}
		return out, nil
	})
}

func (s *Server) handleJobSummary(w http.ResponseWriter, r *http.Request, jobID string) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	return s.query(w, r, []string{tableSummary}, func() (any, error) {
		rec, ok := s.jobs[jobID]
		if !ok {
			return nil, coded(http.StatusNotFound, "job not found")
		}
		return s.summary(rec), nil
	})
}

func (s *Server) handleJobVersions(w http.ResponseWriter, r *http.Request, jobID string) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	return s.query(w, r, []string{tableJobs}, func() (any, error) {
		rec, ok := s.jobs[jobID]
		if !ok {
			return nil, coded(http.StatusNotFound, "job versions not found")
		}
		return map[string]any{"Versions": []*api.Job{copyJob(rec.job)}, "Diffs": nil, "Index": s.tableIndex(tableJobs)}, nil
	})
}

func (s *Server) handlePlan(w http.ResponseWriter, r *http.Request, jobID string) (any, error) {
	if !isWrite(r) {
		return nil, errInvalidMethod
	}
	var req api.JobPlanRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Job == nil {
		return nil, coded(http.StatusBadRequest, "Job must be specified")
	}
	if req.Job.ID == nil {
		return nil, coded(http.StatusBadRequest, "Job must have a valid ID")
	}
	if jobID != "" && *req.Job.ID != jobID {
		return nil, coded(http.StatusBadRequest, "Job ID does not match")
	}
	resp, err := s.planJob(req.Job, req.Diff)
	if err != nil {
		return nil, err
	}
	setWriteIndex(w, resp.Index)
	return resp, nil
}

// checkUUID reproduces the state store's lookup error for an ID that is
// not a full UUID.
func checkUUID(kind, id string) error {
	if len(id) != 36 {
		return fmt.Errorf("%s lookup failed: index error: UUID must be 36 characters", kind)
	}
	return nil
}

func (s *Server) handleAllocation(w http.ResponseWriter, r *http.Request) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	id := strings.TrimPrefix(r.URL.Path, "/v1/allocation/")
	if err := checkUUID("alloc", id); err != nil {
		return nil, err
	}
	return s.query(w, r, []string{tableAllocs}, func() (any, error) {
		rec, ok := s.allocs[id]
		if !ok || rec.hidden {
			return nil, coded(http.StatusNotFound, "alloc not found")
		}
		return copyValue(rec.alloc), nil
	})
}

func (s *Server) handleAllocations(w http.ResponseWriter, r *http.Request) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	prefix := r.URL.Query().Get("prefix")
	return s.query(w, r, []string{tableAllocs}, func() (any, error) {
		out := []*api.AllocationListStub{}
		for id, rec := range s.allocs {
			if !rec.hidden && strings.HasPrefix(id, prefix) {
				out = append(out, copyValue(allocStub(rec.alloc)))
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		return out, nil
	})
}

func (s *Server) handleEvaluation(w http.ResponseWriter, r *http.Request) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	rest := strings.TrimPrefix(r.URL.Path, "/v1/evaluation/")
	if id, ok := strings.CutSuffix(rest, "/allocations"); ok {
		if err := checkUUID("eval", id); err != nil {
			return nil, err
		}
		return s.query(w, r, []string{tableAllocs}, func() (any, error) {
			out := []*api.AllocationListStub{}
			for _, rec := range s.allocs {
				if !rec.hidden && rec.alloc.EvalID == id {
					out = append(out, copyValue(allocStub(rec.alloc)))
				}
			}
			return out, nil
		})
	}
	if err := checkUUID("eval", rest); err != nil {
		return nil, err
	}
	related, _ := parseBool(r, "related")
	return s.query(w, r, []string{tableEvals}, func() (any, error) {
		e, ok := s.evals[rest]
		if !ok {
			return nil, coded(http.StatusNotFound, "eval not found")
		}
		out := copyValue(e)
		if related {
			for _, other := range s.jobEvals(e.JobID) {
				if other.ID == e.ID || (other.PreviousEval != e.ID && e.PreviousEval != other.ID && e.BlockedEval != other.ID) {
					continue
				}
				out.RelatedEvals = append(out.RelatedEvals, &api.EvaluationStub{
					ID: other.ID, Namespace: other.Namespace, Priority: other.Priority, Type: other.Type,
					TriggeredBy: other.TriggeredBy, JobID: other.JobID, Status: other.Status,
					StatusDescription: other.StatusDescription, PreviousEval: other.PreviousEval,
					BlockedEval: other.BlockedEval, CreateIndex: other.CreateIndex, ModifyIndex: other.ModifyIndex,
					CreateTime: other.CreateTime, ModifyTime: other.ModifyTime,
				})
			}
		}
		return out, nil
	})
}

func (s *Server) handleEvaluations(w http.ResponseWriter, r *http.Request) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	prefix := r.URL.Query().Get("prefix")
	return s.query(w, r, []string{tableEvals}, func() (any, error) {
		out := []*api.Evaluation{}
		for id, e := range s.evals {
			if strings.HasPrefix(id, prefix) {
				out = append(out, copyValue(e))
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].CreateIndex > out[j].CreateIndex })
		return out, nil
	})
}

func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	return s.query(w, r, []string{tableNodes}, func() (any, error) {
		n := s.node
		return []*api.NodeListStub{{
			Address:               s.hostIP,
			ID:                    n.ID,
			Datacenter:            n.Datacenter,
			Name:                  n.Name,
			NodeClass:             n.NodeClass,
			NodePool:              n.NodePool,
			Version:               "2.0.6-dev",
			SchedulingEligibility: n.SchedulingEligibility,
			Status:                n.Status,
			Drivers:               n.Drivers,
			CreateIndex:           n.CreateIndex,
			ModifyIndex:           n.ModifyIndex,
		}}, nil
	})
}

func (s *Server) handleNode(w http.ResponseWriter, r *http.Request) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	rest := strings.TrimPrefix(r.URL.Path, "/v1/node/")
	if id, ok := strings.CutSuffix(rest, "/allocations"); ok {
		return s.query(w, r, []string{tableAllocs}, func() (any, error) {
			out := []*api.Allocation{}
			if id == s.node.ID {
				for _, rec := range s.allocs {
					if !rec.hidden {
						out = append(out, copyValue(rec.alloc))
					}
				}
			}
			return out, nil
		})
	}
	if err := checkUUID("node", rest); err != nil {
		return nil, err
	}
	return s.query(w, r, []string{tableNodes}, func() (any, error) {
		if rest != s.node.ID {
			return nil, coded(http.StatusNotFound, "node not found")
		}
		return s.node, nil
	})
}

// handleClientStats answers the node's host stats; Memory.Available is the
// signal of the orchestrator's memory barrier (Nomad fills it from
// /proc/meminfo MemAvailable).
func (s *Server) handleClientStats(w http.ResponseWriter, r *http.Request) (any, error) {
	if r.Method != http.MethodGet {
		return nil, errInvalidMethod
	}
	if id := r.URL.Query().Get("node_id"); id != "" && id != s.node.ID {
		return nil, coded(http.StatusNotFound, "Unknown node %q", id)
	}
	return &api.HostStats{
		Memory:           s.hostMemory(),
		CPU:              []*api.HostCPUStats{},
		DiskStats:        []*api.HostDiskStats{},
		AllocDirStats:    &api.HostDiskStats{Mountpoint: s.dataDir},
		Uptime:           uint64(time.Since(s.started).Seconds()),
		CPUTicksConsumed: 0,
	}, nil
}

// handleLogs serves a task's stdout or stderr: plain text with plain=true,
// otherwise the framed stream api.AllocFS.Logs reads (one frame, then EOF;
// follow is not supported).
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) (any, error) {
	id := strings.TrimPrefix(r.URL.Path, "/v1/client/fs/logs/")
	q := r.URL.Query()
	task, typ := q.Get("task"), q.Get("type")
	if typ != "stdout" && typ != "stderr" {
		return nil, coded(http.StatusBadRequest, "must provide log type (stdout, stderr)")
	}
	s.mu.Lock()
	rec, ok := s.allocs[id]
	var started bool
	var dir string
	if ok {
		ts := rec.alloc.TaskStates[task]
		started = ts != nil && !ts.StartedAt.IsZero()
		if rec.runner != nil {
			dir = rec.runner.dir
		}
	}
	s.mu.Unlock()
	if !ok {
		return nil, coded(http.StatusNotFound, "Unknown allocation %q", id)
	}
	if !started {
		return nil, coded(http.StatusNotFound, "task %q not started yet. No logs available", task)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "alloc", "logs", task+"."+typ+".0"))
	if plain, _ := strconv.ParseBool(q.Get("plain")); plain {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(data)
		return nil, errNoResponse
	}
	w.Header().Set("Content-Type", "application/json")
	if len(data) > 0 {
		frame := &api.StreamFrame{Data: data, File: "alloc/logs/" + task + "." + typ + ".0", Offset: int64(len(data))}
		_ = json.NewEncoder(w).Encode(frame)
	}
	return nil, errNoResponse
}

func (s *Server) handleAgentSelf(http.ResponseWriter, *http.Request) (any, error) {
	return map[string]any{
		"config": map[string]any{
			"Region":     "global",
			"Datacenter": s.node.Datacenter,
			"NodeName":   "",
			"DevMode":    true,
			"Version": map[string]any{
				"Revision":          "aa026cc99cfb74a77e519a1c1f0c78ba1b452705",
				"Version":           "2.0.6",
				"VersionMetadata":   "",
				"VersionPrerelease": "dev",
			},
		},
		"member": map[string]any{
			"Name":   s.node.Name + ".global",
			"Addr":   s.hostIP,
			"Port":   4648,
			"Status": "alive",
			"Tags": map[string]string{
				"role": "nomad", "region": "global", "dc": s.node.Datacenter, "build": "2.0.6-dev",
				"port": "4647", "rpc_addr": s.hostIP, "bootstrap": "1", "expect": "1", "raft_vsn": "3", "vsn": "1",
			},
		},
		"stats": map[string]any{
			"client": map[string]string{"node_id": s.node.ID, "known_servers": s.hostIP + ":4647"},
			"nomad":  map[string]string{"leader": "true", "server": "true", "bootstrap": "true"},
		},
	}, nil
}

// copyValue deep-copies an API object so callers never share state with
// the store.
func copyValue[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}
