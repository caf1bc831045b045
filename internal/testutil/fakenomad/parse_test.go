package fakenomad_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakenomad"
)

// TestParse_MatchesRecordedNomad compares the parse endpoint's answers for
// testdata/standin.nomad.hcl with what a real Nomad v2.0.6 answered for the
// same request (testdata/standin.parse-*.json, from the recorded
// transcript), with and without Canonicalize.
func TestParse_MatchesRecordedNomad(t *testing.T) {
	t.Parallel()
	c := newClient(t, fakenomad.New(t, fakenomad.Options{}))
	tests := []struct {
		name         string
		vars         string
		canonicalize bool
		golden       string
	}{
		{"canonical", "model = \"llama-3-8b\"\nport = 18080\ncommand = \"/usr/bin/python3\"\n", true, "testdata/standin.parse-canonical.json"},
		{"raw", "model = \"llama-3-8b\"\n", false, "testdata/standin.parse-raw.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job, err := c.Jobs().ParseHCLOpts(&api.JobsParseRequest{
				JobHCL:       readFile(t, "testdata/standin.nomad.hcl"),
				Variables:    tt.vars,
				Canonicalize: tt.canonicalize,
			})
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			var got, want any
			b, _ := json.Marshal(job)
			_ = json.Unmarshal(b, &got)
			if err := json.Unmarshal([]byte(readFile(t, tt.golden)), &want); err != nil {
				t.Fatalf("golden: %v", err)
			}
			if diffs := diffJSON("", got, want); len(diffs) > 0 {
				t.Fatalf("parsed job differs from Nomad's:\n%s", strings.Join(diffs, "\n"))
			}
		})
	}
}

func diffJSON(path string, got, want any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
		}
		var out []string
		for k := range w {
			out = append(out, diffJSON(path+"."+k, g[k], w[k])...)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				out = append(out, fmt.Sprintf("%s.%s: unexpected %v", path, k, g[k]))
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
		}
		var out []string
		for i := range w {
			out = append(out, diffJSON(fmt.Sprintf("%s[%d]", path, i), g[i], w[i])...)
		}
		return out
	}
	if !reflect.DeepEqual(got, want) {
		return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
	}
	return nil
}

func TestParse_Errors(t *testing.T) {
	t.Parallel()
	c := newClient(t, fakenomad.New(t, fakenomad.Options{}))
	standin := readFile(t, "testdata/standin.nomad.hcl")
	broken := strings.Replace(standin, "  type        = \"service\"\n", "  type        = \"service\"\n  oops {{{ = \n", 1)
	tests := []struct {
		name     string
		hcl      string
		vars     string
		wantCode int
		wantBody string
	}{
		{"syntax error", broken, "model = \"x\"\n", 400,
			"Failed to parse job: input.hcl:24,9-10: Argument or block definition required; An argument or block definition is required here."},
		{"unset variable", standin, "", 400,
			`Failed to parse job: <nil>: Unset variable "model"; A used variable must be set or have a default value; see https://developer.hashicorp.com/nomad/docs/reference/hcl2/variables  for details.`},
		{"wrong type", standin, "model = \"x\"\nport = \"not-a-number\"\n", 400,
			"Failed to parse job: input.hcl:2,8-22: Invalid value for variable; The value for port is not compatible with the variable's type constraint: a number is required."},
		{"bad variables content", standin, "model = {{", 400,
			"Failed to parse job: unable to parse var content: input.hcl:1,11-11: Missing expression; Expected the start of an expression, but found the end of the file."},
		{"empty jobspec", "", "", 400, "Job spec is empty"},
		{"unknown argument", "job \"x\" {\n  colour = \"red\"\n}\n", "", 400,
			`Failed to parse job: input.hcl:2,3-9: Unsupported argument; An argument named "colour" is not expected here.`},
		{"no job block", "variable \"a\" {\n  default = 1\n}\n", "", 400,
			"Failed to parse job: <nil>: Missing job block; A job block is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Jobs().ParseHCLOpts(&api.JobsParseRequest{JobHCL: tt.hcl, Variables: tt.vars, Canonicalize: true})
			if err == nil {
				t.Fatal("parse succeeded")
			}
			code, body := unexpected(t, err)
			assertEqual(t, "status", code, tt.wantCode)
			assertEqual(t, "body", body, tt.wantBody)
		})
	}
}

func TestParse_WrongMethod(t *testing.T) {
	t.Parallel()
	srv := fakenomad.New(t, fakenomad.Options{})
	resp, body := rawGet(t, srv.URL()+"/v1/jobs/parse")
	assertEqual(t, "status", resp.StatusCode, http.StatusMethodNotAllowed)
	assertEqual(t, "body", body, "Invalid method")
}

func TestParse_UndeclaredVariableIsAccepted(t *testing.T) {
	t.Parallel()
	c := newClient(t, fakenomad.New(t, fakenomad.Options{}))
	job, err := c.Jobs().ParseHCLOpts(&api.JobsParseRequest{
		JobHCL:    readFile(t, "testdata/standin.nomad.hcl"),
		Variables: "model = \"x\"\nundeclared = 1\n",
	})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	assertEqual(t, "meta model", job.Meta["model"], "x")
}

// TestParse_VLLMJobspec parses the project's own model jobspec with the
// variables the orchestrator fills.
func TestParse_VLLMJobspec(t *testing.T) {
	t.Parallel()
	c := newClient(t, fakenomad.New(t, fakenomad.Options{}))
	job, err := c.Jobs().ParseHCLOpts(&api.JobsParseRequest{
		JobHCL: readFile(t, "../../../jobs.nomad.d/vllm.nomad.hcl"),
		Variables: strings.Join([]string{
			`job_name = "sb-qwen3-30b"`,
			`model = "qwen3-30b"`,
			`served_name = "Qwen/Qwen3-30B-A3B"`,
			`hf_repo = "Qwen/Qwen3-30B-A3B"`,
			`port = 18101`,
			`vllm_args = ["--gpu-memory-utilization", "0.8"]`,
			`quantization = "fp8"`,
		}, "\n"),
		Canonicalize: true,
	})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	assertEqual(t, "ID", *job.ID, "sb-qwen3-30b")
	assertEqual(t, "Name", *job.Name, "sb-qwen3-30b")
	assertEqual(t, "meta model", job.Meta["model"], "qwen3-30b")
	tg := job.TaskGroups[0]
	assertEqual(t, "static port", tg.Networks[0].ReservedPorts[0].Value, 18101)
	assertEqual(t, "restart attempts", *tg.RestartPolicy.Attempts, 0)
	assertEqual(t, "restart mode", *tg.RestartPolicy.Mode, "fail")
	assertEqual(t, "reschedule attempts", *tg.ReschedulePolicy.Attempts, 0)
	assertEqual(t, "reschedule unlimited", *tg.ReschedulePolicy.Unlimited, false)
	svc := tg.Services[0]
	assertEqual(t, "service tags", strings.Join(svc.Tags, ","), "llm-switchboard,model=qwen3-30b")
	assertEqual(t, "check path", svc.Checks[0].Path, "/health")
	task := tg.Tasks[0]
	assertEqual(t, "driver", task.Driver, "docker")
	assertEqual(t, "kill signal", task.KillSignal, "SIGTERM")
	assertEqual(t, "kill timeout", task.KillTimeout.String(), "1m30s")
	assertEqual(t, "memory", *task.Resources.MemoryMB, 16384)
	assertEqual(t, "device", task.Resources.Devices[0].Name, "nvidia/gpu")
	assertEqual(t, "HF_HUB_OFFLINE", task.Env["HF_HUB_OFFLINE"], "1")
	args := fmt.Sprint(task.Config["args"])
	for _, want := range []string{"serve Qwen/Qwen3-30B-A3B", "--served-model-name Qwen/Qwen3-30B-A3B", "--quantization fp8", "--gpu-memory-utilization 0.8"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %s lack %q", args, want)
		}
	}
	assertEqual(t, "volumes", fmt.Sprint(task.Config["volumes"]), "[/opt/llm-switchboard/hf-cache:/root/.cache/huggingface]")
}

// TestParse_RuntimeInterpolationsStayLiteral checks that references Nomad
// resolves on the client survive parsing as written.
func TestParse_RuntimeInterpolationsStayLiteral(t *testing.T) {
	t.Parallel()
	c := newClient(t, fakenomad.New(t, fakenomad.Options{}))
	hcl := `
variable "dir" {
  default = "data"
}

job "interp" {
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  group "g" {
    task "t" {
      driver = "raw_exec"

      config {
        command = "/bin/true"
        args    = ["--port=${NOMAD_PORT_http}", "${NOMAD_ALLOC_DIR}/${var.dir}", "${node.unique.id}", "${meta.rack}", "${env.HOME}", upper("x")]
        port_map {
          http = 8080
        }
      }

      env {
        ADDR = "${NOMAD_ADDR_http}"
      }
    }
  }
}
`
	job, err := c.Jobs().ParseHCLOpts(&api.JobsParseRequest{JobHCL: hcl})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	task := job.TaskGroups[0].Tasks[0]
	assertEqual(t, "args", fmt.Sprint(task.Config["args"]),
		"[--port=${NOMAD_PORT_http} ${NOMAD_ALLOC_DIR}/data ${node.unique.id} ${meta.rack} ${env.HOME} X]")
	assertEqual(t, "env", task.Env["ADDR"], "${NOMAD_ADDR_http}")
	assertEqual(t, "constraint", job.Constraints[0].LTarget, "${attr.kernel.name}")
	assertEqual(t, "operand", job.Constraints[0].Operand, "=")
	// A nested config block is a list of maps, as in jobspec2.
	assertEqual(t, "port_map", fmt.Sprint(task.Config["port_map"]), "[map[http:8080]]")
}

// TestParse_CommonBlocks covers blocks jobspecs use that the fake only
// carries along: volumes, templates, artifacts, check headers, meta as an
// attribute, dynamic blocks and functions.
func TestParse_CommonBlocks(t *testing.T) {
	t.Parallel()
	c := newClient(t, fakenomad.New(t, fakenomad.Options{}))
	hcl := `
variable "ports" {
  type    = list(string)
  default = ["http", "metrics"]
}

locals {
  name = lower(format("%s-%d", "Web", 2))
}

job "blocks" {
  name = local.name
  meta = {
    "managed-by" = "llm-switchboard"
    "config.hash" = sha256("x")
  }

  group "g" {
    count = 2

    volume "weights" {
      type      = "host"
      source    = "hf-cache"
      read_only = true
    }

    network {
      dynamic "port" {
        for_each = var.ports
        labels   = [port.value]
        content {}
      }
    }

    service {
      name = "web"
      port = "http"

      check {
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
        header {
          Authorization = ["Bearer x"]
        }
      }
    }

    task "t" {
      driver = "docker"

      config {
        image = "nginx"
        mount {
          type   = "bind"
          source = "local"
          target = "/etc/nginx"
        }
      }

      volume_mount {
        volume      = "weights"
        destination = "/models"
      }

      template {
        data        = "hello {{ env \"NOMAD_TASK_NAME\" }}"
        destination = "local/index.html"
      }

      artifact {
        source = "https://example.com/x.tgz"
      }

      resources {
        memory     = 512
        memory_max = 1024
      }
    }
  }
}
`
	job, err := c.Jobs().ParseHCLOpts(&api.JobsParseRequest{JobHCL: hcl, Canonicalize: true})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	assertEqual(t, "name", *job.Name, "web-2")
	assertEqual(t, "managed-by", job.Meta["managed-by"], "llm-switchboard")
	assertEqual(t, "hash", len(job.Meta["config.hash"]), 64)
	tg := job.TaskGroups[0]
	assertEqual(t, "count", *tg.Count, 2)
	assertEqual(t, "volume", tg.Volumes["weights"].Source, "hf-cache")
	assertEqual(t, "volume name", tg.Volumes["weights"].Name, "weights")
	assertEqual(t, "dynamic ports", len(tg.Networks[0].DynamicPorts), 2)
	assertEqual(t, "second port", tg.Networks[0].DynamicPorts[1].Label, "metrics")
	assertEqual(t, "header", tg.Services[0].Checks[0].Header["Authorization"][0], "Bearer x")
	task := tg.Tasks[0]
	assertEqual(t, "volume mount", *task.VolumeMounts[0].Destination, "/models")
	assertEqual(t, "template", *task.Templates[0].DestPath, "local/index.html")
	assertEqual(t, "template change mode", *task.Templates[0].ChangeMode, "restart")
	assertEqual(t, "artifact", *task.Artifacts[0].GetterSource, "https://example.com/x.tgz")
	assertEqual(t, "memory max", *task.Resources.MemoryMaxMB, 1024)
	assertEqual(t, "mount", fmt.Sprint(task.Config["mount"]), "[map[source:local target:/etc/nginx type:bind]]")
}
