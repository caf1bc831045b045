# A stand-in model backend run by raw_exec: the test binary itself, which
# serves /health on its port when FAKENOMAD_TEST_BACKEND is set (see
# main_test.go). The fakenomad tests parse it through /v1/jobs/parse.

variable "job_name" {
  type = string
}

variable "command" {
  type        = string
  description = "Absolute path of the test binary."
}

variable "mode" {
  type        = string
  description = "Backend behaviour: serve, ignore-signals or exit1."
  default     = "serve"
}

variable "managed" {
  type    = bool
  default = false
}

variable "memory_mb" {
  type    = number
  default = 256
}

variable "kill_timeout" {
  type    = string
  default = "5s"
}

variable "restart_attempts" {
  type    = number
  default = 0
}

variable "driver" {
  type    = string
  default = "raw_exec"
}

variable "gpus" {
  type    = number
  default = 0
}

locals {
  meta = merge(
    { model = var.job_name },
    var.managed ? { "managed-by" = "llm-switchboard" } : {},
  )
}

job "backend" {
  id          = var.job_name
  datacenters = ["*"]
  type        = "service"
  meta        = local.meta

  group "backend" {
    network {
      port "http" {}
    }

    restart {
      attempts = var.restart_attempts
      delay    = "100ms"
      interval = "30m"
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    service {
      name     = "backend-${var.job_name}"
      port     = "http"
      provider = "consul"
      tags     = ["model=${var.job_name}"]

      check {
        type     = "http"
        path     = "/health"
        interval = "200ms"
        timeout  = "1s"
      }
    }

    task "server" {
      driver       = var.driver
      kill_timeout = var.kill_timeout

      config {
        command = var.command
        image   = "backend:test"
        args    = ["--port", "${NOMAD_PORT_http}", "--mode", var.mode, "--alloc", "${NOMAD_ALLOC_ID}"]
      }

      env {
        FAKENOMAD_TEST_BACKEND = "1"
        BACKEND_JOB            = "${NOMAD_JOB_NAME}"
      }

      resources {
        cpu    = 100
        memory = var.memory_mb

        dynamic "device" {
          for_each = var.gpus > 0 ? [var.gpus] : []
          content {
            count = device.value
          }
          labels = ["nvidia/gpu"]
        }
      }
    }
  }
}
