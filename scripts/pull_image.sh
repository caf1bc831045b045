#!/usr/bin/env bash
# Pull the vLLM image(s) the models use, before the first switch: a pull of
# ~20 GB inside a switch would cost minutes. Idempotent (docker skips layers
# it has).
set -euo pipefail

CONFIG=${CONFIG:-/opt/llm-switchboard/configs/models.hcl}

usage() {
	cat <<USAGE
Usage: $0 [IMAGE...]

Pulls each IMAGE, or without arguments every distinct backend image in
\$CONFIG [$CONFIG] (the 'image = "..."' lines). Needs Docker; run as a user
in the docker group or with sudo.
USAGE
}

die() { echo "pull_image: $*" >&2; exit 1; }

case "${1:-}" in
-h | --help) usage; exit 0 ;;
-*) usage >&2; die "unknown option: $1" ;;
esac
command -v docker >/dev/null || die "docker not found: run scripts/install_prereqs.sh"

images=("$@")
if [ ${#images[@]} -eq 0 ]; then
	[ -r "$CONFIG" ] || die "cannot read $CONFIG; give the images as arguments or set CONFIG"
	mapfile -t images < <(sed -n 's/^[[:space:]]*image[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$CONFIG" | sort -u)
	[ ${#images[@]} -gt 0 ] || die "no image = \"...\" in $CONFIG"
fi

for image in "${images[@]}"; do
	echo "==> $image"
	docker pull --platform linux/arm64 "$image" || die "pull of $image failed (logged in to nvcr.io? docker login nvcr.io)"
done
