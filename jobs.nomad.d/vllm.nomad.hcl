# vLLM model job: one OpenAI-compatible vLLM server for one model on the GPU
# box, run by the docker driver. One template serves every model; each
# model's settings (configs/models.hcl) arrive as variables.
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
# What the Nomad client needs (scripts/install_prereqs.sh writes it; see
# jobs.nomad.d/README.md):
#   - the docker plugin with volumes enabled (HF cache, compile cache,
#     local weights) and, for gpu_mode "runtime", the nvidia runtime allowed;
#   - for gpu_mode "device", the NVIDIA device plugin (built for arm64);
#   - max_kill_timeout >= this job's kill_timeout (90s), or Nomad caps it at
#     its default of 30s and SIGKILLs vLLM before it freed the memory.

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

variable "gpu_mode" {
  type        = string
  description = "How the container gets the GPU: \"device\" asks the NVIDIA device plugin for one nvidia/gpu (Nomad schedules and isolates it; the official plugin is amd64-only, build it for arm64); \"runtime\" runs the container with Docker's nvidia runtime and pins the job to the GPU node by a node constraint (no device plugin needed, Nomad does not account the GPU)."
  default     = "device"

  validation {
    condition     = contains(["device", "runtime"], var.gpu_mode)
    error_message = "The gpu_mode must be \"device\" (NVIDIA device plugin) or \"runtime\" (docker nvidia runtime + node constraint)."
  }
}

variable "gpu_node" {
  type        = string
  description = "gpu_mode \"runtime\": name of the GPU node (node.unique.name); empty selects nodes by gpu_node_meta instead."
  default     = ""
}

variable "gpu_node_meta" {
  type        = string
  description = "gpu_mode \"runtime\" without gpu_node: the value of the client's meta.gpu that marks a GPU node (scripts/install_prereqs.sh sets meta { gpu = \"gb10\" })."
  default     = "gb10"
}

variable "hf_cache_dir" {
  type        = string
  description = "Host directory of the Hugging Face cache, where scripts/ download the weights."
  default     = "/opt/llm-switchboard/hf-cache"
}

variable "vllm_cache_dir" {
  type        = string
  description = "Host directory of vLLM's own cache (torch.compile artefacts, CUDA graphs, Triton kernels), mounted at ~/.cache/vllm so a reload skips compilation."
  default     = "/opt/llm-switchboard/vllm-cache"
}

variable "hf_offline" {
  type        = bool
  description = "Forbid downloads at start: the weights must already be in hf_cache_dir."
  default     = true
}

variable "load_format" {
  type        = string
  description = "vLLM --load-format: auto, safetensors, fastsafetensors (faster loads from local disk), runai_streamer, ..."
  default     = "auto"
}

variable "cpu_mhz" {
  type        = number
  description = "CPU Nomad reserves for the task, in MHz."
  default     = 4000
}

variable "kill_timeout" {
  type        = string
  description = "Time between SIGTERM and SIGKILL: vLLM finishes or aborts its requests and frees the GPU memory. The client's max_kill_timeout must be at least this."
  default     = "90s"
}

variable "image_pull_timeout" {
  type        = string
  description = "How long Docker may take to pull the vLLM image (about 20 GB); Nomad's default is 5m."
  default     = "30m"
}

variable "check_interval" {
  type        = string
  description = "Interval of the Consul health checks; the orchestrator waits on them to pass."
  default     = "5s"
}

locals {
  # vllm serve takes a repository id or a directory; a local path is
  # mounted read-only at /model.
  model_ref = var.source_path != "" ? "/model" : var.hf_repo

  # The Hugging Face cache as a docker volume; local weights read-only.
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
      "--load-format", var.load_format,
    ],
    var.quantization != "" ? ["--quantization", var.quantization] : [],
    var.max_model_len > 0 ? ["--max-model-len", "${var.max_model_len}"] : [],
    var.vllm_args,
  )

  # gpu_mode "runtime": the nvidia runtime exposes the GPU only when asked
  # to; gpu_mode "device": the device plugin sets NVIDIA_VISIBLE_DEVICES.
  gpu_env = var.gpu_mode == "runtime" ? {
    NVIDIA_VISIBLE_DEVICES     = "all"
    NVIDIA_DRIVER_CAPABILITIES = "compute,utility"
  } : {}

  # "" leaves the runtime to Docker, or to the device plugin, which asks
  # the docker driver for its nvidia runtime when it hands out a GPU.
  docker_runtime = var.gpu_mode == "runtime" ? "nvidia" : ""

  # gpu_mode "runtime": Nomad does not know about the GPU, so pin the job
  # to the GPU node, by name or by node meta.
  node_constraints = var.gpu_mode != "runtime" ? [] : var.gpu_node != "" ? [
    { attribute = "${node.unique.name}", value = var.gpu_node },
    ] : [
    { attribute = "${meta.gpu}", value = var.gpu_node_meta },
  ]
}

job "vllm" {
  id          = var.job_name
  name        = var.job_name
  type        = "service"
  datacenters = var.datacenters

  meta {
    model       = var.model
    served_name = var.served_name
    gpu_mode    = var.gpu_mode
  }

  dynamic "constraint" {
    for_each = local.node_constraints
    content {
      attribute = constraint.value.attribute
      value     = constraint.value.value
    }
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

    # A load takes minutes (longer cold or on the first compile): the
    # deployment must not be declared failed at Nomad's 5m/10m defaults
    # while vLLM is still loading. The orchestrator bounds the switch
    # itself (switch_timeout).
    update {
      health_check      = "checks"
      min_healthy_time  = "5s"
      healthy_deadline  = "25m"
      progress_deadline = "30m"
      auto_revert       = false
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

      # Refuses connections while loading, 200 when ready, 503 when the
      # engine died.
      check {
        name     = "vllm health"
        type     = "http"
        path     = "/health"
        interval = var.check_interval
        timeout  = "5s"
      }

      # The OpenAI server answers, with the model loaded.
      check {
        name     = "vllm models"
        type     = "http"
        path     = "/v1/models"
        interval = var.check_interval
        timeout  = "5s"
      }
    }

    task "vllm" {
      driver = "docker"

      # vLLM handles SIGTERM: it aborts in-flight requests and tears the
      # engine down, which takes tens of seconds for a big model. SIGKILL
      # before that can leave unified memory held (the Spark's GPU cannot
      # be reset without a reboot). Capped by the client's
      # max_kill_timeout.
      kill_signal  = "SIGTERM"
      kill_timeout = var.kill_timeout

      config {
        image              = var.image
        image_pull_timeout = var.image_pull_timeout
        runtime            = local.docker_runtime
        command            = "vllm"
        args               = local.serve_args
        network_mode       = "host"
        ipc_mode           = "host"
        volumes            = local.volumes

        # vLLM's compile cache survives the container, so a reload skips
        # torch.compile and kernel tuning.
        mount {
          type     = "bind"
          source   = var.vllm_cache_dir
          target   = "/root/.cache/vllm"
          readonly = false
        }

        ulimit {
          memlock = "-1"
          stack   = "67108864"
        }
      }

      env = merge({
        HF_HOME             = "/root/.cache/huggingface"
        HF_HUB_OFFLINE      = var.hf_offline ? "1" : "0"
        VLLM_CACHE_ROOT     = "/root/.cache/vllm"
        TRITON_CACHE_DIR    = "/root/.cache/vllm/triton"
        VLLM_NO_USAGE_STATS = "1"
      }, local.gpu_env)

      resources {
        cpu    = var.cpu_mhz
        memory = var.memory_mb

        dynamic "device" {
          for_each = var.gpu_mode == "device" ? ["nvidia/gpu"] : []
          labels   = [device.value]
          content {
            count = 1
          }
        }
      }
    }
  }
}
