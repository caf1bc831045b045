locals {
  switchboard_job = "llm-switchboard"
  # Nomad variable the switchboard job's tasks read their secrets from;
  # nomad/jobs/<job id> needs no extra policy for the job itself.
  secrets_path = "nomad/jobs/${local.switchboard_job}"

  redis_url   = "redis://127.0.0.1:${var.redis_port}/0"
  consul_url  = "${var.consul_scheme}://${var.consul_address}"
  gateway_url = "http://${var.gateway_host}:${var.gateway_port}"
  datacenters = jsonencode([var.datacenter])
}

# --- Nomad: namespace, the orchestrator's policy and token ---------------

resource "nomad_namespace" "llm" {
  name        = var.namespace
  description = "llm-switchboard: gateway, orchestrator, Redis and the model jobs"
}

# What the orchestrator does: parse, plan, register and deregister model
# jobs in its namespace, watch their allocations and read their task logs
# (to explain a failed start), and read the node's host stats for the
# memory barrier.
resource "nomad_acl_policy" "orchestrator" {
  name        = "llm-switchboard-orchestrator"
  description = "llm-switchboard orchestrator: manage model jobs in ${var.namespace}, read node stats"
  rules_hcl   = <<-EOT
    namespace "${nomad_namespace.llm.name}" {
      policy       = "read"
      capabilities = ["submit-job", "parse-job", "read-job", "list-jobs", "read-logs"]
    }

    node {
      policy = "read"
    }
  EOT
}

resource "nomad_acl_token" "orchestrator" {
  name     = "llm-switchboard-orchestrator"
  type     = "client"
  policies = [nomad_acl_policy.orchestrator.name]
}

# --- Consul: the orchestrator's policy and token, KV defaults --------------

# Leader lock (session + KV under the prefix), published state, service
# health reads; node read for the catalog.
resource "consul_acl_policy" "orchestrator" {
  name        = "llm-switchboard-orchestrator"
  description = "llm-switchboard orchestrator: leader lock and state under ${var.kv_prefix}"
  datacenters = [var.datacenter]
  rules       = <<-EOT
    session_prefix "" {
      policy = "write"
    }

    key_prefix "${var.kv_prefix}" {
      policy = "write"
    }

    service_prefix "" {
      policy = "write"
    }

    node_prefix "" {
      policy = "read"
    }
  EOT
}

resource "consul_acl_token" "orchestrator" {
  description = "llm-switchboard orchestrator"
  policies    = [consul_acl_policy.orchestrator.name]
  local       = true
}

data "consul_acl_token_secret_id" "orchestrator" {
  accessor_id = consul_acl_token.orchestrator.id
}

# Where the deployment keeps things, for operators and the scripts
# (`consul kv get llm-switchboard/deployment/hf_cache_dir`). The switchboard
# itself writes only the lock and state keys. delete = true: consul_keys
# leaves a key in Consul on destroy (or when its block goes) unless told.
resource "consul_keys" "defaults" {
  datacenter = var.datacenter

  key {
    path   = "${var.kv_prefix}deployment/namespace"
    value  = nomad_namespace.llm.name
    delete = true
  }

  key {
    path   = "${var.kv_prefix}deployment/gateway_url"
    value  = local.gateway_url
    delete = true
  }

  key {
    path   = "${var.kv_prefix}deployment/redis_url"
    value  = local.redis_url
    delete = true
  }

  key {
    path   = "${var.kv_prefix}deployment/redis_data_dir"
    value  = var.redis_data_dir
    delete = true
  }

  key {
    path   = "${var.kv_prefix}deployment/hf_cache_dir"
    value  = var.hf_cache_dir
    delete = true
  }

  key {
    path   = "${var.kv_prefix}deployment/vllm_cache_dir"
    value  = var.vllm_cache_dir
    delete = true
  }
}

# --- Secrets of the switchboard job ---------------------------------------

resource "nomad_variable" "switchboard" {
  namespace = nomad_namespace.llm.name
  path      = local.secrets_path
  items = {
    gateway_api_key       = join(",", var.gateway_api_keys)
    gateway_admin_api_key = join(",", var.gateway_admin_api_keys)
    nomad_token           = nomad_acl_token.orchestrator.secret_id
    consul_token          = data.consul_acl_token_secret_id.orchestrator.secret_id
  }
}

# --- Jobs -----------------------------------------------------------------

resource "nomad_job" "redis" {
  jobspec          = file("${path.module}/../jobs.nomad.d/redis.nomad.hcl")
  detach           = false
  purge_on_destroy = true

  hcl2 {
    vars = {
      namespace   = nomad_namespace.llm.name
      datacenters = local.datacenters
      image       = var.redis_image
      redis_port  = tostring(var.redis_port)
      host_volume = var.redis_host_volume
    }
  }
}

resource "nomad_job" "switchboard" {
  jobspec          = file("${path.module}/../jobs.nomad.d/llm-switchboard.nomad.hcl")
  detach           = false
  purge_on_destroy = true

  hcl2 {
    vars = {
      job_name                  = local.switchboard_job
      namespace                 = nomad_namespace.llm.name
      datacenters               = local.datacenters
      driver                    = var.switchboard_driver
      switchboard_bin           = var.switchboard_bin
      config_file               = var.config_file
      gateway_port              = tostring(var.gateway_port)
      orchestrator_metrics_port = tostring(var.orchestrator_metrics_port)
      redis_url                 = local.redis_url
      nomad_addr                = var.nomad_address
      consul_addr               = local.consul_url
      secrets_path              = local.secrets_path
      log_level                 = var.log_level
    }
  }

  # The tasks wait for their secrets and need Redis.
  depends_on = [nomad_variable.switchboard, nomad_job.redis, consul_keys.defaults]
}
