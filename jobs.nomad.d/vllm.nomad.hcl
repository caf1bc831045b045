# vLLM model job: one OpenAI-compatible vLLM server for one model on the GPU
# box, run by the docker driver.
#
# The orchestrator fills the variables from configs/models.hcl, has Nomad
# parse the result (/v1/jobs/parse), stamps Meta (managed-by, model, config
# hash) and registers it; it is never run by hand with `nomad job run`
# except to debug:
#
#   nomad job run -var job_name=sb-qwen3-30b -var model=qwen3-30b \
#     -var served_name=Qwen/Qwen3-30B-A3B -var hf_repo=Qwen/Qwen3-30B-A3B \
#     jobs.nomad.d/vllm.nomad.hcl
#
# The Nomad client needs the docker plugin with volumes enabled (for the
# weights cache) and the nvidia device plugin.

variable "job_name" {
  type        = string
  description = "Nomad job ID and name; the orchestrator derives it from the model name."
}

variable "model" {
  type        = string
  description = "Logical model name (the label in configs/models.hcl), for meta and logs."
}

variable "served_name" {
  type        = string
  description = "Name vLLM serves the model under (--served-model-name); clients never see it."
}

variable "image" {
  type        = string
  description = "vLLM container image; an aarch64 build for the DGX Spark."
  default     = "nvcr.io/nvidia/vllm:25.10-py3"
}

variable "port" {
  type        = number
  description = "Host port vLLM listens on (host networking); the Consul service advertises it."
  default     = 8000
}

variable "hf_repo" {
  type        = string
  description = "Hugging Face repository of the weights (source type huggingface_repo)."
  default     = ""
}

variable "source_path" {
  type        = string
  description = "Absolute host path of the weights (source type local_path); wins over hf_repo."
  default     = ""
}

variable "vllm_args" {
  type        = list(string)
  description = "Extra arguments for vllm serve, from backend.vllm_args."
  default     = []
}

variable "quantization" {
  type        = string
  description = "vLLM --quantization; empty lets vLLM detect it from the checkpoint."
  default     = ""
}

variable "max_model_len" {
  type        = number
  description = "vLLM --max-model-len; 0 keeps the model's own (or the one in vllm_args)."
  default     = 0
}

variable "memory_mb" {
  type        = number
  description = "Host memory Nomad reserves for the task: the Python process, tokenizer and loader. The GPU side of the unified memory is bounded by --gpu-memory-utilization and checked by the orchestrator's memory barrier."
  default     = 16384
}

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the job may run in."
  default     = ["*"]
}

variable "hf_cache_dir" {
  type        = string
  description = "Host directory of the Hugging Face cache, where scripts/ download the weights."
  default     = "/opt/llm-switchboard/hf-cache"
}

variable "hf_offline" {
  type        = bool
  description = "Forbid downloads at start: the weights must already be in hf_cache_dir."
  default     = true
}

locals {
  # vllm serve takes a repository id or a directory; a local path is
  # mounted read-only at /model.
  model_ref = var.source_path != "" ? "/model" : var.hf_repo

  volumes = concat(
    ["${var.hf_cache_dir}:/root/.cache/huggingface"],
    var.source_path != "" ? ["${var.source_path}:/model:ro"] : [],
  )

  serve_args = concat(
    [
      "serve", local.model_ref,
      "--served-model-name", var.served_name,
      "--host", "0.0.0.0",
      "--port", "${var.port}",
    ],
    var.quantization != "" ? ["--quantization", var.quantization] : [],
    var.max_model_len > 0 ? ["--max-model-len", "${var.max_model_len}"] : [],
    var.vllm_args,
  )
}

job "vllm" {
  id          = var.job_name
  name        = var.job_name
  type        = "service"
  datacenters = var.datacenters

  meta {
    model       = var.model
    served_name = var.served_name
  }

  group "vllm" {
    count = 1

    network {
      port "http" {
        static = var.port
      }
    }

    # A model that fails to start is the orchestrator's to handle (stop,
    # record why, quarantine); Nomad must neither restart it in place nor
    # move it, or two models could end up holding memory at once.
    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    service {
      name     = "vllm"
      port     = "http"
      provider = "consul"
      tags     = ["llm-switchboard", "model=${var.model}"]

      meta {
        model       = var.model
        served_name = var.served_name
      }

      check {
        name     = "vllm health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "5s"
      }
    }

    task "vllm" {
      driver = "docker"

      # Long enough for vLLM to finish in-flight requests and release the
      # GPU before SIGKILL.
      kill_signal  = "SIGTERM"
      kill_timeout = "60s"

      config {
        image        = var.image
        command      = "vllm"
        args         = local.serve_args
        network_mode = "host"
        ipc_mode     = "host"
        volumes      = local.volumes
      }

      env {
        HF_HOME             = "/root/.cache/huggingface"
        HF_HUB_OFFLINE      = var.hf_offline ? "1" : "0"
        VLLM_NO_USAGE_STATS = "1"
      }

      resources {
        cpu    = 4000
        memory = var.memory_mb

        device "nvidia/gpu" {
          count = 1
        }
      }
    }
  }
}
