// Package mockllm is a fake of vLLM's OpenAI-compatible server (`vllm serve`)
// for tests and the dev mode.
//
// It imitates the parts of vLLM the rest of llm-switchboard can observe: the
// /health transitions of a loading engine, the /v1/models card, the exact JSON
// and SSE shapes of chat completions, completions and embeddings, vLLM's error
// envelope and bare 401, /metrics names, and the abort of a generation when its
// client goes away. Replies are deterministic functions of the served model
// name and the prompt (see Reply), so tests elsewhere can compute the expected
// answer without talking to the server. Options add the failure modes a real
// GPU box shows: crashes and hangs during load, 500s, hung generations and
// streams cut mid-way.
package mockllm

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"strings"
	"time"
)

// Defaults shared by RegisterFlags and New, so a zero Options and the command
// line agree.
const (
	DefaultHost         = "127.0.0.1"
	DefaultPort         = 8000 // vLLM's default port; Options.Port 0 picks a free one
	DefaultMaxModelLen  = 32768
	DefaultEmbeddingDim = 32
	DefaultExitMessage  = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. " +
		"GPU 0 has a total capacity of 119.70 GiB of which 1.02 GiB is free."
)

// maxEmbeddingDim keeps a typo in --embedding-dim from turning every
// embeddings request into a multi-megabyte answer.
const maxEmbeddingDim = 1 << 16

// Options configure one fake vLLM server. The zero value of every field but
// Model is usable; New fills in the documented defaults.
type Options struct {
	Host string // listen address; "" means DefaultHost
	Port int    // 0 picks a free port (see Server.Addr)
	// Model is the served model name, the only name requests may use.
	Model string
	// MaxModelLen bounds prompt plus completion tokens, like vLLM's
	// --max-model-len; 0 means DefaultMaxModelLen.
	MaxModelLen int

	// LoadDelay is how long "loading the weights" takes before /health turns 200.
	LoadDelay time.Duration
	// TTFT delays the first token (and an embeddings answer) of every request.
	TTFT time.Duration
	// TokensPerSecond paces the tokens after the first; 0 sends them at once.
	TokensPerSecond float64
	// EmbeddingDim is the length of every embedding vector; 0 means
	// DefaultEmbeddingDim.
	EmbeddingDim int
	// APIKey, when set, is required as "Authorization: Bearer <key>" on /v1/*.
	APIKey string

	// RefuseWhileLoading does not listen until the model is loaded, as real
	// vLLM does; the default answers /health with 503 while loading instead.
	RefuseWhileLoading bool
	// ExitDuringLoad makes Run fail with ErrExitDuringLoad when the load
	// would have finished, after logging ExitMessage.
	ExitDuringLoad bool
	ExitMessage    string // "" means DefaultExitMessage
	// HangLoad never finishes loading: /health stays 503 (or refused).
	HangLoad bool
	// HangGeneration accepts completions but never produces a token; the
	// request ends only when its client goes away (counted as aborted).
	HangGeneration bool
	// ErrorRate is the fraction (0..1) of inference requests answered with a
	// 500 InternalServerError.
	ErrorRate float64
	// FailAfter > 0 serves that many inference requests normally and answers
	// every later one with a 500.
	FailAfter int
	// StreamCutAfter > 0 drops the connection after that many tokens of a
	// generation: no finish chunk, no [DONE]. Shorter replies are unaffected.
	StreamCutAfter int
	// IgnoreSIGTERM is read only by the command wrapper, which then keeps
	// running on SIGTERM, like a wedged engine that has to be killed.
	IgnoreSIGTERM bool
}

// RegisterFlags binds the options to fs under vLLM-like flag names, with the
// command-line defaults (port 8000, host 127.0.0.1).
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Host, "host", DefaultHost, "address to listen on")
	fs.IntVar(&o.Port, "port", DefaultPort, "port to listen on (0 picks a free port)")
	fs.StringVar(&o.Model, "model", "", "served model name (required)")
	fs.IntVar(&o.MaxModelLen, "max-model-len", DefaultMaxModelLen, "context length in tokens (prompt plus completion)")
	fs.DurationVar(&o.LoadDelay, "load-delay", 0, "simulated model load time before /health answers 200")
	fs.DurationVar(&o.TTFT, "ttft", 0, "time to first token")
	fs.Float64Var(&o.TokensPerSecond, "tokens-per-second", 0, "generation speed after the first token (0 = no delay)")
	fs.IntVar(&o.EmbeddingDim, "embedding-dim", DefaultEmbeddingDim, "length of embedding vectors")
	fs.StringVar(&o.APIKey, "api-key", "", "require this bearer token on /v1/*")
	fs.BoolVar(&o.RefuseWhileLoading, "refuse-while-loading", false, "do not listen until loaded (like real vLLM) instead of answering 503")
	fs.BoolVar(&o.ExitDuringLoad, "exit-during-load", false, "fail with an error when the load would finish")
	fs.StringVar(&o.ExitMessage, "exit-message", DefaultExitMessage, "error printed by --exit-during-load")
	fs.BoolVar(&o.HangLoad, "hang-load", false, "never finish loading")
	fs.BoolVar(&o.HangGeneration, "hang-generation", false, "accept completions but never send a token")
	fs.Float64Var(&o.ErrorRate, "error-rate", 0, "fraction (0..1) of inference requests answered with 500")
	fs.IntVar(&o.FailAfter, "fail-after", 0, "answer 500 to every inference request after the first N (0 = never)")
	fs.IntVar(&o.StreamCutAfter, "stream-cut-after", 0, "drop the connection after N generated tokens (0 = never)")
	fs.BoolVar(&o.IgnoreSIGTERM, "ignore-sigterm", false, "keep running on SIGTERM (must be killed)")
}

// Validate reports every invalid option at once, naming each by its flag.
func (o Options) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(o.Model) == "" {
		bad("model", "must be set")
	}
	if o.Port < 0 || o.Port > 65535 {
		bad("port", "must be within 0..65535, got %d", o.Port)
	}
	if o.MaxModelLen < 0 {
		bad("max-model-len", "must not be negative, got %d", o.MaxModelLen)
	}
	if o.LoadDelay < 0 {
		bad("load-delay", "must not be negative, got %s", o.LoadDelay)
	}
	if o.TTFT < 0 {
		bad("ttft", "must not be negative, got %s", o.TTFT)
	}
	if o.TokensPerSecond < 0 || math.IsNaN(o.TokensPerSecond) || math.IsInf(o.TokensPerSecond, 0) {
		bad("tokens-per-second", "must be a finite number >= 0, got %v", o.TokensPerSecond)
	}
	if o.EmbeddingDim < 0 || o.EmbeddingDim > maxEmbeddingDim {
		bad("embedding-dim", "must be within 0..%d, got %d", maxEmbeddingDim, o.EmbeddingDim)
	}
	if !(o.ErrorRate >= 0 && o.ErrorRate <= 1) { // also rejects NaN
		bad("error-rate", "must be within 0..1, got %v", o.ErrorRate)
	}
	if o.FailAfter < 0 {
		bad("fail-after", "must not be negative, got %d", o.FailAfter)
	}
	if o.StreamCutAfter < 0 {
		bad("stream-cut-after", "must not be negative, got %d", o.StreamCutAfter)
	}
	if o.HangLoad && o.ExitDuringLoad {
		errs = append(errs, errors.New("--hang-load and --exit-during-load are mutually exclusive"))
	}
	return errors.Join(errs...)
}

// withDefaults is the one place zero values become defaults.
func (o Options) withDefaults() Options {
	if o.Host == "" {
		o.Host = DefaultHost
	}
	if o.MaxModelLen == 0 {
		o.MaxModelLen = DefaultMaxModelLen
	}
	if o.EmbeddingDim == 0 {
		o.EmbeddingDim = DefaultEmbeddingDim
	}
	if o.ExitMessage == "" {
		o.ExitMessage = DefaultExitMessage
	}
	return o
}

// instantLoad reports whether the load has nothing to simulate, so the model
// counts as loaded from New on (Handler alone, e.g. under httptest, is usable).
func (o Options) instantLoad() bool {
	return o.LoadDelay == 0 && !o.HangLoad && !o.ExitDuringLoad
}
