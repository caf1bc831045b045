package mockllm

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestReply_Shape(t *testing.T) {
	tests := []struct {
		name       string
		model      string
		prompt     string
		maxTokens  int
		wantLen    int // 0: natural length, within 8..24
		wantFinish string
	}{
		{name: "natural length", model: "m", prompt: "hello world", wantFinish: FinishStop},
		{name: "empty prompt", model: "m", prompt: "", wantFinish: FinishStop},
		{name: "limit above natural length", model: "m", prompt: "hello world", maxTokens: 1000, wantFinish: FinishStop},
		{name: "cut by max tokens", model: "m", prompt: "hello world", maxTokens: 3, wantLen: 3, wantFinish: FinishLength},
		{name: "single token", model: "m", prompt: "hello world", maxTokens: 1, wantLen: 1, wantFinish: FinishLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tokens, finish := Reply(tt.model, tt.prompt, tt.maxTokens)
			if finish != tt.wantFinish {
				t.Fatalf("finish reason = %q, want %q", finish, tt.wantFinish)
			}
			if tt.wantLen != 0 && len(tokens) != tt.wantLen {
				t.Fatalf("len(tokens) = %d, want %d", len(tokens), tt.wantLen)
			}
			if tt.wantLen == 0 && (len(tokens) < minReplyWords || len(tokens) > maxReplyWords) {
				t.Fatalf("len(tokens) = %d, want within %d..%d", len(tokens), minReplyWords, maxReplyWords)
			}
			for i, tok := range tokens {
				if leading := strings.HasPrefix(tok, " "); leading != (i > 0) {
					t.Fatalf("token %d = %q: leading space %v, want %v", i, tok, leading, i > 0)
				}
				if strings.TrimSpace(tok) == "" || strings.Count(tok, " ") > 1 {
					t.Fatalf("token %d = %q is not one word", i, tok)
				}
			}
			full, _ := Reply(tt.model, tt.prompt, 0)
			if got := strings.Join(tokens, ""); !strings.HasPrefix(strings.Join(full, ""), got) {
				t.Fatalf("cut reply %q is not a prefix of the full reply %q", got, strings.Join(full, ""))
			}
			if got, want := ReplyText(tt.model, tt.prompt, tt.maxTokens), strings.Join(tokens, ""); got != want {
				t.Fatalf("ReplyText = %q, want %q", got, want)
			}
		})
	}
}

func TestReply_Determinism(t *testing.T) {
	tests := []struct {
		name     string
		a, b     [2]string // model, prompt
		wantSame bool
	}{
		{name: "same model and prompt", a: [2]string{"m", "hi there"}, b: [2]string{"m", "hi there"}, wantSame: true},
		{name: "different prompt", a: [2]string{"m", "hi there"}, b: [2]string{"m", "hi there!"}},
		{name: "different model", a: [2]string{"model-a", "hi there"}, b: [2]string{"model-b", "hi there"}},
		{name: "model and prompt do not run together", a: [2]string{"ab", "c"}, b: [2]string{"a", "bc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := ReplyText(tt.a[0], tt.a[1], 0)
			b := ReplyText(tt.b[0], tt.b[1], 0)
			if (a == b) != tt.wantSame {
				t.Fatalf("replies %q and %q: same = %v, want %v", a, b, a == b, tt.wantSame)
			}
		})
	}
}

func TestCountTokens(t *testing.T) {
	tests := []struct {
		name string
		text string
		want int
	}{
		{name: "empty", text: "", want: 0},
		{name: "words", text: "the quick brown fox", want: 4},
		{name: "mixed whitespace", text: "  a\tb\n\nc  ", want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CountTokens(tt.text); got != tt.want {
				t.Fatalf("CountTokens(%q) = %d, want %d", tt.text, got, tt.want)
			}
		})
	}
}

func TestChatPrompt(t *testing.T) {
	tests := []struct {
		name     string
		messages string
		want     string
		wantErr  string
	}{
		{name: "one string message", messages: `[{"role":"user","content":"hello"}]`, want: "hello"},
		{
			name:     "messages joined by newline",
			messages: `[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]`,
			want:     "be brief\nhi",
		},
		{
			name:     "text parts, other parts ignored",
			messages: `[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}]`,
			want:     "a\nb",
		},
		{
			name:     "null and missing content contribute nothing",
			messages: `[{"role":"user","content":"q"},{"role":"assistant","content":null,"tool_calls":[]},{"role":"user"}]`,
			want:     "q",
		},
		{name: "missing", messages: ``, wantErr: "messages: field required"},
		{name: "not an array", messages: `"hello"`, wantErr: "must be an array"},
		{name: "empty array", messages: `[]`, wantErr: "must not be empty"},
		{name: "message not an object", messages: `[1]`, wantErr: "must be an array"},
		{name: "missing role", messages: `[{"content":"x"}]`, wantErr: "messages[0].role"},
		{name: "content of wrong type", messages: `[{"role":"user","content":5}]`, wantErr: "messages[0].content"},
		{name: "part without type", messages: `[{"role":"user","content":[{"text":"x"}]}]`, wantErr: "content[0].type"},
		{name: "text part without text", messages: `[{"role":"user","content":[{"type":"text"}]}]`, wantErr: "content[0].text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChatPrompt(json.RawMessage(tt.messages))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ChatPrompt error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ChatPrompt: %v", err)
			}
			if got != tt.want {
				t.Fatalf("ChatPrompt = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEmbedding(t *testing.T) {
	tests := []struct {
		name string
		dim  int
	}{
		{name: "one", dim: 1},
		{name: "default", dim: DefaultEmbeddingDim},
		{name: "large", dim: 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Embedding("m", "some text", tt.dim)
			if len(v) != tt.dim {
				t.Fatalf("len = %d, want %d", len(v), tt.dim)
			}
			var sum float64
			for _, x := range v {
				sum += float64(x) * float64(x)
			}
			if math.Abs(sum-1) > 1e-5 {
				t.Fatalf("squared norm = %v, want 1", sum)
			}
			again := Embedding("m", "some text", tt.dim)
			other := Embedding("m", "other text", tt.dim)
			for i := range v {
				if v[i] != again[i] {
					t.Fatalf("not deterministic at %d: %v != %v", i, v[i], again[i])
				}
			}
			if tt.dim > 1 && v[0] == other[0] && v[1] == other[1] {
				t.Fatalf("different inputs gave the same vector")
			}
		})
	}
}

func TestParseInputs(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    []input
		wantErr string
	}{
		{name: "string", raw: `"a b c"`, want: []input{{text: "a b c", tokens: 3}}},
		{name: "strings", raw: `["a b","c"]`, want: []input{{text: "a b", tokens: 2}, {text: "c", tokens: 1}}},
		{name: "token ids", raw: `[1, 22, 333]`, want: []input{{text: "1 22 333", tokens: 3}}},
		{name: "token id arrays", raw: `[[1,2],[3]]`, want: []input{{text: "1 2", tokens: 2}, {text: "3", tokens: 1}}},
		{name: "missing", raw: ``, wantErr: "field required"},
		{name: "empty array", raw: `[]`, wantErr: "must not be empty"},
		{name: "number", raw: `5`, wantErr: "must be a string"},
		{name: "mixed array", raw: `["a", 1]`, wantErr: "must be a string"},
		{name: "empty token array", raw: `[[1],[]]`, wantErr: "input[1]: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInputs("input", json.RawMessage(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseInputs: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("input %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}
