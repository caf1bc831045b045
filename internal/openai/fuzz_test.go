package openai_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"unicode/utf8"

	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

// seeds are request shapes clients send, plus hostile ones.
var seeds = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`,
	`{"async":true,"model":"alias","prompt":"x","max_tokens":3}`,
	`{"model":"a\"b\\c\u0000","tools":[{"model":"inner"}],"async":false}`,
	`{"model":1}`, `[]`, `null`, `{"model":"m"`, `{}`, ``, `{"model":"m",}`,
	`{"model":"m","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	` { "model" : "m" , "async" : true } `,
	`{"model":"a","model":"b"}`,
}

// FuzzInspectRequest: any body gives either a request or a 400 in OpenAI's
// shape, never a panic or another status.
func FuzzInspectRequest(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := openai.InspectRequest(body)
		if err != nil {
			var oe *openai.Error
			if !errors.As(err, &oe) || oe.Status != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400 *openai.Error", err)
			}
			if !json.Valid(oe.Body()) {
				t.Fatalf("error body is not JSON: %s", oe.Body())
			}
			return
		}
		if req.Model == "" {
			t.Fatal("accepted a request without a model")
		}
		if req.Stream && req.Async {
			t.Fatal("accepted stream and async together")
		}
	})
}

// FuzzRewriteRequest: an accepted request rewrites to valid JSON whose
// model is the new name, with no "async" left, and everything else equal.
func FuzzRewriteRequest(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s), "served/name")
	}
	f.Fuzz(func(t *testing.T, body []byte, served string) {
		if !utf8.ValidString(served) {
			return // served names come from the config, which is UTF-8
		}
		if _, err := openai.InspectRequest(body); err != nil {
			return
		}
		out, err := openai.RewriteRequest(body, served)
		if err != nil {
			t.Fatalf("rewrite of an accepted request failed: %v", err)
		}
		var before, after map[string]json.RawMessage
		if err := json.Unmarshal(body, &before); err != nil {
			t.Fatalf("accepted body does not decode: %v", err)
		}
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("rewritten body is not JSON: %v\n%s", err, out)
		}
		var model string
		if err := json.Unmarshal(after["model"], &model); err != nil || model != served {
			t.Fatalf("model = %s, want %q", after["model"], served)
		}
		if _, ok := after["async"]; ok {
			t.Fatalf("async left in %s", out)
		}
		for k, v := range before {
			if k == "model" || k == "async" {
				continue
			}
			if string(after[k]) != string(v) {
				t.Fatalf("field %s changed: %s -> %s", k, v, after[k])
			}
		}
	})
}
