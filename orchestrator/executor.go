package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

// maxResultBytes bounds a non-streaming backend response kept in Redis.
const maxResultBytes = 64 << 20

// dispatch claims up to n queued jobs of the active model and starts them
// against its backend.
func (l *leader) dispatch(ctx context.Context, model string, n int) (int, error) {
	if model != l.state.Active || l.backend.URL == "" || (l.switching && !l.preflighting) {
		// The scheduler only dispatches to the ready active model; this
		// guard keeps invariant 2 even if that ever changed.
		return 0, fmt.Errorf("refusing to dispatch to %s: active is %q in phase %s", model, l.state.Active, l.state.Phase)
	}
	jobs, err := l.o.opts.Store.Claim(ctx, l.state.Slot, model, n, l.gen)
	if err != nil {
		return 0, err
	}
	backend := l.backend
	timeout := l.o.opts.Config.Orchestrator.InferenceTimeout
	for _, j := range jobs {
		// Jobs outlive the loop's context by a moment: the term's end
		// cancels them itself, with errLeaderStopping as the cause, so
		// they can be handed over instead of failed.
		jctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		l.running[j.ID] = &runningJob{model: model, cancel: cancel}
		l.wg.Go(func() {
			defer cancel(nil)
			tctx, stop := context.WithTimeoutCause(jctx, timeout, errInferenceLimit)
			defer stop()
			begin := time.Now()
			l.execute(tctx, j, backend)
			select {
			case l.finished <- jobDone{id: j.ID, model: model, took: time.Since(begin)}:
			case <-ctx.Done():
			}
		})
	}
	l.state.InFlight = len(l.running)
	return len(jobs), nil
}

// execute sends one job to the backend and records its outcome. It always
// records one: a job never stays running because its executor returned.
func (l *leader) execute(ctx context.Context, j *jobstore.Job, b Backend) {
	log := l.log.With("job_id", j.ID, "model", j.Model)
	begin := time.Now()
	outcome, down := l.call(ctx, j, b)
	took := time.Since(begin)
	backendError := down || outcome.ResultStatus >= 500
	outcome.Generation = j.Generation // fencing: a newer term's job is not ours to settle
	// Record the outcome even if ctx was canceled: that is exactly when
	// it matters most. Redis may be restarting: retry for a while (a
	// job left running would wait for the next leader to settle it).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if down || errors.Is(context.Cause(ctx), errLeaderStopping) {
		// Nothing reached the client yet: the next leader, or the
		// reloaded backend, serves it; put it back instead of failing it.
		if r, err := l.o.opts.Store.RecoverOrphan(rctx, j.ID, j.Generation, true); err == nil && r == jobstore.Requeued {
			log.Info("requeued a running job", "reason", map[bool]string{true: "backend unreachable", false: "leadership ends"}[down])
			l.o.metrics.jobEnded(j.Model, string(jobstore.Requeued), took, backendError)
			return
		}
	}
	l.o.metrics.jobEnded(j.Model, string(outcome.Status), took, backendError)
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		_, err := l.o.opts.Store.Finish(rctx, j.ID, outcome)
		if err == nil {
			break
		}
		if rctx.Err() != nil {
			log.Error("recording job outcome failed; the next leader will settle the job", "status", outcome.Status, "error", err)
			return
		}
		log.Warn("recording job outcome failed; retrying", "status", outcome.Status, "error", err, "retry_in", delay)
		select {
		case <-rctx.Done():
		case <-time.After(delay):
		}
	}
	log.Debug("job finished", "status", outcome.Status, "backend_status", outcome.ResultStatus)
}

// recordTimeout bounds the retries of recording a job's outcome.
const recordTimeout = 2 * time.Minute

// call performs the backend request. For streaming jobs each SSE event is
// appended to the job's chunk log as it arrives.
// down reports that the backend could not be reached at all (nothing was
// sent back): the loop is told, and the job can be retried.
func (l *leader) call(ctx context.Context, j *jobstore.Job, b Backend) (o jobstore.Outcome, down bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL+j.Path, bytes.NewReader(j.Body))
	if err != nil {
		return failed(http.StatusInternalServerError, openai.TypeServer, "build backend request: %v", err), false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", j.ID)
	if j.Stream() {
		req.Header.Set("Accept", "text/event-stream")
	}
	resp, err := l.o.opts.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return l.abortOutcome(ctx), false
		}
		select {
		case l.lost <- b.URL:
		default: // the loop already knows
		}
		return failed(http.StatusBadGateway, openai.TypeServer, "backend %s unreachable: %v", j.Model, err), true
	}
	defer resp.Body.Close()

	ctype := resp.Header.Get("Content-Type")
	if mt, _, _ := mime.ParseMediaType(ctype); j.Stream() && resp.StatusCode == http.StatusOK && mt == "text/event-stream" {
		return l.relay(ctx, j, resp.Body), false
	}

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResultBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return l.abortOutcome(ctx), false
		}
		return failed(http.StatusBadGateway, openai.TypeServer, "read backend response: %v", err), false
	}
	if len(body) > maxResultBytes {
		return failed(http.StatusBadGateway, openai.TypeServer, "backend response larger than %d bytes", maxResultBytes), false
	}
	o = jobstore.Outcome{Status: jobstore.StatusSucceeded, ResultStatus: resp.StatusCode, ResultType: ctype, Result: body}
	if resp.StatusCode >= 300 {
		o.Status = jobstore.StatusFailed
		o.Error = openai.ParseError(resp.StatusCode, body)
		if o.Error == nil {
			o.Error = openai.Errorf(resp.StatusCode, openai.TypeServer, "", "", "backend answered %d: %s",
				resp.StatusCode, truncate(body, 512))
		}
	}
	return o, false
}

// relay copies a backend SSE stream into the job's chunk log.
func (l *leader) relay(ctx context.Context, j *jobstore.Job, body io.Reader) jobstore.Outcome {
	r := openai.NewSSEReader(body)
	sawDone := false
	for {
		data, err := r.Next()
		if err != nil {
			if sawDone {
				// The whole answer was relayed; a cancel (a client that
				// left after [DONE]) comes too late to change that.
				return jobstore.Outcome{Status: jobstore.StatusSucceeded, ResultStatus: http.StatusOK, ResultType: "text/event-stream"}
			}
			if ctx.Err() != nil {
				return l.abortOutcome(ctx)
			}
			if errors.Is(err, io.EOF) && sawDone {
				return jobstore.Outcome{Status: jobstore.StatusSucceeded, ResultStatus: http.StatusOK, ResultType: "text/event-stream"}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return failed(http.StatusBadGateway, openai.TypeServer, "backend %s ended the stream before [DONE]", j.Model)
			}
			return failed(http.StatusBadGateway, openai.TypeServer, "read backend stream: %v", err)
		}
		if bytes.Equal(data, openai.Done) {
			sawDone = true
		}
		if err := l.o.opts.Store.AppendChunk(ctx, j, data); err != nil {
			if ctx.Err() != nil {
				return l.abortOutcome(ctx)
			}
			if errors.Is(err, jobstore.ErrFenced) {
				// Canceled, or owned by a newer term: stop relaying.
				return failed(http.StatusServiceUnavailable, openai.TypeServer, "the job is no longer this executor's")
			}
			return failed(http.StatusServiceUnavailable, openai.TypeServer, "store stream chunk: %v", err)
		}
	}
}

// abortOutcome says why a job's context ended.
func (l *leader) abortOutcome(ctx context.Context) jobstore.Outcome {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errCanceled):
		return jobstore.Outcome{Status: jobstore.StatusCanceled,
			Error: openai.Errorf(499, "canceled", "canceled", "", "the job was canceled")}
	case errors.Is(cause, errInferenceLimit):
		return failed(http.StatusGatewayTimeout, openai.TypeTimeout,
			"the backend did not finish within inference_timeout %s", l.o.opts.Config.Orchestrator.InferenceTimeout)
	case errors.Is(cause, errDrainTimeout):
		return failed(http.StatusServiceUnavailable, openai.TypeServer,
			"aborted: the model was being switched and drain_timeout %s passed; retry the request",
			l.o.opts.Config.Orchestrator.DrainTimeout)
	default:
		return failed(http.StatusServiceUnavailable, openai.TypeServer,
			"aborted: the orchestrator stopped while the job ran (%v); retry the request", cause)
	}
}

func failed(status int, typ, format string, args ...any) jobstore.Outcome {
	return jobstore.Outcome{Status: jobstore.StatusFailed, Error: openai.Errorf(status, typ, "", "", format, args...)}
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}
