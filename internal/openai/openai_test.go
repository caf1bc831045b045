package openai_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

func TestInspectRequest(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    openai.Request
		wantErr string // substring; "" means success
	}{
		{"plain", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, openai.Request{Model: "m"}, ""},
		{"stream", `{"stream":true,"model":"m"}`, openai.Request{Model: "m", Stream: true}, ""},
		{"async", `{"model":"m","async":true}`, openai.Request{Model: "m", Async: true}, ""},
		{"null stream", `{"model":"m","stream":null}`, openai.Request{Model: "m"}, ""},
		{"escaped model", `{"model":"a\/b"}`, openai.Request{Model: "a/b"}, ""},
		{"empty body", ``, openai.Request{}, "not valid JSON"},
		{"array", `[]`, openai.Request{}, "JSON object"},
		{"string", `"x"`, openai.Request{}, "JSON object"},
		{"null", `null`, openai.Request{}, "JSON object"},
		{"truncated", `{"model":"m"`, openai.Request{}, "not valid JSON"},
		{"no model", `{}`, openai.Request{}, "model parameter"},
		{"empty model", `{"model":""}`, openai.Request{}, "non-empty string"},
		{"numeric model", `{"model":1}`, openai.Request{}, "non-empty string"},
		{"string stream", `{"model":"m","stream":"true"}`, openai.Request{}, "stream must be a boolean"},
		{"stream and async", `{"model":"m","stream":true,"async":true}`, openai.Request{}, "cannot both"},
		{"duplicate model", `{"model":"a","messages":[{"role":"user","content":"x"}],"model":"b"}`, openai.Request{}, "appears 2 times"},
		{"too deep", `{"model":"m","x":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `}`, openai.Request{}, "nested deeper"},
		{"brackets inside strings do not count", `{"model":"m","x":"` + strings.Repeat("[", 200) + `"}`, openai.Request{Model: "m"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := openai.InspectRequest([]byte(tt.body))
			if tt.wantErr != "" {
				var oe *openai.Error
				if !errors.As(err, &oe) || oe.Status != http.StatusBadRequest || !strings.Contains(oe.Message, tt.wantErr) {
					t.Fatalf("err = %v, want a 400 mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Model != tt.want.Model || got.Stream != tt.want.Stream || got.Async != tt.want.Async {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// Validate refuses what the backend would refuse with 400, before the
// request becomes a job or makes a model load.
func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		path, body, wantParam string // wantParam "" = valid
	}{
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"temperature":0.2,"stop":["x"],"logprobs":true}`, ""},
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":null}`, ""},
		{"/v1/chat/completions", `{"model":"m"}`, "messages"},
		{"/v1/chat/completions", `{"model":"m","messages":"hello"}`, "messages"},
		{"/v1/chat/completions", `{"model":"m","messages":[]}`, "messages"},
		{"/v1/chat/completions", `{"model":"m","messages":[1,2,3]}`, "messages"},
		{"/v1/chat/completions", `{"model":"m","messages":{"role":"user"}}`, "messages"},
		{"/v1/chat/completions", `{"model":"m","messages":[{"content":"no role"}]}`, "messages[0].role"},
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"many"}`, "max_tokens"},
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1.5}`, "max_tokens"},
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}`, "temperature"},
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}`, "stop"},
		{"/v1/completions", `{"model":"m","prompt":"hi"}`, ""},
		{"/v1/completions", `{"model":"m","prompt":[[1,2],[3]]}`, ""},
		{"/v1/completions", `{"model":"m","prompt":5}`, "prompt"},
		{"/v1/completions", `{"model":"m"}`, "prompt"},
		{"/v1/completions", `{"model":"m","prompt":"x","logprobs":true}`, "logprobs"},
		{"/v1/embeddings", `{"model":"m","input":["a","b"]}`, ""},
		{"/v1/embeddings", `{"model":"m","input":[]}`, "input"},
		{"/v1/completions", `{"model":"m","prompt_embeds":"AAAA"}`, ""},
		{"/v1/embeddings", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, ""},
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"seed":9223372036854775807,"max_tokens":16.0}`, ""},
		{"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"seed":"1"}`, "seed"},
	} {
		req, err := openai.InspectRequest([]byte(tt.body))
		if err != nil {
			t.Fatalf("%s: inspect: %v", tt.body, err)
		}
		err = req.Validate(tt.path)
		var oe *openai.Error
		switch {
		case tt.wantParam == "" && err != nil:
			t.Errorf("%s %s: %v, want valid", tt.path, tt.body, err)
		case tt.wantParam != "" && (!errors.As(err, &oe) || oe.Status != http.StatusBadRequest || oe.Param == nil || *oe.Param != tt.wantParam):
			t.Errorf("%s %s: %v, want 400 on %s", tt.path, tt.body, err, tt.wantParam)
		}
	}
}

func TestRewriteRequest(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"model replaced, rest byte for byte", `{"model":"alias","messages":[{"role":"user","content":"hi"}],"temperature":0.5}`,
			`{"model":"served/name","messages":[{"role":"user","content":"hi"}],"temperature":0.5}`},
		{"async removed from the middle", `{"model":"a", "async":true, "x":1}`, `{"model":"served/name", "x":1}`},
		{"async removed at the end", `{"x":1,"model":"a","async":false}`, `{"x":1,"model":"served/name"}`},
		{"async removed at the start", `{"async":true,"model":"a"}`, `{"model":"served/name"}`},
		{"whitespace and nesting kept", "{\n  \"tools\": [{\"model\": \"inner\"}],\n  \"model\" : \"a\"\n}",
			"{\n  \"tools\": [{\"model\": \"inner\"}],\n  \"model\" : \"served/name\"\n}"},
		{"escapes in other strings", `{"s":"a\"b\\","model":"a"}`, `{"s":"a\"b\\","model":"served/name"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := openai.RewriteRequest([]byte(tt.in), "served/name")
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParseError(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		wantMsg  string
		wantType string
		wantCode string
	}{
		{"vllm int code", 404, `{"error":{"message":"The model x does not exist.","type":"NotFoundError","param":"model","code":404}}`,
			"The model x does not exist.", "NotFoundError", "404"},
		{"openai string code", 400, `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":"x"}}`,
			"bad", "invalid_request_error", "x"},
		{"vllm flat", 400, `{"object":"error","message":"flat","type":"BadRequestError","param":null,"code":400}`,
			"flat", "BadRequestError", "400"},
		{"vllm bare 401", 401, `{"error":"Unauthorized"}`, "Unauthorized", openai.TypeAuthentication, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := openai.ParseError(tt.status, []byte(tt.body))
			if e == nil || e.Message != tt.wantMsg || e.Type != tt.wantType || e.Status != tt.status {
				t.Fatalf("got %+v", e)
			}
			code := ""
			if e.Code != nil {
				code = *e.Code
			}
			if code != tt.wantCode {
				t.Fatalf("code = %q, want %q", code, tt.wantCode)
			}
		})
	}
	if e := openai.ParseError(500, []byte("plain text")); e != nil {
		t.Fatalf("plain text parsed as %+v", e)
	}
}

func TestSSEReader(t *testing.T) {
	in := ": keep-alive\n\ndata: {\"a\":1}\n\nevent: x\ndata: line1\ndata: line2\n\ndata:[DONE]\n\n"
	r := openai.NewSSEReader(strings.NewReader(in))
	for _, want := range []string{`{"a":1}`, "line1\nline2", "[DONE]"} {
		got, err := r.Next()
		if err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("at end: %v, want EOF", err)
	}
	// An event cut off without its blank line still counts.
	r = openai.NewSSEReader(strings.NewReader("data: last"))
	if got, err := r.Next(); err != nil || string(got) != "last" {
		t.Fatalf("unterminated: %q, %v", got, err)
	}
}

func TestWriteEvent_MultiLine(t *testing.T) {
	var b strings.Builder
	if err := openai.WriteEvent(&b, []byte("a\nb")); err != nil {
		t.Fatal(err)
	}
	r := openai.NewSSEReader(strings.NewReader(b.String()))
	if got, err := r.Next(); err != nil || string(got) != "a\nb" {
		t.Fatalf("round trip: %q, %v", got, err)
	}
}
