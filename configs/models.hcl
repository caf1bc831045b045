# Models the production switchboard serves on the DGX Spark (aarch64,
# 128 GB = 119.7 GiB unified memory shared by CPU and GPU). Exactly one is
# loaded at a time; a request for another one queues until the switch.
#
# Fields of a model block (the label is the logical name clients send as
# "model"; 1 to 128 letters, digits and . _ - / :):
#
#   aliases          other names clients may use; unique across all models
#   served_name      name vLLM serves (--served-model-name) [the label]
#   jobspec          Nomad jobspec, relative to this file; required with the
#                    nomad runtime and must exist
#   source           where the weights come from: type "huggingface_repo"
#                    (value = repo id) or "local_path" (value = absolute path
#                    on the GPU host); required with the nomad runtime
#   backend          image (vLLM container; required with nomad), port
#                    (1..65535, required) and vllm_args (extra arguments)
#   quantization     vLLM --quantization; leave out to let vLLM detect it
#   max_concurrency  requests sent to the backend at once; vLLM batches
#                    them. Counted per route: each gateway sends up to this
#                    many on the direct route, the orchestrator up to this
#                    many from the queue (vLLM queues any excess) [8]
#   memory           footprint the memory barrier waits for before starting
#                    the model (B, KiB, MiB, GiB, TiB, or decimal KB, MB, GB,
#                    TB). vLLM takes --gpu-memory-utilization of the
#                    119.7 GiB, so keep the two in step: memory is about
#                    utilization x 119.7 GiB.
#   command, env     local runtime only (see configs/dev/models.hcl)

model "gpt-oss120" {
  aliases     = ["gpt-oss-120b", "openai/gpt-oss-120b"]
  served_name = "openai/gpt-oss-120b"
  jobspec     = "../jobs.nomad.d/vllm.nomad.hcl"

  source {
    type  = "huggingface_repo"
    value = "openai/gpt-oss-120b"
  }

  backend {
    image = "nvcr.io/nvidia/vllm:25.10-py3"
    port  = 8100
    # About 61 GiB of MXFP4 weights; the rest is KV cache, which stays small
    # since half the layers use a 128-token sliding window.
    vllm_args = [
      "--gpu-memory-utilization", "0.60",
      "--max-model-len", "65536",
      "--max-num-seqs", "8",
    ]
  }

  # Native MXFP4 MoE weights, as OpenAI publishes them.
  quantization    = "mxfp4"
  max_concurrency = 8
  # 0.60 x 119.7 GiB.
  memory = "72GiB"
}

model "qwen3-30b" {
  aliases     = ["qwen3", "Qwen/Qwen3-30B-A3B"]
  served_name = "Qwen/Qwen3-30B-A3B"
  jobspec     = "../jobs.nomad.d/vllm.nomad.hcl"

  source {
    type  = "huggingface_repo"
    value = "Qwen/Qwen3-30B-A3B"
  }

  backend {
    image = "nvcr.io/nvidia/vllm:25.10-py3"
    port  = 8100
    # BF16: 30.5B parameters are about 57 GiB of weights; 32k tokens of
    # context are the model's native length.
    vllm_args = [
      "--gpu-memory-utilization", "0.55",
      "--max-model-len", "32768",
      "--max-num-seqs", "8",
    ]
  }

  max_concurrency = 8
  # 0.55 x 119.7 GiB.
  memory = "66GiB"
}

model "qwen3-235b-4bit" {
  aliases     = ["qwen3-235b", "Qwen/Qwen3-235B-A22B-GPTQ-Int4"]
  served_name = "Qwen/Qwen3-235B-A22B-GPTQ-Int4"
  jobspec     = "../jobs.nomad.d/vllm.nomad.hcl"

  source {
    type  = "huggingface_repo"
    value = "Qwen/Qwen3-235B-A22B-GPTQ-Int4"
  }

  backend {
    image = "nvcr.io/nvidia/vllm:25.10-py3"
    port  = 8100
    # The tightest fit on the box: the 4-bit weights take nearly all of it,
    # so the context is short, few sequences run at once, and CUDA graphs
    # (eager mode) do not claim memory. Stop notebooks before loading it.
    vllm_args = [
      "--gpu-memory-utilization", "0.95",
      "--max-model-len", "8192",
      "--max-num-seqs", "2",
      "--enforce-eager",
    ]
  }

  # GPTQ through the Marlin kernels; plain "gptq" would force vLLM onto
  # the much slower generic GPTQ kernels.
  quantization    = "gptq_marlin"
  max_concurrency = 2
  # 0.95 x 119.7 GiB: the barrier waits until almost the whole box is free.
  memory = "114GiB"
}
