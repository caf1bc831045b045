# Redis for the switchboard: job records, per-model queues, stream chunks
# and slot state. Append-only persistence on a Nomad host volume, so that
# accepted jobs survive a restart of Redis or of the box (invariant 3).
#
# The Nomad client must declare the host volume (scripts/install_prereqs.sh
# writes it into /etc/nomad.d/client.hcl):
#
#   host_volume "redis-data" {
#     path      = "/opt/llm-switchboard/redis"
#     read_only = false
#   }
#
# terraform/ deploys it; by hand: nomad job run -var namespace=llm
# jobs.nomad.d/redis.nomad.hcl

variable "job_name" {
  type        = string
  description = "Nomad job ID."
  default     = "redis"
}

variable "namespace" {
  type        = string
  description = "Nomad namespace of the job."
  default     = "default"
}

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the job may run in."
  default     = ["*"]
}

variable "image" {
  type        = string
  description = "Redis image (multi-arch, so arm64 on the DGX Spark)."
  default     = "redis:7.4-alpine"
}

variable "redis_port" {
  type        = number
  description = "Port Redis listens on (host networking)."
  default     = 6379
}

variable "bind_address" {
  type        = string
  description = "Address Redis binds to. It has no password: keep it on loopback unless gateways on other hosts need it, and then firewall it."
  default     = "127.0.0.1"
}

variable "host_volume" {
  type        = string
  description = "Name of the client's host_volume holding the append-only file."
  default     = "redis-data"
}

variable "memory_mb" {
  type        = number
  description = "Memory Nomad reserves for Redis (the job records and queues are small)."
  default     = 1024
}

job "redis" {
  id          = var.job_name
  name        = var.job_name
  namespace   = var.namespace
  type        = "service"
  datacenters = var.datacenters

  group "redis" {
    count = 1

    network {
      port "redis" {
        static = var.redis_port
      }
    }

    volume "redis-data" {
      type      = "host"
      source    = var.host_volume
      read_only = false
    }

    # Unlike the model jobs, Redis should come back on its own.
    restart {
      attempts = 10
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name     = "redis"
      port     = "redis"
      provider = "consul"
      tags     = ["llm-switchboard"]
      # Bound to bind_address: the service and its check use it.
      address = var.bind_address

      check {
        name     = "redis tcp"
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "redis" {
      driver = "docker"

      # Redis writes its append-only file on SIGTERM before exiting.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      volume_mount {
        volume      = "redis-data"
        destination = "/data"
        read_only   = false
      }

      config {
        image        = var.image
        network_mode = "host"
        command      = "redis-server"
        args = [
          "--bind", var.bind_address,
          "--port", "${var.redis_port}",
          "--dir", "/data",
          "--appendonly", "yes",
          "--appendfsync", "everysec",
          "--protected-mode", "yes",
        ]
      }

      resources {
        cpu    = 500
        memory = var.memory_mb
      }
    }
  }
}
