# llm-switchboard dev configuration, used by `switchboard dev`.
#
# One process, nothing to install: the local runtime runs each model's
# command as a child process (the bundled fake backend, mockllm), the lock
# is in-process and Redis is embedded. The binary carries these files, so
# `switchboard dev` works from any directory. Environment variables
# override them as in production (GATEWAY_LISTEN, GATEWAY_API_KEY, ...).

models_file = "models.hcl"

gateway {
  # Loopback only: dev mode needs no API key there.
  listen = "127.0.0.1:8000"
}

redis {
  # Empty: an embedded in-process Redis. Set REDIS_URL to use a real one.
  url = ""
}

orchestrator {
  # Child processes instead of Nomad jobs.
  runtime = "local"
  slot    = "dev"

  # The fake backend loads in about a second; short bounds make a stuck
  # switch visible at once.
  switch_timeout    = "60s"
  inference_timeout = "120s"
  drain_timeout     = "30s"
  stop_timeout      = "30s"

  # SIGTERM, then SIGKILL after this long.
  stop_grace = "5s"
}
