package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

// health is liveness plus a readiness summary; it needs no key.
func (s *Server) health(r *http.Request) (any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	out := map[string]any{"status": "ok", "redis": "ok"}
	if err := s.store.Client().Ping(ctx).Err(); err != nil {
		out["status"], out["redis"] = "unavailable", err.Error()
		return statusValue{http.StatusServiceUnavailable, out}, nil
	}
	leader, err := s.store.Leader(ctx, s.cfg.Orchestrator.Slot)
	if err == nil {
		out["leader_present"] = leader != ""
	}
	if st, err := s.store.State(ctx, s.cfg.Orchestrator.Slot); err == nil && st != nil {
		out["active_model"] = st.Active
		out["phase"] = st.Phase
	}
	return out, nil
}

// statusView is GET /status.
type statusView struct {
	Slot       string               `json:"slot"`
	Leader     string               `json:"leader"`
	State      *jobstore.SlotState  `json:"state"`
	LastSwitch *switchView          `json:"last_switch,omitempty"`
	Admin      jobstore.AdminState  `json:"admin"`
	QueueView  map[string]queueView `json:"queues"`
}

type queueView struct {
	Pending       int     `json:"pending"`
	OldestWaitSec float64 `json:"oldest_wait_seconds"`
}

// switchView renders a switch's per-step timings in seconds for people.
type switchView struct {
	From         string  `json:"from"`
	To           string  `json:"to"`
	Reason       string  `json:"reason"`
	Adopted      bool    `json:"adopted,omitempty"`
	PreflightSec float64 `json:"preflight_seconds"`
	DrainSec     float64 `json:"drain_seconds"`
	StopSec      float64 `json:"stop_seconds"`
	MemorySec    float64 `json:"memory_wait_seconds"`
	StartSec     float64 `json:"start_seconds"`
	CanarySec    float64 `json:"canary_seconds"`
	TotalSec     float64 `json:"total_seconds"`
	Error        string  `json:"error,omitempty"`
}

// status shows the slot as the leader published it, and the queues.
func (s *Server) status(r *http.Request) (any, error) {
	ctx := r.Context()
	slot := s.cfg.Orchestrator.Slot
	st, err := s.store.State(ctx, slot)
	if err != nil {
		return nil, err
	}
	leader, err := s.store.Leader(ctx, slot)
	if err != nil {
		return nil, err
	}
	queues, err := s.store.Snapshot(ctx, s.cfg.ModelNames())
	if err != nil {
		return nil, err
	}
	admin, err := s.store.Admin(ctx, slot)
	if err != nil {
		return nil, err
	}
	v := statusView{Slot: slot, Leader: leader, State: st, Admin: admin, QueueView: map[string]queueView{}}
	now := time.Now()
	for m, q := range queues {
		qv := queueView{Pending: q.Pending}
		if !q.HeadSince.IsZero() {
			qv.OldestWaitSec = now.Sub(q.HeadSince).Seconds()
		}
		v.QueueView[m] = qv
	}
	if st != nil && st.LastSwitch != nil {
		ls := st.LastSwitch
		v.LastSwitch = &switchView{From: ls.From, To: ls.To, Reason: ls.Reason, Adopted: ls.Adopted,
			PreflightSec: ls.Preflight.Seconds(), DrainSec: ls.Drain.Seconds(), StopSec: ls.Stop.Seconds(),
			MemorySec: ls.Memory.Seconds(), StartSec: ls.Start.Seconds(), CanarySec: ls.Canary.Seconds(),
			TotalSec: ls.Total.Seconds(), Error: ls.Error}
	}
	return v, nil
}

// modelObject is an entry of GET /v1/models, OpenAI's shape plus state.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Switchboard extensions.
	Root    string `json:"root"`
	Active  bool   `json:"active"`
	Loading bool   `json:"loading"`
	Queued  int    `json:"queued"`
}

var startedAt = time.Now().Unix()

func (s *Server) modelObjects(ctx context.Context) ([]modelObject, error) {
	st, err := s.store.State(ctx, s.cfg.Orchestrator.Slot)
	if err != nil {
		return nil, err
	}
	queues, err := s.store.Snapshot(ctx, s.cfg.ModelNames())
	if err != nil {
		return nil, err
	}
	var out []modelObject
	for _, m := range s.cfg.Models {
		obj := modelObject{Object: "model", Created: startedAt, OwnedBy: "llm-switchboard", Root: m.Name,
			Queued: queues[m.Name].Pending}
		if st != nil {
			obj.Active = st.Active == m.Name && st.Phase == jobstore.PhaseReady
			obj.Loading = st.Target == m.Name
		}
		for _, id := range append([]string{m.Name}, m.Aliases...) {
			o := obj
			o.ID = id
			out = append(out, o)
		}
	}
	return out, nil
}

func (s *Server) listModels(r *http.Request) (any, error) {
	objs, err := s.modelObjects(r.Context())
	if err != nil {
		return nil, err
	}
	return map[string]any{"object": "list", "data": objs}, nil
}

func (s *Server) getModel(r *http.Request) (any, error) {
	name := strings.TrimPrefix(httprouter.ParamsFromContext(r.Context()).ByName("model"), "/")
	if s.cfg.Model(name) == nil {
		return nil, unknownModel(name, s.cfg.ModelNames())
	}
	objs, err := s.modelObjects(r.Context())
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if o.ID == name {
			return o, nil
		}
	}
	return nil, unknownModel(name, s.cfg.ModelNames())
}

// jobObject is a job as its owner sees it.
type jobObject struct {
	ID            string        `json:"id"`
	Object        string        `json:"object"`
	Status        string        `json:"status"`
	Model         string        `json:"model"`
	Created       int64         `json:"created"`
	StartedAt     *int64        `json:"started_at"`
	FinishedAt    *int64        `json:"finished_at"`
	QueuePosition *int          `json:"queue_position,omitempty"`
	ETASeconds    *float64      `json:"eta_seconds,omitempty"`
	Error         *openai.Error `json:"error"`
}

// jobView renders j; a queued job gets its queue position and an estimate
// of when it starts.
func (s *Server) jobView(ctx context.Context, j *jobstore.Job) jobObject {
	pos := 0
	if j.Status == jobstore.StatusQueued {
		if p, err := s.store.QueuePosition(ctx, j); err == nil {
			pos = p
		}
	}
	return s.jobViewAt(ctx, j, pos)
}

// jobViewAt is jobView for a job whose queue position is known (0: not
// queued).
func (s *Server) jobViewAt(ctx context.Context, j *jobstore.Job, pos int) jobObject {
	v := jobObject{ID: j.ID, Object: "job", Status: string(j.Status), Model: j.ClientModel,
		Created: j.Created.Unix(), Error: j.Error}
	if !j.Started.IsZero() {
		t := j.Started.Unix()
		v.StartedAt = &t
	}
	if !j.Finished.IsZero() {
		t := j.Finished.Unix()
		v.FinishedAt = &t
	}
	if j.Status == jobstore.StatusQueued && pos > 0 {
		v.QueuePosition = &pos
		eta := s.eta(ctx, j.Model, pos).Seconds()
		v.ETASeconds = &eta
	}
	return v
}

// eta estimates when the job at pos in model's queue starts, from the
// switch and job times the leader publishes.
func (s *Server) eta(ctx context.Context, model string, pos int) time.Duration {
	st, err := s.estimateState(ctx)
	if err != nil || st == nil {
		return 0
	}
	return st.EstimateStart(model, pos, s.cfg.Model(model).MaxConcurrency, time.Now())
}

// ownedJob loads the job in the route, if the caller may see it. Another
// user's job is reported as missing, not forbidden: ids are not confirmed.
func (s *Server) ownedJob(r *http.Request) (*jobstore.Job, error) {
	id := httprouter.ParamsFromContext(r.Context()).ByName("id")
	notFound := openai.Errorf(http.StatusNotFound, openai.TypeNotFound, "job_not_found", "", "job %q not found", id)
	j, err := s.store.Get(r.Context(), id)
	if errors.Is(err, jobstore.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if p := principalFrom(r.Context()); !p.admin && p.id != j.Owner {
		return nil, notFound
	}
	return j, nil
}

func (s *Server) getJob(r *http.Request) (any, error) {
	j, err := s.ownedJob(r)
	if err != nil {
		return nil, err
	}
	return s.jobView(r.Context(), j), nil
}

func (s *Server) jobResult(w http.ResponseWriter, r *http.Request) {
	j, err := s.ownedJob(r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if !j.Status.Terminal() {
		writeJSON(w, http.StatusAccepted, s.jobView(r.Context(), j))
		return
	}
	s.writeResult(w, j)
}

func (s *Server) cancelJob(r *http.Request) (any, error) {
	j, err := s.ownedJob(r)
	if err != nil {
		return nil, err
	}
	if j.Status.Terminal() {
		return nil, openai.Errorf(http.StatusConflict, openai.TypeInvalidRequest, "job_finished", "",
			"job %s already %s", j.ID, j.Status)
	}
	hard := false
	if v := r.URL.Query().Get("hard"); v != "" {
		if hard, err = strconv.ParseBool(v); err != nil {
			return nil, openai.BadRequest("hard", "hard must be true or false, not %q", v)
		}
	}
	cancel := s.store.Cancel
	if hard {
		cancel = s.store.CancelHard
	}
	if _, err := cancel(r.Context(), j.ID, "canceled by request"); err != nil {
		return nil, err
	}
	j, err = s.store.Get(r.Context(), j.ID)
	if err != nil {
		return nil, err
	}
	return s.jobView(r.Context(), j), nil
}

// queueModel is one model's line in GET /queue.
type queueModel struct {
	Pending       int     `json:"pending"`
	OldestWaitSec float64 `json:"oldest_wait_seconds"`
	InFlight      int     `json:"in_flight"`
	State         string  `json:"state"` // active, loading, or idle
	ETASeconds    float64 `json:"eta_seconds"`
}

// queueRunning is a running job in GET /queue.
type queueRunning struct {
	ID         string  `json:"id"`
	Model      string  `json:"model"`
	Owner      string  `json:"owner"`
	RunningSec float64 `json:"running_seconds"`
}

// queueFailure is a recent failure in GET /queue.
type queueFailure struct {
	ID     string        `json:"id"`
	Model  string        `json:"model"`
	Owner  string        `json:"owner"`
	Failed int64         `json:"failed_at"`
	Error  *openai.Error `json:"error"`
}

// queue shows the queues, the running jobs and the recent failures
// (admin): who waits for what, and why things failed.
func (s *Server) queue(r *http.Request) (any, error) {
	ctx := r.Context()
	st, err := s.store.State(ctx, s.cfg.Orchestrator.Slot)
	if err != nil {
		return nil, err
	}
	queues, err := s.store.Snapshot(ctx, s.cfg.ModelNames())
	if err != nil {
		return nil, err
	}
	running, err := s.store.Running(ctx)
	if err != nil {
		return nil, err
	}
	failures, err := s.store.RecentFailures(ctx, 20)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	models := map[string]queueModel{}
	for _, m := range s.cfg.Models {
		q := queues[m.Name]
		qm := queueModel{Pending: q.Pending, State: "idle"}
		if !q.HeadSince.IsZero() {
			qm.OldestWaitSec = now.Sub(q.HeadSince).Seconds()
		}
		if st != nil {
			switch {
			case st.Active == m.Name && st.Phase == jobstore.PhaseReady:
				qm.State, qm.InFlight = "active", st.InFlight
			case st.Target == m.Name:
				qm.State = "loading"
			}
			if q.Pending > 0 {
				qm.ETASeconds = st.EstimateStart(m.Name, 1, m.MaxConcurrency, now).Seconds()
			}
		}
		models[m.Name] = qm
	}
	out := map[string]any{"models": models}
	runs := make([]queueRunning, 0, len(running))
	for _, j := range running {
		runs = append(runs, queueRunning{ID: j.ID, Model: j.Model, Owner: j.Owner, RunningSec: now.Sub(j.Started).Seconds()})
	}
	out["running"] = runs
	fails := make([]queueFailure, 0, len(failures))
	for _, j := range failures {
		fails = append(fails, queueFailure{ID: j.ID, Model: j.Model, Owner: j.Owner, Failed: j.Finished.Unix(), Error: j.Error})
	}
	out["recent_failures"] = fails
	return out, nil
}
