package config_test

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
)

func TestLoad_Defaults(t *testing.T) {
	cfg := mustLoad(t, files{
		"gateway.hcl":   "",
		"models.hcl":    nomadModel,
		"jobs/vllm.hcl": jobspec,
	}, nil)
	def := config.Default()
	if !reflect.DeepEqual(cfg.Gateway, def.Gateway) {
		t.Fatalf("Gateway = %+v, want defaults %+v", cfg.Gateway, def.Gateway)
	}
	if cfg.Redis != def.Redis || cfg.Nomad != def.Nomad || cfg.Consul != def.Consul ||
		cfg.Orchestrator != def.Orchestrator || cfg.Scheduler != def.Scheduler {
		t.Fatalf("config = %+v, want defaults %+v", cfg, def)
	}
	m := cfg.Model("n")
	if m == nil {
		t.Fatalf("model n missing: %v", cfg.ModelNames())
	}
	if m.ServedName != "n" || m.MaxConcurrency != 8 || m.MemoryBytes != 0 || m.Command != nil {
		t.Fatalf("model defaults: %+v", m)
	}
}

func TestDefault_Values(t *testing.T) {
	def := config.Default()
	tests := []struct {
		name string
		got  any
		want any
	}{
		{name: "listen", got: def.Gateway.Listen, want: "127.0.0.1:8000"},
		{name: "max_request_bytes", got: def.Gateway.MaxRequestBytes, want: int64(16 << 20)},
		{name: "redis url", got: def.Redis.URL, want: ""},
		{name: "key_prefix", got: def.Redis.KeyPrefix, want: "sb:"},
		{name: "runtime", got: def.Orchestrator.Runtime, want: config.RuntimeNomad},
		{name: "slot", got: def.Orchestrator.Slot, want: "default"},
		{name: "switch_timeout", got: def.Orchestrator.SwitchTimeout, want: 15 * time.Minute},
		{name: "inference_timeout", got: def.Orchestrator.InferenceTimeout, want: 10 * time.Minute},
		{name: "drain_timeout", got: def.Orchestrator.DrainTimeout, want: 2 * time.Minute},
		{name: "stop_timeout", got: def.Orchestrator.StopTimeout, want: 5 * time.Minute},
		{name: "stop_grace", got: def.Orchestrator.StopGrace, want: 30 * time.Second},
		{name: "max_wait", got: def.Scheduler.MaxWait, want: 10 * time.Minute},
		{name: "queue_timeout", got: def.Scheduler.QueueTimeout, want: 30 * time.Minute},
		{name: "result_ttl", got: def.Scheduler.ResultTTL, want: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestLoad_FullGateway(t *testing.T) {
	cfg := mustLoad(t, files{
		"gateway.hcl": lines(
			`models_file = "m/models.hcl"`,
			`gateway {`,
			`  listen            = "0.0.0.0:9000"`,
			`  max_request_bytes = 1024`,
			`  health_open       = false`,
			`  admin_via_funnel  = true`,
			`  direct_route      = false`,
			`  cors_origins      = ["https://app.example"]`,
			`}`,
			`redis {`,
			`  url        = "redis://redis:6379/2"`,
			`  key_prefix = "x:"`,
			`}`,
			`nomad {`,
			`  address   = "https://nomad:4646"`,
			`  namespace = "llm"`,
			`  region    = "eu"`,
			`  job_prefix      = "llm-"`,
			`  purge_on_stop   = true`,
			`  node_id         = "node-1"`,
			`  memory_headroom = "2GiB"`,
			`  memory_timeout  = "90s"`,
			`}`,
			`consul {`,
			`  address     = "consul:8500"`,
			`  lock_key    = "sb/lock"`,
			`  session_ttl = "20s"`,
			`  lock_delay  = "5s"`,
			`  kv_prefix   = "sb/state/"`,
			`}`,
			`orchestrator {`,
			`  runtime           = "local"`,
			`  slot              = "spark-1"`,
			`  switch_timeout    = "1m"`,
			`  inference_timeout = "2m"`,
			`  drain_timeout     = "3s"`,
			`  stop_timeout      = "4s"`,
			`  stop_grace        = "500ms"`,
			`  canary            = false`,
			`  canary_timeout    = "20s"`,
			`}`,
			`scheduler {`,
			`  default_model = "alias-of-b"`,
			`  max_wait      = "5m"`,
			`  queue_timeout = "6m"`,
			`  result_ttl    = "7h"`,
			`  max_pending   = 10`,
			`  max_pending_total = 20`,
			`  min_residency = "2m"`,
			`  max_switches_per_hour = 12`,
			`  idle_unload_after = "30m"`,
			`  quarantine_base = "10s"`,
			`  quarantine_max = "5m"`,
			`}`,
		),
		"m/models.hcl": lines(
			`model "a" {`,
			`  backend {`,
			`    port = 9001`,
			`  }`,
			`  command = ["/bin/a"]`,
			`}`,
			`model "b" {`,
			`  aliases = ["alias-of-b"]`,
			`  backend {`,
			`    port = 9002`,
			`  }`,
			`  command = ["/bin/b"]`,
			`}`,
		),
	}, nil)

	want := &config.Config{
		Files: cfg.Files,
		Gateway: config.Gateway{
			Listen:          "0.0.0.0:9000",
			MaxRequestBytes: 1024,
			AdminViaFunnel:  true,
			CORSOrigins:     []string{"https://app.example"},
		},
		Redis: config.Redis{URL: "redis://redis:6379/2", KeyPrefix: "x:"},
		Nomad: config.Nomad{Address: "https://nomad:4646", Namespace: "llm", Region: "eu", JobPrefix: "llm-",
			PurgeOnStop: true, NodeID: "node-1", MemoryHeadroom: 2 << 30, MemoryTimeout: 90 * time.Second},
		Consul: config.Consul{Address: "consul:8500", LockKey: "sb/lock", SessionTTL: 20 * time.Second,
			LockDelay: 5 * time.Second, KVPrefix: "sb/state/"},
		Orchestrator: config.Orchestrator{
			Runtime:          config.RuntimeLocal,
			Slot:             "spark-1",
			SwitchTimeout:    time.Minute,
			InferenceTimeout: 2 * time.Minute,
			DrainTimeout:     3 * time.Second,
			StopTimeout:      4 * time.Second,
			StopGrace:        500 * time.Millisecond,
			CanaryTimeout:    20 * time.Second,
		},
		Scheduler: config.Scheduler{
			DefaultModel:       "b", // the alias resolves to the logical name
			MaxWait:            5 * time.Minute,
			QueueTimeout:       6 * time.Minute,
			ResultTTL:          7 * time.Hour,
			MaxPending:         10,
			MaxPendingTotal:    20,
			MinResidency:       2 * time.Minute,
			MaxSwitchesPerHour: 12,
			IdleUnloadAfter:    30 * time.Minute,
			QuarantineBase:     10 * time.Second,
			QuarantineMax:      5 * time.Minute,
		},
		Models: cfg.Models,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("config:\n got %+v\nwant %+v", cfg, want)
	}
	if got := cfg.ModelNames(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("ModelNames() = %v", got)
	}
	if len(cfg.Files) != 2 || !strings.HasSuffix(cfg.Files[1], filepath.Join("m", "models.hcl")) {
		t.Fatalf("Files = %v, want the gateway file and m/models.hcl", cfg.Files)
	}
}

func TestLoad_NomadModel(t *testing.T) {
	cfg := mustLoad(t, files{
		"gateway.hcl": "",
		"models.hcl": lines(
			`model "qwen3-30b" {`,
			`  aliases      = ["qwen3", "Qwen/Qwen3-30B-A3B"]`,
			`  served_name  = "Qwen/Qwen3-30B-A3B"`,
			`  jobspec      = "../jobs/vllm.hcl"`,
			`  quantization = "awq"`,
			`  memory       = "1.5GiB"`,
			`  source {`,
			`    type  = "local_path"`,
			`    value = "/models/qwen3"`,
			`  }`,
			`  backend {`,
			`    image     = "nvcr.io/nvidia/vllm:25.10-py3"`,
			`    port      = 8000`,
			`    vllm_args = ["--max-model-len", 32768]`,
			`  }`,
			`  max_concurrency = 4`,
			`}`,
		),
		"../jobs/vllm.hcl": jobspec, // outside the config directory
	}, nil)
	m := cfg.Model("Qwen/Qwen3-30B-A3B")
	if m == nil || m != cfg.Model("qwen3") || m != cfg.Model("qwen3-30b") {
		t.Fatalf("Model() does not find qwen3-30b by name and aliases: %v", cfg.ModelNames())
	}
	want := &config.Model{
		Name:           "qwen3-30b",
		Aliases:        []string{"qwen3", "Qwen/Qwen3-30B-A3B"},
		ServedName:     "Qwen/Qwen3-30B-A3B",
		Jobspec:        filepath.Join(filepath.Dir(cfg.Files[1]), "..", "jobs", "vllm.hcl"),
		Source:         config.Source{Type: config.SourceLocalPath, Value: "/models/qwen3"},
		Backend:        config.Backend{Image: "nvcr.io/nvidia/vllm:25.10-py3", Port: 8000, VLLMArgs: []string{"--max-model-len", "32768"}},
		Quantization:   "awq",
		MaxConcurrency: 4,
		MemoryBytes:    3 << 29,
		DeclRange:      m.DeclRange,
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("model:\n got %+v\nwant %+v", m, want)
	}
	if m.DeclRange.Filename != cfg.Files[1] || m.DeclRange.Start.Line != 1 {
		t.Fatalf("DeclRange = %v, want %s line 1", m.DeclRange, cfg.Files[1])
	}
}

func TestLoad_Command(t *testing.T) {
	tests := []struct {
		name    string
		command string
		env     string
		want    []string
		wantEnv map[string]string
	}{
		{
			name:    "variables",
			command: `[switchboard, "mockllm", "--port", model.port, "--model", model.served_name]`,
			want:    []string{testBin, "mockllm", "--port", "9001", "--model", "Served/Name"},
		},
		{
			name:    "template",
			command: `["${switchboard}", "--name=${model.name}", "--addr=127.0.0.1:${model.port}"]`,
			want:    []string{testBin, "--name=m", "--addr=127.0.0.1:9001"},
		},
		{
			name:    "numbers and bools become strings",
			command: `["/bin/x", 42, 1.5, true]`,
			want:    []string{"/bin/x", "42", "1.5", "true"},
		},
		{
			name:    "env",
			command: `["/bin/x"]`,
			env:     `{ PORT = model.port, NAME = model.name, FIXED = "v" }`,
			want:    []string{"/bin/x"},
			wantEnv: map[string]string{"PORT": "9001", "NAME": "m", "FIXED": "v"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			models := []string{
				`model "m" {`,
				`  served_name = "Served/Name"`,
				`  backend {`,
				`    port = 9001`,
				`  }`,
				`  command = ` + tt.command,
			}
			if tt.env != "" {
				models = append(models, `  env = `+tt.env)
			}
			models = append(models, `}`)
			cfg := mustLoad(t, files{"gateway.hcl": localGateway, "models.hcl": lines(models...)}, nil)
			m := cfg.Model("m")
			if !reflect.DeepEqual(m.Command, tt.want) {
				t.Fatalf("Command = %q, want %q", m.Command, tt.want)
			}
			if !reflect.DeepEqual(m.Env, tt.wantEnv) {
				t.Fatalf("Env = %q, want %q", m.Env, tt.wantEnv)
			}
		})
	}
}

func TestLoad_CommandIgnoredByNomad(t *testing.T) {
	cfg := mustLoad(t, files{
		"gateway.hcl":   "",
		"models.hcl":    strings.Replace(nomadModel, "  jobspec", "  command = [switchboard]\n  jobspec", 1),
		"jobs/vllm.hcl": jobspec,
	}, nil)
	if got := cfg.Model("n").Command; got != nil {
		t.Fatalf("Command = %q with the nomad runtime, want none", got)
	}
}

func TestLoad_Env(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, cfg *config.Config)
	}{
		{
			name: "every override",
			env: map[string]string{
				"GATEWAY_LISTEN":        "0.0.0.0:9999",
				"REDIS_URL":             "rediss://r:6380/1",
				"NOMAD_ADDR":            "https://n:4646",
				"CONSUL_HTTP_ADDR":      "c:8500",
				"SWITCH_TIMEOUT_SEC":    "90",
				"INFERENCE_TIMEOUT_SEC": " 30 ",
			},
			check: func(t *testing.T, cfg *config.Config) {
				got := []any{cfg.Gateway.Listen, cfg.Redis.URL, cfg.Nomad.Address, cfg.Consul.Address,
					cfg.Orchestrator.SwitchTimeout, cfg.Orchestrator.InferenceTimeout}
				want := []any{"0.0.0.0:9999", "rediss://r:6380/1", "https://n:4646", "c:8500",
					90 * time.Second, 30 * time.Second}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			},
		},
		{
			name: "keys are split, trimmed and empties dropped",
			env: map[string]string{
				"GATEWAY_API_KEY":       " u1, ,u2,,",
				"GATEWAY_ADMIN_API_KEY": "a1",
			},
			check: func(t *testing.T, cfg *config.Config) {
				if want := []config.Secret{"u1", "u2"}; !reflect.DeepEqual(cfg.Gateway.UserKeys, want) {
					t.Fatalf("UserKeys = %q, want %q", reveal(cfg.Gateway.UserKeys), reveal(want))
				}
				if want := []config.Secret{"a1"}; !reflect.DeepEqual(cfg.Gateway.AdminKeys, want) {
					t.Fatalf("AdminKeys = %q, want %q", reveal(cfg.Gateway.AdminKeys), reveal(want))
				}
			},
		},
		{
			name: "empty variables count as unset",
			env: map[string]string{
				"GATEWAY_LISTEN":     "",
				"SWITCH_TIMEOUT_SEC": " ",
				"GATEWAY_API_KEY":    "",
			},
			check: func(t *testing.T, cfg *config.Config) {
				if cfg.Gateway.Listen != "127.0.0.1:7000" || cfg.Orchestrator.SwitchTimeout != 7*time.Minute {
					t.Fatalf("file values lost: listen %q, switch_timeout %v", cfg.Gateway.Listen, cfg.Orchestrator.SwitchTimeout)
				}
				if cfg.Gateway.UserKeys != nil {
					t.Fatalf("UserKeys = %d keys, want none", len(cfg.Gateway.UserKeys))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustLoad(t, files{
				"gateway.hcl": lines(
					`gateway {`,
					`  listen = "127.0.0.1:7000"`,
					`}`,
					`orchestrator {`,
					`  runtime        = "local"`,
					`  switch_timeout = "7m"`,
					`}`,
				),
				"models.hcl": localModel,
			}, tt.env)
			tt.check(t, cfg)
		})
	}
}

func reveal(keys []config.Secret) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Reveal()
	}
	return out
}

func TestLoad_EnvErrors(t *testing.T) {
	tests := []struct {
		name string
		key  string
		val  string
		want string
	}{
		{name: "switch timeout not a number", key: "SWITCH_TIMEOUT_SEC", val: "abc", want: `"abc" is not a positive whole number of seconds`},
		{name: "switch timeout zero", key: "SWITCH_TIMEOUT_SEC", val: "0", want: "positive whole number"},
		{name: "switch timeout negative", key: "SWITCH_TIMEOUT_SEC", val: "-5", want: "positive whole number"},
		{name: "switch timeout with unit", key: "SWITCH_TIMEOUT_SEC", val: "15m", want: "positive whole number"},
		{name: "inference timeout fraction", key: "INFERENCE_TIMEOUT_SEC", val: "1.5", want: "positive whole number"},
		{name: "listen", key: "GATEWAY_LISTEN", val: "localhost", want: "host:port"},
		{name: "redis url", key: "REDIS_URL", val: "http://r:6379", want: "want redis://"},
		{name: "nomad addr", key: "NOMAD_ADDR", val: "n:4646", want: "not a URL"},
		{name: "consul addr", key: "CONSUL_HTTP_ADDR", val: "consul", want: "neither a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, files{"gateway.hcl": localGateway, "models.hcl": localModel},
				map[string]string{tt.key: tt.val})
			// Not about a file: the line starts with the summary.
			requireDiag(t, err, "invalid environment variable "+tt.key+": ", tt.want)
		})
	}
}

func TestLoad_Errors(t *testing.T) {
	tests := []struct {
		name     string
		gateway  string
		models   string
		extra    files
		wantFile string // file the diagnostic names
		wantLine int    // 0: the file, no position
		want     string
	}{
		// gateway.hcl
		{
			name:     "gateway unknown attribute",
			gateway:  lines(`# comment`, `bogus = 1`),
			wantFile: "gateway.hcl", wantLine: 2, want: `Unsupported argument`,
		},
		{
			name:     "gateway unknown block",
			gateway:  lines(`metrics {`, `}`),
			wantFile: "gateway.hcl", wantLine: 1, want: `Unsupported block type`,
		},
		{
			name:     "gateway unknown key in block",
			gateway:  lines(`gateway {`, `  listn = "127.0.0.1:1"`, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `Did you mean "listen"?`,
		},
		{
			name:     "gateway duplicate block",
			gateway:  lines(`redis {`, `}`, `redis {`, `}`),
			wantFile: "gateway.hcl", wantLine: 3, want: `Duplicate redis block`,
		},
		{
			name:     "gateway syntax error",
			gateway:  lines(`gateway {`, `  listen = `, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `Invalid expression`,
		},
		{
			name:     "gateway wrong type",
			gateway:  lines(`gateway {`, `  max_request_bytes = "lots"`, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `Unsuitable value type`,
		},
		{
			name:     "gateway max_request_bytes zero",
			gateway:  lines(`gateway {`, `  max_request_bytes = 0`, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `invalid gateway.max_request_bytes: 0 must be larger than zero`,
		},
		{
			name:     "gateway bad listen",
			gateway:  lines(`gateway {`, `  listen = "localhost"`, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `invalid gateway.listen: "localhost" is not host:port`,
		},
		{
			name:     "gateway bad redis url",
			gateway:  lines(`redis {`, ``, `  url = "http://redis:6379"`, `}`),
			wantFile: "gateway.hcl", wantLine: 3, want: `invalid redis.url: "http://redis:6379" has scheme "http"`,
		},
		{
			name:     "gateway bad nomad address",
			gateway:  lines(`nomad {`, `  address = "ftp://n"`, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `invalid nomad.address`,
		},
		{
			name:     "gateway absolute lock key",
			gateway:  lines(`consul {`, `  lock_key = "/sb/leader"`, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `invalid consul.lock_key`,
		},
		{
			name:     "gateway unparsable duration",
			gateway:  lines(`orchestrator {`, `  runtime        = "local"`, `  switch_timeout = "15"`, `}`),
			wantFile: "gateway.hcl", wantLine: 3, want: `invalid orchestrator.switch_timeout: "15" is not a duration`,
		},
		{
			name:     "gateway zero duration",
			gateway:  lines(`orchestrator {`, `  runtime       = "local"`, `  drain_timeout = "0s"`, `}`),
			wantFile: "gateway.hcl", wantLine: 3, want: `invalid orchestrator.drain_timeout: "0s" must be longer than zero`,
		},
		{
			name:     "gateway negative duration",
			gateway:  lines(`scheduler {`, `  max_wait = "-1m"`, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `invalid scheduler.max_wait`,
		},
		{
			name:     "gateway number duration",
			gateway:  lines(`scheduler {`, `  result_ttl = 3600`, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `invalid scheduler.result_ttl: "3600" is not a duration`,
		},
		{
			name:     "gateway list duration",
			gateway:  lines(`orchestrator {`, `  stop_grace = ["1s"]`, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `Unsuitable value type`,
		},
		{
			name:     "gateway unknown runtime",
			gateway:  lines(`orchestrator {`, `  runtime = "docker"`, `}`),
			wantFile: "gateway.hcl", wantLine: 2, want: `invalid orchestrator.runtime: "docker" is not a runtime`,
		},
		{
			name:     "gateway bad slot",
			gateway:  lines(`orchestrator {`, `  runtime = "local"`, `  slot    = "a b"`, `}`),
			wantFile: "gateway.hcl", wantLine: 3, want: `invalid orchestrator.slot`,
		},
		{
			name:     "gateway unknown default model",
			gateway:  lines(`orchestrator {`, `  runtime = "local"`, `}`, `scheduler {`, `  default_model = "nope"`, `}`),
			wantFile: "gateway.hcl", wantLine: 5, want: `unknown default_model: scheduler.default_model "nope" is neither a model nor an alias; models: "a"`,
		},
		{
			name:     "gateway models file missing",
			gateway:  lines(`models_file = "other.hcl"`),
			wantFile: "other.hcl", wantLine: 0, want: `cannot read configuration file: the file does not exist`,
		},
		{
			name:     "gateway empty models file name",
			gateway:  lines(`orchestrator {`, `  runtime = "local"`, `}`, `models_file = ""`),
			wantFile: "gateway.hcl", wantLine: 4, want: `invalid models_file`,
		},

		// models.hcl
		{
			name:     "models none",
			models:   lines(`# nothing here`),
			wantFile: "models.hcl", wantLine: 0, want: `no models declared`,
		},
		{
			name:     "models syntax error",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"`, `}`),
			wantFile: "models.hcl", wantLine: 6, want: `Missing item separator`,
		},
		{
			name:     "models unknown top-level attribute",
			models:   localModel + lines(`default = "a"`),
			wantFile: "models.hcl", wantLine: 7, want: `Unsupported argument`,
		},
		{
			name:     "models unknown attribute in model",
			models:   lines(`model "a" {`, `  gpus = 1`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `An argument named "gpus" is not expected here`,
		},
		{
			name:     "models unknown block in backend",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `    resources {`, `    }`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 4, want: `Unsupported block type`,
		},
		{
			name:     "models wrong type",
			models:   lines(`model "a" {`, `  max_concurrency = "many"`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `Unsuitable value type`,
		},
		{
			name:     "models duplicate name",
			models:   localModel + lines(`model "a" {`, `  backend {`, `    port = 9002`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 7, want: `duplicate model: model "a" is declared twice; first declared at models.hcl:1`,
		},
		{
			name: "models alias collides with a model name",
			models: localModel + lines(
				`model "b" {`,
				`  aliases = [`,
				`    "b2",`,
				`    "a",`,
				`  ]`,
				`  backend {`,
				`    port = 9002`,
				`  }`,
				`  command = ["/bin/b"]`,
				`}`,
			),
			wantFile: "models.hcl", wantLine: 10,
			want: `alias collision: model "b": alias "a" collides with model "a" declared at models.hcl:1`,
		},
		{
			name: "models alias collides with a later model name",
			models: lines(
				`model "b" {`,
				`  aliases = ["a"]`,
				`  backend {`,
				`    port = 9002`,
				`  }`,
				`  command = ["/bin/b"]`,
				`}`,
			) + localModel,
			wantFile: "models.hcl", wantLine: 2,
			want: `model "b": alias "a" collides with model "a" declared at models.hcl:8`,
		},
		{
			name: "models alias collides with another alias",
			models: lines(
				`model "a" {`,
				`  aliases = ["shared"]`,
				`  backend {`,
				`    port = 9001`,
				`  }`,
				`  command = ["/bin/a"]`,
				`}`,
				`model "b" {`,
				`  aliases = ["b1", "shared"]`,
				`  backend {`,
				`    port = 9002`,
				`  }`,
				`  command = ["/bin/b"]`,
				`}`,
			),
			wantFile: "models.hcl", wantLine: 9,
			want: `model "b": alias "shared" is already an alias of model "a" at models.hcl:2`,
		},
		{
			name:     "models alias repeats own name",
			models:   lines(`model "a" {`, `  aliases = ["a"]`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `model "a": alias "a" repeats the model's own name`,
		},
		{
			name:     "models alias listed twice",
			models:   lines(`model "a" {`, `  aliases = ["x",`, `  "x"]`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 3, want: `model "a": alias "x" is listed twice (first at models.hcl:2)`,
		},
		{
			name:     "models invalid name",
			models:   lines(``, `model "bad name" {`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `invalid model name: model "bad name": "bad name" is not a valid name`,
		},
		{
			name:     "models name too long",
			models:   strings.Replace(localModel, `"a"`, `"`+strings.Repeat("x", 129)+`"`, 1),
			wantFile: "models.hcl", wantLine: 1, want: `1 to 128 letters`,
		},
		{
			name:     "models invalid alias",
			models:   lines(`model "a" {`, `  aliases = ["ok", "-dash"]`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `invalid alias: model "a": alias "-dash" is not a valid name`,
		},
		{
			name:     "models aliases not a list",
			models:   lines(`model "a" {`, `  aliases = "x"`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `aliases must be a list`,
		},
		{
			name:     "models empty served name",
			models:   lines(`model "a" {`, `  served_name = ""`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `invalid served_name`,
		},
		{
			name:     "models port out of range",
			models:   lines(`model "a" {`, `  backend {`, `    port = 70000`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 3, want: `invalid backend port: model "a": backend.port 70000 is out of range 1..65535`,
		},
		{
			name:     "models port zero",
			models:   lines(`model "a" {`, `  backend {`, `    port = 0`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 3, want: `backend.port 0 is out of range`,
		},
		{
			name:     "models port missing",
			models:   lines(`model "a" {`, `  backend {`, `    vllm_args = []`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `missing backend port: model "a": backend.port is required`,
		},
		{
			name:     "models backend missing",
			models:   lines(`model "a" {`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 1, want: `missing backend: model "a": a backend block`,
		},
		{
			name:     "models max_concurrency zero",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command         = ["/bin/a"]`, `  max_concurrency = 0`, `}`),
			wantFile: "models.hcl", wantLine: 6, want: `max_concurrency 0 must be at least 1`,
		},
		{
			name:     "models memory without unit",
			models:   lines(`model "a" {`, `  memory = 1024`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `invalid memory: model "a": memory "1024" is not a memory size`,
		},
		{
			name:     "models memory unknown unit",
			models:   lines(`model "a" {`, `  memory = "40gigs"`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `unknown unit "gigs"`,
		},
		{
			name:     "models memory zero",
			models:   lines(`model "a" {`, `  memory = "0GiB"`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `must be larger than zero`,
		},
		{
			name:     "models bad source type",
			models:   lines(`model "a" {`, `  source {`, `    type  = "s3"`, `    value = "x"`, `  }`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 3, want: `source.type "s3" is not one of "huggingface_repo" or "local_path"`,
		},
		{
			name:     "models relative local path",
			models:   lines(`model "a" {`, `  source {`, `    type  = "local_path"`, `    value = "models/a"`, `  }`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 4, want: `must be an absolute path`,
		},
		{
			name:     "models source type missing",
			models:   lines(`model "a" {`, `  source {`, `    value = "/m"`, `  }`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `missing source type: model "a": source.type is required: "huggingface_repo" or "local_path"`,
		},
		{
			name:     "models source value missing",
			models:   lines(`model "a" {`, `  source {`, `    type = "huggingface_repo"`, `  }`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			wantFile: "models.hcl", wantLine: 2, want: `missing source value: model "a": source.value is required`,
		},

		// local runtime
		{
			name:     "local command missing",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `}`),
			wantFile: "models.hcl", wantLine: 1, want: `missing command: model "a": command is required with the local runtime`,
		},
		{
			name:     "local command unknown variable",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command = [switchboard, "--gpu", gpu.id]`, `}`),
			wantFile: "models.hcl", wantLine: 5, want: `unknown variable: model "a": command may use only the variables switchboard and model`,
		},
		{
			name:     "local command unknown model attribute",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command = [switchboard, model.gpu]`, `}`),
			wantFile: "models.hcl", wantLine: 5, want: `Unsupported attribute`,
		},
		{
			name:     "local command function call",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command = [upper(switchboard)]`, `}`),
			wantFile: "models.hcl", wantLine: 5, want: `Function calls not allowed`,
		},
		{
			name:     "local command not a list",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command = "/bin/a --port 1"`, `}`),
			wantFile: "models.hcl", wantLine: 5, want: `invalid command: model "a": command must be a list of strings`,
		},
		{
			name:     "local command empty",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command = []`, `}`),
			wantFile: "models.hcl", wantLine: 5, want: `command must not be empty`,
		},
		{
			name:     "local command nested list",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a", ["x"]]`, `}`),
			wantFile: "models.hcl", wantLine: 5, want: `command must be a list of strings`,
		},
		{
			name:     "local env bad name",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `  env     = { "BAD-NAME" = "x" }`, `}`),
			wantFile: "models.hcl", wantLine: 6, want: `"BAD-NAME" is not an environment variable name`,
		},
		{
			name:     "local env unknown variable",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `  env     = { HOME = home }`, `}`),
			wantFile: "models.hcl", wantLine: 6, want: `env may use only the variables switchboard and model`,
		},
		{
			name:     "jobspec variables bad name",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command   = ["/bin/a"]`, `  variables = { "1 bad" = "x" }`, `}`),
			wantFile: "models.hcl", wantLine: 6, want: `"1 bad" is not a jobspec variable name`,
		},
		{
			name:     "jobspec variables not a map",
			models:   lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `  command   = ["/bin/a"]`, `  variables = ["x"]`, `}`),
			wantFile: "models.hcl", wantLine: 6, want: `variables must be a map of strings`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := files{"gateway.hcl": tt.gateway, "models.hcl": tt.models}
			if tt.gateway == "" {
				fs["gateway.hcl"] = localGateway
			}
			if tt.models == "" {
				fs["models.hcl"] = localModel
			}
			for k, v := range tt.extra {
				fs[k] = v
			}
			_, dir, err := load(t, fs, nil)
			requireDiag(t, err, pos(dir, tt.wantFile, tt.wantLine), tt.want)
		})
	}
}

func TestLoad_NomadErrors(t *testing.T) {
	tests := []struct {
		name     string
		models   string
		extra    files
		wantFile string
		wantLine int
		want     string
	}{
		{
			name:     "jobspec missing",
			models:   strings.Replace(nomadModel, `  jobspec = "jobs/vllm.hcl"`+"\n", "", 1),
			wantFile: "models.hcl", wantLine: 1, want: `missing jobspec: model "n": jobspec is required with the nomad runtime`,
		},
		{
			name:     "jobspec file does not exist",
			models:   strings.Replace(nomadModel, "jobs/vllm.hcl", "jobs/nope.hcl", 1),
			wantFile: "models.hcl", wantLine: 2, want: `jobspec not found: model "n": jobspec "jobs/nope.hcl" (resolved to `,
		},
		{
			name:     "jobspec is not HCL",
			models:   nomadModel,
			extra:    files{"jobs/vllm.hcl": lines(`job "x" {`, `  type = `, `}`)},
			wantFile: filepath.Join("jobs", "vllm.hcl"), wantLine: 2, want: `Invalid expression`,
		},
		{
			name:     "source missing",
			models:   strings.Replace(nomadModel, lines(`  source {`, `    type  = "huggingface_repo"`, `    value = "org/n"`, `  }`), "", 1),
			wantFile: "models.hcl", wantLine: 1, want: `missing source: model "n": a source block with type ("huggingface_repo" or "local_path") and value is required with the nomad runtime`,
		},
		{
			name:     "image missing",
			models:   strings.Replace(nomadModel, `    image = "vllm:1"`+"\n", "", 1),
			wantFile: "models.hcl", wantLine: 7, want: `missing backend image: model "n": backend.image is required with the nomad runtime`,
		},
		{
			name:     "hugging face repo with spaces",
			models:   strings.Replace(nomadModel, `"org/n"`, `"org n"`, 1),
			wantFile: "models.hcl", wantLine: 5, want: `is not a Hugging Face repository`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := files{"gateway.hcl": "", "models.hcl": tt.models, "jobs/vllm.hcl": jobspec}
			for k, v := range tt.extra {
				fs[k] = v
			}
			_, dir, err := load(t, fs, nil)
			requireDiag(t, err, pos(dir, tt.wantFile, tt.wantLine), tt.want)
		})
	}
}

func TestLoad_CollectsAllErrors(t *testing.T) {
	_, dir, err := load(t, files{
		"gateway.hcl": lines(
			`orchestrator {`,
			`  runtime        = "local"`,
			`  switch_timeout = "soon"`,
			`}`,
		),
		"models.hcl": lines(
			`model "a" {`,
			`  backend {`,
			`    port = 0`,
			`  }`,
			`  memory = "lots"`,
			`}`,
		),
	}, map[string]string{"INFERENCE_TIMEOUT_SEC": "x"})
	checks := []struct {
		name   string
		prefix string
		text   string
	}{
		{name: "gateway", prefix: pos(dir, "gateway.hcl", 3), text: "switch_timeout"},
		{name: "env", prefix: "invalid environment variable INFERENCE_TIMEOUT_SEC", text: `"x"`},
		{name: "command", prefix: pos(dir, "models.hcl", 1), text: "missing command"},
		{name: "port", prefix: pos(dir, "models.hcl", 3), text: "backend.port 0"},
		{name: "memory", prefix: pos(dir, "models.hcl", 5), text: "memory"},
	}
	var diags hcl.Diagnostics
	if !errors.As(err, &diags) || len(diags) != len(checks) {
		t.Fatalf("want %d diagnostics reachable as hcl.Diagnostics, got %d:\n%v", len(checks), len(diags), err)
	}
	// One line each, grouped by file and in file order.
	got := strings.Split(err.Error(), "\n")
	for i, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !strings.HasPrefix(got[i], c.prefix) || !strings.Contains(got[i], c.text) {
				t.Fatalf("line %d = %q, want prefix %q and %q; all:\n%v", i+1, got[i], c.prefix, c.text, err)
			}
		})
	}
}

// TestLoad_OneDiagnosticPerMistake guards against a value that gohcl
// already rejected being reported again by the semantic checks.
func TestLoad_OneDiagnosticPerMistake(t *testing.T) {
	tests := []struct {
		name    string
		gateway string
		models  string
		want    string
	}{
		{
			name:    "duration not a string",
			gateway: localGateway + lines(`scheduler {`, `  max_wait = ["1s"]`, `}`),
			models:  localModel,
			want:    "Unsuitable value type",
		},
		{
			name:    "port not a number",
			gateway: localGateway,
			models:  lines(`model "a" {`, `  backend {`, `    port = "http"`, `  }`, `  command = ["/bin/a"]`, `}`),
			want:    "Unsuitable value type",
		},
		{
			name:    "source type not a string",
			gateway: localGateway,
			models: lines(`model "a" {`, `  source {`, `    type  = ["local_path"]`, `    value = "/m"`, `  }`,
				`  backend {`, `    port = 9001`, `  }`, `  command = ["/bin/a"]`, `}`),
			want: "Unsuitable value type",
		},
		{
			name:    "invalid port used by command",
			gateway: localGateway,
			models:  lines(`model "a" {`, `  backend {`, `    port = 0`, `  }`, `  command = ["/bin/a", model.port]`, `}`),
			want:    "out of range",
		},
		{
			name:    "unknown runtime skips runtime checks",
			gateway: lines(`orchestrator {`, `  runtime = "k8s"`, `}`),
			models:  lines(`model "a" {`, `  backend {`, `    port = 9001`, `  }`, `}`),
			want:    "invalid orchestrator.runtime",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, files{"gateway.hcl": tt.gateway, "models.hcl": tt.models}, nil)
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Load: want *config.Error, got %v", err)
			}
			if len(cerr.Diagnostics) != 1 || !strings.Contains(cerr.Error(), tt.want) {
				t.Fatalf("want exactly one diagnostic containing %q, got:\n%v", tt.want, err)
			}
		})
	}
}

func TestLoad_MissingGatewayFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.hcl")
	_, err := config.Load(path, config.LoadOptions{LookupEnv: envOf(nil)})
	requireDiag(t, err, path+": ", "cannot read configuration file: the file does not exist")
}

func TestFormatDiagnostics_Rendering(t *testing.T) {
	rng := hcl.Range{Filename: "m.hcl", Start: hcl.Pos{Line: 3, Column: 5}}
	tests := []struct {
		name string
		diag *hcl.Diagnostic
		want string
	}{
		{
			name: "position",
			diag: &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "bad", Detail: "why", Subject: &rng},
			want: "m.hcl:3:5: bad: why",
		},
		{
			name: "file only",
			diag: &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "bad", Detail: "why", Subject: &hcl.Range{Filename: "m.hcl"}},
			want: "m.hcl: bad: why",
		},
		{
			name: "no subject",
			diag: &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "bad", Detail: "why"},
			want: "bad: why",
		},
		{
			name: "no detail",
			diag: &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "bad", Subject: &rng},
			want: "m.hcl:3:5: bad",
		},
		{
			name: "warning",
			diag: &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "odd", Detail: "hmm", Subject: &rng},
			want: "m.hcl:3:5: warning: odd: hmm",
		},
		{
			name: "multi-line detail folds",
			diag: &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "bad", Detail: "line one\n  line two", Subject: &rng},
			want: "m.hcl:3:5: bad: line one line two",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := config.FormatDiagnostics(hcl.Diagnostics{tt.diag}); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			err := &config.Error{Diagnostics: hcl.Diagnostics{tt.diag}}
			if got := err.Error(); got != tt.want {
				t.Fatalf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
	two := hcl.Diagnostics{tests[0].diag, tests[2].diag}
	if got, want := config.FormatDiagnostics(two), "m.hcl:3:5: bad: why\nbad: why"; got != want {
		t.Fatalf("two diagnostics: got %q, want %q", got, want)
	}
}

func TestLoad_JobspecVariables(t *testing.T) {
	cfg := mustLoad(t, files{
		"gateway.hcl": lines(`orchestrator {`, `  runtime = "local"`, `}`),
		"models.hcl": lines(
			`model "a" {`,
			`  backend {`,
			`    port = 9001`,
			`  }`,
			`  command   = ["/bin/a"]`,
			`  variables = { switchboard_bin = switchboard, port_copy = model.port, hf_cache_dir = "/data/hf" }`,
			`}`,
		),
	}, nil)
	got := cfg.Models[0].Variables
	if got["switchboard_bin"] == "" || got["port_copy"] != "9001" || got["hf_cache_dir"] != "/data/hf" {
		t.Fatalf("variables = %v", got)
	}
}
