# llm-switchboard production configuration (DGX Spark, Nomad + Consul).
#
# Every setting is optional; what is left out keeps its default (shown in
# brackets). Environment variables override the file, so one file serves
# every deployment; an empty variable counts as unset. API keys are never
# written here: they come only from GATEWAY_API_KEY and
# GATEWAY_ADMIN_API_KEY (comma-separated lists).
#
# Check a change with `switchboard config check configs/gateway.hcl`.

# The models file, relative to this file's directory. ["models.hcl"]
models_file = "models.hcl"

gateway {
  # Address of the OpenAI-compatible HTTP API. All interfaces here, since
  # Tailscale Funnel and other hosts reach it; the gateway refuses to start
  # on a non-loopback address without an API key. Env GATEWAY_LISTEN.
  # ["127.0.0.1:8000"]
  listen = "0.0.0.0:8000"

  # Largest request body accepted, in bytes; long prompts and base64 images
  # fit, runaway uploads do not. [16777216 = 16 MiB]
  max_request_bytes = 16777216
}

redis {
  # The job store shared by gateways and orchestrators: job records,
  # per-model queues, stream chunks, slot state. Run it with persistence
  # (appendonly) so accepted jobs survive a restart. Env REDIS_URL.
  # [""; empty means an embedded in-process Redis, for dev mode only]
  url = "redis://127.0.0.1:6379/0"

  # Prefix of every key the switchboard writes, so the Redis can be
  # shared. ["sb:"]
  key_prefix = "sb:"
}

nomad {
  # The Nomad agent the orchestrator registers model jobs with; the token
  # comes from NOMAD_TOKEN, as for the nomad CLI. Env NOMAD_ADDR.
  # ["http://127.0.0.1:4646"]
  address = "http://127.0.0.1:4646"

  # Namespace and region the model jobs run in; terraform/ creates the
  # namespace and an ACL policy limited to it. ["default"], ["global"]
  namespace = "default"
  region    = "global"
}

consul {
  # The Consul agent holding the leader lock and published state; the token
  # comes from CONSUL_HTTP_TOKEN. Env CONSUL_HTTP_ADDR.
  # ["http://127.0.0.1:8500"]
  address = "http://127.0.0.1:8500"

  # KV key of the leader lock; only its holder touches Nomad.
  # ["llm-switchboard/leader"]
  lock_key = "llm-switchboard/leader"
}

orchestrator {
  # "nomad" runs each model as a Nomad job from its jobspec; "local" runs
  # each model's command as a child process (dev mode). ["nomad"]
  runtime = "nomad"

  # The GPU box whose single active model this orchestrator manages; state
  # is keyed by it. ["default"]
  slot = "default"

  # Bound on starting a model: job registered to backend healthy and the
  # canary answered. Loading 100 GB of weights from disk and compiling
  # takes minutes. Env SWITCH_TIMEOUT_SEC (whole seconds). ["15m"]
  switch_timeout = "15m"

  # Bound on one request to the backend, streaming included.
  # Env INFERENCE_TIMEOUT_SEC (whole seconds). ["10m"]
  inference_timeout = "10m"

  # How long a switch waits for the old model's in-flight requests before
  # aborting them with an error. ["2m"]
  drain_timeout = "2m"

  # How long a switch waits for the old model's allocations to be terminal
  # and its memory to be free before the slot is reported wedged. ["5m"]
  stop_timeout = "5m"

  # Local runtime only: wait between SIGTERM and SIGKILL. Nomad uses the
  # jobspec's kill_timeout instead. ["30s"]
  stop_grace = "30s"
}

scheduler {
  # Model (or alias) loaded at start, before any request asks for one.
  # Unset, the box stays empty until the first request. [""]
  default_model = "gpt-oss120"

  # Starvation bound: when another model's oldest request has waited this
  # long, drain the active model and switch even if it still has work.
  # ["10m"]
  max_wait = "10m"

  # A request still queued after this long fails with a timeout. ["30m"]
  queue_timeout = "30m"

  # How long finished jobs and their results stay readable through
  # /jobs/{id}. ["1h"]
  result_ttl = "1h"
}
