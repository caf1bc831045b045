#!/usr/bin/env bash
# Pull the vLLM image(s) the models use, before the first switch: pulling
# ~20 GB inside a switch would cost minutes. The images come from the
# switchboard's own view of the configuration (`switchboard config models
# -json`). Idempotent: an image already present is skipped (--update pulls
# it again; docker then fetches only changed layers).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-/opt/llm-switchboard}
CONFIG=${SWITCHBOARD_CONFIG:-}
UPDATE=0

usage() {
	cat <<USAGE
Usage: $0 [--config GATEWAY_HCL] [--update] [IMAGE...]

Pulls each IMAGE, or without arguments every distinct backend image of the
configured models, as listed by '\$SWITCHBOARD_BIN config models -json'.

  --config FILE  gateway.hcl (it names models.hcl) [\$SWITCHBOARD_CONFIG, else
                 $PREFIX/configs/gateway.hcl, else the repository's]
  --update       pull images that are already present too
  -h, --help     this help

The switchboard binary is \$SWITCHBOARD_BIN, else $PREFIX/bin/switchboard,
else $REPO/bin/switchboard (make build), else 'switchboard' on PATH.
The platform follows this machine (linux/arm64 on a DGX Spark). Needs
Docker: run as a member of the docker group or with sudo. NGC images
(nvcr.io) may need 'docker login nvcr.io' first.
USAGE
}

die() { echo "pull_vllm_image: $*" >&2; exit 1; }
log() { echo "==> $*"; }

args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--config) CONFIG=${2:?--config needs a file}; shift 2 ;;
	--update) UPDATE=1; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) usage >&2; die "unknown option: $1" ;;
	*) args+=("$1"); shift ;;
	esac
done

case "$(uname -m)" in
aarch64 | arm64) PLATFORM=linux/arm64 ;;
x86_64 | amd64) PLATFORM=linux/amd64 ;;
*) die "unsupported machine $(uname -m): the vLLM images exist for arm64 and amd64" ;;
esac
command -v docker >/dev/null || die "docker not found: run sudo scripts/install_prereqs.sh"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (running? are you in the docker group, or use sudo)"

# shellcheck source-path=SCRIPTDIR source=lib/models.sh
. "$REPO/scripts/lib/models.sh"

images=()
if [ ${#args[@]} -gt 0 ]; then
	images=("${args[@]}")
else
	resolve_config
	json=$(models_json)
	# "image": "..." of every model, without jq.
	mapfile -t images < <(grep -oE '"image"[[:space:]]*:[[:space:]]*"[^"]+"' <<<"$json" |
		sed -E 's/^"image"[[:space:]]*:[[:space:]]*"//; s/"$//' | sort -u)
	[ ${#images[@]} -gt 0 ] || die "no model in $CONFIG has a backend image"
fi

for image in "${images[@]}"; do
	if [ "$UPDATE" -eq 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
		log "$image: present (--update to pull again)"
		continue
	fi
	log "pulling $image for $PLATFORM"
	docker pull --platform "$PLATFORM" "$image" ||
		die "pull of $image failed (NGC image: docker login nvcr.io with an NGC API key; disk full: df -h /var/lib/docker)"
done
log "images ready: ${images[*]}"
