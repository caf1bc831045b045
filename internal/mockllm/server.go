package mockllm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ErrExitDuringLoad is returned by Run when Options.ExitDuringLoad made the
// simulated engine crash while loading; the command wrapper exits non-zero,
// as vLLM does.
var ErrExitDuringLoad = errors.New("engine core initialization failed")

// errNotListening is returned by Addr when Run ended before it ever listened.
var errNotListening = errors.New("mockllm: server stopped before listening")

// defaultShutdownTimeout bounds the graceful drain of in-flight requests;
// generations still running then are aborted.
const defaultShutdownTimeout = 5 * time.Second

// Stats are the server's request counters, for tests. Inference requests are
// chat completions, completions and embeddings that passed validation.
type Stats struct {
	Requests  int64 // inference requests accepted, including injected failures
	Succeeded int64 // answered completely
	Failed    int64 // answered with an injected 500 or cut by StreamCutAfter
	Aborted   int64 // stopped because the client went away or the server shut down
	Running   int64 // being generated right now

	PromptTokens     int64 // prompt tokens of succeeded requests
	GenerationTokens int64 // completion tokens of succeeded requests
}

// Server is one fake vLLM engine serving one model. Create it with New, serve
// it with Run (or mount Handler under httptest).
type Server struct {
	opts            Options
	log             hclog.Logger
	handler         http.Handler
	now             func() time.Time
	shutdownTimeout time.Duration

	ready      atomic.Bool
	loaded     chan struct{} // closed once the model is loaded
	loadedOnce sync.Once
	endLoad    chan struct{} // test hook: closed to finish the load at once
	endOnce    sync.Once

	running   atomic.Bool    // Run was called
	inflight  sync.WaitGroup // handlers running, waited for when Run ends
	listening chan struct{}  // closed once addr is set
	done      chan struct{}  // closed when Run returns
	addr      string         // written before listening is closed

	mu        sync.Mutex
	stats     Stats
	byReason  map[string]int64 // succeeded requests by finish reason
	changed   chan struct{}    // closed and replaced on every stats change
	injectRnd func() float64
}

// New checks opts and builds a server in the "loading" state, or already
// loaded when there is nothing to simulate (no LoadDelay, HangLoad or
// ExitDuringLoad), so that Handler alone is immediately usable. A nil log
// discards logs.
func New(opts Options, log hclog.Logger) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("invalid mockllm options: %w", err)
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	opts = opts.withDefaults()
	s := &Server{
		opts:            opts,
		log:             log,
		now:             time.Now,
		shutdownTimeout: defaultShutdownTimeout,
		loaded:          make(chan struct{}),
		endLoad:         make(chan struct{}),
		listening:       make(chan struct{}),
		done:            make(chan struct{}),
		byReason:        map[string]int64{},
		changed:         make(chan struct{}),
		injectRnd:       rand.Float64,
	}
	s.handler = s.routes()
	if opts.instantLoad() {
		s.markLoaded()
	}
	return s, nil
}

// Handler serves the whole API (health, models, completions, embeddings,
// metrics) according to the server's current state.
func (s *Server) Handler() http.Handler { return s.handler }

// Ready reports whether the model finished loading and the server is not
// shutting down: what /health answers 200 to.
func (s *Server) Ready() bool { return s.ready.Load() }

// Loaded is closed once the model has finished loading, so tests can wait for
// readiness as an event instead of polling /health.
func (s *Server) Loaded() <-chan struct{} { return s.loaded }

// Addr returns the host:port the server listens on, blocking until Run has
// bound it (with RefuseWhileLoading, only after the load), Run has ended
// without listening, or ctx is done.
func (s *Server) Addr(ctx context.Context) (string, error) {
	select {
	case <-s.listening:
		return s.addr, nil
	case <-s.done:
		select {
		case <-s.listening:
			return s.addr, nil
		default:
			return "", errNotListening
		}
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Stats returns a snapshot of the request counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// WaitFor blocks until cond holds for the counters (checked now and after
// every change) or ctx is done, so tests wait on events, never on sleeps.
func (s *Server) WaitFor(ctx context.Context, cond func(Stats) bool) error {
	for {
		s.mu.Lock()
		st, changed := s.stats, s.changed
		s.mu.Unlock()
		if cond(st) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for mockllm stats (last %+v): %w", st, ctx.Err())
		}
	}
}

// Run listens on Host:Port, simulates loading the model, and serves until ctx
// is canceled; then it drains in-flight requests for a bounded time and
// returns nil. It returns an error wrapping ErrExitDuringLoad when the options
// make the engine crash during load, and listen or serve errors as they come.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("mockllm: Run called twice")
	}
	defer close(s.done)
	log := s.log.With("model", s.opts.Model)

	// Requests outlive ctx so that shutdown can drain them; abortRequests
	// ends the generations still running at the shutdown deadline.
	reqCtx, abortRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer abortRequests()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	var wg sync.WaitGroup
	defer s.inflight.Wait() // after the listener is closed: no new handlers
	defer wg.Wait()
	serveErr := make(chan error, 1)
	listen := func() error {
		addr := net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		s.addr = ln.Addr().String()
		close(s.listening)
		wg.Go(func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- err
			}
		})
		return nil
	}
	crash := func() {
		abortRequests()
		_ = srv.Close()
	}

	if !s.opts.RefuseWhileLoading {
		if err := listen(); err != nil {
			return err
		}
	}
	if err := s.load(ctx, log); err != nil {
		crash()
		if errors.Is(err, ErrExitDuringLoad) {
			return err
		}
		return nil // canceled while loading: a clean stop
	}
	if s.opts.RefuseWhileLoading {
		if err := listen(); err != nil {
			return err
		}
	}
	log.Info("model loaded", "address", s.addr)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		crash()
		return fmt.Errorf("serve: %w", err)
	}
	s.ready.Store(false)
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown deadline passed, aborting in-flight requests", "error", err)
		crash()
	}
	return nil
}

// load simulates loading the weights: it returns nil once loaded, ctx's error
// when canceled first, and ErrExitDuringLoad when the engine "crashes".
func (s *Server) load(ctx context.Context, log hclog.Logger) error {
	if s.ready.Load() {
		return nil
	}
	log.Info("loading model", "load_delay", s.opts.LoadDelay, "hang", s.opts.HangLoad)
	var elapsed <-chan time.Time
	if !s.opts.HangLoad {
		t := time.NewTimer(s.opts.LoadDelay)
		defer t.Stop()
		elapsed = t.C
	}
	select {
	case <-ctx.Done():
		log.Info("load canceled")
		return ctx.Err()
	case <-elapsed:
	case <-s.endLoad:
	}
	if s.opts.ExitDuringLoad {
		log.Error("engine core initialization failed", "error", s.opts.ExitMessage)
		return fmt.Errorf("%w: %s", ErrExitDuringLoad, s.opts.ExitMessage)
	}
	s.markLoaded()
	return nil
}

func (s *Server) markLoaded() {
	s.loadedOnce.Do(func() {
		s.ready.Store(true)
		close(s.loaded)
	})
}

// finishLoad ends a simulated load now (tests only).
func (s *Server) finishLoad() {
	s.endOnce.Do(func() { close(s.endLoad) })
}

// outcome is how an accepted inference request ended.
type outcome int

const (
	succeeded outcome = iota
	aborted
	cut
)

// begin accounts for a validated inference request and decides whether it is
// one of the injected failures (answered 500 by the caller).
func (s *Server) begin() (fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	fail = (s.opts.FailAfter > 0 && s.stats.Requests > int64(s.opts.FailAfter)) ||
		(s.opts.ErrorRate > 0 && s.injectRnd() < s.opts.ErrorRate)
	if fail {
		s.stats.Failed++
	} else {
		s.stats.Running++
	}
	s.notifyLocked()
	return fail
}

// end accounts for a request begin let through.
func (s *Server) end(o outcome, finishReason string, promptTokens, completionTokens int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Running--
	switch o {
	case succeeded:
		s.stats.Succeeded++
		s.byReason[finishReason]++
		s.stats.PromptTokens += int64(promptTokens)
		s.stats.GenerationTokens += int64(completionTokens)
	case aborted:
		s.stats.Aborted++
	case cut:
		s.stats.Failed++
	}
	s.notifyLocked()
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
