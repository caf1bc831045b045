package nomadrt_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/nomad/api"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakenomad"
)

const jobspecDir = "../../jobs.nomad.d"

// productionConfig loads configs/gateway.hcl and its models.hcl with no
// environment overrides, so the tests use the real model settings.
func productionConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load("../../configs/gateway.hcl", config.LoadOptions{
		LookupEnv: func(string) (string, bool) { return "", false },
	})
	if err != nil {
		t.Fatalf("load configs/gateway.hcl:\n%v", err)
	}
	if len(cfg.Models) < 3 {
		t.Fatalf("configs/models.hcl has %d models, want the three production ones", len(cfg.Models))
	}
	return cfg
}

// argValue returns the value following flag in args, if any.
func argValue(args []string, flag string) (string, bool) {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func stringArgs(t *testing.T, task *api.Task) []string {
	t.Helper()
	raw, ok := task.Config["args"].([]any)
	if !ok {
		t.Fatalf("task %s: args = %#v, want a list", task.Name, task.Config["args"])
	}
	out := make([]string, len(raw))
	for i, a := range raw {
		out[i] = fmt.Sprint(a)
	}
	return out
}

func checkPaths(svc *api.Service) []string {
	var out []string
	for _, c := range svc.Checks {
		out = append(out, c.Type+":"+c.Path)
	}
	return out
}

// Every production model renders from vllm.nomad.hcl through the runtime's
// own Render (Nomad's parse with the model's variables), in both GPU modes.
func TestJobspecs_VLLMAllProductionModels(t *testing.T) {
	cfg := productionConfig(t)
	e := newFakeEnv(t, fakenomad.Options{})
	for _, base := range cfg.Models {
		for _, mode := range []string{"", "device", "runtime"} {
			name := base.Name + "/gpu_mode=" + mode
			if mode == "" {
				name = base.Name + "/default"
			}
			t.Run(name, func(t *testing.T) {
				m := *base
				m.Variables = maps.Clone(base.Variables)
				if m.Variables == nil {
					m.Variables = map[string]string{}
				}
				if mode != "" {
					m.Variables["gpu_mode"] = mode
				}
				if filepath.Base(m.Jobspec) != "vllm.nomad.hcl" {
					t.Fatalf("jobspec = %s, want jobs.nomad.d/vllm.nomad.hcl", m.Jobspec)
				}
				job, hash, err := e.rt.Render(ctxT(t, 10*time.Second), &m)
				if err != nil {
					t.Fatal(err)
				}
				assertVLLMJob(t, e, &m, job, hash, mode)
			})
		}
	}
}

func assertVLLMJob(t *testing.T, e *env, m *config.Model, job *api.Job, hash, mode string) {
	t.Helper()
	if *job.ID != e.rt.JobID(m.Name) || *job.Name != e.rt.JobID(m.Name) || *job.Type != "service" {
		t.Errorf("job id %q name %q type %q", *job.ID, *job.Name, *job.Type)
	}
	if job.Meta["model"] != m.Name || job.Meta["served_name"] != m.ServedName || hash == "" {
		t.Errorf("meta = %v, hash %q", job.Meta, hash)
	}
	if len(job.TaskGroups) != 1 || len(job.TaskGroups[0].Tasks) != 1 {
		t.Fatalf("want one group with one task, got %d groups", len(job.TaskGroups))
	}
	tg := job.TaskGroups[0]
	if *tg.RestartPolicy.Attempts != 0 || *tg.RestartPolicy.Mode != "fail" {
		t.Errorf("restart = %d attempts, mode %q; want 0, fail", *tg.RestartPolicy.Attempts, *tg.RestartPolicy.Mode)
	}
	if *tg.ReschedulePolicy.Attempts != 0 || *tg.ReschedulePolicy.Unlimited {
		t.Errorf("reschedule = %d attempts, unlimited %v; want 0, false", *tg.ReschedulePolicy.Attempts, *tg.ReschedulePolicy.Unlimited)
	}
	if u := tg.Update; u == nil || *u.HealthyDeadline < 20*time.Minute || *u.ProgressDeadline <= *u.HealthyDeadline {
		t.Errorf("update = %+v, want deadlines above a multi-minute load", u)
	}
	if len(tg.Networks) != 1 || len(tg.Networks[0].ReservedPorts) != 1 || tg.Networks[0].ReservedPorts[0].Value != m.Backend.Port {
		t.Errorf("networks = %+v, want static port %d", tg.Networks, m.Backend.Port)
	}
	if len(tg.Services) != 1 {
		t.Fatalf("services = %d, want 1", len(tg.Services))
	}
	svc := tg.Services[0]
	if svc.Name != "vllm" || svc.PortLabel != "http" || svc.Provider != "consul" {
		t.Errorf("service %q port %q provider %q", svc.Name, svc.PortLabel, svc.Provider)
	}
	if got, want := checkPaths(svc), []string{"http:/health", "http:/v1/models"}; !slices.Equal(got, want) {
		t.Errorf("checks = %v, want %v", got, want)
	}
	task := tg.Tasks[0]
	if task.Driver != "docker" || task.KillSignal != "SIGTERM" || *task.KillTimeout != 90*time.Second {
		t.Errorf("driver %q kill_signal %q kill_timeout %v; want docker, SIGTERM, 90s", task.Driver, task.KillSignal, *task.KillTimeout)
	}
	if task.Config["image"] != m.Backend.Image || task.Config["image_pull_timeout"] != "30m" {
		t.Errorf("image %v pull timeout %v", task.Config["image"], task.Config["image_pull_timeout"])
	}
	args := stringArgs(t, task)
	if len(args) < 2 || args[0] != "serve" || args[1] != m.Source.Value {
		t.Errorf("args %q, want serve %s", args, m.Source.Value)
	}
	if v, _ := argValue(args, "--served-model-name"); v != m.ServedName {
		t.Errorf("--served-model-name %q, want %q", v, m.ServedName)
	}
	if v, _ := argValue(args, "--port"); v != fmt.Sprint(m.Backend.Port) {
		t.Errorf("--port %q, want %d", v, m.Backend.Port)
	}
	if v, _ := argValue(args, "--load-format"); v == "" {
		t.Errorf("args %q lack --load-format", args)
	}
	if want, ok := argValue(m.Backend.VLLMArgs, "--max-model-len"); ok {
		if v, _ := argValue(args, "--max-model-len"); v != want {
			t.Errorf("--max-model-len %q, want %q", v, want)
		}
	}
	if v, ok := argValue(args, "--quantization"); m.Quantization != "" && v != m.Quantization || m.Quantization == "" && ok {
		t.Errorf("--quantization %q, want %q", v, m.Quantization)
	}
	if !strings.Contains(strings.Join(args, " "), strings.Join(m.Backend.VLLMArgs, " ")) {
		t.Errorf("args %q lack the model's vllm_args %q", args, m.Backend.VLLMArgs)
	}
	volumes := fmt.Sprint(task.Config["volumes"])
	mounts := fmt.Sprint(task.Config["mount"])
	if !strings.Contains(volumes, ":/root/.cache/huggingface") || !strings.Contains(mounts, "target:/root/.cache/vllm") {
		t.Errorf("volumes %s, mounts %s: want the HF cache and vLLM's compile cache", volumes, mounts)
	}
	if task.Env["HF_HOME"] == "" || task.Env["VLLM_CACHE_ROOT"] != "/root/.cache/vllm" {
		t.Errorf("env = %v", task.Env)
	}
	wantMem := 16384
	if v, ok := m.Variables["memory_mb"]; ok {
		if _, err := fmt.Sscan(v, &wantMem); err != nil {
			t.Fatal(err)
		}
	}
	if *task.Resources.MemoryMB != wantMem {
		t.Errorf("memory = %d MB, want %d", *task.Resources.MemoryMB, wantMem)
	}
	switch mode {
	case "", "device":
		if len(task.Resources.Devices) != 1 || task.Resources.Devices[0].Name != "nvidia/gpu" || *task.Resources.Devices[0].Count != 1 {
			t.Errorf("devices = %+v, want one nvidia/gpu", task.Resources.Devices)
		}
		if rt := task.Config["runtime"]; rt != "" && rt != nil {
			t.Errorf("runtime = %v, want it left to the device plugin", rt)
		}
		if len(job.Constraints) != 0 {
			t.Errorf("constraints = %v, want none", job.Constraints)
		}
	case "runtime":
		if len(task.Resources.Devices) != 0 {
			t.Errorf("devices = %+v, want none", task.Resources.Devices)
		}
		if task.Config["runtime"] != "nvidia" || task.Env["NVIDIA_VISIBLE_DEVICES"] != "all" {
			t.Errorf("runtime %v, NVIDIA_VISIBLE_DEVICES %q; want nvidia, all", task.Config["runtime"], task.Env["NVIDIA_VISIBLE_DEVICES"])
		}
		if len(job.Constraints) != 1 || job.Constraints[0].LTarget != "${meta.gpu}" || job.Constraints[0].RTarget != "gb10" {
			t.Errorf("constraints = %v, want meta.gpu = gb10", job.Constraints)
		}
	}
}

// gpu_mode "runtime" with a node name pins the job by node.unique.name, and
// an unknown gpu_mode is refused by the variable's validation.
func TestJobspecs_VLLMGPUModeVariables(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{})
	m := productionModel(t)
	m.Variables = map[string]string{"gpu_mode": "runtime", "gpu_node": "spark-1"}
	job, _, err := e.rt.Render(ctxT(t, 10*time.Second), m)
	if err != nil {
		t.Fatal(err)
	}
	if c := job.Constraints; len(c) != 1 || c[0].LTarget != "${node.unique.name}" || c[0].RTarget != "spark-1" || c[0].Operand != "=" {
		t.Fatalf("constraints = %v, want node.unique.name = spark-1", c)
	}
	m.Variables = map[string]string{"gpu_mode": "mig"}
	if _, _, err := e.rt.Render(ctxT(t, 10*time.Second), m); err == nil || !strings.Contains(err.Error(), "gpu_mode") {
		t.Fatalf("err = %v, want the gpu_mode validation", err)
	}
}

// The production jobspec in runtime mode places on a node without a
// device plugin (the DGX Spark with the amd64-only plugin absent), where
// device mode cannot.
func TestJobspecs_VLLMRuntimeModeNeedsNoDevicePlugin(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{Devices: []string{}})
	m := productionModel(t)
	ctx := ctxT(t, 10*time.Second)
	if err := e.rt.Preflight(ctx, m, nil); err == nil || !strings.Contains(err.Error(), "missing devices") {
		t.Fatalf("device mode without a device: err = %v, want missing devices", err)
	}
	// The constraint compares the node's name with itself: any node is
	// the GPU node here.
	m.Variables = map[string]string{"gpu_mode": "runtime", "gpu_node": "${node.unique.name}"}
	if err := e.rt.Preflight(ctx, m, nil); err != nil {
		t.Fatalf("runtime mode without a device plugin: %v", err)
	}
}

// switchboardVars are what terraform/ passes to llm-switchboard.nomad.hcl.
const switchboardVars = `
namespace       = "llm"
datacenters     = ["dc1"]
switchboard_bin = "/opt/llm-switchboard/bin/switchboard"
config_file     = "/opt/llm-switchboard/configs/gateway.hcl"
gateway_port    = 8000
`

// The jobspecs that are not model templates parse through Nomad's parse
// with the variables terraform/ passes, and carry what operations rely on.
func TestJobspecs_Others(t *testing.T) {
	e := newFakeEnv(t, fakenomad.Options{})
	c, err := api.NewClient(e.nomad.Config())
	if err != nil {
		t.Fatal(err)
	}
	parse := func(t *testing.T, file, vars string) *api.Job {
		t.Helper()
		src, err := os.ReadFile(filepath.Join(jobspecDir, file))
		if err != nil {
			t.Fatal(err)
		}
		job, err := c.Jobs().ParseHCLOpts(&api.JobsParseRequest{JobHCL: string(src), Variables: vars, Canonicalize: true})
		if err != nil {
			t.Fatalf("parse %s: %v", file, err)
		}
		return job
	}
	group := func(t *testing.T, job *api.Job, name string) *api.TaskGroup {
		t.Helper()
		for _, tg := range job.TaskGroups {
			if *tg.Name == name {
				return tg
			}
		}
		t.Fatalf("job %s has no group %q", *job.ID, name)
		return nil
	}

	t.Run("llm-switchboard", func(t *testing.T) {
		job := parse(t, "llm-switchboard.nomad.hcl", switchboardVars)
		if *job.ID != "llm-switchboard" || *job.Namespace != "llm" || *job.Type != "service" {
			t.Fatalf("job %q namespace %q type %q", *job.ID, *job.Namespace, *job.Type)
		}
		tests := []struct {
			group, service, check string
			port                  int
			address               string
			subcommand            string
		}{
			{"gateway", "llm-gateway", "/health", 8000, "", "gateway"},
			{"orchestrator", "llm-orchestrator", "/health", 9102, "127.0.0.1", "orchestrator"},
		}
		for _, tt := range tests {
			t.Run(tt.group, func(t *testing.T) {
				tg := group(t, job, tt.group)
				if len(tg.Services) != 1 {
					t.Fatalf("services = %d, want 1", len(tg.Services))
				}
				svc := tg.Services[0]
				if svc.Name != tt.service || svc.Address != tt.address || len(svc.Checks) != 1 ||
					svc.Checks[0].Type != "http" || svc.Checks[0].Path != tt.check {
					t.Fatalf("service %+v checks %v", svc, checkPaths(svc))
				}
				if p := tg.Networks[0].ReservedPorts; len(p) != 1 || p[0].Value != tt.port {
					t.Fatalf("ports = %+v, want static %d", p, tt.port)
				}
				task := tg.Tasks[0]
				if task.Driver != "raw_exec" || task.Config["command"] != "/opt/llm-switchboard/bin/switchboard" {
					t.Fatalf("driver %q config %v", task.Driver, task.Config)
				}
				args := stringArgs(t, task)
				if len(args) == 0 || args[0] != tt.subcommand {
					t.Fatalf("args %q, want %s first", args, tt.subcommand)
				}
				if v, _ := argValue(args, "-config"); v != "/opt/llm-switchboard/configs/gateway.hcl" {
					t.Fatalf("args %q: -config %q", args, v)
				}
				if *task.KillTimeout < 30*time.Second {
					t.Fatalf("kill_timeout %v, want room to drain", *task.KillTimeout)
				}
				var env bool
				for _, tmpl := range task.Templates {
					if tmpl.Envvars != nil && *tmpl.Envvars && strings.Contains(*tmpl.EmbeddedTmpl, "nomadVar") {
						env = true
					}
				}
				if !env {
					t.Fatal("no env template reading the secrets from Nomad variables")
				}
			})
		}
		gw := group(t, job, "gateway").Tasks[0]
		if v, _ := argValue(stringArgs(t, gw), "-config"); v == "" || gw.Env["GATEWAY_LISTEN"] != "0.0.0.0:8000" {
			t.Fatalf("gateway env %v", gw.Env)
		}
		tmpl := *gw.Templates[0].EmbeddedTmpl
		for _, key := range []string{"GATEWAY_API_KEY", "GATEWAY_ADMIN_API_KEY"} {
			if !strings.Contains(tmpl, key+"=") {
				t.Errorf("gateway template lacks %s:\n%s", key, tmpl)
			}
		}
		orch := group(t, job, "orchestrator")
		if *orch.Count != 1 {
			t.Errorf("orchestrator count %d", *orch.Count)
		}
		if v, _ := argValue(stringArgs(t, orch.Tasks[0]), "-metrics-listen"); v != "127.0.0.1:9102" {
			t.Errorf("-metrics-listen %q", v)
		}
		otmpl := *orch.Tasks[0].Templates[0].EmbeddedTmpl
		for _, key := range []string{"NOMAD_TOKEN", "CONSUL_HTTP_TOKEN"} {
			if !strings.Contains(otmpl, key+"=") {
				t.Errorf("orchestrator template lacks %s:\n%s", key, otmpl)
			}
		}
	})

	t.Run("redis", func(t *testing.T) {
		job := parse(t, "redis.nomad.hcl", "namespace = \"llm\"\nredis_port = 6379\n")
		if *job.ID != "redis" || *job.Namespace != "llm" {
			t.Fatalf("job %q namespace %q", *job.ID, *job.Namespace)
		}
		tg := group(t, job, "redis")
		if v := tg.Volumes["redis-data"]; v == nil || v.Type != "host" || v.Source != "redis-data" || v.ReadOnly {
			t.Fatalf("volumes = %+v, want the writable host volume redis-data", tg.Volumes)
		}
		svc := tg.Services[0]
		if svc.Name != "redis" || len(svc.Checks) != 1 || svc.Checks[0].Type != "tcp" {
			t.Fatalf("service %+v", svc)
		}
		task := tg.Tasks[0]
		if task.Driver != "docker" || task.VolumeMounts[0].Destination == nil || *task.VolumeMounts[0].Destination != "/data" {
			t.Fatalf("driver %q mounts %+v", task.Driver, task.VolumeMounts)
		}
		args := strings.Join(stringArgs(t, task), " ")
		for _, want := range []string{"--appendonly yes", "--dir /data", "--port 6379"} {
			if !strings.Contains(args, want) {
				t.Errorf("args %q lack %q", args, want)
			}
		}
		if *tg.RestartPolicy.Attempts == 0 {
			t.Errorf("redis must restart in place: restart %+v", tg.RestartPolicy)
		}
	})
}

// Every jobspec in jobs.nomad.d is covered by a test above: a new one
// must be added to them.
func TestJobspecs_AllCovered(t *testing.T) {
	covered := []string{"llm-switchboard.nomad.hcl", "redis.nomad.hcl", "vllm.nomad.hcl"}
	files, err := filepath.Glob(filepath.Join(jobspecDir, "*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if !slices.Equal(names, covered) {
		t.Fatalf("jobs.nomad.d has %v; the tests cover %v", names, covered)
	}
}

// Every .hcl in jobs.nomad.d is canonically formatted (as hclfmt, nomad fmt
// and terraform fmt write it).
func TestJobspecs_CanonicalFormat(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(jobspecDir, "*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no jobspecs found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if got := hclwrite.Format(src); !bytes.Equal(got, src) {
				t.Fatalf("not canonically formatted; want:\n%s", got)
			}
		})
	}
}
