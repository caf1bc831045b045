package mockllm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
)

// maxBodyBytes bounds request bodies; vLLM has no small limit either.
const maxBodyBytes = 64 << 20

// apiError is an error answered in vLLM's envelope:
// {"error":{"message","type","param","code":<HTTP status>}}.
type apiError struct {
	status  int
	typ     string
	message string
	param   string // "" is JSON null
}

func (e *apiError) Error() string { return e.message }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "BadRequestError", message: fmt.Sprintf(format, args...)}
}

func modelNotFound(model string) *apiError {
	return &apiError{
		status:  http.StatusNotFound,
		typ:     "NotFoundError",
		message: fmt.Sprintf("The model `%s` does not exist.", model),
		param:   "model",
	}
}

var (
	errInjected = &apiError{
		status:  http.StatusInternalServerError,
		typ:     "InternalServerError",
		message: "EngineCore encountered an issue. See stack trace (above) for the root cause.",
	}
	errLoading = &apiError{
		status:  http.StatusServiceUnavailable,
		typ:     "ServiceUnavailableError",
		message: "The model is still loading.",
	}
)

// apiHandler returns a value to write as a 200 JSON answer, or an error to
// map to vLLM's envelope; streaming handlers write themselves and return
// (nil, nil).
type apiHandler func(w http.ResponseWriter, r *http.Request) (any, error)

type route struct {
	handle    apiHandler
	needsLoad bool // answers errLoading until the model is loaded
}

// routes builds the handler: vLLM's API-key middleware on /v1, then
// FastAPI-like routing (JSON 404 and 405 bodies).
func (s *Server) routes() http.Handler {
	table := map[string]map[string]route{
		"/health":              {http.MethodGet: {handle: s.handleHealth}},
		"/metrics":             {http.MethodGet: {handle: s.handleMetrics}},
		"/v1/models":           {http.MethodGet: {handle: s.handleModels, needsLoad: true}},
		"/v1/chat/completions": {http.MethodPost: {handle: s.handleChat, needsLoad: true}},
		"/v1/completions":      {http.MethodPost: {handle: s.handleCompletions, needsLoad: true}},
		"/v1/embeddings":       {http.MethodPost: {handle: s.handleEmbeddings, needsLoad: true}},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		if s.opts.APIKey != "" && strings.HasPrefix(r.URL.Path, "/v1") && r.Method != http.MethodOptions && !s.authorized(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized"})
			return
		}
		methods, ok := table[r.URL.Path]
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"})
			return
		}
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet // Starlette answers HEAD on GET routes
		}
		rt, ok := methods[method]
		if !ok {
			allowed := make([]string, 0, len(methods))
			for m := range methods {
				allowed = append(allowed, m)
			}
			slices.Sort(allowed)
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"detail": "Method Not Allowed"})
			return
		}
		var (
			v   any
			err error
		)
		if rt.needsLoad && !s.ready.Load() {
			err = errLoading
		} else {
			v, err = rt.handle(w, r)
		}
		var ae *apiError
		switch {
		case errors.As(err, &ae):
			writeError(w, ae)
		case err != nil:
			writeError(w, &apiError{status: http.StatusInternalServerError, typ: "InternalServerError", message: err.Error()})
		case v != nil:
			writeJSON(w, http.StatusOK, v)
		}
	})
}

func (s *Server) authorized(r *http.Request) bool {
	want := "Bearer " + s.opts.APIKey
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) == 1
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"message":"encode response","type":"InternalServerError","param":null,"code":500}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeError(w http.ResponseWriter, e *apiError) {
	var param *string
	if e.param != "" {
		param = &e.param
	}
	type info struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    int     `json:"code"`
	}
	writeJSON(w, e.status, struct {
		Error info `json:"error"`
	}{info{Message: e.message, Type: e.typ, Param: param, Code: e.status}})
}

// marshal encodes like Python's json module does for vLLM: compact, with
// <, > and & left alone.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// randomID is vLLM's random_uuid(): 32 hex digits.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// decodeBody reads a JSON object into dst, answering 400 for bad JSON or
// wrongly typed fields.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return badRequest("read request body: %v", err)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return badRequest("%s: expected %s, got %s", te.Field, te.Type, te.Value)
		}
		return badRequest("invalid JSON body: %v", err)
	}
	return nil
}

// checkModel enforces vLLM's rule: the request names the served model, or
// none at all.
func (s *Server) checkModel(model *string) error {
	if model == nil || *model == "" || *model == s.opts.Model {
		return nil
	}
	return modelNotFound(*model)
}

// ---- /health, /v1/models ----

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) (any, error) {
	if s.ready.Load() {
		w.WriteHeader(http.StatusOK) // vLLM: empty body
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	return nil, nil
}

type modelPermission struct {
	ID                 string  `json:"id"`
	Object             string  `json:"object"`
	Created            int64   `json:"created"`
	AllowCreateEngine  bool    `json:"allow_create_engine"`
	AllowSampling      bool    `json:"allow_sampling"`
	AllowLogprobs      bool    `json:"allow_logprobs"`
	AllowSearchIndices bool    `json:"allow_search_indices"`
	AllowView          bool    `json:"allow_view"`
	AllowFineTuning    bool    `json:"allow_fine_tuning"`
	Organization       string  `json:"organization"`
	Group              *string `json:"group"`
	IsBlocking         bool    `json:"is_blocking"`
}

type modelCard struct {
	ID          string            `json:"id"`
	Object      string            `json:"object"`
	Created     int64             `json:"created"`
	OwnedBy     string            `json:"owned_by"`
	Root        string            `json:"root"`
	Parent      *string           `json:"parent"`
	MaxModelLen int               `json:"max_model_len"`
	Permission  []modelPermission `json:"permission"`
}

type modelList struct {
	Object string      `json:"object"`
	Data   []modelCard `json:"data"`
}

func (s *Server) handleModels(_ http.ResponseWriter, _ *http.Request) (any, error) {
	created := s.now().Unix()
	return modelList{Object: "list", Data: []modelCard{{
		ID:          s.opts.Model,
		Object:      "model",
		Created:     created,
		OwnedBy:     "vllm",
		Root:        s.opts.Model,
		MaxModelLen: s.opts.MaxModelLen,
		Permission: []modelPermission{{
			ID:            "modelperm-" + randomID(),
			Object:        "model_permission",
			Created:       created,
			AllowSampling: true,
			AllowLogprobs: true,
			AllowView:     true,
			Organization:  "*",
		}},
	}}}, nil
}

// ---- completions ----

// genRequest holds the fields of chat and text completion requests the fake
// engine reads; others are accepted and ignored, as vLLM does.
type genRequest struct {
	Model               *string         `json:"model"`
	Messages            json.RawMessage `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           json.RawMessage `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stream              *bool           `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
}

// choicePlan is one choice's whole answer, known before it is "generated".
type choicePlan struct {
	index        int
	tokens       []string
	finishReason string
}

// plan is an accepted generation request.
type plan struct {
	chat         bool
	id           string
	created      int64
	model        string
	promptTokens int
	choices      []choicePlan
	stream       bool
	includeUsage bool
}

func (p *plan) completionTokens() int {
	n := 0
	for _, c := range p.choices {
		n += len(c.tokens)
	}
	return n
}

func (p *plan) steps() int {
	n := 0
	for _, c := range p.choices {
		n = max(n, len(c.tokens))
	}
	return n
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) (any, error) {
	var req genRequest
	if err := decodeBody(w, r, &req); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(req.Messages)) == 0 {
		return nil, badRequest("messages: field required")
	}
	if err := s.checkModel(req.Model); err != nil {
		return nil, err
	}
	prompt, err := ChatPrompt(req.Messages)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	p, err := s.newPlan(true, "chatcmpl-", &req, []input{{text: prompt, tokens: CountTokens(prompt)}}, "messages")
	if err != nil {
		return nil, err
	}
	return s.generate(w, r, p)
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) (any, error) {
	var req genRequest
	if err := decodeBody(w, r, &req); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(req.Prompt)) == 0 {
		return nil, badRequest("prompt: field required")
	}
	if err := s.checkModel(req.Model); err != nil {
		return nil, err
	}
	prompts, err := parseInputs("prompt", req.Prompt)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	p, err := s.newPlan(false, "cmpl-", &req, prompts, "prompt")
	if err != nil {
		return nil, err
	}
	return s.generate(w, r, p)
}

// newPlan applies vLLM's sampling-parameter checks and computes each choice's
// reply.
func (s *Server) newPlan(chat bool, idPrefix string, req *genRequest, prompts []input, promptName string) (*plan, error) {
	maxTokens := 0 // up to the context length
	if raw := bytes.TrimSpace(req.MaxTokens); len(raw) == 0 && !chat {
		maxTokens = DefaultCompletionMaxTokens
	} else if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		var f float64 // pydantic's lax mode also takes 16.0
		if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
			return nil, badRequest("max_tokens: expected an integer, got %s", raw)
		}
		maxTokens = int(f)
		if maxTokens < 1 {
			return nil, badRequest("max_tokens must be at least 1, got %d.", maxTokens)
		}
	}
	if req.MaxCompletionTokens != nil {
		if *req.MaxCompletionTokens < 1 {
			return nil, badRequest("max_tokens must be at least 1, got %d.", *req.MaxCompletionTokens)
		}
		maxTokens = *req.MaxCompletionTokens
	}
	stream := req.Stream != nil && *req.Stream
	if req.StreamOptions != nil && !stream {
		return nil, badRequest("Stream options can only be defined when `stream=True`.")
	}
	p := &plan{
		chat:         chat,
		id:           idPrefix + randomID(),
		created:      s.now().Unix(),
		model:        s.opts.Model,
		stream:       stream,
		includeUsage: stream && req.StreamOptions != nil && req.StreamOptions.IncludeUsage != nil && *req.StreamOptions.IncludeUsage,
	}
	for i, in := range prompts {
		limit := s.opts.MaxModelLen
		if in.tokens >= limit {
			return nil, badRequest("This model's maximum context length is %d tokens. However, your request has %d input tokens. "+
				"Please reduce the length of the input %s.", limit, in.tokens, promptName)
		}
		if maxTokens > 0 && in.tokens+maxTokens > limit {
			return nil, badRequest("This model's maximum context length is %d tokens. However, you requested %d tokens "+
				"(%d in the %s, %d in the completion). Please reduce the length of the %s or completion.",
				limit, in.tokens+maxTokens, in.tokens, promptName, maxTokens, promptName)
		}
		budget := maxTokens
		if budget == 0 {
			budget = limit - in.tokens
		}
		tokens, finish := Reply(s.opts.Model, in.text, budget)
		p.promptTokens += in.tokens
		p.choices = append(p.choices, choicePlan{index: i, tokens: tokens, finishReason: finish})
	}
	return p, nil
}

// generate "runs" an accepted plan: it applies the injected failures, paces
// the tokens (TTFT, then TokensPerSecond), streams them or answers at the end,
// and aborts as soon as the request's context is done.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, p *plan) (any, error) {
	if s.begin() {
		s.log.Warn("injected request failure", "request_id", p.id)
		return nil, errInjected
	}
	ctx := r.Context()
	start := time.Now()
	log := s.log.With("request_id", p.id)
	result := aborted
	defer func() { s.end(result, p.choices[0].finishReason, p.promptTokens, p.completionTokens()) }()

	var sse *sseWriter
	if p.stream {
		sse = newSSEWriter(w)
	}
	if s.opts.HangGeneration {
		<-ctx.Done()
		log.Info("aborted request", "reason", "client gone during hung generation")
		return nil, nil
	}
	sent := 0
	for step := range p.steps() {
		if err := s.pace(ctx, start, step); err != nil {
			log.Info("aborted request", "tokens_sent", sent)
			return nil, nil
		}
		for _, c := range p.choices {
			if step >= len(c.tokens) {
				continue
			}
			if sse != nil {
				if step == 0 && p.chat {
					if err := sse.event(p.chatChunk(c.index, chatDelta{Role: "assistant"}, nil)); err != nil {
						log.Info("aborted request", "tokens_sent", sent)
						return nil, nil
					}
				}
				if err := sse.event(p.tokenChunk(c.index, c.tokens[step], nil)); err != nil {
					log.Info("aborted request", "tokens_sent", sent)
					return nil, nil
				}
			}
			sent++
			if s.opts.StreamCutAfter > 0 && sent >= s.opts.StreamCutAfter {
				result = cut
				log.Warn("dropping connection mid-generation", "tokens_sent", sent)
				panic(http.ErrAbortHandler) // closes the connection without a clean end
			}
		}
	}
	result = succeeded
	if sse == nil {
		return p.response(), nil
	}
	for _, c := range p.choices {
		finish := c.finishReason
		if err := sse.event(p.tokenChunk(c.index, "", &finish)); err != nil {
			return nil, nil
		}
	}
	if p.includeUsage {
		if err := sse.event(p.usageChunk()); err != nil {
			return nil, nil
		}
	}
	_ = sse.done()
	return nil, nil
}

// pace waits until token step is due: TTFT after start, then one token every
// 1/TokensPerSecond. It returns early with ctx's error when ctx is done.
func (s *Server) pace(ctx context.Context, start time.Time, step int) error {
	due := start.Add(s.opts.TTFT)
	if s.opts.TokensPerSecond > 0 && step > 0 {
		due = due.Add(time.Duration(float64(step) / s.opts.TokensPerSecond * float64(time.Second)))
	}
	wait := time.Until(due)
	if wait <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sseWriter writes "data: <json>\n\n" events, each flushed at once.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// newSSEWriter sends the headers immediately, as vLLM does before its first
// token.
func newSSEWriter(w http.ResponseWriter) *sseWriter {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	return &sseWriter{w: w, rc: rc}
}

func (e *sseWriter) event(v any) error {
	data, err := marshal(v)
	if err != nil {
		return err
	}
	return e.write(data)
}

func (e *sseWriter) done() error { return e.write([]byte("[DONE]")) }

func (e *sseWriter) write(data []byte) error {
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := e.w.Write(buf); err != nil {
		return err
	}
	return e.rc.Flush()
}
