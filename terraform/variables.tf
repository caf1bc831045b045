# Addresses and credentials of the agents terraform talks to.

variable "nomad_address" {
  type        = string
  description = "Nomad HTTP API address, with scheme."
  default     = "http://127.0.0.1:4646"

  validation {
    condition     = can(regex("^https?://[^/]+$", var.nomad_address))
    error_message = "The nomad_address must look like http://host:4646 (scheme, host, port, no path)."
  }
}

variable "nomad_region" {
  type        = string
  description = "Nomad region (gateway.hcl's nomad.region)."
  default     = "global"
}

variable "nomad_token" {
  type        = string
  description = "Nomad token terraform uses (management, or one allowed to manage namespaces, ACLs, variables and jobs). Null reads NOMAD_TOKEN."
  default     = null
  sensitive   = true
}

variable "consul_address" {
  type        = string
  description = "Consul HTTP API address, host:port without scheme (see consul_scheme)."
  default     = "127.0.0.1:8500"

  validation {
    condition     = can(regex("^[^/:]+:[0-9]+$", var.consul_address))
    error_message = "The consul_address must be host:port, without a scheme."
  }
}

variable "consul_scheme" {
  type        = string
  description = "Scheme of the Consul API: http or https."
  default     = "http"

  validation {
    condition     = contains(["http", "https"], var.consul_scheme)
    error_message = "The consul_scheme must be http or https."
  }
}

variable "consul_token" {
  type        = string
  description = "Consul token terraform uses (one allowed to manage ACLs and write KV). Null reads CONSUL_HTTP_TOKEN."
  default     = null
  sensitive   = true
}

variable "datacenter" {
  type        = string
  description = "Nomad and Consul datacenter the jobs run in and the Consul policy applies to."
  default     = "dc1"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]+$", var.datacenter))
    error_message = "The datacenter may contain only letters, digits, - and _."
  }
}

# Where things run.

variable "namespace" {
  type        = string
  description = "Nomad namespace of the switchboard, Redis and the model jobs; the orchestrator's token is limited to it. Set the same in gateway.hcl's nomad.namespace."
  default     = "llm"

  validation {
    condition     = can(regex("^[a-zA-Z0-9-]{1,128}$", var.namespace))
    error_message = "The namespace must be 1 to 128 letters, digits or dashes."
  }
}

variable "kv_prefix" {
  type        = string
  description = "Consul KV prefix of the switchboard (leader lock, published state, deployment defaults); the orchestrator's token may write under it."
  default     = "llm-switchboard/"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.-]+(/[a-zA-Z0-9_.-]+)*/$", var.kv_prefix))
    error_message = "The kv_prefix must be a relative key path ending in /, such as llm-switchboard/."
  }
}

variable "switchboard_driver" {
  type        = string
  description = "Task driver of the gateway and orchestrator: raw_exec or exec."
  default     = "raw_exec"

  validation {
    condition     = contains(["raw_exec", "exec"], var.switchboard_driver)
    error_message = "The switchboard_driver must be raw_exec or exec."
  }
}

variable "switchboard_bin" {
  type        = string
  description = "Absolute path of the switchboard binary (linux/arm64: make build-arm64) on the GPU host."
  default     = "/opt/llm-switchboard/bin/switchboard"

  validation {
    condition     = startswith(var.switchboard_bin, "/")
    error_message = "The switchboard_bin must be an absolute path."
  }
}

variable "config_file" {
  type        = string
  description = "Absolute path of gateway.hcl on the GPU host; models.hcl and the jobspecs it names must be beside it, as in the repository."
  default     = "/opt/llm-switchboard/configs/gateway.hcl"

  validation {
    condition     = startswith(var.config_file, "/") && endswith(var.config_file, ".hcl")
    error_message = "The config_file must be an absolute path to an .hcl file."
  }
}

variable "gateway_host" {
  type        = string
  description = "Host name or address at which the gateway is reached on the box (for the gateway_url output)."
  default     = "127.0.0.1"
}

variable "gateway_port" {
  type        = number
  description = "Port of the gateway's HTTP API; it must differ from the models' backend.port (vLLM uses host networking)."
  default     = 8000

  validation {
    condition     = var.gateway_port >= 1 && var.gateway_port <= 65535 && floor(var.gateway_port) == var.gateway_port
    error_message = "The gateway_port must be an integer from 1 to 65535."
  }
}

variable "gateway_public_url" {
  type        = string
  description = "The public URL Tailscale Funnel gives the gateway (scripts/setup_tailscale_funnel.sh prints it), for the outputs; empty when not published."
  default     = ""

  validation {
    condition     = var.gateway_public_url == "" || can(regex("^https://", var.gateway_public_url))
    error_message = "The gateway_public_url must be empty or an https:// URL."
  }
}

variable "orchestrator_metrics_port" {
  type        = number
  description = "Port of the orchestrator's metrics listener on 127.0.0.1 (/metrics, /health)."
  default     = 9102

  validation {
    condition     = var.orchestrator_metrics_port >= 1 && var.orchestrator_metrics_port <= 65535
    error_message = "The orchestrator_metrics_port must be from 1 to 65535."
  }
}

variable "log_level" {
  type        = string
  description = "Log level of the gateway and orchestrator."
  default     = "info"

  validation {
    condition     = contains(["trace", "debug", "info", "warn", "error"], var.log_level)
    error_message = "The log_level must be trace, debug, info, warn or error."
  }
}

# Redis.

variable "redis_image" {
  type        = string
  description = "Redis container image (multi-arch)."
  default     = "redis:7.4-alpine"
}

variable "redis_port" {
  type        = number
  description = "Port of Redis on the box."
  default     = 6379

  validation {
    condition     = var.redis_port >= 1 && var.redis_port <= 65535
    error_message = "The redis_port must be from 1 to 65535."
  }
}

variable "redis_host_volume" {
  type        = string
  description = "Name of the Nomad client's host_volume holding Redis' append-only file (scripts/install_prereqs.sh declares redis-data)."
  default     = "redis-data"
}

variable "redis_data_dir" {
  type        = string
  description = "Host directory behind redis_host_volume; published in Consul KV for the scripts (terraform cannot create it: install_prereqs.sh does)."
  default     = "/opt/llm-switchboard/redis"

  validation {
    condition     = startswith(var.redis_data_dir, "/")
    error_message = "The redis_data_dir must be an absolute path."
  }
}

# Model caches (the vLLM jobspec's defaults; published in Consul KV for
# scripts/download_models.sh).

variable "hf_cache_dir" {
  type        = string
  description = "Host directory of the Hugging Face cache the vLLM jobs mount (vllm.nomad.hcl's hf_cache_dir)."
  default     = "/opt/llm-switchboard/hf-cache"

  validation {
    condition     = startswith(var.hf_cache_dir, "/")
    error_message = "The hf_cache_dir must be an absolute path."
  }
}

variable "vllm_cache_dir" {
  type        = string
  description = "Host directory of vLLM's compile cache (vllm.nomad.hcl's vllm_cache_dir)."
  default     = "/opt/llm-switchboard/vllm-cache"

  validation {
    condition     = startswith(var.vllm_cache_dir, "/")
    error_message = "The vllm_cache_dir must be an absolute path."
  }
}

# Secrets.

variable "gateway_api_keys" {
  type        = list(string)
  description = "User API keys of the gateway (GATEWAY_API_KEY); at least one, since the gateway listens on all interfaces."
  sensitive   = true

  validation {
    condition     = length(var.gateway_api_keys) > 0 && alltrue([for k in var.gateway_api_keys : length(k) >= 16 && !strcontains(k, ",")])
    error_message = "Give at least one gateway API key; each at least 16 characters, without commas."
  }
}

variable "gateway_admin_api_keys" {
  type        = list(string)
  description = "Admin API keys of the gateway (GATEWAY_ADMIN_API_KEY); may be empty."
  default     = []
  sensitive   = true

  validation {
    condition     = alltrue([for k in var.gateway_admin_api_keys : length(k) >= 16 && !strcontains(k, ",")])
    error_message = "Each admin API key must be at least 16 characters, without commas."
  }
}
