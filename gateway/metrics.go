package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// latencyBuckets span what an LLM request may take: a cached embedding
// in milliseconds, a long generation after a model switch in minutes
// (inference_timeout defaults to 10 minutes).
var latencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 450, 600}

// metrics are the gateway's Prometheus metrics.
type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	ttft      *prometheus.HistogramVec
	queueFull *prometheus.CounterVec
	waiting   *prometheus.GaugeVec
	direct    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "switchboard", "gateway"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "requests_total",
			Help: "HTTP requests answered, by logical model (empty for non-inference routes), route pattern and status code.",
		}, []string{"model", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name:    "request_duration_seconds",
			Help:    "Time from an admitted inference request's arrival to its last byte, including any wait for a model switch.",
			Buckets: latencyBuckets,
		}, []string{"model", "route", "mode"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name:    "time_to_first_token_seconds",
			Help:    "Time from a streaming request's arrival to the first data chunk written to the client.",
			Buckets: latencyBuckets,
		}, []string{"model"}),
		queueFull: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "queue_full_total",
			Help: "Inference requests refused with 429 because the model's queue (or all queues) was full.",
		}, []string{"model"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "waiting_requests",
			Help: "Sync and streaming requests this replica holds open until their job ends.",
		}, []string{"model"}),
		direct: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "direct_requests_total",
			Help: "Requests sent straight to the active backend under a lease (served), or queued after the backend could not be reached (fallback).",
		}, []string{"model", "outcome"}),
	}
	var err error
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.ttft, m.queueFull, m.waiting, m.direct} {
		if e := reg.Register(c); e != nil {
			err = errors.Join(err, e)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("register gateway metrics: %w", err)
	}
	return m, nil
}

// requestInfo is what a handler learns about a request that the
// instrumentation wrapper reports once it is answered. The wrapper puts
// it in the request's context; only the request's goroutine touches it.
type requestInfo struct {
	start     time.Time
	model     string
	mode      string
	jobID     string
	keyID     string
	firstData bool
}

type requestInfoKey struct{}

// infoFrom returns the request's info, or a throwaway one when the
// handler runs without the wrapper.
func infoFrom(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{start: time.Now()}
}

// instrument counts and times the requests of one route, labelled by its
// pattern rather than the raw path, and logs each finished inference
// request. It runs outside auth, so refused requests count too.
func (s *Server) instrument(route string, inference bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := &requestInfo{start: time.Now()}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, ri)))
		status := sw.status
		if status == 0 {
			// Nothing written: the client went away first (499, as nginx
			// says), or the handler wrote an empty 200.
			status = http.StatusOK
			if r.Context().Err() != nil {
				status = 499
			}
		}
		took := time.Since(ri.start)
		s.metrics.requests.WithLabelValues(ri.model, route, strconv.Itoa(status)).Inc()
		if ri.mode != "" {
			s.metrics.duration.WithLabelValues(ri.model, route, ri.mode).Observe(took.Seconds())
		}
		if inference {
			s.log.Debug("request finished", "request_id", ri.jobID, "route", route, "model", ri.model,
				"mode", ri.mode, "key_id", ri.keyID, "status", status, "duration", took)
		}
	})
}

// firstData records a stream's time to first token once per request.
func (s *Server) firstData(r *http.Request, model string) {
	ri := infoFrom(r.Context())
	if ri.firstData {
		return
	}
	ri.firstData = true
	s.metrics.ttft.WithLabelValues(model).Observe(time.Since(ri.start).Seconds())
}

// metricsHandler serves the gatherer in Prometheus' text format.
func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{
		ErrorLog: s.log.Named("metrics").StandardLogger(nil),
	})
}

// statusWriter remembers the status written. It forwards Flush and
// Unwrap, so streams flush through it and http.ResponseController finds
// the connection underneath.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
