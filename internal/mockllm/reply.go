package mockllm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
)

// Finish reasons, as vLLM reports them.
const (
	FinishStop   = "stop"
	FinishLength = "length"
)

// DefaultCompletionMaxTokens is vLLM's max_tokens for /v1/completions when the
// request leaves the field out (an explicit null means "up to the context
// length"). Chat completions have no such default.
const DefaultCompletionMaxTokens = 16

// Natural reply lengths, in words (= tokens).
const (
	minReplyWords = 8
	maxReplyWords = 24
)

// words is the fixed vocabulary of every reply. Changing it changes every
// expected answer in every test that calls Reply, so leave it alone.
var words = [...]string{
	"amber", "anchor", "apple", "arrow", "autumn", "banner", "basil", "beacon",
	"birch", "bridge", "cedar", "cinder", "clover", "comet", "copper", "coral",
	"delta", "ember", "falcon", "fern", "forest", "garnet", "glacier", "harbor",
	"hazel", "horizon", "indigo", "island", "jasper", "juniper", "kettle", "lantern",
	"lemon", "linen", "marble", "meadow", "mist", "nectar", "north", "oak",
	"ocean", "orchid", "pebble", "pepper", "pine", "quartz", "quill", "raven",
	"river", "saffron", "signal", "silver", "sparrow", "stone", "summit", "thistle",
	"timber", "tulip", "valley", "velvet", "willow", "winter", "yarrow", "zephyr",
}

// Reply is the answer the fake model gives to prompt: its tokens, in order,
// and the finish reason. The natural length is 8..24 words chosen by a hash
// of (model, prompt); each token is one word, with a leading space on all but
// the first, so strings.Join(tokens, "") is the reply text. maxTokens > 0 cuts
// a longer reply to that many tokens with finish reason "length" (a cut reply
// is a prefix of the uncut one); otherwise the reason is "stop". The server
// passes the request's max_completion_tokens / max_tokens, or when absent the
// tokens left in the context (MaxModelLen minus prompt tokens), or for
// /v1/completions DefaultCompletionMaxTokens.
func Reply(model, prompt string, maxTokens int) (tokens []string, finishReason string) {
	r := newRNG("reply", model, prompt)
	n := minReplyWords + int(r.next()%uint64(maxReplyWords-minReplyWords+1))
	finishReason = FinishStop
	if maxTokens > 0 && maxTokens < n {
		n, finishReason = maxTokens, FinishLength
	}
	tokens = make([]string, n)
	for i := range tokens {
		w := words[r.next()%uint64(len(words))]
		if i > 0 {
			w = " " + w
		}
		tokens[i] = w
	}
	return tokens, finishReason
}

// ReplyText is the text of Reply: what a non-streaming response's content
// holds, and what the deltas of a stream add up to.
func ReplyText(model, prompt string, maxTokens int) string {
	tokens, _ := Reply(model, prompt, maxTokens)
	return strings.Join(tokens, "")
}

// CountTokens is the fake tokenizer: the number of whitespace-separated words
// in text. It gives prompt_tokens for string prompts, chat prompts (the text
// of ChatPrompt, no per-message overhead) and embeddings inputs.
func CountTokens(text string) int {
	return len(strings.Fields(text))
}

// ChatPrompt is the prompt of a chat completion request, given its "messages"
// array: the text pieces of all messages, in order, joined with "\n". A
// message whose content is a string contributes that string; one whose content
// is an array of parts contributes the "text" of each part of type "text", one
// piece per part (image, audio and other parts are ignored); a missing or null
// content contributes nothing. Roles are not part of the prompt. Each message
// must be an object with a string "role"; an empty or malformed array is an
// error, answered by the server as 400.
func ChatPrompt(messages json.RawMessage) (string, error) {
	messages = bytes.TrimSpace(messages)
	if len(messages) == 0 || bytes.Equal(messages, []byte("null")) {
		return "", errors.New("messages: field required")
	}
	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(messages, &msgs); err != nil {
		return "", errors.New("messages: must be an array of message objects")
	}
	if len(msgs) == 0 {
		return "", errors.New("messages: must not be empty")
	}
	var pieces []string
	for i, m := range msgs {
		if m == nil {
			return "", fmt.Errorf("messages[%d]: must be an object", i)
		}
		if role := bytes.TrimSpace(m["role"]); len(role) == 0 || role[0] != '"' {
			return "", fmt.Errorf("messages[%d].role: must be a string", i)
		}
		content := bytes.TrimSpace(m["content"])
		switch {
		case len(content) == 0 || bytes.Equal(content, []byte("null")):
		case content[0] == '"':
			var s string
			if err := json.Unmarshal(content, &s); err != nil {
				return "", fmt.Errorf("messages[%d].content: %w", i, err)
			}
			pieces = append(pieces, s)
		case content[0] == '[':
			var parts []struct {
				Type *string `json:"type"`
				Text *string `json:"text"`
			}
			if err := json.Unmarshal(content, &parts); err != nil {
				return "", fmt.Errorf("messages[%d].content: must be a string or an array of content parts", i)
			}
			for j, p := range parts {
				if p.Type == nil {
					return "", fmt.Errorf("messages[%d].content[%d].type: field required", i, j)
				}
				if *p.Type != "text" {
					continue
				}
				if p.Text == nil {
					return "", fmt.Errorf("messages[%d].content[%d].text: field required", i, j)
				}
				pieces = append(pieces, *p.Text)
			}
		default:
			return "", fmt.Errorf("messages[%d].content: must be a string or an array of content parts", i)
		}
	}
	return strings.Join(pieces, "\n"), nil
}

// Embedding is the vector the fake model returns for input: dim float32s
// drawn from a hash of (model, input), scaled to unit length. A token-id input
// [a, b, c] is embedded as the text "a b c".
func Embedding(model, input string, dim int) []float32 {
	if dim <= 0 {
		return []float32{}
	}
	r := newRNG("embedding", model, input)
	v := make([]float64, dim)
	var sum float64
	for i := range v {
		x := float64(r.next()>>11)/(1<<53)*2 - 1
		v[i] = x
		sum += x * x
	}
	out := make([]float32, dim)
	norm := math.Sqrt(sum)
	if norm == 0 {
		out[0] = 1
		return out
	}
	for i, x := range v {
		out[i] = float32(x / norm)
	}
	return out
}

// input is one prompt of /v1/completions or one input of /v1/embeddings.
type input struct {
	text   string // the prompt text; token ids as decimal numbers joined by spaces
	tokens int
}

// parseInputs decodes the OpenAI "prompt" / "input" union: a string, an array
// of strings, an array of token ids, or an array of token-id arrays.
func parseInputs(field string, raw json.RawMessage) ([]input, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, fmt.Errorf("%s: field required", field)
	}
	invalid := fmt.Errorf("%s: must be a string, an array of strings, an array of token ids or an array of token-id arrays", field)
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, invalid
		}
		return []input{{text: s, tokens: CountTokens(s)}}, nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || len(elems) == 0 {
		if err == nil {
			return nil, fmt.Errorf("%s: must not be empty", field)
		}
		return nil, invalid
	}
	switch first := bytes.TrimSpace(elems[0]); {
	case len(first) > 0 && first[0] == '"':
		var ss []string
		if err := json.Unmarshal(raw, &ss); err != nil {
			return nil, invalid
		}
		out := make([]input, len(ss))
		for i, s := range ss {
			out[i] = input{text: s, tokens: CountTokens(s)}
		}
		return out, nil
	case len(first) > 0 && first[0] == '[':
		var batches [][]int64
		if err := json.Unmarshal(raw, &batches); err != nil {
			return nil, invalid
		}
		out := make([]input, len(batches))
		for i, ids := range batches {
			if len(ids) == 0 {
				return nil, fmt.Errorf("%s[%d]: must not be empty", field, i)
			}
			out[i] = tokenInput(ids)
		}
		return out, nil
	default:
		var ids []int64
		if err := json.Unmarshal(raw, &ids); err != nil {
			return nil, invalid
		}
		return []input{tokenInput(ids)}, nil
	}
}

func tokenInput(ids []int64) input {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatInt(id, 10)
	}
	return input{text: strings.Join(parts, " "), tokens: len(ids)}
}

// rng is splitmix64 seeded from an FNV-1a hash of its labelled inputs: stable
// across Go versions and platforms, unlike math/rand's generators.
type rng struct{ state uint64 }

func newRNG(parts ...string) *rng {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return &rng{state: h.Sum64()}
}

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
