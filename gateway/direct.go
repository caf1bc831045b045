package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

// The direct route (see internal/jobstore/direct.go): while this gateway
// holds a lease on the open admission, sync and streaming requests for the
// ready active model go straight to its backend, with no job record and no
// Redis round trip. The leader closes admission before any stop and waits
// until every lease is released or expired; this gateway stops taking new
// direct requests at the close, lets go of its lease once the last one
// ends, and cancels them all if its lease runs out (Redis unreachable,
// drain deadline passed) before Redis would expire it.

// Lease timing: a lease lasts leaseTTL from each renewal, and renewals
// come every leaseRenew, so two can fail before a lease runs out. A dead
// gateway's lease delays a switch by at most leaseTTL.
const (
	leaseTTL   = jobstore.LeaseTTL
	leaseRenew = jobstore.LeaseRenew
)

// errLeaseLost cancels the direct requests of a lease that ran out.
var errLeaseLost = errors.New("the gateway's lease on the backend ran out")

// lease is this gateway's hold on one epoch of admission.
type lease struct {
	epoch    int64
	model    string
	backend  string
	open     bool      // new requests may take it
	deadline time.Time // local; a little before Redis expires it
	inflight int
	timer    *time.Timer // fires at deadline
	ctx      context.Context
	cancel   context.CancelCauseFunc
}

// directRoute is this gateway's side of the direct route.
type directRoute struct {
	s        *Server
	slot     string
	instance string
	client   *http.Client

	mu     sync.Mutex
	leases map[int64]*lease // by epoch, including those draining
	cur    *lease           // the one new requests may take, if any
	used   bool             // a direct request ran since the last renewal
}

func newDirectRoute(s *Server) *directRoute {
	return &directRoute{
		s:        s,
		slot:     s.cfg.Orchestrator.Slot,
		instance: s.opts.Instance,
		client:   &http.Client{Transport: backendTransport()},
		leases:   map[int64]*lease{},
	}
}

// backendTransport keeps enough idle connections to the backend for the
// gateway's concurrency; the default of 2 per host would make most
// requests open a new one.
func backendTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// acquire takes the current lease for one request for model, or returns
// nil: the model is not the ready active one, or this gateway already
// has max direct requests in flight.
func (d *directRoute) acquire(model string, max int) *lease {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.cur
	if l == nil || !l.open || l.model != model || l.inflight >= max || !time.Now().Before(l.deadline) {
		return nil
	}
	l.inflight++
	d.used = true
	return l
}

// done ends one request on l; the last one on a closed lease lets it go
// (unless it was dropped already: expired, or gone from Redis).
func (d *directRoute) done(l *lease) {
	d.mu.Lock()
	l.inflight--
	release := l.inflight == 0 && !l.open && d.leases[l.epoch] == l
	if release {
		d.dropLocked(l)
	}
	d.mu.Unlock()
	if release {
		d.release(l)
	}
}

// dropLocked forgets l; its requests, if any, are canceled.
func (d *directRoute) dropLocked(l *lease) {
	l.open = false
	l.timer.Stop()
	l.cancel(errLeaseLost)
	if d.leases[l.epoch] == l {
		delete(d.leases, l.epoch)
	}
	if d.cur == l {
		d.cur = nil
	}
}

// release tells Redis (and a waiting leader) that l is let go. A failure
// is harmless: the lease then expires by itself.
func (d *directRoute) release(l *lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.s.store.ReleaseLease(ctx, d.slot, jobstore.LeaseMember(d.instance, l.epoch)); err != nil {
		d.s.log.Warn("releasing the direct-route lease failed; it expires by itself", "epoch", l.epoch, "error", err)
	}
}

// run keeps the leases renewed until ctx ends, then lets them go once
// their requests are done.
func (d *directRoute) run(ctx context.Context) {
	sub := d.s.store.SubscribeAdmission(ctx, d.slot)
	defer sub.Close()
	events := make(chan struct{}, 1)
	go func() {
		for {
			if _, err := sub.Receive(ctx); err != nil {
				return
			}
			select {
			case events <- struct{}{}:
			default:
			}
		}
	}()
	tick := time.NewTicker(leaseRenew)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			d.closeAll()
			return
		case <-tick.C:
		case <-events:
		}
		d.renew(ctx)
	}
}

// renew asks Redis for the admission and extends the leases held.
func (d *directRoute) renew(ctx context.Context) {
	d.mu.Lock()
	held := make([]int64, 0, len(d.leases))
	used := d.used
	for e, l := range d.leases {
		held = append(held, e)
		// A long generation in flight is use too: the idle rule must not
		// unload its model under it.
		used = used || l.inflight > 0
	}
	d.used = false
	d.mu.Unlock()

	sent := time.Now()
	rctx, cancel := context.WithTimeout(ctx, leaseRenew)
	g, err := d.s.store.RenewLease(rctx, d.slot, d.instance, leaseTTL, used, held)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			d.s.log.Warn("renewing the direct-route lease failed; requests go through the queue until it works again", "error", err)
		}
		d.mu.Lock()
		d.used = d.used || used
		d.mu.Unlock()
		return
	}
	var released []*lease
	d.mu.Lock()
	for epoch, left := range g.Held {
		l := d.leases[epoch]
		if l == nil {
			continue
		}
		if left <= 0 {
			d.dropLocked(l) // gone in Redis: its requests must end now
			continue
		}
		d.extendLocked(l, sent, left)
	}
	d.cur = nil
	if g.Open && g.Granted > 0 {
		l := d.leases[g.Epoch]
		if l != nil && (l.model != g.Model || l.backend != g.Backend) {
			d.dropLocked(l) // not the admission it was granted on
			l = nil
		}
		if l == nil {
			lctx, cancel := context.WithCancelCause(context.Background())
			l = &lease{epoch: g.Epoch, model: g.Model, backend: g.Backend, ctx: lctx, cancel: cancel}
			l.timer = time.AfterFunc(time.Hour, func() { d.expire(l) })
			d.leases[g.Epoch] = l
		}
		l.open = true
		d.extendLocked(l, sent, g.Granted)
		d.cur = l
	}
	for _, l := range d.leases {
		if l != d.cur && l.open {
			l.open = false // closed: no new requests; let go when idle
		}
		if l != d.cur && l.inflight == 0 {
			d.dropLocked(l)
			released = append(released, l)
		}
	}
	d.mu.Unlock()
	for _, l := range released {
		d.release(l)
	}
}

// extendLocked moves l's local deadline to left after sent, less a margin
// for the two clocks' rates: sent is before Redis read its clock, so the
// deadline is never later than Redis's.
func (d *directRoute) extendLocked(l *lease, sent time.Time, left time.Duration) {
	l.deadline = sent.Add(left - left/20 - 20*time.Millisecond)
	l.timer.Reset(time.Until(l.deadline))
}

// expire ends a lease whose deadline passed without a renewal.
func (d *directRoute) expire(l *lease) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.leases[l.epoch] != l || time.Now().Before(l.deadline) {
		return // renewed meanwhile, or already dropped
	}
	if l.inflight > 0 {
		d.s.log.Warn("direct-route lease ran out; canceling its requests", "epoch", l.epoch, "model", l.model, "in_flight", l.inflight)
	}
	d.dropLocked(l)
}

// closeAll takes no new direct requests and lets every lease go once its
// requests are done (the HTTP server's shutdown waits for them).
func (d *directRoute) closeAll() {
	d.mu.Lock()
	d.cur = nil
	var idle []*lease
	for _, l := range d.leases {
		l.open = false
		if l.inflight == 0 {
			d.dropLocked(l)
			idle = append(idle, l)
		}
	}
	d.mu.Unlock()
	for _, l := range idle {
		d.release(l)
	}
}

// maxDirectBody bounds a non-streaming backend response, as the queue
// path bounds what it keeps in Redis.
const maxDirectBody = 64 << 20

// errDirectLimit is the cause of a direct request past inference_timeout.
var errDirectLimit = errors.New("inference timeout")

// serveDirect sends job's request straight to l's backend and relays the
// answer, restoring the client's model name. It reports false when
// nothing reached the backend or the client (the backend could not be
// reached): the caller then queues the job, and the leader finds out.
func (s *Server) serveDirect(w http.ResponseWriter, r *http.Request, job *jobstore.Job, l *lease) bool {
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(l.ctx, func() { cancel(context.Cause(l.ctx)) })
	defer stop()
	timeout := s.cfg.Orchestrator.InferenceTimeout
	ctx, cancelT := context.WithTimeoutCause(ctx, timeout, errDirectLimit)
	defer cancelT()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.backend+job.Path, bytes.NewReader(job.Body))
	if err != nil {
		s.writeErr(w, r, err)
		return true
	}
	req.Header.Set("Content-Type", "application/json")
	// The backend sees our unique id, as on the queue route: a client
	// reusing its own id must not collide in vLLM.
	req.Header.Set("X-Request-Id", job.ID)
	if job.Stream() {
		req.Header.Set("Accept", "text/event-stream")
	}
	if l.ctx.Err() != nil {
		// The lease ran out since it was taken (the AfterFunc above
		// cancels asynchronously): send nothing.
		s.writeErr(w, r, s.directAborted(ctx))
		return true
	}
	resp, err := s.direct.client.Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return true // the client left
		}
		if ctx.Err() != nil {
			s.writeErr(w, r, s.directAborted(ctx))
			return true
		}
		s.metrics.direct.WithLabelValues(job.Model, "fallback").Inc()
		s.log.Warn("backend unreachable on the direct route; queueing the request", "model", job.Model, "backend", l.backend, "error", err)
		return false
	}
	defer resp.Body.Close()
	s.metrics.direct.WithLabelValues(job.Model, "served").Inc()
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if job.Stream() && resp.StatusCode == http.StatusOK && mt == "text/event-stream" {
		s.relayDirectStream(ctx, w, r, job, resp.Body)
		return true
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDirectBody+1))
	switch {
	case err != nil && r.Context().Err() != nil:
		return true
	case err != nil && ctx.Err() != nil:
		s.writeErr(w, r, s.directAborted(ctx))
		return true
	case err != nil:
		s.writeErr(w, r, openai.Errorf(http.StatusBadGateway, openai.TypeServer, "", "", "read backend response: %v", err))
		return true
	case len(body) > maxDirectBody:
		s.writeErr(w, r, openai.Errorf(http.StatusBadGateway, openai.TypeServer, "", "", "backend response larger than %d bytes", maxDirectBody))
		return true
	}
	if resp.StatusCode >= 300 {
		e := openai.ParseError(resp.StatusCode, body)
		if e == nil {
			e = openai.Errorf(resp.StatusCode, openai.TypeServer, "", "", "backend answered %d: %s", resp.StatusCode, truncate(body, 512))
		}
		openai.WriteError(w, e)
		return true
	}
	if restored, err := openai.ReplaceTopLevelString(body, "model", job.ClientModel); err == nil {
		body = restored
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
	return true
}

// relayDirectStream copies a backend's SSE stream to the client event by
// event. A stream that ends early gets an error event and [DONE], as on
// the queue path.
func (s *Server) relayDirectStream(ctx context.Context, w http.ResponseWriter, r *http.Request, job *jobstore.Job, body io.Reader) {
	rc := http.NewResponseController(w)
	openai.SSEHeaders(w)
	w.WriteHeader(http.StatusOK)
	sr := openai.NewSSEReader(body)
	var buf bytes.Buffer
	for {
		data, err := sr.Next()
		if err != nil {
			if r.Context().Err() != nil {
				return // the client left: the backend saw the close
			}
			e := openai.Errorf(http.StatusBadGateway, openai.TypeServer, "", "", "backend %s ended the stream before [DONE]", job.Model)
			if ctx.Err() != nil {
				e = s.directAborted(ctx)
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				e = openai.Errorf(http.StatusBadGateway, openai.TypeServer, "", "", "read backend stream: %v", err)
			}
			_ = openai.WriteEvent(w, e.Body())
			_ = openai.WriteEvent(w, openai.Done)
			_ = rc.Flush()
			return
		}
		done := bytes.Equal(data, openai.Done)
		if !done {
			if restored, err := openai.ReplaceTopLevelString(data, "model", job.ClientModel); err == nil {
				data = restored
			}
		}
		buf.Reset()
		_ = openai.WriteEvent(&buf, data)
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		s.firstData(r, job.Model)
		if done {
			return
		}
	}
}

// directAborted says why a direct request's context ended early.
func (s *Server) directAborted(ctx context.Context) *openai.Error {
	if errors.Is(context.Cause(ctx), errDirectLimit) {
		return openai.Errorf(http.StatusGatewayTimeout, openai.TypeTimeout, "", "",
			"the backend did not finish within inference_timeout %s", s.cfg.Orchestrator.InferenceTimeout)
	}
	return openai.Errorf(http.StatusServiceUnavailable, openai.TypeServer, "lease_lost", "",
		"aborted: the model was being switched and drain_timeout %s passed, or the gateway lost touch with Redis; retry the request",
		s.cfg.Orchestrator.DrainTimeout)
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}
