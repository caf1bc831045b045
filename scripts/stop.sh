#!/usr/bin/env bash
# Stop the switchboard: the model job first (frees the GPU memory), then
# the switchboard and Redis jobs; with --agents also Nomad and Consul.
# Idempotent: what is already stopped is skipped.
set -euo pipefail

NAMESPACE=${NOMAD_NAMESPACE:-llm}
STATE=/etc/llm-switchboard
AGENTS=0
PURGE=0

usage() {
	cat <<USAGE
Usage: sudo $0 [--namespace NS] [--purge] [--agents]

  --namespace NS  Nomad namespace of the jobs [$NAMESPACE] (env NOMAD_NAMESPACE)
  --purge         purge the jobs instead of keeping them dead in the history
  --agents        also stop the nomad and consul services
  -h, --help      this help

The switchboard is stopped before the model job so that no orchestrator
starts a model again. Stopping through terraform: terraform -chdir=terraform destroy.
USAGE
}

die() { echo "stop: $*" >&2; exit 1; }
log() { echo "==> $*"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--namespace) NAMESPACE=${2:?--namespace needs a name}; shift 2 ;;
	--purge) PURGE=1; shift ;;
	--agents) AGENTS=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
command -v nomad >/dev/null || die "nomad not found"
if [ -z "${NOMAD_TOKEN:-}" ] && [ -r "$STATE/nomad.token" ]; then
	NOMAD_TOKEN=$(cat "$STATE/nomad.token")
	export NOMAD_TOKEN
fi
export NOMAD_NAMESPACE=$NAMESPACE

stop_job() {
	local job=$1 args=(-yes)
	[ "$PURGE" -eq 1 ] && args+=(-purge)
	if ! nomad job status -short "$job" >/dev/null 2>&1; then
		return 0
	fi
	log "stopping $job (waits for its kill_timeout)"
	nomad job stop "${args[@]}" "$job"
}

if systemctl is-active --quiet nomad; then
	stop_job llm-switchboard
	# Model jobs: the orchestrator's job_prefix (sb- by default).
	while read -r job; do
		[ -n "$job" ] && stop_job "$job"
	done < <(nomad job status -short 2>/dev/null | awk 'NR > 1 && $1 ~ /^sb-/ && $4 != "dead" { print $1 }')
	stop_job redis
fi

if [ "$AGENTS" -eq 1 ]; then
	[ "$(id -u)" -eq 0 ] || die "--agents needs root"
	log "stopping nomad and consul"
	systemctl stop nomad consul
fi
log "stopped"
