package config_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/llm-switchboard/llm-switchboard/configs"
	"github.com/llm-switchboard/llm-switchboard/internal/config"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

// exampleModels are the models every example configuration declares.
var exampleModels = []string{"gpt-oss120", "qwen3-30b", "qwen3-235b-4bit"}

func loadProduction(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join(repoRoot, "configs", "gateway.hcl"), config.LoadOptions{LookupEnv: envOf(nil)})
	if err != nil {
		t.Fatalf("load configs/gateway.hcl:\n%v", err)
	}
	return cfg
}

func loadDev(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load("dev/gateway.hcl", config.LoadOptions{
		ReadFile:       configs.Dev.ReadFile,
		LookupEnv:      envOf(nil),
		SwitchboardBin: testBin,
	})
	if err != nil {
		t.Fatalf("load embedded dev/gateway.hcl:\n%v", err)
	}
	return cfg
}

func TestFiles_Production(t *testing.T) {
	cfg := loadProduction(t)
	if got := cfg.ModelNames(); !reflect.DeepEqual(got, exampleModels) {
		t.Fatalf("models = %v, want %v", got, exampleModels)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{name: "runtime", got: cfg.Orchestrator.Runtime, want: config.RuntimeNomad},
		{name: "listen", got: cfg.Gateway.Listen, want: "0.0.0.0:8000"},
		{name: "redis", got: cfg.Redis.URL, want: "redis://127.0.0.1:6379/0"},
		{name: "default model", got: cfg.Scheduler.DefaultModel, want: "gpt-oss120"},
		{name: "gpt-oss served name", got: cfg.Model("gpt-oss120").ServedName, want: "openai/gpt-oss-120b"},
		{name: "gpt-oss source", got: cfg.Model("gpt-oss120").Source, want: config.Source{Type: config.SourceHuggingFaceRepo, Value: "openai/gpt-oss-120b"}},
		{name: "gpt-oss quantization", got: cfg.Model("gpt-oss120").Quantization, want: "mxfp4"},
		{name: "qwen3-30b served name", got: cfg.Model("qwen3-30b").ServedName, want: "Qwen/Qwen3-30B-A3B"},
		{name: "qwen3-30b by alias", got: cfg.Model("qwen3").Name, want: "qwen3-30b"},
		{name: "qwen3-235b source", got: cfg.Model("qwen3-235b-4bit").Source.Value, want: "Qwen/Qwen3-235B-A22B-GPTQ-Int4"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Fatalf("got %v, want %v", c.got, c.want)
			}
		})
	}
	// The box has 128 GB (119.7 GiB); the memory barrier can never pass for a
	// model claiming more.
	const box = 128_000_000_000
	wantJobspec := filepath.Join(repoRoot, "jobs.nomad.d", "vllm.nomad.hcl")
	for _, m := range cfg.Models {
		t.Run(m.Name, func(t *testing.T) {
			if m.Jobspec != wantJobspec {
				t.Fatalf("Jobspec = %q, want %q", m.Jobspec, wantJobspec)
			}
			// vLLM runs with host networking: its port must not be the
			// gateway's.
			if m.Backend.Image != "nvcr.io/nvidia/vllm:25.10-py3" || m.Backend.Port != 8100 {
				t.Fatalf("backend = %+v", m.Backend)
			}
			if strings.HasSuffix(cfg.Gateway.Listen, fmt.Sprintf(":%d", m.Backend.Port)) {
				t.Fatalf("backend port %d is the gateway's (%s)", m.Backend.Port, cfg.Gateway.Listen)
			}
			if m.MemoryBytes <= 0 || m.MemoryBytes >= box {
				t.Fatalf("MemoryBytes = %d, want a footprint that fits the box", m.MemoryBytes)
			}
			if len(m.Aliases) == 0 || len(m.Backend.VLLMArgs) == 0 || m.MaxConcurrency < 1 {
				t.Fatalf("model = %+v", m)
			}
		})
	}
}

func TestFiles_Dev(t *testing.T) {
	cfg := loadDev(t)
	if got := cfg.ModelNames(); !reflect.DeepEqual(got, exampleModels) {
		t.Fatalf("models = %v, want %v", got, exampleModels)
	}
	o := cfg.Orchestrator
	want := config.Orchestrator{
		Runtime:          config.RuntimeLocal,
		Slot:             "dev",
		SwitchTimeout:    60 * time.Second,
		InferenceTimeout: 120 * time.Second,
		DrainTimeout:     30 * time.Second,
		StopTimeout:      30 * time.Second,
		StopGrace:        5 * time.Second,
		Canary:           true,
		CanaryTimeout:    time.Minute,
	}
	if o != want {
		t.Fatalf("orchestrator = %+v, want %+v", o, want)
	}
	if cfg.Gateway.Listen != "127.0.0.1:8000" || cfg.Redis.URL != "" || cfg.Scheduler.DefaultModel != "" {
		t.Fatalf("gateway %+v, redis %+v, scheduler %+v", cfg.Gateway, cfg.Redis, cfg.Scheduler)
	}
	if !reflect.DeepEqual(cfg.Files, []string{"dev/gateway.hcl", "dev/models.hcl"}) {
		t.Fatalf("Files = %v", cfg.Files)
	}
	for i, m := range cfg.Models {
		t.Run(m.Name, func(t *testing.T) {
			port := []string{"18101", "18102", "18103"}[i]
			wantCmd := []string{testBin, "mockllm", "--port", port, "--model", m.ServedName,
				"--load-delay", "1500ms", "--tokens-per-second", "40", "--ttft", "80ms"}
			if !reflect.DeepEqual(m.Command, wantCmd) {
				t.Fatalf("Command = %q, want %q", m.Command, wantCmd)
			}
			if m.MaxConcurrency != 8 {
				t.Fatalf("MaxConcurrency = %d, want 8", m.MaxConcurrency)
			}
		})
	}
}

// TestFiles_DevMatchesProduction keeps clients written against dev working
// in production: same names, aliases and served names.
func TestFiles_DevMatchesProduction(t *testing.T) {
	prod, dev := loadProduction(t), loadDev(t)
	for i, p := range prod.Models {
		d := dev.Models[i]
		if p.Name != d.Name || p.ServedName != d.ServedName || !slices.Equal(p.Aliases, d.Aliases) {
			t.Fatalf("dev model %+v differs from production %+v in name, served name or aliases", d, p)
		}
	}
}

// TestFiles_CanonicalFormat keeps every HCL artefact valid and formatted
// as hclwrite (and so `hclfmt`, `nomad fmt`, `terraform fmt`) writes it.
func TestFiles_CanonicalFormat(t *testing.T) {
	var paths []string
	for _, dir := range []string{"configs", "jobs.nomad.d"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".hcl") {
				paths = append(paths, path)
			}
			return err
		})
		if err != nil {
			t.Fatalf("walk %s: %v", dir, err)
		}
	}
	if len(paths) < 5 {
		t.Fatalf("found only %v; want configs/*.hcl, configs/dev/*.hcl and jobs.nomad.d/*.hcl", paths)
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if _, diags := hclparse.NewParser().ParseHCL(src, path); diags.HasErrors() {
				t.Fatalf("not valid HCL:\n%s", config.FormatDiagnostics(diags))
			}
			if got := hclwrite.Format(src); !bytes.Equal(got, src) {
				t.Fatalf("not canonically formatted; want:\n%s", got)
			}
		})
	}
}
