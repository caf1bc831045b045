# Dev models: the production names and aliases, each served by the fake
# OpenAI backend (`switchboard mockllm`), so clients and scripts written
# against dev work unchanged in production.
#
# command is the argv of the child process. It may use two variables:
#   switchboard  path of the running switchboard binary
#   model        this model: model.name, model.served_name, model.port
# Numbers become strings. env (optional) adds environment variables.
#
# The fake backend loads for 1.5 s and streams 40 tokens per second after
# 80 ms, slow enough to watch a switch and a queue happen. Each model has
# its own port so a log line tells them apart.

model "gpt-oss120" {
  aliases         = ["gpt-oss-120b", "openai/gpt-oss-120b"]
  served_name     = "openai/gpt-oss-120b"
  max_concurrency = 8

  backend {
    port = 18101
  }

  command = [
    switchboard, "mockllm",
    "--port", model.port,
    "--model", model.served_name,
    "--load-delay", "1500ms",
    "--tokens-per-second", "40",
    "--ttft", "80ms",
  ]
}

model "qwen3-30b" {
  aliases         = ["qwen3", "Qwen/Qwen3-30B-A3B"]
  served_name     = "Qwen/Qwen3-30B-A3B"
  max_concurrency = 8

  backend {
    port = 18102
  }

  command = [
    switchboard, "mockllm",
    "--port", model.port,
    "--model", model.served_name,
    "--load-delay", "1500ms",
    "--tokens-per-second", "40",
    "--ttft", "80ms",
  ]
}

model "qwen3-235b-4bit" {
  aliases         = ["qwen3-235b", "Qwen/Qwen3-235B-A22B-GPTQ-Int4"]
  served_name     = "Qwen/Qwen3-235B-A22B-GPTQ-Int4"
  max_concurrency = 8

  backend {
    port = 18103
  }

  command = [
    switchboard, "mockllm",
    "--port", model.port,
    "--model", model.served_name,
    "--load-delay", "1500ms",
    "--tokens-per-second", "40",
    "--ttft", "80ms",
  ]
}
