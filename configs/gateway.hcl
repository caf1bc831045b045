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

  # Sync and streaming requests for the model that is loaded and ready go
  # straight to its backend under a lease this gateway renews in Redis
  # (no job record, no queue hop); the leader closes the route and waits
  # for those requests before any stop. Off: every request is a job in the
  # queue (then each has a job id for /jobs/{id}). [true]
  direct_route = true
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
  namespace = "llm"
  region    = "global"

  # Model jobs are named job_prefix + model. ["sb-"]
  job_prefix = "sb-"

  # Purge a model's job when it is stopped; kept (dead) by default so
  # `nomad job status` shows its history. [false]
  purge_on_stop = false

  # Memory barrier: after a stop, wait until the node's available memory
  # (Nomad host stats) covers the next model's memory plus this headroom,
  # for at most memory_timeout; past it the slot is wedged and nothing
  # starts. node_id picks the GPU node when the cluster has several.
  # ["4GiB"], ["3m"]
  memory_headroom = "4GiB"
  memory_timeout  = "3m"
}

consul {
  # The Consul agent holding the leader lock and published state; the token
  # comes from CONSUL_HTTP_TOKEN. Env CONSUL_HTTP_ADDR.
  # ["http://127.0.0.1:8500"]
  address = "http://127.0.0.1:8500"

  # KV key of the leader lock; only its holder touches Nomad.
  # ["llm-switchboard/leader"]
  lock_key = "llm-switchboard/leader"

  # Leader session: a dead leader's lock frees after at most 2 x TTL, then
  # the lock-delay. ["15s"], ["15s"]
  session_ttl = "15s"
  lock_delay  = "15s"

  # The leader publishes the slot state here for the Consul UI.
  # ["llm-switchboard/state/"]
  kv_prefix = "llm-switchboard/state/"
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
  # (its memory: nomad.memory_timeout). ["5m"]
  stop_timeout = "5m"

  # Local runtime only: wait between SIGTERM and SIGKILL. Nomad uses the
  # jobspec's kill_timeout instead. ["30s"]
  stop_grace = "30s"

  # A model that turned healthy must answer one tiny completion within
  # canary_timeout before it serves (vLLM's /health can be green while
  # decoding is stuck). [true], ["1m"]
  canary         = true
  canary_timeout = "1m"
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

  # Backpressure: queued requests per model and in total; beyond them
  # requests get 429 with Retry-After. [1000], [5000]
  max_pending       = 1000
  max_pending_total = 5000

  # A loaded model stays at least this long before a switch away (a load
  # costs minutes). ["0"]
  min_residency = "2m"

  # Cap on switches per hour; beyond it work queues and /status says why.
  # 0 = no cap. [0]
  max_switches_per_hour = 20

  # Unload an idle model to free the memory for notebooks; "0" = never.
  # ["0"]
  idle_unload_after = "0"

  # A model that fails to start is quarantined for quarantine_base,
  # doubling on each further failure up to quarantine_max; its requests
  # fail fast with the reason and Retry-After. ["30s"], ["10m"]
  quarantine_base = "30s"
  quarantine_max  = "10m"
}
