package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize_Cases(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr string
	}{
		{name: "bytes", in: "512B", want: 512},
		{name: "kibibytes", in: "4KiB", want: 4096},
		{name: "mebibytes", in: "3MiB", want: 3 << 20},
		{name: "gibibytes", in: "40GiB", want: 40 << 30},
		{name: "tebibytes", in: "1TiB", want: 1 << 40},
		{name: "decimal units", in: "70GB", want: 70_000_000_000},
		{name: "kilobytes", in: "2KB", want: 2000},
		{name: "megabytes", in: "2MB", want: 2_000_000},
		{name: "terabytes", in: "1TB", want: 1_000_000_000_000},
		{name: "fraction", in: "1.5GiB", want: 3 << 29},
		{name: "fraction rounds down", in: "1.5B", want: 1},
		{name: "space before unit", in: "62 GiB", want: 62 << 30},
		{name: "no unit", in: "1024", wantErr: "is not a memory size"},
		{name: "unknown unit", in: "40G", wantErr: `unknown unit "G"`},
		{name: "wrong case", in: "40gib", wantErr: "unknown unit"},
		{name: "negative", in: "-1GiB", wantErr: "is not a memory size"},
		{name: "zero", in: "0GiB", wantErr: "larger than zero"},
		{name: "below a byte", in: "0.5B", wantErr: "larger than zero"},
		{name: "overflow", in: "9000000TiB", wantErr: "too large"},
		{name: "empty", in: "", wantErr: "is not a memory size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseSize(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseDuration_Cases(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr string
	}{
		{name: "minutes", in: "15m", want: 15 * time.Minute},
		{name: "compound", in: "1h30m", want: 90 * time.Minute},
		{name: "milliseconds", in: "500ms", want: 500 * time.Millisecond},
		{name: "no unit", in: "15", wantErr: "is not a duration"},
		{name: "zero", in: "0s", wantErr: "longer than zero"},
		{name: "negative", in: "-1s", wantErr: "longer than zero"},
		{name: "empty", in: "", wantErr: "is not a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseSeconds_Cases(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{name: "whole", in: "90", want: 90 * time.Second},
		{name: "spaces", in: " 5 ", want: 5 * time.Second},
		{name: "zero", in: "0", wantErr: true},
		{name: "negative", in: "-3", wantErr: true},
		{name: "fraction", in: "1.5", wantErr: true},
		{name: "unit", in: "10s", wantErr: true},
		{name: "overflow", in: "9223372036854775807", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSeconds(tt.in)
			if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
				t.Fatalf("parseSeconds(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := parseSeconds("9223372036"); err != nil {
		t.Fatalf("largest representable seconds rejected: %v", err)
	}
}

func TestCheckName_Cases(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{name: "plain", in: "qwen3-30b", ok: true},
		{name: "hugging face", in: "Qwen/Qwen3-30B-A3B", ok: true},
		{name: "ollama style", in: "gpt-oss:120b", ok: true},
		{name: "dots and underscores", in: "a.b_c", ok: true},
		{name: "max length", in: strings.Repeat("x", 128), ok: true},
		{name: "too long", in: strings.Repeat("x", 129)},
		{name: "empty", in: ""},
		{name: "space", in: "a b"},
		{name: "leading dash", in: "-a"},
		{name: "leading slash", in: "/a"},
		{name: "unicode", in: "modèle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkName(tt.in); (err == nil) != tt.ok {
				t.Fatalf("checkName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}
