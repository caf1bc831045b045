#!/usr/bin/env bash
# Make every model's weights available before its first switch, reading the
# models from the switchboard itself (`switchboard config models -json`):
#   source type "local_path":       check that the directory exists on this host
#                                   (the job mounts it read-only);
#   source type "huggingface_repo": huggingface-cli download into the Hugging
#                                   Face cache the vLLM jobs mount (hf_cache_dir
#                                   of jobs.nomad.d/vllm.nomad.hcl), so that
#                                   they start offline (HF_HUB_OFFLINE=1).
# Idempotent: huggingface-cli skips the files it already has.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-/opt/llm-switchboard}
CONFIG=${SWITCHBOARD_CONFIG:-}
HF_CACHE_DIR=${HF_CACHE_DIR:-$PREFIX/hf-cache}
VENV=${VENV:-$PREFIX/venv-hf}
CHECK_ONLY=0

usage() {
	cat <<USAGE
Usage: $0 [--config GATEWAY_HCL] [--hf-cache DIR] [--check] [MODEL...]

For each configured model (or only the MODELs named), as listed by
'\$SWITCHBOARD_BIN config models -json':
  local_path        checks that the directory exists (nothing is downloaded)
  huggingface_repo  downloads the repository into the Hugging Face cache

  --config FILE   gateway.hcl (it names models.hcl) [\$SWITCHBOARD_CONFIG, else
                  $PREFIX/configs/gateway.hcl, else the repository's]
  --hf-cache DIR  Hugging Face cache (HF_HOME) the jobs mount [$HF_CACHE_DIR]
                  (env HF_CACHE_DIR)
  --check         download nothing: only report what is missing
  -h, --help      this help

huggingface-cli comes from PATH, else it is installed into \$VENV [$VENV].
Gated repositories need HF_TOKEN in the environment. gpt-oss-120b is
~65 GB and Qwen3-235B 4-bit ~125 GB: check the free space first.
The switchboard binary is \$SWITCHBOARD_BIN, else $PREFIX/bin/switchboard,
else $REPO/bin/switchboard (make build), else 'switchboard' on PATH.
USAGE
}

die() { echo "download_models: $*" >&2; exit 1; }
log() { echo "==> $*"; }

only=()
while [ $# -gt 0 ]; do
	case "$1" in
	--config) CONFIG=${2:?--config needs a file}; shift 2 ;;
	--hf-cache) HF_CACHE_DIR=${2:?--hf-cache needs a directory}; shift 2 ;;
	--check) CHECK_ONLY=1; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) usage >&2; die "unknown option: $1" ;;
	*) only+=("$1"); shift ;;
	esac
done

# shellcheck source-path=SCRIPTDIR source=lib/models.sh
. "$REPO/scripts/lib/models.sh"

resolve_config
json=$(models_json)

# One model object per line, then its fields, without jq.
mapfile -t objects < <(tr -d '\n' <<<"$json" | sed -E 's/\}[[:space:]]*,[[:space:]]*\{/}\n{/g')
field() { # OBJECT KEY: a string field of one model object
	grep -oE "\"$2\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" <<<"$1" | head -1 |
		sed -E 's/^"[^"]*"[[:space:]]*:[[:space:]]*"//; s/"$//' || true
}

wanted() { # NAME: listed on the command line, or no list given
	local m
	[ ${#only[@]} -eq 0 ] && return 0
	for m in "${only[@]}"; do [ "$m" = "$1" ] && return 0; done
	return 1
}

declare -A seen=()
cache_missing=0
local_missing=()
repos=()
for obj in "${objects[@]}"; do
	name=$(field "$obj" name)
	[ -n "$name" ] || continue
	wanted "$name" || continue
	seen[$name]=1
	type=$(field "$obj" source_type)
	value=$(field "$obj" source_value)
	case "$type" in
	local_path)
		if [ -d "$value" ] && [ -n "$(ls -A "$value" 2>/dev/null)" ]; then
			[ -e "$value/config.json" ] || echo "download_models: warning: $name: $value has no config.json (is it a model directory?)" >&2
			log "$name: local_path $value present"
		else
			echo "download_models: $name: local_path $value is missing or empty on this host" >&2
			local_missing+=("$name ($value)")
		fi
		;;
	huggingface_repo)
		repos+=("$name=$value")
		;;
	*) die "$name: unknown source type '$type' (want local_path or huggingface_repo)" ;;
	esac
done
for m in "${only[@]}"; do
	[ -n "${seen[$m]:-}" ] || die "no model named '$m' in $CONFIG (switchboard config models -config $CONFIG)"
done

if [ ${#repos[@]} -gt 0 ]; then
	export HF_HOME=$HF_CACHE_DIR HF_HUB_ENABLE_HF_TRANSFER=${HF_HUB_ENABLE_HF_TRANSFER:-1}
	if [ "$CHECK_ONLY" -eq 1 ]; then
		for r in "${repos[@]}"; do
			repo=${r#*=}
			dir=$HF_CACHE_DIR/hub/models--${repo//\//--}
			if [ -d "$dir/snapshots" ]; then
				log "${r%%=*}: $repo in the cache"
			else
				log "${r%%=*}: $repo NOT in the cache ($dir)"
				cache_missing=$((cache_missing + 1))
			fi
		done
	else
		CLI=$(command -v huggingface-cli || true)
		if [ -z "$CLI" ]; then
			if [ ! -x "$VENV/bin/huggingface-cli" ]; then
				log "installing huggingface_hub into $VENV"
				command -v python3 >/dev/null || die "python3 not found (apt-get install python3-venv)"
				python3 -m venv "$VENV" || die "python3 -m venv $VENV failed (apt-get install python3-venv; sudo for $PREFIX)"
				"$VENV/bin/pip" install -q 'huggingface_hub[cli,hf_transfer]' || die "pip install huggingface_hub failed"
			fi
			CLI=$VENV/bin/huggingface-cli
		fi
		mkdir -p "$HF_CACHE_DIR/hub" || die "cannot create $HF_CACHE_DIR (sudo, or --hf-cache)"
		[ -w "$HF_CACHE_DIR/hub" ] || die "$HF_CACHE_DIR/hub is not writable by $(id -un)"
		log "free space in $HF_CACHE_DIR: $(df -h --output=avail "$HF_CACHE_DIR" | tail -1 | tr -d ' ')"
		for r in "${repos[@]}"; do
			repo=${r#*=}
			log "${r%%=*}: huggingface-cli download $repo"
			# --cache-dir is the hub cache inside HF_HOME, where the container's
			# HF_HOME=/root/.cache/huggingface looks.
			"$CLI" download "$repo" --cache-dir "$HF_CACHE_DIR/hub" >/dev/null ||
				die "download of $repo failed (gated? set HF_TOKEN; disk full? df -h $HF_CACHE_DIR)"
		done
	fi
fi

if [ ${#local_missing[@]} -gt 0 ]; then
	die "local_path models missing: ${local_missing[*]}; copy the weights there or change source in models.hcl"
fi
[ "$cache_missing" -eq 0 ] || die "$cache_missing repositories not downloaded yet: run $0 without --check"
log "done: the vLLM jobs find the weights offline in $HF_CACHE_DIR"
