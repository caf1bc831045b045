variable "model" {
  type        = string
  description = "model name served by the stand-in backend (required, no default)"
}

variable "port" {
  type    = number
  default = 18080
}

variable "command" {
  type    = string
  default = "/usr/bin/python3"
}

variable "provider" {
  type    = string
  default = "consul"
}

job "standin" {
  datacenters = ["*"]
  type        = "service"

  meta {
    model = var.model
    owner = "reference"
  }

  group "web" {
    count = 1

    network {
      port "http" {
        static = var.port
      }
    }

    restart {
      attempts = 1
      interval = "30m"
      delay    = "1s"
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    service {
      name     = "standin-${var.model}"
      provider = var.provider
      port     = "http"
      tags     = ["model-${var.model}"]

      check {
        type     = "http"
        path     = "/"
        interval = "2s"
        timeout  = "1s"
      }
    }

    task "server" {
      driver = "raw_exec"

      config {
        command = var.command
        args    = ["-m", "http.server", "${NOMAD_PORT_http}", "--bind", "127.0.0.1"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
