# The switchboard itself: the gateway (the OpenAI-compatible HTTP API) and
# the orchestrator (leader election on the Consul lock, model switching
# through Nomad), both running the one `switchboard` binary on the host.
#
# terraform/ deploys it (nomad_job with these variables) and writes the
# secrets it reads into the Nomad variable nomad/jobs/llm-switchboard:
#
#   gateway_api_key        comma-separated user keys (GATEWAY_API_KEY)
#   gateway_admin_api_key  comma-separated admin keys (GATEWAY_ADMIN_API_KEY)
#   nomad_token            the orchestrator's Nomad ACL token (NOMAD_TOKEN)
#   consul_token           the orchestrator's Consul ACL token (CONSUL_HTTP_TOKEN)
#
# By hand, with the variable written by `nomad var put`:
#
#   nomad var put -namespace llm nomad/jobs/llm-switchboard \
#     gateway_api_key=... gateway_admin_api_key=... nomad_token=... consul_token=...
#   nomad job run -var namespace=llm jobs.nomad.d/llm-switchboard.nomad.hcl
#
# The tasks read the configuration from config_file (gateway.hcl, the
# models.hcl it names and the jobspecs models.hcl names), so the repository's
# configs/ and jobs.nomad.d/ must be on the host: scripts/install_prereqs.sh
# puts them under /opt/llm-switchboard.

variable "job_name" {
  type        = string
  description = "Nomad job ID."
  default     = "llm-switchboard"
}

variable "namespace" {
  type        = string
  description = "Nomad namespace of the job; terraform/ creates it (default llm). Set the same namespace in gateway.hcl's nomad block for the model jobs."
  default     = "default"
}

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the job may run in."
  default     = ["*"]
}

variable "driver" {
  type        = string
  description = "Task driver: raw_exec runs the binary as is on the host (it needs the config files and the Nomad/Consul agents on loopback); exec isolates it in a chroot, which must then contain switchboard_bin and config_file (add their directory to the client's chroot_env)."
  default     = "raw_exec"

  validation {
    condition     = contains(["raw_exec", "exec"], var.driver)
    error_message = "The driver must be raw_exec or exec."
  }
}

variable "switchboard_bin" {
  type        = string
  description = "Absolute path of the switchboard binary on the host (make build-arm64)."
  default     = "/opt/llm-switchboard/bin/switchboard"
}

variable "config_file" {
  type        = string
  description = "Absolute path of gateway.hcl on the host."
  default     = "/opt/llm-switchboard/configs/gateway.hcl"
}

variable "gateway_port" {
  type        = number
  description = "Port of the gateway's HTTP API on all interfaces; Tailscale Funnel publishes it."
  default     = 8000
}

variable "gateway_count" {
  type        = number
  description = "Gateway instances; they are stateless, but share gateway_port on one host, so one per node."
  default     = 1
}

variable "orchestrator_metrics_port" {
  type        = number
  description = "Port of the orchestrator's metrics listener (/metrics, /health), on 127.0.0.1 only."
  default     = 9102
}

variable "redis_url" {
  type        = string
  description = "Redis URL for both tasks (REDIS_URL); empty keeps gateway.hcl's."
  default     = "redis://127.0.0.1:6379/0"
}

variable "nomad_addr" {
  type        = string
  description = "Nomad API address of the orchestrator (NOMAD_ADDR)."
  default     = "http://127.0.0.1:4646"
}

variable "consul_addr" {
  type        = string
  description = "Consul API address of the orchestrator (CONSUL_HTTP_ADDR)."
  default     = "http://127.0.0.1:8500"
}

variable "secrets_path" {
  type        = string
  description = "Nomad variable holding the API keys and tokens; nomad/jobs/<job id> is readable by the job's tasks without a policy."
  default     = "nomad/jobs/llm-switchboard"
}

variable "log_level" {
  type        = string
  description = "LOG_LEVEL of both tasks: trace, debug, info, warn, error."
  default     = "info"

  validation {
    condition     = contains(["trace", "debug", "info", "warn", "error"], var.log_level)
    error_message = "The log_level must be trace, debug, info, warn or error."
  }
}

locals {
  common_env = merge({
    LOG_LEVEL        = var.log_level
    NOMAD_ADDR       = var.nomad_addr
    CONSUL_HTTP_ADDR = var.consul_addr
  }, var.redis_url != "" ? { REDIS_URL = var.redis_url } : {})

  # The secrets, rendered into the task's environment (never into the job
  # or the config files). Only the keys, in the gateway; only the tokens,
  # in the orchestrator. The template waits until the variable exists.
  gateway_secrets      = <<-EOT
    {{ with nomadVar "${var.secrets_path}" -}}
    GATEWAY_API_KEY={{ .gateway_api_key }}
    GATEWAY_ADMIN_API_KEY={{ .gateway_admin_api_key }}
    {{- end }}
  EOT
  orchestrator_secrets = <<-EOT
    {{ with nomadVar "${var.secrets_path}" -}}
    NOMAD_TOKEN={{ .nomad_token }}
    CONSUL_HTTP_TOKEN={{ .consul_token }}
    {{- end }}
  EOT
}

job "llm-switchboard" {
  id          = var.job_name
  name        = var.job_name
  namespace   = var.namespace
  type        = "service"
  datacenters = var.datacenters

  meta {
    component = "llm-switchboard"
  }

  group "gateway" {
    count = var.gateway_count

    network {
      port "http" {
        static = var.gateway_port
      }
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name     = "llm-gateway"
      port     = "http"
      provider = "consul"
      tags     = ["llm-switchboard", "gateway"]

      check {
        name     = "gateway health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "gateway" {
      driver = var.driver

      # The gateway finishes the requests it holds (streams included)
      # before it exits.
      kill_signal  = "SIGTERM"
      kill_timeout = "60s"

      config {
        command = var.switchboard_bin
        args    = ["gateway", "-config", var.config_file, "-log-json"]
      }

      env = merge(local.common_env, {
        GATEWAY_LISTEN = "0.0.0.0:${var.gateway_port}"
      })

      template {
        data        = local.gateway_secrets
        destination = "secrets/gateway.env"
        env         = true
        change_mode = "restart"
      }

      resources {
        cpu    = 2000
        memory = 512
      }
    }
  }

  group "orchestrator" {
    # One leader holds the Consul lock; more instances would be standbys
    # (on other nodes, since the metrics port is static).
    count = 1

    network {
      port "metrics" {
        static = var.orchestrator_metrics_port
      }
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name     = "llm-orchestrator"
      port     = "metrics"
      provider = "consul"
      tags     = ["llm-switchboard", "orchestrator"]
      # The metrics listener is bound to loopback: the service (and with it
      # its check) advertises 127.0.0.1, where the local Consul agent
      # reaches it.
      address = "127.0.0.1"

      check {
        name     = "orchestrator health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "orchestrator" {
      driver = var.driver

      # On SIGTERM the leader releases the Consul lock, so a standby takes
      # over without waiting for the session to expire.
      kill_signal  = "SIGTERM"
      kill_timeout = "60s"

      config {
        command = var.switchboard_bin
        args = [
          "orchestrator", "-config", var.config_file, "-log-json",
          "-metrics-listen", "127.0.0.1:${var.orchestrator_metrics_port}",
        ]
      }

      env = local.common_env

      template {
        data        = local.orchestrator_secrets
        destination = "secrets/orchestrator.env"
        env         = true
        change_mode = "restart"
      }

      resources {
        cpu    = 2000
        memory = 512
      }
    }
  }
}
