package mockllm

import "strings"

// The types below are vLLM's pydantic response models as it serializes them.

// null is always JSON null: fields vLLM sends as null that the fake never fills.
type null = *struct{}

type usageInfo struct {
	PromptTokens        int  `json:"prompt_tokens"`
	TotalTokens         int  `json:"total_tokens"`
	CompletionTokens    int  `json:"completion_tokens"`
	PromptTokensDetails null `json:"prompt_tokens_details"`
}

// streamUsage is UsageInfo dumped with exclude_none, as vLLM's final usage
// chunk is.
type streamUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	TotalTokens      int `json:"total_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

type chatMessage struct {
	Role             string     `json:"role"`
	Content          string     `json:"content"`
	Refusal          null       `json:"refusal"`
	Annotations      null       `json:"annotations"`
	Audio            null       `json:"audio"`
	FunctionCall     null       `json:"function_call"`
	ToolCalls        []struct{} `json:"tool_calls"`
	ReasoningContent null       `json:"reasoning_content"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	Logprobs     null        `json:"logprobs"`
	FinishReason string      `json:"finish_reason"`
	StopReason   null        `json:"stop_reason"`
}

type chatResponse struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []chatChoice `json:"choices"`
	ServiceTier       null         `json:"service_tier"`
	SystemFingerprint null         `json:"system_fingerprint"`
	Usage             usageInfo    `json:"usage"`
	PromptLogprobs    null         `json:"prompt_logprobs"`
	KVTransferParams  null         `json:"kv_transfer_params"`
}

type chatDelta struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content"`
}

type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     null      `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
	StopReason   null      `json:"stop_reason"`
}

type chatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
	Usage   *streamUsage      `json:"usage,omitempty"`
}

type completionChoice struct {
	Index        int     `json:"index"`
	Text         string  `json:"text"`
	Logprobs     null    `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
	StopReason   null    `json:"stop_reason"`
}

type completionResponse struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	Choices           []completionChoice `json:"choices"`
	ServiceTier       null               `json:"service_tier"`
	SystemFingerprint null               `json:"system_fingerprint"`
	Usage             usageInfo          `json:"usage"`
	KVTransferParams  null               `json:"kv_transfer_params"`
}

type completionChunk struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *streamUsage       `json:"usage,omitempty"`
}

func (p *plan) usage() usageInfo {
	c := p.completionTokens()
	return usageInfo{PromptTokens: p.promptTokens, TotalTokens: p.promptTokens + c, CompletionTokens: c}
}

func (p *plan) response() any {
	usage := p.usage()
	if p.chat {
		c := p.choices[0]
		return chatResponse{
			ID: p.id, Object: "chat.completion", Created: p.created, Model: p.model,
			Choices: []chatChoice{{
				Index:        c.index,
				Message:      chatMessage{Role: "assistant", Content: strings.Join(c.tokens, ""), ToolCalls: []struct{}{}},
				FinishReason: c.finishReason,
			}},
			Usage: usage,
		}
	}
	choices := make([]completionChoice, len(p.choices))
	for i, c := range p.choices {
		finish := c.finishReason
		choices[i] = completionChoice{Index: c.index, Text: strings.Join(c.tokens, ""), FinishReason: &finish}
	}
	return completionResponse{
		ID: p.id, Object: "text_completion", Created: p.created, Model: p.model,
		Choices: choices, Usage: usage,
	}
}

func (p *plan) chatChunk(index int, delta chatDelta, finish *string) chatChunk {
	return chatChunk{
		ID: p.id, Object: "chat.completion.chunk", Created: p.created, Model: p.model,
		Choices: []chatChunkChoice{{Index: index, Delta: delta, FinishReason: finish}},
	}
}

// tokenChunk carries one token, or with finish set, the closing chunk of a
// choice (empty text: vLLM's end-of-sequence step).
func (p *plan) tokenChunk(index int, text string, finish *string) any {
	if p.chat {
		return p.chatChunk(index, chatDelta{Content: text}, finish)
	}
	return completionChunk{
		ID: p.id, Object: "text_completion", Created: p.created, Model: p.model,
		Choices: []completionChoice{{Index: index, Text: text, FinishReason: finish}},
	}
}

func (p *plan) usageChunk() any {
	u := p.usage()
	su := &streamUsage{PromptTokens: u.PromptTokens, TotalTokens: u.TotalTokens, CompletionTokens: u.CompletionTokens}
	if p.chat {
		return chatChunk{ID: p.id, Object: "chat.completion.chunk", Created: p.created, Model: p.model, Choices: []chatChunkChoice{}, Usage: su}
	}
	return completionChunk{ID: p.id, Object: "text_completion", Created: p.created, Model: p.model, Choices: []completionChoice{}, Usage: su}
}
