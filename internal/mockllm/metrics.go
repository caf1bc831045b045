package mockllm

import (
	"fmt"
	"net/http"
	"strings"
)

// handleMetrics writes a few of vLLM's Prometheus series (same names, labels
// and float formatting as its Python client) plus the fake's own counters.
func (s *Server) handleMetrics(w http.ResponseWriter, _ *http.Request) (any, error) {
	s.mu.Lock()
	st := s.stats
	stop, length := s.byReason[FinishStop], s.byReason[FinishLength]
	s.mu.Unlock()

	labels := fmt.Sprintf(`engine="0",model_name="%s"`, escapeLabel(s.opts.Model))
	var b strings.Builder
	series := func(name, kind, help string, samples ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
		for _, sample := range samples {
			b.WriteString(sample)
		}
	}
	sample := func(name, extra string, v int64) string {
		return fmt.Sprintf("%s{%s%s} %.1f\n", name, extra, labels, float64(v))
	}
	series("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
		sample("vllm:num_requests_running", "", st.Running))
	series("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
		sample("vllm:num_requests_waiting", "", 0))
	series("vllm:request_success_total", "counter", "Count of successfully processed requests.",
		sample("vllm:request_success_total", `finished_reason="stop",`, stop),
		sample("vllm:request_success_total", `finished_reason="length",`, length),
		sample("vllm:request_success_total", `finished_reason="abort",`, 0))
	series("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
		sample("vllm:prompt_tokens_total", "", st.PromptTokens))
	series("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
		sample("vllm:generation_tokens_total", "", st.GenerationTokens))
	series("mockllm_requests_total", "counter", "Inference requests accepted by the fake engine.",
		sample("mockllm_requests_total", "", st.Requests))
	series("mockllm_requests_aborted_total", "counter", "Generations stopped because the client went away or the server shut down.",
		sample("mockllm_requests_aborted_total", "", st.Aborted))
	series("mockllm_requests_failed_total", "counter", "Requests answered with an injected 500 or cut mid-generation.",
		sample("mockllm_requests_failed_total", "", st.Failed))

	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
	return nil, nil
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(v string) string { return labelEscaper.Replace(v) }
