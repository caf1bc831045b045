package mockllm

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"time"
)

type embeddingRequest struct {
	Model          *string         `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat *string         `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
}

type embeddingData struct {
	Index     int    `json:"index"`
	Object    string `json:"object"`
	Embedding any    `json:"embedding"` // []float32, or base64 of little-endian float32s
}

type embeddingResponse struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Data    []embeddingData `json:"data"`
	Usage   usageInfo       `json:"usage"`
}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) (any, error) {
	var req embeddingRequest
	if err := decodeBody(w, r, &req); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(req.Input)) == 0 {
		return nil, badRequest("input: field required")
	}
	format := "float"
	if req.EncodingFormat != nil {
		format = *req.EncodingFormat
	}
	if format != "float" && format != "base64" {
		return nil, badRequest("encoding_format: expected 'float' or 'base64', got %q", format)
	}
	if err := s.checkModel(req.Model); err != nil {
		return nil, err
	}
	if req.Dimensions != nil && *req.Dimensions != s.opts.EmbeddingDim {
		return nil, badRequest("Model \"%s\" does not support matryoshka representation, changing output dimensions will lead to poor results.", s.opts.Model)
	}
	inputs, err := parseInputs("input", req.Input)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	promptTokens := 0
	for _, in := range inputs {
		if in.tokens > s.opts.MaxModelLen {
			return nil, badRequest("This model's maximum context length is %d tokens. However, you requested %d tokens in the input for embedding generation. Please reduce the length of the input.", s.opts.MaxModelLen, in.tokens)
		}
		promptTokens += in.tokens
	}
	id := "embd-" + randomID()
	if s.begin() {
		s.log.Warn("injected request failure", "request_id", id)
		return nil, errInjected
	}
	if err := s.pace(r.Context(), time.Now(), 0); err != nil {
		s.end(aborted, "", 0, 0)
		s.log.Info("aborted request", "request_id", id)
		return nil, nil
	}
	data := make([]embeddingData, len(inputs))
	for i, in := range inputs {
		vec := Embedding(s.opts.Model, in.text, s.opts.EmbeddingDim)
		var enc any = vec
		if format == "base64" {
			enc = encodeFloats(vec)
		}
		data[i] = embeddingData{Index: i, Object: "embedding", Embedding: enc}
	}
	s.end(succeeded, FinishStop, promptTokens, 0)
	return embeddingResponse{
		ID: id, Object: "list", Created: s.now().Unix(), Model: s.opts.Model, Data: data,
		Usage: usageInfo{PromptTokens: promptTokens, TotalTokens: promptTokens},
	}, nil
}

// encodeFloats is vLLM's base64 embedding encoding: little-endian float32s.
func encodeFloats(v []float32) string {
	buf := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(buf)
}
