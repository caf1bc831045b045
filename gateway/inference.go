package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

// inference serves /v1/chat/completions, /v1/completions and
// /v1/embeddings: every request becomes a job the orchestrator executes.
func (s *Server) inference(w http.ResponseWriter, r *http.Request) {
	ri := infoFrom(r.Context())
	ri.keyID = principalFrom(r.Context()).id
	job, err := s.admit(w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	ri.model, ri.mode, ri.jobID = job.Model, string(job.Mode), job.ID
	// X-Request-Id is the job id unless the client sent its own; the job
	// id (for /jobs/{id}/cancel) is always in X-Switchboard-Job-Id.
	if id := r.Header.Get("X-Request-Id"); validRequestID(id) {
		w.Header().Set("X-Request-Id", id)
	} else {
		w.Header().Set("X-Request-Id", job.ID)
	}

	// The direct route: the model is ready and this gateway holds a
	// lease on it; no job record.
	if job.Mode != jobstore.ModeAsync && s.cfg.Gateway.DirectRoute {
		if l := s.direct.acquire(job.Model, s.cfg.Model(job.Model).MaxConcurrency); l != nil {
			w.Header().Set("X-Switchboard-Route", "direct")
			w.Header().Set("X-Switchboard-Model-State", "hit")
			ri.jobID = ""
			served := func() bool {
				defer s.direct.done(l)
				return s.serveDirect(w, r, job, l)
			}()
			if served {
				return
			}
			ri.jobID = job.ID
		}
	}
	w.Header().Set("X-Switchboard-Route", "queue")
	w.Header().Set("X-Switchboard-Job-Id", job.ID)
	if job.Mode != jobstore.ModeAsync {
		w.Header().Set("X-Switchboard-Model-State", s.modelState(r.Context(), job.Model))
	}

	if job.Mode == jobstore.ModeAsync {
		id, pos, err := s.store.EnqueueAt(r.Context(), job, s.limits(), r.Header.Get("Idempotency-Key"))
		if err != nil {
			s.writeErr(w, r, s.queueError(w, job.Model, err))
			return
		}
		if id == job.ID {
			// The usual case: the enqueue said where the job stands.
			w.Header().Set("Location", "/jobs/"+job.ID)
			writeJSON(w, http.StatusAccepted, s.jobViewAt(r.Context(), job, pos))
			return
		}
		// The same Idempotency-Key again: the earlier job.
		if job, err = s.store.Get(r.Context(), id); err != nil {
			s.writeErr(w, r, err)
			return
		}
		w.Header().Set("X-Switchboard-Job-Id", job.ID)
		if !validRequestID(r.Header.Get("X-Request-Id")) {
			w.Header().Set("X-Request-Id", job.ID)
		}
		ri.jobID = job.ID
		w.Header().Set("Location", "/jobs/"+job.ID)
		writeJSON(w, http.StatusAccepted, s.jobView(r.Context(), job))
		return
	}

	// Wait for notifications to flow before enqueueing, or a fast job's
	// completion could be missed.
	select {
	case <-s.subscribed:
	case <-r.Context().Done():
		return
	}
	wt := s.waiters.register(job.ID)
	defer s.waiters.unregister(job.ID)
	if _, err := s.store.EnqueueWith(r.Context(), job, s.limits(), ""); err != nil {
		s.writeErr(w, r, s.queueError(w, job.Model, err))
		return
	}
	waiting := s.metrics.waiting.WithLabelValues(job.Model)
	waiting.Inc()
	defer waiting.Dec()
	if job.Mode == jobstore.ModeStream {
		s.relayStream(w, r, job, wt)
		return
	}
	s.awaitSync(w, r, job, wt)
}

// admit authenticates nothing (auth ran already) but validates the body
// and builds the job; client mistakes come back as *openai.Error.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (*jobstore.Job, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.Gateway.MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, openai.Errorf(http.StatusRequestEntityTooLarge, openai.TypeInvalidRequest, "request_too_large", "",
				"request body larger than %d bytes", tooBig.Limit)
		}
		return nil, openai.BadRequest("", "read request body: %v", err)
	}
	req, err := openai.InspectRequest(body)
	if err != nil {
		return nil, err
	}
	m := s.cfg.Model(req.Model)
	if m == nil {
		return nil, unknownModel(req.Model, s.cfg.ModelNames())
	}
	if err := s.checkRights(r.Context(), principalFrom(r.Context()), m.Name); err != nil {
		return nil, err
	}
	if req.Stream && r.URL.Path == "/v1/embeddings" {
		return nil, openai.BadRequest("stream", "embeddings cannot be streamed")
	}
	if err := req.Validate(r.URL.Path); err != nil {
		return nil, err
	}
	rewritten, err := openai.RewriteRequest(body, m.ServedName)
	if err != nil {
		return nil, err
	}
	mode := jobstore.ModeSync
	switch {
	case req.Async:
		mode = jobstore.ModeAsync
	case req.Stream:
		mode = jobstore.ModeStream
	}
	job := &jobstore.Job{
		ID:          jobstore.NewID(),
		Model:       m.Name,
		ClientModel: req.Model,
		Path:        r.URL.Path,
		Mode:        mode,
		Owner:       principalFrom(r.Context()).id,
		Body:        rewritten,
		Created:     time.Now(),
	}
	if mode != jobstore.ModeAsync {
		job.Notify = s.store.GatewayChannel(s.opts.Instance)
	}
	return job, nil
}

// waitBound is the longest a request is held: the leader enforces
// queue_timeout, switch_timeout and inference_timeout, so a request still
// unanswered past their sum has no leader to answer it.
func (s *Server) waitBound() time.Duration {
	c := s.cfg
	sum := c.Scheduler.QueueTimeout + c.Orchestrator.SwitchTimeout + c.Orchestrator.InferenceTimeout
	return sum + max(sum/10, time.Second)
}

// noAnswer is the error of a request held past waitBound.
func (s *Server) noAnswer() *openai.Error {
	return openai.Errorf(http.StatusGatewayTimeout, openai.TypeTimeout, "no_answer", "",
		"no answer within %s: is an orchestrator leading? (GET /health shows leader_present)", s.waitBound())
}

// validRequestID accepts a client's request id that is safe to echo and
// log: 1 to 128 characters of letters, digits and . _ : -.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// modelState says how a request will be served: "hit" (its model is
// loaded with room), "queued" (loaded, but busy), "switched" (a switch is
// needed or under way).
func (s *Server) modelState(ctx context.Context, model string) string {
	st, err := s.cachedState(ctx)
	if err != nil || st == nil || st.Active != model || st.Phase != jobstore.PhaseReady {
		return "switched"
	}
	if st.InFlight >= s.cfg.Model(model).MaxConcurrency {
		return "queued"
	}
	return "hit"
}

// stateTTL bounds how stale the slot state used for response headers may
// be; it spares a Redis round trip on every request.
const stateTTL = 250 * time.Millisecond

// cachedState is the slot state, read at most once per stateTTL.
func (s *Server) cachedState(ctx context.Context) (*jobstore.SlotState, error) {
	// Only a ready slot is served from the cache: it is the hot path, and
	// a switch is always reported fresh.
	if c := s.stateCache.Load(); c != nil && c.st != nil && c.st.Phase == jobstore.PhaseReady && time.Since(c.at) < stateTTL {
		return c.st, nil
	}
	return s.freshState(ctx)
}

// estimateState is the slot state for estimates (ETAs), in any phase at
// most stateTTL old: an async submission needs no fresher one.
func (s *Server) estimateState(ctx context.Context) (*jobstore.SlotState, error) {
	if c := s.stateCache.Load(); c != nil && time.Since(c.at) < stateTTL {
		return c.st, nil
	}
	return s.freshState(ctx)
}

func (s *Server) freshState(ctx context.Context) (*jobstore.SlotState, error) {
	st, err := s.store.State(ctx, s.cfg.Orchestrator.Slot)
	if err != nil {
		return nil, err
	}
	s.stateCache.Store(&stateEntry{st: st, at: time.Now()})
	return st, nil
}

// checkRights applies a key's rights: the models it may use, and whether
// (and how often per hour) its requests may make the switchboard load a
// model that is not loaded or loading.
func (s *Server) checkRights(ctx context.Context, p principal, model string) error {
	k := p.key
	if k == nil {
		return nil
	}
	if !k.MayUse(model) {
		return openai.Errorf(http.StatusForbidden, openai.TypePermission, "model_not_allowed", "model",
			"key %s may not use model %s; it may use: %s", k.Name, model, strings.Join(k.Models, ", "))
	}
	if k.MaySwitch && k.SwitchesPerHour == 0 {
		return nil
	}
	st, err := s.store.State(ctx, s.cfg.Orchestrator.Slot)
	if err != nil {
		return err
	}
	if st != nil && ((st.Active == model && st.Phase == jobstore.PhaseReady) || st.Target == model) {
		return nil // served by the model loaded (or loading) anyway
	}
	active := "none"
	if st != nil && st.Active != "" {
		active = st.Active
	}
	if !k.MaySwitch {
		return openai.Errorf(http.StatusForbidden, openai.TypePermission, "switch_not_allowed", "model",
			"key %s may not make the switchboard load a model; %s is not loaded (active: %s)", k.Name, model, active)
	}
	n, oldest, err := s.store.SwitchesBy(ctx, k.Name, time.Now().Add(-time.Hour))
	if err != nil {
		return err
	}
	if n >= k.SwitchesPerHour {
		e := openai.Errorf(http.StatusTooManyRequests, openai.TypeRateLimit, "switch_budget_exhausted", "model",
			"key %s caused %d switches in the last hour, its budget; %s is not loaded (active: %s)", k.Name, n, model, active)
		e.RetryAfter = int(time.Until(oldest.Add(time.Hour)).Seconds()) + 1
		return e
	}
	return nil
}

// limits are the queue bounds the config sets.
func (s *Server) limits() jobstore.Limits {
	return jobstore.Limits{MaxPending: s.cfg.Scheduler.MaxPending, MaxPendingTotal: s.cfg.Scheduler.MaxPendingTotal,
		Models: s.cfg.ModelNames()}
}

// queueError turns a full queue into a 429 with Retry-After, as OpenAI
// SDKs expect; other errors pass through.
func (s *Server) queueError(w http.ResponseWriter, model string, err error) error {
	var full *jobstore.ErrQueueFull
	if !errors.As(err, &full) {
		return err
	}
	s.metrics.queueFull.WithLabelValues(model).Inc()
	w.Header().Set("Retry-After", "30")
	return openai.Errorf(http.StatusTooManyRequests, openai.TypeRateLimit, "queue_full", "",
		"%v; retry later", full)
}

func unknownModel(name string, available []string) *openai.Error {
	sorted := append([]string(nil), available...)
	sort.Strings(sorted)
	return openai.Errorf(http.StatusNotFound, openai.TypeNotFound, "model_not_found", "model",
		"the model %q does not exist; available models: %s", name, strings.Join(sorted, ", "))
}

// awaitSync holds a non-streaming request until its job ends, however
// long a model switch takes: SDKs give up on a 503 after two retries.
func (s *Server) awaitSync(w http.ResponseWriter, r *http.Request, job *jobstore.Job, wt *waiter) {
	giveUp := time.NewTimer(s.waitBound())
	defer giveUp.Stop()
	for {
		select {
		case <-r.Context().Done():
			s.abandon(job.ID)
			return
		case <-giveUp.C:
			s.abandon(job.ID)
			s.writeErr(w, r, s.noAnswer())
			return
		case <-wt.kick:
		}
		_, done, resync := wt.take()
		if !done && !resync {
			continue
		}
		final, err := s.store.Get(r.Context(), job.ID)
		if err != nil {
			if r.Context().Err() != nil {
				s.abandon(job.ID)
				return
			}
			s.writeErr(w, r, err)
			return
		}
		if !final.Status.Terminal() {
			continue // a resync while the job still runs
		}
		s.writeResult(w, final)
		return
	}
}

// writeResult answers with a finished job's outcome: the backend's own
// response (model name restored) or the reason it failed.
func (s *Server) writeResult(w http.ResponseWriter, j *jobstore.Job) {
	if !j.Started.IsZero() {
		// How long the request waited for its model (a switch, a queue).
		w.Header().Set("X-Switchboard-Wait-Ms", strconv.FormatInt(j.Started.Sub(j.Created).Milliseconds(), 10))
	}
	if j.ResultStatus != 0 && j.Result != nil && (j.Status == jobstore.StatusSucceeded || j.Error == nil) {
		body := j.Result
		if restored, err := openai.ReplaceTopLevelString(body, "model", j.ClientModel); err == nil {
			body = restored
		}
		if j.ResultType != "" {
			w.Header().Set("Content-Type", j.ResultType)
		}
		w.WriteHeader(j.ResultStatus)
		_, _ = w.Write(body)
		return
	}
	if j.Error != nil {
		e := *j.Error
		if e.Status < 400 || e.Status > 599 {
			e.Status = httpStatusFor(j.Status)
		}
		openai.WriteError(w, &e)
		return
	}
	openai.WriteError(w, openai.Errorf(httpStatusFor(j.Status), openai.TypeServer, "", "", "job %s", j.Status))
}

func httpStatusFor(st jobstore.Status) int {
	if st == jobstore.StatusCanceled {
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// relayStream sends a streaming job's chunks to the client as they are
// logged, with keep-alive comments while it waits for a model to load.
func (s *Server) relayStream(w http.ResponseWriter, r *http.Request, job *jobstore.Job, wt *waiter) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	committed := false
	commit := func() {
		if !committed {
			openai.SSEHeaders(w)
			w.WriteHeader(http.StatusOK)
			committed = true
		}
	}
	keepAlive := time.NewTimer(time.Second) // the first comment comes early
	defer keepAlive.Stop()
	giveUp := time.NewTimer(s.waitBound())
	defer giveUp.Stop()
	lastID := ""
	sentDone := false // the whole answer reached the client
	everResynced := false

	writeChunks := func(chunks []jobstore.Chunk) error {
		var buf bytes.Buffer
		for _, c := range chunks {
			if !jobstore.ChunkAfter(c.ID, lastID) {
				continue // already sent (a resync overlapped the notifications)
			}
			lastID = c.ID
			data := c.Data
			if bytes.Equal(data, openai.Done) {
				sentDone = true
			} else {
				if restored, err := openai.ReplaceTopLevelString(data, "model", job.ClientModel); err == nil {
					data = restored
				}
			}
			_ = openai.WriteEvent(&buf, data)
		}
		if buf.Len() == 0 {
			return nil
		}
		commit()
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		err := rc.Flush()
		if err == nil {
			s.firstData(r, job.Model)
		}
		return err
	}

	for {
		select {
		case <-ctx.Done():
			if !sentDone { // a client leaving after [DONE] cancels nothing
				s.abandon(job.ID)
			}
			return
		case <-giveUp.C:
			s.abandon(job.ID)
			if !committed {
				s.writeErr(w, r, s.noAnswer())
				return
			}
			_ = openai.WriteEvent(w, s.noAnswer().Body())
			_ = openai.WriteEvent(w, openai.Done)
			_ = rc.Flush()
			return
		case <-keepAlive.C:
			commit()
			if err := openai.WriteComment(w, s.progress(ctx, job)); err != nil || rc.Flush() != nil {
				s.abandon(job.ID)
				return
			}
			keepAlive.Reset(s.opts.KeepAlive)
			continue
		case <-wt.kick:
		}
		chunks, done, resync := wt.take()
		if resync {
			everResynced = true
			logged, err := s.store.Chunks(ctx, job.ID, lastID)
			if err != nil {
				// Redis is away: send nothing newer (that would leave a
				// gap) and retry the resync shortly.
				time.AfterFunc(200*time.Millisecond, func() { wt.update(func() { wt.resync = true }) })
				continue
			}
			chunks = append(logged, chunks...)
			if j, err := s.store.Get(ctx, job.ID); err == nil && j.Status.Terminal() {
				done = true
			}
		}
		if err := writeChunks(chunks); err != nil {
			s.abandon(job.ID)
			return
		}
		if len(chunks) > 0 {
			keepAlive.Reset(s.opts.KeepAlive)
		}
		if !done {
			continue
		}
		s.finishStream(w, r, job, lastID, everResynced, commit, committed, writeChunks)
		return
	}
}

// finishStream ends a stream whose job is terminal: it sends any chunk
// still unsent, and an error event when the job did not succeed.
func (s *Server) finishStream(w http.ResponseWriter, r *http.Request, job *jobstore.Job, lastID string,
	resynced bool, commit func(), committed bool, writeChunks func([]jobstore.Chunk) error) {
	ctx := r.Context()
	if resynced {
		if logged, err := s.store.Chunks(ctx, job.ID, lastID); err == nil {
			_ = writeChunks(logged)
		}
	}
	final, err := s.store.Get(ctx, job.ID)
	if err != nil {
		s.log.Warn("reading finished stream job", "job_id", job.ID, "error", err)
		return
	}
	if final.Status == jobstore.StatusSucceeded {
		return
	}
	if !committed && lastID == "" {
		// Nothing sent yet: a plain HTTP error serves SDKs best.
		s.writeResult(w, final)
		return
	}
	commit()
	e := final.Error
	if e == nil {
		e = openai.Errorf(http.StatusInternalServerError, openai.TypeServer, "", "", "stream ended: job %s", final.Status)
	}
	_ = openai.WriteEvent(w, e.Body())
	_ = openai.WriteEvent(w, openai.Done)
	_ = http.NewResponseController(w).Flush()
}

// progress describes a waiting job for a keep-alive comment, e.g.
// "loading qwen3-235b-4bit, 45s elapsed, ~2m left".
func (s *Server) progress(ctx context.Context, job *jobstore.Job) string {
	elapsed := time.Since(job.Created).Round(time.Second)
	st, err := s.store.State(ctx, s.cfg.Orchestrator.Slot)
	if err != nil || st == nil {
		return fmt.Sprintf("waiting for model %s, %s elapsed (no orchestrator has reported yet)", job.Model, elapsed)
	}
	left := ""
	if pos, err := s.store.QueuePosition(ctx, job); err == nil && pos > 0 {
		eta := st.EstimateStart(job.Model, pos, s.cfg.Model(job.Model).MaxConcurrency, time.Now())
		left = fmt.Sprintf(", ~%s left", eta.Round(time.Second))
	}
	switch {
	case st.Active == job.Model && st.Phase == jobstore.PhaseReady:
		return fmt.Sprintf("model %s active, waiting for a free slot, %s elapsed%s", job.Model, elapsed, left)
	case st.Target == job.Model:
		return fmt.Sprintf("loading %s (%s), %s elapsed%s", job.Model, st.Phase, elapsed, left)
	}
	return fmt.Sprintf("queued for %s (active: %s, %s), %s elapsed%s", job.Model, orNone(st.Active), st.Phase, elapsed, left)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// abandon cancels the job of a client that went away, so its generation
// stops and a queued job never runs.
func (s *Server) abandon(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.store.Cancel(ctx, id, "the client disconnected"); err != nil && !errors.Is(err, jobstore.ErrNotFound) {
		s.log.Warn("canceling abandoned job", "job_id", id, "error", err)
	}
}
