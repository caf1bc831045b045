#!/usr/bin/env bash
# Download model weights into the Hugging Face cache the vLLM jobs mount
# (hf_cache_dir of jobs.nomad.d/vllm.nomad.hcl), so that they start offline
# (HF_HUB_OFFLINE=1). Idempotent: huggingface-cli skips files it has.
set -euo pipefail

HF_CACHE_DIR=${HF_CACHE_DIR:-/opt/llm-switchboard/hf-cache}
CONFIG=${CONFIG:-/opt/llm-switchboard/configs/models.hcl}
VENV=${VENV:-/opt/llm-switchboard/venv-hf}

usage() {
	cat <<USAGE
Usage: $0 [REPO...]

Downloads each Hugging Face REPO (e.g. Qwen/Qwen3-30B-A3B), or without
arguments every source of type "huggingface_repo" in \$CONFIG [$CONFIG],
into \$HF_CACHE_DIR [$HF_CACHE_DIR] with huggingface-cli (installed into
\$VENV [$VENV] when missing). Models with source type "local_path" are
not downloaded: their directory must already be on the host.

Gated repositories need HF_TOKEN in the environment. gpt-oss-120b is
~65 GB and Qwen3-235B 4-bit ~125 GB: check the free space first.
USAGE
}

die() { echo "download_weights: $*" >&2; exit 1; }

case "${1:-}" in
-h | --help) usage; exit 0 ;;
-*) usage >&2; die "unknown option: $1" ;;
esac

repos=("$@")
if [ ${#repos[@]} -eq 0 ]; then
	[ -r "$CONFIG" ] || die "cannot read $CONFIG; give the repositories as arguments or set CONFIG"
	# The value line that follows type = "huggingface_repo" in a source block.
	mapfile -t repos < <(awk '
		/type[[:space:]]*=[[:space:]]*"huggingface_repo"/ { want = 1; next }
		want && /value[[:space:]]*=/ { if (match($0, /"[^"]*"/)) print substr($0, RSTART + 1, RLENGTH - 2); want = 0 }
	' "$CONFIG" | sort -u)
	[ ${#repos[@]} -gt 0 ] || die "no huggingface_repo sources in $CONFIG"
fi

CLI=$(command -v huggingface-cli || true)
if [ -z "$CLI" ]; then
	if [ ! -x "$VENV/bin/huggingface-cli" ]; then
		echo "==> installing huggingface_hub into $VENV"
		python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
		"$VENV/bin/pip" install -q 'huggingface_hub[cli,hf_transfer]' || die "pip install huggingface_hub failed"
	fi
	CLI=$VENV/bin/huggingface-cli
fi

mkdir -p "$HF_CACHE_DIR" || die "cannot create $HF_CACHE_DIR (sudo, or set HF_CACHE_DIR)"
[ -w "$HF_CACHE_DIR" ] || die "$HF_CACHE_DIR is not writable by $(id -un)"
echo "==> free space in $HF_CACHE_DIR: $(df -h --output=avail "$HF_CACHE_DIR" | tail -1 | tr -d ' ')"

export HF_HOME=$HF_CACHE_DIR HF_HUB_ENABLE_HF_TRANSFER=${HF_HUB_ENABLE_HF_TRANSFER:-1}
for repo in "${repos[@]}"; do
	echo "==> $repo"
	# --cache-dir is the hub cache inside HF_HOME, where the container's
	# HF_HOME=/root/.cache/huggingface looks.
	"$CLI" download "$repo" --cache-dir "$HF_CACHE_DIR/hub" ||
		die "download of $repo failed (gated? set HF_TOKEN; disk full? df -h $HF_CACHE_DIR)"
done
echo "==> done; the vLLM jobs find the weights offline in $HF_CACHE_DIR"
