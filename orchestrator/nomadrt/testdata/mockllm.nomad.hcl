# A stand-in for jobs.nomad.d/vllm.nomad.hcl that runs the switchboard's
# fake vLLM server with raw_exec: the contract tests run it on the Nomad
# fake and, with `make test-real`, on real Nomad and Consul dev agents.
# It declares the variables the orchestrator sets for every model.

variable "job_name" {
  type = string
}

variable "model" {
  type = string
}

variable "served_name" {
  type = string
}

variable "port" {
  type    = number
  default = 0
}

variable "image" {
  type    = string
  default = ""
}

variable "vllm_args" {
  type    = list(string)
  default = []
}

variable "switchboard_bin" {
  type        = string
  description = "Absolute path of the switchboard binary (or of a test binary that acts as one)."
}

variable "check_interval" {
  type    = string
  default = "1s"
}

variable "kill_timeout" {
  type    = string
  default = "2s"
}

variable "memory_mb" {
  type    = number
  default = 64
}

job "mockllm" {
  id          = var.job_name
  name        = var.job_name
  type        = "service"
  datacenters = ["*"]

  meta {
    model = var.model
  }

  group "llm" {
    count = 1

    network {
      port "http" {}
    }

    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    service {
      name     = "switchboard-contract-llm"
      port     = "http"
      provider = "consul"

      check {
        name     = "mockllm health"
        type     = "http"
        path     = "/health"
        interval = var.check_interval
        timeout  = "2s"
      }
    }

    task "llm" {
      driver       = "raw_exec"
      kill_signal  = "SIGTERM"
      kill_timeout = var.kill_timeout

      config {
        command = var.switchboard_bin
        args = concat(
          ["mockllm", "--host", "127.0.0.1", "--port", "${NOMAD_PORT_http}", "--model", var.served_name],
          var.vllm_args,
        )
      }

      env {
        SWITCHBOARD_TEST_AS_MAIN = "1"
      }

      resources {
        cpu    = 100
        memory = var.memory_mb
      }
    }
  }
}
