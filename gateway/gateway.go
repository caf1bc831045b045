// Package gateway is the switchboard's HTTP face: an OpenAI-compatible API
// that authenticates requests, turns each inference request (sync,
// streaming or async) into a job in Redis, and waits for or relays its
// outcome. It keeps no state of its own, so any number of replicas can run;
// it meets the orchestrator only in Redis.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

// Options are the gateway's dependencies.
type Options struct {
	Config *config.Config
	Store  *jobstore.Store
	Log    hclog.Logger
	// Instance names this replica; its notification channel carries it.
	// Default: random.
	Instance string
	// ShutdownGrace bounds how long in-flight requests may finish after
	// Serve's context ends; default 30s.
	ShutdownGrace time.Duration
	// KeepAlive is the interval of SSE comments sent to a waiting stream;
	// default 5s.
	KeepAlive time.Duration
	// Registerer receives the gateway's metrics; default a private
	// registry, so tests and embedders never share the global one.
	Registerer prometheus.Registerer
	// Gatherer is what GET /metrics serves; default Registerer when it
	// is also a Gatherer (a *prometheus.Registry).
	Gatherer prometheus.Gatherer
}

// Server is one gateway replica.
type Server struct {
	opts    Options
	cfg     *config.Config
	store   *jobstore.Store
	log     hclog.Logger
	keys    *keyring
	waiters *waiters
	router  *httprouter.Router

	metrics  *metrics
	gatherer prometheus.Gatherer

	subscribed chan struct{} // closed once notifications flow
	subOnce    sync.Once
	stateCache atomic.Pointer[stateEntry]
	direct     *directRoute
}

// New checks opts and builds the server. It refuses to serve
// unauthenticated on anything but a loopback address.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Config == nil:
		return nil, errors.New("gateway: no config")
	case opts.Store == nil:
		return nil, errors.New("gateway: no job store")
	case opts.Log == nil:
		return nil, errors.New("gateway: no logger")
	}
	if opts.Instance == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		opts.Instance = hex.EncodeToString(b[:])
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 30 * time.Second
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 5 * time.Second
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Gatherer == nil {
		opts.Gatherer, _ = opts.Registerer.(prometheus.Gatherer)
		if opts.Gatherer == nil {
			opts.Gatherer = prometheus.Gatherers{}
		}
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:       opts,
		cfg:        opts.Config,
		store:      opts.Store,
		log:        opts.Log.Named("gateway"),
		keys:       newKeyring(opts.Config.Gateway.AllKeys()),
		waiters:    newWaiters(),
		subscribed: make(chan struct{}),
		metrics:    m,
		gatherer:   opts.Gatherer,
	}
	if err := CheckExposure(opts.Config); err != nil {
		return nil, err
	}
	if s.keys.empty() {
		s.log.Warn("no API keys configured: serving without authentication on loopback only", "listen", opts.Config.Gateway.Listen)
	}
	s.direct = newDirectRoute(s)
	s.router = s.routes()
	return s, nil
}

// CheckExposure refuses a configuration that would serve without API keys
// on anything but a loopback address. Callers may run it before opening
// any connection; New runs it too.
func CheckExposure(cfg *config.Config) error {
	g := cfg.Gateway
	if len(g.AllKeys()) == 0 && !isLoopback(g.Listen) {
		return fmt.Errorf("refusing to listen on %s without API keys: set GATEWAY_API_KEY (and GATEWAY_ADMIN_API_KEY), or listen on a loopback address",
			g.Listen)
	}
	return nil
}

// stateEntry is a cached slot state and when it was read.
type stateEntry struct {
	st *jobstore.SlotState
	at time.Time
}

// isLoopback reports whether a listen address binds only loopback.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) routes() *httprouter.Router {
	r := httprouter.New()
	r.HandleMethodNotAllowed = true
	// Unmatched requests share one route label: raw paths would let any
	// client grow the metrics without bound.
	r.NotFound = s.instrument("unmatched", false, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		openai.WriteError(w, openai.Errorf(http.StatusNotFound, openai.TypeNotFound, "unknown_url", "",
			"unknown route %s %s", req.Method, req.URL.Path))
	}))
	r.MethodNotAllowed = s.instrument("unmatched", false, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		openai.WriteError(w, openai.Errorf(http.StatusMethodNotAllowed, openai.TypeInvalidRequest, "method_not_allowed", "",
			"method %s is not allowed on %s", req.Method, req.URL.Path))
	}))
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, v any) {
		s.log.Error("handler panicked", "path", req.URL.Path, "panic", v)
		openai.WriteError(w, openai.Errorf(http.StatusInternalServerError, openai.TypeServer, "", "", "internal error"))
	}

	handle := func(method, path string, h http.Handler) {
		r.Handler(method, path, s.instrument(path, false, h))
	}
	if s.cfg.Gateway.HealthOpen {
		handle(http.MethodGet, "/health", s.jsonHandler(s.health))
	} else {
		handle(http.MethodGet, "/health", s.auth(scopeUser, s.jsonHandler(s.health)))
	}
	handle(http.MethodGet, "/metrics", s.auth(scopeAdmin, s.metricsHandler()))
	handle(http.MethodGet, "/status", s.auth(scopeAdmin, s.jsonHandler(s.status)))
	handle(http.MethodGet, "/queue", s.auth(scopeAdmin, s.jsonHandler(s.queue)))
	handle(http.MethodPost, "/admin/models/:model/load", s.auth(scopeAdmin, s.jsonHandler(s.adminLoad)))
	handle(http.MethodPost, "/admin/models/:model/pin", s.auth(scopeAdmin, s.jsonHandler(s.adminPin)))
	handle(http.MethodPost, "/admin/unpin", s.auth(scopeAdmin, s.jsonHandler(s.adminUnpin)))
	handle(http.MethodPost, "/admin/unload", s.auth(scopeAdmin, s.jsonHandler(s.adminUnload)))
	handle(http.MethodPost, "/admin/maintenance", s.auth(scopeAdmin, s.jsonHandler(s.adminMaintenance)))
	handle(http.MethodGet, "/v1/models", s.auth(scopeUser, s.jsonHandler(s.listModels)))
	handle(http.MethodGet, "/v1/models/*model", s.auth(scopeUser, s.jsonHandler(s.getModel)))
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings"} {
		r.Handler(http.MethodPost, path, s.instrument(path, true, s.auth(scopeUser, http.HandlerFunc(s.inference))))
	}
	handle(http.MethodGet, "/jobs/:id", s.auth(scopeUser, s.jsonHandler(s.getJob)))
	handle(http.MethodGet, "/jobs/:id/result", s.auth(scopeUser, http.HandlerFunc(s.jobResult)))
	handle(http.MethodPost, "/jobs/:id/cancel", s.auth(scopeUser, s.jsonHandler(s.cancelJob)))
	return r
}

// Handler returns the gateway's HTTP handler. Requests that need job
// notifications wait until Run has subscribed.
func (s *Server) Handler() http.Handler { return s.cors(s.router) }

// Run receives job notifications until ctx ends. Serve calls it; tests
// that mount Handler elsewhere call it themselves.
func (s *Server) Run(ctx context.Context) error {
	if s.cfg.Gateway.DirectRoute {
		directDone := make(chan struct{})
		go func() { defer close(directDone); s.direct.run(ctx) }()
		defer func() { <-directDone }()
	}
	sub := s.store.SubscribeGateway(ctx, s.opts.Instance)
	defer sub.Close()
	for {
		ev, err := sub.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("job notifications: %w", err)
		}
		if ev.Resync {
			s.subOnce.Do(func() { close(s.subscribed) })
		}
		s.waiters.deliver(ev)
	}
}

// Serve serves HTTP on ln and receives notifications until ctx ends, then
// shuts down: in-flight requests get ShutdownGrace to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler: s.Handler(),
		// Slow clients cannot hold connections open by dribbling headers;
		// there is no WriteTimeout, because a generation may stream for
		// many minutes (inference_timeout bounds it instead).
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(runCtx) }()

	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()
	s.log.Info("listening", "address", ln.Addr().String())

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveDone:
	case err = <-runDone:
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownGrace)
	defer cancel()
	if serr := srv.Shutdown(shutdownCtx); serr != nil {
		err = errors.Join(err, fmt.Errorf("http shutdown: %w", serr))
		_ = srv.Close()
	}
	stopRun()
	if rerr := <-runDone; rerr != nil && !errors.Is(rerr, context.Canceled) {
		err = errors.Join(err, rerr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// jsonHandler adapts a handler returning (value, error) into an
// http.Handler that writes the value as JSON or the error as OpenAI's
// error envelope.
func (s *Server) jsonHandler(h func(*http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		status := http.StatusOK
		if sv, ok := v.(statusValue); ok {
			status, v = sv.status, sv.value
		}
		writeJSON(w, status, v)
	})
}

// statusValue lets a JSON handler choose its status code.
type statusValue struct {
	status int
	value  any
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		openai.WriteError(w, openai.Errorf(http.StatusInternalServerError, openai.TypeServer, "", "", "encode response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeErr maps err to a status and OpenAI's envelope. Errors that are
// not *openai.Error are our own failures: 500 or 503, logged.
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var oe *openai.Error
	if errors.As(err, &oe) {
		openai.WriteError(w, oe)
		return
	}
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	openai.WriteError(w, openai.Errorf(http.StatusServiceUnavailable, openai.TypeServer, "", "",
		"the switchboard could not handle the request: %v", err))
}
