package mockllm

import (
	"flag"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

func TestOptions_RegisterFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want Options
	}{
		{
			name: "defaults",
			args: []string{"--model", "m"},
			want: Options{
				Host: DefaultHost, Port: DefaultPort, Model: "m", MaxModelLen: DefaultMaxModelLen,
				EmbeddingDim: DefaultEmbeddingDim, ExitMessage: DefaultExitMessage,
			},
		},
		{
			name: "every flag",
			args: []string{
				"--host", "0.0.0.0", "--port", "0", "--model", "org/model", "--max-model-len", "4096",
				"--load-delay", "2s", "--ttft", "150ms", "--tokens-per-second", "42.5", "--embedding-dim", "8",
				"--api-key", "k", "--refuse-while-loading", "--exit-during-load", "--exit-message", "boom",
				"--hang-load=false", "--hang-generation", "--error-rate", "0.25", "--fail-after", "3",
				"--stream-cut-after", "4", "--ignore-sigterm",
			},
			want: Options{
				Host: "0.0.0.0", Port: 0, Model: "org/model", MaxModelLen: 4096,
				LoadDelay: 2 * time.Second, TTFT: 150 * time.Millisecond, TokensPerSecond: 42.5, EmbeddingDim: 8,
				APIKey: "k", RefuseWhileLoading: true, ExitDuringLoad: true, ExitMessage: "boom",
				HangGeneration: true, ErrorRate: 0.25, FailAfter: 3, StreamCutAfter: 4, IgnoreSIGTERM: true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Options
			fs := flag.NewFlagSet("mockllm", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("parse: %v", err)
			}
			if o != tt.want {
				t.Fatalf("options = %+v, want %+v", o, tt.want)
			}
			if err := o.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestOptions_Validate(t *testing.T) {
	valid := Options{Model: "m"}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr []string // substrings; nil means valid
	}{
		{name: "minimal", mutate: func(*Options) {}},
		{name: "missing model", mutate: func(o *Options) { o.Model = " " }, wantErr: []string{"--model"}},
		{name: "port out of range", mutate: func(o *Options) { o.Port = 70000 }, wantErr: []string{"--port"}},
		{name: "negative durations", mutate: func(o *Options) { o.LoadDelay, o.TTFT = -1, -1 }, wantErr: []string{"--load-delay", "--ttft"}},
		{name: "nan speed", mutate: func(o *Options) { o.TokensPerSecond = math.NaN() }, wantErr: []string{"--tokens-per-second"}},
		{name: "error rate above one", mutate: func(o *Options) { o.ErrorRate = 1.5 }, wantErr: []string{"--error-rate"}},
		{name: "error rate nan", mutate: func(o *Options) { o.ErrorRate = math.NaN() }, wantErr: []string{"--error-rate"}},
		{name: "negative counts", mutate: func(o *Options) { o.FailAfter, o.StreamCutAfter, o.MaxModelLen = -1, -1, -1 }, wantErr: []string{"--fail-after", "--stream-cut-after", "--max-model-len"}},
		{name: "embedding dim too large", mutate: func(o *Options) { o.EmbeddingDim = 1 << 20 }, wantErr: []string{"--embedding-dim"}},
		{name: "hang and exit during load", mutate: func(o *Options) { o.HangLoad, o.ExitDuringLoad = true, true }, wantErr: []string{"mutually exclusive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid
			tt.mutate(&o)
			err := o.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("Validate = %q, want it to mention %q", err, want)
				}
			}
			if _, err := New(o, nil); err == nil {
				t.Fatalf("New accepted invalid options")
			}
		})
	}
}
